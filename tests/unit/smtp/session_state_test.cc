// session_state: the RFC 5321 4.3.2 state machine. One row per command-reply sequence of 4.3.2
// (state before, command, reply code, state after), and checkSequence for every (state, verb).

#include "proxy/smtp/session_state.h"

#include <gtest/gtest.h>

#include <array>
#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis {
namespace {

using St = SmtpState;

constexpr std::array<St, 7> kAllStates = {St::kConnected, St::kGreeted, St::kReady, St::kMail,
                                          St::kRcpt,      St::kData,    St::kClosed};

constexpr std::array<Verb, 19> kAllVerbs = {
    Verb::kEhlo, Verb::kHelo,     Verb::kMail,     Verb::kRcpt,   Verb::kData,
    Verb::kRset, Verb::kNoop,     Verb::kQuit,     Verb::kVrfy,   Verb::kExpn,
    Verb::kHelp, Verb::kStartTls, Verb::kAuth,     Verb::kBdat,   Verb::kEtrn,
    Verb::kTurn, Verb::kXclient,  Verb::kXforward, Verb::kUnknown};

// The states in which a client may send a command once the session has greeted it.
constexpr std::array<St, 4> kLive = {St::kGreeted, St::kReady, St::kMail, St::kRcpt};

struct Row {
  St before;
  Verb verb;
  int code;
  St after;
};

std::string show(const Row& r) {
  return std::string(stateName(r.before)) + " " + std::string(verbName(r.verb)) + " -> " +
         std::to_string(r.code);
}

TEST(SessionState, StateNames) {
  const std::set<std::string_view> want = {"connect", "greeted", "helo",  "mail",
                                           "rcpt",    "data",    "closed"};
  std::set<std::string_view> got;
  for (const St s : kAllStates) got.insert(stateName(s));
  EXPECT_EQ(got, want) << "every state has its own stable name (logs use them)";
}

// RFC 5321 4.3.2, row by row. CONNECT (220 / 554) has no verb: the session enters kGreeted
// itself after either greeting (proxy/session.cc maybeGreet) and answers 503 to everything but
// QUIT after a 554; checkSequence() below covers the "nothing before the greeting" half.
TEST(SessionState, NextStateFollowsRfc5321Sequences) {
  std::vector<Row> rows;
  auto add = [&](St before, Verb v, std::initializer_list<int> codes, St after) {
    for (const int c : codes) rows.push_back({before, v, c, after});
  };
  // EHLO or HELO: S: 250; E: 504 (a conforming implementation could return this code only in
  // fairly obscure cases), 550, 502 (permitted only with an old-style server that does not
  // support EHLO). Plus 501 for syntax.
  for (const Verb v : {Verb::kEhlo, Verb::kHelo}) {
    add(St::kGreeted, v, {250}, St::kReady);
    add(St::kGreeted, v, {504, 550, 502, 501}, St::kGreeted);
    add(St::kReady, v, {250}, St::kReady);
    add(St::kReady, v, {504, 550, 502}, St::kReady);
    // RFC 5321 4.1.4: an accepted EHLO in a transaction resets it like RSET.
    add(St::kMail, v, {250}, St::kReady);
    add(St::kRcpt, v, {250}, St::kReady);
    // A refused one leaves the state as it was.
    add(St::kMail, v, {504, 550, 502}, St::kMail);
    add(St::kRcpt, v, {504, 550, 502}, St::kRcpt);
  }
  // MAIL: S: 250; E: 552, 451, 452, 550, 553, 503, 455, 555.
  add(St::kReady, Verb::kMail, {250}, St::kMail);
  add(St::kReady, Verb::kMail, {552, 451, 452, 550, 553, 503, 455, 555, 501}, St::kReady);
  // RCPT: S: 250, 251; E: 550, 551, 552, 553, 450, 451, 452, 503, 455, 555.
  add(St::kMail, Verb::kRcpt, {250, 251}, St::kRcpt);
  add(St::kRcpt, Verb::kRcpt, {250, 251}, St::kRcpt);
  add(St::kMail, Verb::kRcpt, {550, 551, 552, 553, 450, 451, 452, 503, 455, 555, 501}, St::kMail);
  add(St::kRcpt, Verb::kRcpt, {550, 551, 552, 553, 450, 451, 452, 503, 455, 555, 501}, St::kRcpt);
  // DATA: I: 354 -> data; E: 503, 554 (and 451 / 452 from a filter or the MTA).
  add(St::kRcpt, Verb::kData, {354}, St::kData);
  add(St::kRcpt, Verb::kData, {503, 554, 451, 452}, St::kRcpt);
  // RSET: S: 250. Outside a transaction it stays where it is (no EHLO yet -> still greeted).
  add(St::kGreeted, Verb::kRset, {250}, St::kGreeted);
  add(St::kReady, Verb::kRset, {250}, St::kReady);
  add(St::kMail, Verb::kRset, {250}, St::kReady);
  add(St::kRcpt, Verb::kRset, {250}, St::kReady);
  for (const St s : kLive) {
    // VRFY: S: 250, 251, 252; E: 550, 551, 553, 502, 504.
    add(s, Verb::kVrfy, {250, 251, 252, 550, 551, 553, 502, 504, 501}, s);
    // EXPN: S: 250, 252; E: 550, 500, 502, 504.
    add(s, Verb::kExpn, {250, 252, 550, 500, 502, 504}, s);
    // HELP: S: 211, 214; E: 502, 504.
    add(s, Verb::kHelp, {211, 214, 502, 504}, s);
    // NOOP: S: 250.
    add(s, Verb::kNoop, {250}, s);
    // QUIT: S: 221.
    add(s, Verb::kQuit, {221}, St::kClosed);
    // Commands we do not implement never move the state.
    for (const Verb v : {Verb::kAuth, Verb::kBdat, Verb::kEtrn, Verb::kTurn, Verb::kXclient,
                         Verb::kXforward, Verb::kUnknown}) {
      add(s, v, {502, 500}, s);
    }
    // STARTTLS (RFC 3207 4.2): after the handshake the client starts over with EHLO.
    add(s, Verb::kStartTls, {220}, St::kGreeted);
    add(s, Verb::kStartTls, {454, 501, 502}, s);
  }
  // RFC 5321 3.8: any 421 closes, whatever the command and the state.
  for (const St s : kAllStates) {
    for (const Verb v : kAllVerbs) rows.push_back({s, v, 421, St::kClosed});
  }

  for (const Row& r : rows) {
    const St got = nextState(r.before, r.verb, r.code);
    EXPECT_EQ(got, r.after) << show(r) << ": got " << stateName(got) << ", want "
                            << stateName(r.after);
  }
}

TEST(SessionState, EndOfData) {
  // DATA ... <CRLF>.<CRLF>: S: 250; E: 552, 554, 451, 452; E: 450, 550 (policy rejections).
  // Whatever the answer, the transaction is over; 421 closes.
  const struct {
    St before;
    int code;
    St after;
  } rows[] = {
      {St::kData, 250, St::kReady},
      {St::kData, 552, St::kReady},
      {St::kData, 554, St::kReady},
      {St::kData, 451, St::kReady},
      {St::kData, 452, St::kReady},
      {St::kData, 450, St::kReady},
      {St::kData, 550, St::kReady},
      {St::kData, 421, St::kClosed},
      // Outside DATA it changes nothing but 421.
      {St::kRcpt, 250, St::kRcpt},
      {St::kReady, 421, St::kClosed},
  };
  for (const auto& r : rows) {
    const St got = nextStateAfterData(r.before, r.code);
    EXPECT_EQ(got, r.after) << stateName(r.before) << " end-of-data -> " << r.code << ": got "
                            << stateName(got) << ", want " << stateName(r.after);
  }
}

// ---- checkSequence: every (state, verb) ----

bool unimplemented(Verb v) {
  return v == Verb::kExpn || v == Verb::kAuth || v == Verb::kBdat || v == Verb::kEtrn ||
         v == Verb::kTurn || v == Verb::kXclient || v == Verb::kXforward;
}

// An independent statement of RFC 5321 4.1.4 / 4.3.2 ordering.
bool allowed(St s, Verb v) {
  switch (v) {
    case Verb::kMail:
      return s == St::kReady;  // after EHLO/HELO, not inside a transaction
    case Verb::kRcpt:
      return s == St::kMail || s == St::kRcpt;
    case Verb::kData:
      return s == St::kRcpt;  // at least one accepted recipient
    default:
      // EHLO HELO RSET NOOP QUIT VRFY HELP STARTTLS: any time after the greeting. Nothing is a
      // command before the greeting or while the message is being received, or after QUIT.
      return s == St::kGreeted || s == St::kReady || s == St::kMail || s == St::kRcpt;
  }
}

TEST(SessionState, CheckSequenceEveryStateAndVerb) {
  int checked = 0;
  for (const St s : kAllStates) {
    for (const Verb v : kAllVerbs) {
      ++checked;
      const auto got = checkSequence(s, v);
      const std::string where =
          "checkSequence(" + std::string(stateName(s)) + ", " + std::string(verbName(v)) + ")";
      const std::string gotText = got ? got->summary() : "allowed";
      if (v == Verb::kUnknown) {
        ASSERT_TRUE(got) << where << ": got allowed, want 500 5.5.2";
        EXPECT_EQ(got->code(), 500) << where << ": got " << gotText << ", want 500 5.5.2";
        EXPECT_EQ(got->enhanced(), "5.5.2") << where << ": got " << gotText;
      } else if (unimplemented(v)) {
        ASSERT_TRUE(got) << where << ": got allowed, want 502 5.5.1";
        EXPECT_EQ(got->code(), 502) << where << ": got " << gotText << ", want 502 5.5.1";
        EXPECT_EQ(got->enhanced(), "5.5.1") << where << ": got " << gotText;
      } else if (allowed(s, v)) {
        EXPECT_FALSE(got) << where << ": got " << gotText << ", want allowed";
      } else {
        ASSERT_TRUE(got) << where << ": got allowed, want 503 5.5.1";
        EXPECT_EQ(got->code(), 503) << where << ": got " << gotText << ", want 503 5.5.1";
        EXPECT_EQ(got->enhanced(), "5.5.1") << where << ": got " << gotText;
      }
    }
  }
  EXPECT_EQ(checked, 7 * 19);
}

TEST(SessionState, SequenceErrorTextSaysWhatIsMissing) {
  const struct {
    St state;
    Verb verb;
    std::string text;
  } cases[] = {
      {St::kGreeted, Verb::kMail, "Error: send HELO/EHLO first"},
      {St::kGreeted, Verb::kRcpt, "Error: send HELO/EHLO first"},
      {St::kGreeted, Verb::kData, "Error: send HELO/EHLO first"},
      {St::kMail, Verb::kMail, "Error: nested MAIL command"},
      {St::kRcpt, Verb::kMail, "Error: nested MAIL command"},
      {St::kReady, Verb::kRcpt, "Error: need MAIL command"},
      {St::kReady, Verb::kData, "Error: need RCPT command"},
      {St::kMail, Verb::kData, "Error: no valid recipients"},
  };
  for (const auto& tc : cases) {
    const auto got = checkSequence(tc.state, tc.verb);
    ASSERT_TRUE(got) << stateName(tc.state) << " " << verbName(tc.verb);
    EXPECT_EQ(got->text(), tc.text) << stateName(tc.state) << " " << verbName(tc.verb) << ": got "
                                    << got->summary() << ", want " << tc.text;
  }
}

TEST(SessionState, CommandTable) {
  const struct {
    Verb verb;
    std::optional<Stage> stage;
    bool implemented;
  } cases[] = {
      {Verb::kEhlo, Stage::kHelo, true},     {Verb::kHelo, Stage::kHelo, true},
      {Verb::kMail, Stage::kMailFrom, true}, {Verb::kRcpt, Stage::kRcptTo, true},
      {Verb::kData, Stage::kData, true},     {Verb::kRset, std::nullopt, true},
      {Verb::kNoop, std::nullopt, true},     {Verb::kQuit, std::nullopt, true},
      {Verb::kVrfy, std::nullopt, true},     {Verb::kHelp, std::nullopt, true},
      {Verb::kStartTls, std::nullopt, true}, {Verb::kExpn, std::nullopt, false},
      {Verb::kAuth, std::nullopt, false},    {Verb::kBdat, std::nullopt, false},
      {Verb::kEtrn, std::nullopt, false},    {Verb::kTurn, std::nullopt, false},
      {Verb::kXclient, std::nullopt, false}, {Verb::kXforward, std::nullopt, false},
      {Verb::kUnknown, std::nullopt, false},
  };
  for (const auto& tc : cases) {
    const CommandRule& r = commandRule(tc.verb);
    EXPECT_EQ(r.verb, tc.verb) << verbName(tc.verb) << ": the table has a row for every verb";
    EXPECT_EQ(r.stage, tc.stage) << verbName(tc.verb) << ": got stage "
                                 << (r.stage ? stageName(*r.stage) : "none") << ", want "
                                 << (tc.stage ? stageName(*tc.stage) : "none");
    EXPECT_EQ(r.implemented, tc.implemented) << verbName(tc.verb);
  }
}

// A whole session walked through the functions, as the session drives them.
TEST(SessionState, WalkThroughATypicalSession) {
  struct Step {
    bool endOfData;  // the final dot rather than a command
    Verb verb;
    int code;
    St want;
  };
  const Step steps[] = {
      {false, Verb::kEhlo, 250, St::kReady},   {false, Verb::kMail, 250, St::kMail},
      {false, Verb::kRcpt, 550, St::kMail},    {false, Verb::kRcpt, 250, St::kRcpt},
      {false, Verb::kRcpt, 452, St::kRcpt},    {false, Verb::kData, 354, St::kData},
      {true, Verb::kUnknown, 250, St::kReady}, {false, Verb::kMail, 250, St::kMail},
      {false, Verb::kRset, 250, St::kReady},   {false, Verb::kQuit, 221, St::kClosed},
  };
  St s = St::kGreeted;
  for (std::size_t i = 0; i < std::size(steps); ++i) {
    const Step& step = steps[i];
    if (step.endOfData) {
      s = nextStateAfterData(s, step.code);
    } else {
      EXPECT_FALSE(checkSequence(s, step.verb))
          << "step " << i << ": " << verbName(step.verb) << " refused in " << stateName(s);
      s = nextState(s, step.verb, step.code);
    }
    EXPECT_EQ(s, step.want) << "step " << i << " "
                            << (step.endOfData ? "end-of-data" : verbName(step.verb)) << " "
                            << step.code << ": got " << stateName(s) << ", want "
                            << stateName(step.want);
  }
}

}  // namespace
}  // namespace portcullis
