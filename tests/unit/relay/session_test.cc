// Session, driven through its seams: a client in memory, a scripted MTA, a manual clock.
// Table-driven: "client sends / MTA answers / client must see", for every command-reply
// sequence of RFC 5321 4.3.2, pipelined groups (RFC 2920), an MTA failure at each step, each
// with the MTA answering at once (from the loop) and later (virtual seconds later), and
// sessions closing while an answer is still on its way. No sockets, no root, no sleeps.

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

#include <string>
#include <vector>

#include "filters/builtin_filters.h"
#include "portcullis/filter_registry.h"
#include "proxy/admin/stats_registry.h"
#include "proxy/base/reference.h"
#include "proxy/config/config.h"
#include "tests/unit/relay/fakes.h"

namespace portcullis::relay_test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Codes = std::vector<std::string>;

// A filter local to these tests: at end_of_message it removes every X-Spam header and
// rewrites the Subject, the way a scanner client would.
class EditFilter final : public Filter {
 public:
  void onEndOfMessage(const SessionView&, Next next) override {
    next(Verdict::proceed()
             .addHeader("X-Scanned", "yes")
             .removeHeader("X-Spam")
             .replaceHeader("Subject", "[SPAM] t"));
  }
};
class EditFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "edit"; }
  FilterCreator configure(const ConfigSection&) const override {
    return [](const FilterContext&) { return std::make_unique<EditFilter>(); };
  }
};

const FilterRegistry& registry() {
  static const FilterRegistry r = [] {
    FilterRegistry reg;
    registerBuiltinFilters(reg);
    reg.add(std::make_unique<EditFactory>());
    return reg;
  }();
  return r;
}

constexpr std::string_view kBaseConfig =
    "hostname: mx.test\n"
    "listen: ['127.0.0.1:2525']\n"
    "upstream: {address: '127.0.0.1:10025', pool_size: 0}\n"
    "dns: {reverse_lookup: false}\n";

// How the MTA's answers arrive: from the loop right after the call, or seconds later.
enum class Timing { kNow, kLater };

class SessionHarness {
 public:
  explicit SessionHarness(Timing timing = Timing::kNow, const std::string& extraYaml = "")
      : timing_(timing) {
    spdlog::set_level(spdlog::level::off);
    config_ = loadConfigFromString(std::string(kBaseConfig) + extraYaml, {}, registry());
    if (timing == Timing::kLater) host_.mta.delay = seconds(2);
    SocketAddress peer = *socketAddress("192.0.2.7", 40000);
    SocketAddress local = *socketAddress("127.0.0.1", 2525);
    host_.session =
        std::make_unique<Session>(host_, config_, config_->listeners.front(),
                                  std::make_unique<FakeStream>(d_, client_), peer, local);
    host_.session->start();
    settle();
  }

  // Takes the greeting out of the way: true when it was a 220.
  bool greeted() { return seen() == Codes{"220"}; }

  // The client sends `text` (any number of lines, pipelined); returns the reply codes it saw.
  Codes say(std::string_view text) {
    client_.send(text);
    settle();
    return client_.takeCodes();
  }
  Codes seen() { return client_.takeCodes(); }
  // Lets the MTA's answers arrive: at once, or (Timing::kLater) after their delay.
  void settle() {
    d_.runUntilIdle();
    if (timing_ == Timing::kLater) d_.advance(seconds(20));
  }

  ManualDispatcher& dispatcher() { return d_; }
  FakeHost& host() { return host_; }
  ClientSide& client() { return client_; }
  MtaScript& mta() { return host_.mta; }
  const Config& config() const { return *config_; }
  bool closed() const { return host_.closed > 0; }

 private:
  Timing timing_;
  ManualDispatcher d_;
  ClientSide client_;
  FakeHost host_{d_};
  std::shared_ptr<const Config> config_;
};

// ---- the table ----

struct Step {
  std::string client;  // what the client sends (CRLF-terminated lines, maybe several)
  Codes expect;        // the reply codes it must see, in order
};
struct MtaLine {
  std::string verb;  // OPEN, MAIL, RCPT, DOT, RSET, ...
  MtaAnswer answer;
};
struct Sequence {
  std::string name;
  std::vector<MtaLine> mta;
  std::vector<Step> steps;
  bool closes = false;  // the session must have closed at the end
};

// gtest prints a failing row by its name.
void PrintTo(const Sequence& s, std::ostream* os) { *os << s.name; }

MtaLine says(std::string verb, std::string reply) {
  return {std::move(verb), MtaAnswer{std::move(reply), UpstreamFailure::kNone, milliseconds(0)}};
}
MtaLine fails(std::string verb, UpstreamFailure f) {
  return {std::move(verb), MtaAnswer{std::nullopt, f, milliseconds(0)}};
}

const std::string kEhlo = "EHLO client.example\r\n";
const std::string kMail = "MAIL FROM:<a@example.org>\r\n";
const std::string kRcpt = "RCPT TO:<b@example.net>\r\n";
const std::string kMessage = "Subject: t\r\n\r\nhello\r\n.\r\n";

std::vector<Sequence> sequences() {
  const std::string kUpToRcpt = kEhlo + kMail + kRcpt;
  const std::string kUpToData = kUpToRcpt + "DATA\r\n";
  std::vector<Sequence> t;
  // RFC 5321 4.3.2, in its order.
  t.push_back({"greeting then EHLO", {}, {{kEhlo, {"250"}}}});
  t.push_back({"HELO", {}, {{"HELO client.example\r\n", {"250"}}}});
  t.push_back({"EHLO without a domain is a syntax error", {}, {{"EHLO\r\n", {"501"}}}});
  t.push_back({"MAIL before EHLO", {}, {{kMail, {"503"}}}});
  t.push_back({"MAIL accepted", {}, {{kEhlo + kMail, {"250", "250"}}}});
  for (const char* code :
       {"552 5.3.4 Too big", "451 4.3.0 Try later", "452 4.3.1 Full", "550 5.7.1 No",
        "553 5.1.8 Bad sender", "455 4.5.4 Odd params", "555 5.5.4 Unknown param"}) {
    // A refused MAIL leaves no transaction: RCPT is out of sequence after it.
    t.push_back({std::string("MAIL refused ") + code,
                 {says("MAIL", code)},
                 {{kEhlo + kMail, {"250", std::string(code, 3)}}, {kRcpt, {"503"}}}});
  }
  t.push_back({"MAIL twice", {}, {{kEhlo + kMail + kMail, {"250", "250", "503"}}}});
  t.push_back({"RCPT before MAIL", {}, {{kEhlo + kRcpt, {"250", "503"}}}});
  t.push_back({"RCPT 250", {}, {{kEhlo + kMail + kRcpt, {"250", "250", "250"}}}});
  t.push_back({"RCPT 251",
               {says("RCPT", "251 2.1.5 Will forward")},
               {{kEhlo + kMail + kRcpt, {"250", "250", "251"}}}});
  for (const char* code : {"550 5.1.1 No such user", "551 5.1.6 Moved", "552 5.2.2 Full",
                           "553 5.1.3 Bad address", "450 4.2.1 Busy", "451 4.3.0 Later",
                           "452 4.5.3 Too many", "455 4.5.4 Odd", "555 5.5.4 Unknown"}) {
    // A refused RCPT leaves the transaction open but with no recipient: DATA is out of
    // sequence; another RCPT is fine.
    t.push_back({std::string("RCPT refused ") + code,
                 {says("RCPT", code)},
                 {{kUpToRcpt, {"250", "250", std::string(code, 3)}},
                  {"DATA\r\n", {"503"}},
                  {kRcpt, {"250"}}}});
  }
  t.push_back({"DATA before RCPT", {}, {{kEhlo + kMail + "DATA\r\n", {"250", "250", "503"}}}});
  t.push_back(
      {"DATA 354 then 250",
       {},
       {{kEhlo + kMail + kRcpt + "DATA\r\n", {"250", "250", "250", "354"}}, {kMessage, {"250"}}}});
  for (const char* code : {"552 5.3.4 Too big", "554 5.6.0 Bad content", "451 4.3.0 Later",
                           "452 4.3.1 Full", "450 4.7.1 Greylisted", "550 5.7.1 Policy"}) {
    // Whatever the end-of-data reply, the transaction is over: MAIL may follow.
    t.push_back({std::string("end of data refused ") + code,
                 {says("DOT", code)},
                 {{kUpToData, {"250", "250", "250", "354"}},
                  {kMessage, {std::string(code, 3)}},
                  {kMail, {"250"}}}});
  }
  t.push_back({"RSET in a transaction",
               {},
               {{kEhlo + kMail + "RSET\r\n" + kMail, {"250", "250", "250", "250"}}}});
  t.push_back({"VRFY answered locally", {}, {{kEhlo + "VRFY postmaster\r\n", {"250", "252"}}}});
  t.push_back({"EXPN not implemented", {}, {{kEhlo + "EXPN list\r\n", {"250", "502"}}}});
  t.push_back({"HELP", {}, {{"HELP\r\n", {"214"}}}});
  t.push_back({"NOOP", {}, {{"NOOP\r\n", {"250"}}}});
  t.push_back({"QUIT", {}, {{kEhlo + "QUIT\r\n", {"250", "221"}}}, true});
  t.push_back({"unknown command", {}, {{"FOO\r\n", {"500"}}}});
  t.push_back({"BDAT not offered",
               {},
               {{kEhlo + "BDAT 5 LAST\r\nhello" + "NOOP\r\n", {"250", "502", "250"}}}});

  // RFC 2920: a pipelined group is answered in order, one reply per command.
  t.push_back({"pipelined transaction",
               {},
               {{kEhlo + kMail + kRcpt + kRcpt + "DATA\r\n", {"250", "250", "250", "250", "354"}},
                {kMessage + "QUIT\r\n", {"250", "221"}}},
               true});
  t.push_back({"pipelined with a refused recipient",
               {says("RCPT", "550 5.1.1 No such user")},
               {{kEhlo + kMail + kRcpt + kRcpt + "DATA\r\n", {"250", "250", "550", "250", "354"}},
                {kMessage, {"250"}}}});

  // The MTA failing at each step.
  t.push_back({"MTA unreachable at MAIL",
               {fails("OPEN", UpstreamFailure::kConnect)},
               {{kEhlo + kMail, {"250", "451"}}, {kMail, {"250"}}}});
  t.push_back({"MTA greets 421",
               {says("OPEN", "421 4.3.2 Closing")},
               {{kEhlo + kMail, {"250", "421"}}},
               true});
  t.push_back({"MTA times out on MAIL",
               {fails("MAIL", UpstreamFailure::kTimeout)},
               {{kEhlo + kMail, {"250", "451"}}}});
  t.push_back({"MTA garbles MAIL's reply",
               {fails("MAIL", UpstreamFailure::kProtocol)},
               {{kEhlo + kMail, {"250", "451"}}}});
  // Mid-transaction the MTA forgot our MAIL: 421 and close, so the client retries it all.
  t.push_back({"MTA drops the connection at RCPT",
               {fails("RCPT", UpstreamFailure::kClosed)},
               {{kEhlo + kMail + kRcpt, {"250", "250", "421"}}},
               true});
  t.push_back({"MTA drops the connection at the dot",
               {fails("DOT", UpstreamFailure::kClosed)},
               {{kEhlo + kMail + kRcpt + "DATA\r\n", {"250", "250", "250", "354"}},
                {kMessage, {"451"}},
                {kMail, {"250"}}}});
  t.push_back(
      {"MTA times out at the dot",
       {fails("DOT", UpstreamFailure::kTimeout)},
       {{kEhlo + kMail + kRcpt + "DATA\r\n", {"250", "250", "250", "354"}}, {kMessage, {"451"}}}});
  return t;
}

// Each sequence with the MTA answering at once or later, and with the MTA offering PIPELINING
// or not: a pipelining client must see the same replies either way.
class SessionSequences : public ::testing::TestWithParam<std::tuple<Sequence, Timing, bool>> {};

TEST_P(SessionSequences, ClientSeesWhatTheMtaSaid) {
  const auto& [seq, timing, pipelining] = GetParam();
  SessionHarness h(timing);
  h.mta().pipelining = pipelining;
  for (const auto& line : seq.mta) h.mta().script(line.verb, line.answer);
  ASSERT_EQ(h.seen(), Codes{"220"});
  for (std::size_t i = 0; i < seq.steps.size(); ++i) {
    EXPECT_EQ(h.say(seq.steps[i].client), seq.steps[i].expect)
        << seq.name << ", step " << i << ": " << seq.steps[i].client;
  }
  h.dispatcher().advance(seconds(5));  // lingering, if closing
  EXPECT_EQ(h.closed(), seq.closes) << seq.name;
}

std::string sequenceName(const ::testing::TestParamInfo<std::tuple<Sequence, Timing, bool>>& info) {
  std::string n;
  for (char c : std::get<0>(info.param).name)
    n += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return n + (std::get<1>(info.param) == Timing::kNow ? "_now" : "_later") +
         (std::get<2>(info.param) ? "_pipelining" : "");
}

INSTANTIATE_TEST_SUITE_P(Rfc5321, SessionSequences,
                         ::testing::Combine(::testing::ValuesIn(sequences()),
                                            ::testing::Values(Timing::kNow, Timing::kLater),
                                            ::testing::Bool()),
                         sequenceName);

// ---- what reaches the MTA ----

// ---- pipelining towards the MTA (RFC 2920) ----

TEST(Session, APipelinedGroupGoesOnBeforeItsRepliesAndIsAnsweredInOrder) {
  SessionHarness h(Timing::kLater);
  h.mta().pipelining = true;
  h.mta().script("RCPT", {std::string("550 5.1.1 <c@example.net>: no such user"),
                          UpstreamFailure::kNone, seconds(2)});
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.say(kEhlo), Codes{"250"});
  // MAIL waits for the connection; then MAIL, both RCPTs go before any answer, and DATA
  // waits for them.
  EXPECT_EQ(h.say(kMail + "RCPT TO:<c@example.net>\r\n" + kRcpt + "DATA\r\n"),
            (Codes{"250", "550", "250", "354"}));
  EXPECT_EQ(h.mta().mostInFlight, 3u);
  EXPECT_EQ(h.say(kMessage + "QUIT\r\n"), (Codes{"250", "221"}));
  EXPECT_EQ(h.mta().heard,
            (std::vector<std::string>{"MAIL FROM:<a@example.org>", "RCPT TO:<c@example.net>",
                                      "RCPT TO:<b@example.net>", "DOT", "QUIT"}));
}

TEST(Session, WithoutPipeliningOneCommandIsInFlightAtATime) {
  SessionHarness h(Timing::kLater);
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.say(kEhlo + kMail + kRcpt + kRcpt + "DATA\r\n"),
            (Codes{"250", "250", "250", "250", "354"}));
  EXPECT_EQ(h.mta().mostInFlight, 1u);
}

TEST(Session, RecipientsInFlightCountTowardsTheLimit) {
  SessionHarness h(Timing::kLater, "limits: {max_recipients: 2}\n");
  h.mta().pipelining = true;
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.say(kEhlo + kMail + "RCPT TO:<1@example.net>\r\nRCPT TO:<2@example.net>\r\n" +
                  "RCPT TO:<3@example.net>\r\nDATA\r\n"),
            (Codes{"250", "250", "250", "250", "452", "354"}));
  EXPECT_EQ(h.mta().heard.size(), 3u);  // MAIL and two RCPTs: the third never went
}

TEST(Session, ARefusedRecipientInFlightFreesItsPlaceUnderTheLimit) {
  SessionHarness h(Timing::kLater, "limits: {max_recipients: 2}\n");
  h.mta().pipelining = true;
  h.mta().script("RCPT",
                 {std::string("550 5.1.1 no such user"), UpstreamFailure::kNone, seconds(2)});
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.say(kEhlo + kMail + "RCPT TO:<1@example.net>\r\nRCPT TO:<2@example.net>\r\n"),
            (Codes{"250", "250", "550", "250"}));
  // Counted while in flight, uncounted when refused: one accepted, so one more fits.
  EXPECT_EQ(h.say("RCPT TO:<3@example.net>\r\n"), Codes{"250"});
  EXPECT_EQ(h.say("RCPT TO:<4@example.net>\r\n"), Codes{"452"});
}

TEST(Session, ARefusedMailInAGroupTurnsAnAcceptedRecipientInto503) {
  // An MTA that (wrongly) accepts RCPT after refusing MAIL: the client never hears 250 for a
  // recipient of a transaction that does not exist, and DATA finds no transaction.
  SessionHarness h(Timing::kLater);
  h.mta().pipelining = true;
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.say(kEhlo), Codes{"250"});
  EXPECT_EQ(h.say(kMail), Codes{"250"});  // the connection is open now
  EXPECT_EQ(h.say("RSET\r\n"), Codes{"250"});
  h.mta().script("MAIL",
                 {std::string("550 5.7.1 sender refused"), UpstreamFailure::kNone, seconds(2)});
  h.client().takeOutput();
  EXPECT_EQ(h.say(kMail + kRcpt + "DATA\r\n"), (Codes{"550", "503", "503"}));
  EXPECT_EQ(h.mta().mostInFlight, 2u);
  // The 503 in place of the MTA's 250 is portcullis's own refusal: it carries a reference.
  const std::string out = h.client().takeOutput();
  EXPECT_NE(out.find("\r\n503 5.5.1 Error: need MAIL command [ref="), std::string::npos) << out;
  EXPECT_EQ(h.say(kMail + kRcpt + "DATA\r\n" + kMessage), (Codes{"250", "250", "354", "250"}));
}

TEST(Session, TheMtaFailingMidGroupGivesEachWaitingCommandA4xx) {
  SessionHarness h(Timing::kLater);
  h.mta().pipelining = true;
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.say(kEhlo + kMail), (Codes{"250", "250"}));
  EXPECT_EQ(h.say("RSET\r\n"), Codes{"250"});
  h.mta().script("RCPT", {std::nullopt, UpstreamFailure::kClosed, seconds(2)});
  const Codes got = h.say(kMail + "RCPT TO:<c@example.net>\r\n" + kRcpt + "DATA\r\n");
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(got[0], "250");
  EXPECT_EQ(got[1], "421");  // the transaction is lost: the client must retry it whole
  h.dispatcher().advance(seconds(5));
  EXPECT_TRUE(h.closed());
  EXPECT_EQ(std::count(h.mta().heard.begin(), h.mta().heard.end(), "DOT"), 0);
}

TEST(Session, RepliesOwedBehindASlowOneAreBounded) {
  // The MTA takes 10 s over the first RCPT while the client pipelines 200: portcullis stops
  // reading commands once 64 replies wait, and goes on when the slow one comes.
  SessionHarness h;
  h.mta().pipelining = true;
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.say(kEhlo + kMail), (Codes{"250", "250"}));
  h.mta().script("RCPT", {std::nullopt, UpstreamFailure::kNone, seconds(10)});
  std::string many;
  for (int i = 0; i < 200; ++i) many += "RCPT TO:<r" + std::to_string(i) + "@example.net>\r\n";
  EXPECT_EQ(h.say(many + "DATA\r\n"), Codes{});
  auto rcpts = [&h] {
    return std::count_if(h.mta().heard.begin(), h.mta().heard.end(),
                         [](const std::string& l) { return l.starts_with("RCPT"); });
  };
  EXPECT_EQ(rcpts(), 64);
  h.dispatcher().advance(seconds(11));
  h.settle();
  const Codes got = h.seen();
  ASSERT_EQ(got.size(), 201u);
  EXPECT_EQ(std::count(got.begin(), got.end(), "250"), 200);
  EXPECT_EQ(got.back(), "354");
  EXPECT_EQ(rcpts(), 200);
}

TEST(Session, RelaysTheEnvelopeAndTheMessageOnce) {
  SessionHarness h;
  h.say(kEhlo + kMail + kRcpt + "DATA\r\n" + kMessage);
  EXPECT_EQ(h.mta().heard, (std::vector<std::string>{"MAIL FROM:<a@example.org>",
                                                     "RCPT TO:<b@example.net>", "DOT"}));
  EXPECT_EQ(h.mta().opened, 1);
  EXPECT_EQ(h.mta().lastMessage, "Subject: t\r\n\r\nhello\r\n");
}

TEST(Session, FiltersEditTheHeaderBlockAndTheBodyGoesByteForByte) {
  SessionHarness h(Timing::kNow, "filters: [{name: edit}]\n");
  const std::string body = "\r\n.leading dot\r\nX-Spam: in the body stays\r\n";
  h.say(kEhlo + kMail + kRcpt + "DATA\r\n" +
        "X-Spam: yes\r\nSubject: t\r\n\tfolded\r\n..Dot: header\r\nx-spam: again\r\n" +
        "\r\n..leading dot\r\nX-Spam: in the body stays\r\n.\r\n");
  EXPECT_EQ(h.mta().heard.back(), "DOT");
  EXPECT_EQ(h.mta().lastMessage, "X-Scanned: yes\r\nSubject: [SPAM] t\r\n.Dot: header\r\n" + body);
}

TEST(Session, AnAbandonedTransactionIsResetBeforeTheNextMail) {
  SessionHarness h;
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.say(kEhlo + kMail + "RSET\r\n" + kMail), (Codes{"250", "250", "250", "250"}));
  EXPECT_EQ(h.mta().heard, (std::vector<std::string>{"MAIL FROM:<a@example.org>", "RSET",
                                                     "MAIL FROM:<a@example.org>"}));
}

TEST(Session, AMailAfterARefusedOneGoesWithItsOwnLine) {
  // The refusal's callback is where the session reads the next MAIL: the line, the callback and
  // the retry state kept for the MTA are the new command's, with and without pipelining.
  const std::string input =
      kEhlo + kMail + "MAIL FROM:<second@example.org> SIZE=100\r\n" + kRcpt + "DATA\r\n" + kMessage;
  for (const bool pipelining : {false, true}) {
    SessionHarness h(Timing::kLater);
    h.mta().pipelining = pipelining;
    h.mta().script("MAIL", {std::string("550 5.7.1 sender refused"), UpstreamFailure::kNone, {}});
    ASSERT_TRUE(h.greeted());
    EXPECT_EQ(h.say(input), (Codes{"250", "550", "250", "250", "354", "250"}))
        << "pipelining " << pipelining;
    EXPECT_EQ(h.mta().heard, (std::vector<std::string>{"MAIL FROM:<a@example.org>",
                                                       "MAIL FROM:<second@example.org> SIZE=100",
                                                       "RCPT TO:<b@example.net>", "DOT"}))
        << "pipelining " << pipelining;
  }
}

TEST(Session, AFailedResetStartsOverOnAFreshConnection) {
  SessionHarness h;
  ASSERT_TRUE(h.greeted());
  h.mta().script("RSET", {std::string("421 4.3.2 Bye"), UpstreamFailure::kNone, {}});
  EXPECT_EQ(h.say(kEhlo + kMail + "RSET\r\n" + kMail), (Codes{"250", "250", "250", "250"}));
  EXPECT_EQ(h.mta().opened, 2);
}

TEST(Session, NothingGoesUpstreamBeforeMail) {
  SessionHarness h;
  h.say(kEhlo + "NOOP\r\nVRFY x\r\nRSET\r\n");
  EXPECT_TRUE(h.mta().heard.empty());
  EXPECT_EQ(h.mta().opened, 0);
}

TEST(Session, ABareLfLineIsRefusedAndNeverRelayed) {
  SessionHarness h;
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.say(kEhlo + "MAIL FROM:<a@example.org>\n"), (Codes{"250", "500"}));
  EXPECT_TRUE(h.mta().heard.empty());
}

TEST(Session, BareCrInTheMessageIsRefusedAndNothingIsDelivered) {
  SessionHarness h;
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.say(kEhlo + kMail + kRcpt + "DATA\r\n" + "a\rb\r\n.\r\n"),
            (Codes{"250", "250", "250", "354", "554"}));
  EXPECT_EQ(h.mta().heard,
            (std::vector<std::string>{"MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>"}));
}

// ---- completions and closing ----

TEST(Session, AClientFinAfterPipelinedCommandsStillGetsEveryAnswer) {
  SessionHarness h(Timing::kLater);
  h.client().send(kEhlo + kMail + kRcpt + "DATA\r\n" + kMessage + "QUIT\r\n");
  h.client().finish();
  h.settle();
  EXPECT_EQ(h.seen(), (Codes{"220", "250", "250", "250", "354", "250", "221"}));
  EXPECT_TRUE(h.closed());
}

TEST(Session, DrainWhileTheMtaIsThinkingAnswersOnceAndFreesEverything) {
  SessionHarness h(Timing::kLater);
  h.seen();
  h.client().send(kEhlo + kMail);
  h.dispatcher().runUntilIdle();
  h.dispatcher().advance(seconds(2));  // EHLO's chain answer; MAIL now waits on the MTA
  h.host().session->drain(true);
  h.dispatcher().advance(seconds(30));  // the MTA's answer would have come by now
  const Codes codes = h.seen();
  ASSERT_FALSE(codes.empty());
  EXPECT_EQ(codes.back(), "421");
  EXPECT_EQ(std::count(codes.begin(), codes.end(), "421"), 1);
  EXPECT_TRUE(h.closed());
  EXPECT_EQ(h.host().session, nullptr) << "freed from the loop";
}

TEST(Session, AnEhloDuringTheStartUpProbeIsAnsweredWhenTheProbeEnds) {
  SessionHarness h;
  ASSERT_TRUE(h.greeted());
  h.host().pending = true;
  EXPECT_EQ(h.say(kEhlo), Codes{}) << "no offer before the MTA's is known";
  ASSERT_EQ(h.host().waiting.size(), 1U);
  h.host().wakeWaiting();
  h.settle();
  EXPECT_EQ(h.seen(), Codes{"250"});
  EXPECT_EQ(h.say(kMail), Codes{"250"}) << "and the session goes on";
}

TEST(Session, ADrainWhileEhloWaitsForTheProbeAnswers421AndFreesTheSession) {
  SessionHarness h;
  ASSERT_TRUE(h.greeted());
  h.host().pending = true;
  EXPECT_EQ(h.say(kEhlo), Codes{});
  h.host().session->drain(true);
  h.host().wakeWaiting();  // the probe ends after the drain's 421: nothing more is said
  h.settle();
  h.dispatcher().advance(seconds(30));
  EXPECT_EQ(h.seen(), Codes{"421"});
  EXPECT_TRUE(h.closed());
}

// A session's object goes back to a per-thread list when freed and holds the next client's
// session (Recycled): constructed anew, nothing of the one before in it.
TEST(Session, TheNextClientsSessionInARecycledBlockKnowsNothingOfTheLastOne) {
  const void* block = nullptr;
  {
    SessionHarness h;
    ASSERT_TRUE(h.greeted());
    EXPECT_EQ(h.say(kEhlo + kMail + kRcpt + "DATA\r\nSubject: half\r\n"),
              (Codes{"250", "250", "250", "354"}));
    block = h.host().session.get();
  }  // freed mid-message: its block is kept
  ASSERT_GE(Recycled<Session>::kept(), 1U);
  SessionHarness h;
  ASSERT_EQ(h.host().session.get(), block);
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.host().session->helo(), "");
  EXPECT_EQ(h.host().session->state(), SmtpState::kGreeted);
  // No EHLO, no transaction, no DATA carried over: out of sequence, each of them.
  EXPECT_EQ(h.say("Subject: half\r\n"), Codes{"500"});
  EXPECT_EQ(h.say(kMail + kRcpt + "DATA\r\n"), (Codes{"503", "503", "503"}));
  EXPECT_EQ(h.say(kEhlo + kMail + kRcpt + "DATA\r\n" + kMessage),
            (Codes{"250", "250", "250", "354", "250"}));
  EXPECT_EQ(h.mta().heard, (std::vector<std::string>{"MAIL FROM:<a@example.org>",
                                                     "RCPT TO:<b@example.net>", "DOT"}));
  EXPECT_EQ(h.mta().lastMessage, "Subject: t\r\n\r\nhello\r\n");
}

TEST(Session, ClientVanishingMidDataDeliversNothing) {
  SessionHarness h;
  h.say(kEhlo + kMail + kRcpt + "DATA\r\nSubject: half\r\n");
  h.client().finish();
  h.dispatcher().advance(seconds(5));
  EXPECT_TRUE(h.closed());
  EXPECT_EQ(std::count(h.mta().heard.begin(), h.mta().heard.end(), "DOT"), 0);
}

// ---- what the metrics endpoint counts ----

std::uint64_t ended(std::string_view how) {
  return processStats().counterValue("portcullis_sessions_total", {{"end", how}}).value_or(0);
}

TEST(Session, SessionsAreCountedByHowTheyEnded) {
  const auto countsOne = [](std::string_view how, const auto& run) {
    const std::uint64_t before = ended(how);
    {
      SessionHarness h;
      run(h);
      EXPECT_TRUE(h.closed()) << how;
    }
    EXPECT_EQ(ended(how), before + 1) << how;
  };
  countsOne("quit", [](SessionHarness& h) { h.say(kEhlo + "QUIT\r\n"); });
  countsOne("client_closed", [](SessionHarness& h) {
    h.say(kEhlo + kMail + kRcpt + "DATA\r\nSubject: half\r\n");
    h.client().finish();
    h.dispatcher().advance(seconds(5));
  });
  countsOne("timeout", [](SessionHarness& h) {
    h.say(kEhlo);
    h.dispatcher().advance(h.config().timeouts.command + seconds(5));
  });
  countsOne("shutdown", [](SessionHarness& h) {  // idle: the 421 at once
    h.say(kEhlo);
    h.host().session->drain(false);
    h.dispatcher().advance(seconds(5));
  });
  countsOne("shutdown", [](SessionHarness& h) {  // in a transaction: the 421 to the next command
    h.say(kEhlo + kMail);
    h.host().session->drain(false);
    EXPECT_EQ(h.say("RSET\r\nNOOP\r\n"), (Codes{"250", "421"}));
    h.dispatcher().advance(seconds(5));
  });
}

TEST(Session, RepliesAreCountedByCommandAndClassAnUnknownVerbAsOther) {
  const auto count = [](std::string_view verb, std::string_view cls) {
    return processStats()
        .counterValue("portcullis_commands_total", {{"verb", verb}, {"class", cls}})
        .value_or(0);
  };
  const std::uint64_t other = count("other", "5xx");
  const std::uint64_t mail = count("mail", "2xx");
  SessionHarness h;
  EXPECT_EQ(h.say(kEhlo + "FROBNICATE now\r\n" + kMail), (Codes{"220", "250", "500", "250"}));
  EXPECT_EQ(count("other", "5xx"), other + 1);
  EXPECT_EQ(count("mail", "2xx"), mail + 1);
}

// ---- deadlines, on the manual clock ----

TEST(Session, IdleClientIsToldTimeoutAfterTheCommandTimeout) {
  SessionHarness h;
  h.say(kEhlo);
  h.dispatcher().advance(h.config().timeouts.command - milliseconds(1));
  EXPECT_TRUE(h.seen().empty());
  h.dispatcher().advance(milliseconds(1));
  EXPECT_EQ(h.seen(), Codes{"421"});
  h.dispatcher().advance(seconds(5));
  EXPECT_TRUE(h.closed());
}

TEST(Session, StalledDataIsToldTimeoutAfterTheDataBlockTimeout) {
  SessionHarness h;
  h.say(kEhlo + kMail + kRcpt + "DATA\r\nSubject: x\r\n");
  h.dispatcher().advance(h.config().timeouts.dataBlock);
  EXPECT_EQ(h.seen(), Codes{"421"});
  EXPECT_EQ(std::count(h.mta().heard.begin(), h.mta().heard.end(), "DOT"), 0);
}

TEST(Session, GreetingWaitsForTheDelayAndPregreetIsRefused) {
  {
    SessionHarness h(Timing::kNow, "timeouts: {greeting_delay: 3s}\n");
    EXPECT_TRUE(h.seen().empty());
    h.dispatcher().advance(seconds(3));
    EXPECT_EQ(h.seen(), Codes{"220"});
  }
  {
    SessionHarness h(Timing::kNow, "timeouts: {greeting_delay: 3s}\n");
    h.client().send(kEhlo);  // talks first
    h.dispatcher().advance(seconds(3));
    EXPECT_EQ(h.seen(), Codes{"554"});
    h.dispatcher().advance(seconds(5));
    EXPECT_TRUE(h.closed());
  }
}

TEST(Session, KeepaliveNoopsTheMtaWhileTheClientIsSlowOverData) {
  // (min_data_rate off: this client is slower than the default minimum on purpose.)
  SessionHarness h(Timing::kNow,
                   "upstream: {address: '127.0.0.1:10025', pool_size: 0, "
                   "keepalive_interval: 60s}\nlimits: {min_data_rate: 0}\n");
  h.say(kEhlo + kMail + kRcpt + "DATA\r\n");
  for (int i = 0; i < 3; ++i) {
    h.dispatcher().advance(seconds(60));
    h.client().send("more\r\n");  // a slow client, but within the data timeout
    h.dispatcher().runUntilIdle();
  }
  EXPECT_EQ(std::count(h.mta().heard.begin(), h.mta().heard.end(), "NOOP"), 3);
  EXPECT_EQ(h.say(".\r\n"), Codes{"250"});
  EXPECT_EQ(h.mta().heard.back(), "DOT");
}

// ---- the pool ----

TEST(Session, APooledConnectionIsReidentifiedAndAStaleOneRetriedOnce) {
  SessionHarness h(Timing::kNow, "upstream: {address: '127.0.0.1:10025', pool_size: 2}\n");
  auto pooled = std::make_unique<FakeUpstream>(h.dispatcher(), h.mta());
  pooled->open({}, [](const UpstreamResult&) {});
  h.dispatcher().runUntilIdle();
  h.host().pool.push_back(std::move(pooled));
  h.mta().heard.clear();
  h.mta().script("MAIL", {std::nullopt, UpstreamFailure::kClosed, {}});  // stale
  ASSERT_TRUE(h.greeted());
  EXPECT_EQ(h.say(kEhlo + kMail), (Codes{"250", "250"}));
  EXPECT_EQ(h.mta().heard, (std::vector<std::string>{"XCLIENT", "MAIL FROM:<a@example.org>",
                                                     "MAIL FROM:<a@example.org>"}));
  EXPECT_EQ(h.mta().opened, 2);  // the pooled one, then the fresh one after it went stale
}

TEST(Session, OurRefusalsCarryAReferenceAndTheMtasAreRelayedAsTheyAre) {
  SessionHarness h;
  ASSERT_TRUE(h.greeted());
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_st>(log));
  spdlog::set_default_logger(capture);
  spdlog::set_level(spdlog::level::info);
  h.mta().script(
      "RCPT", {std::string("550 5.1.1 <c@example.net>: User unknown"), UpstreamFailure::kNone, {}});
  h.client().takeOutput();
  EXPECT_EQ(h.say(kEhlo + kMail + "RCPT TO:<c@example.net>\r\n" + kRcpt + "EXPN x\r\n" +
                  "DATA\r\n" + kMessage + "QUIT\r\n"),
            (Codes{"250", "250", "550", "250", "502", "354", "250", "221"}));
  spdlog::set_default_logger(previous);
  spdlog::set_level(spdlog::level::off);
  const std::string out = h.client().takeOutput();
  const std::string text = log.str();
  EXPECT_NE(out.find("550 5.1.1 <c@example.net>: User unknown\r\n"), std::string::npos) << out;
  const auto at = out.find("502 5.5.1 Error: command not implemented [ref=");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string ref = out.substr(at + 46, 8);
  EXPECT_TRUE(looksLikeReference(ref)) << ref;
  EXPECT_NE(text.find("event=reject from=<a@example.org> to=<c@example.net> helo=client.example "
                      "client=unknown[192.0.2.7]:40000 stage=rcpt code=550 dsn=5.1.1 filter=mta "
                      "reason=\"<c@example.net>: User unknown\"\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("stage=expn code=502 dsn=5.5.1 filter=portcullis reason=\"Error: "
                      "command not implemented\" ref=" +
                      ref + " reply="),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("event=transaction from=<a@example.org> rcpts=1/2 "
                      "to=<c@example.net>:550:mta,<b@example.net>:250:mta size="),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(" result=delivered code=250 by=mta "), std::string::npos) << text;
  EXPECT_NE(text.find("event=session "), std::string::npos) << text;
  EXPECT_NE(text.find(" from=<a@example.org> rcpts=1/2"), std::string::npos) << text;
}

TEST(Session, EveryStateAndPhaseChangeIsLoggedAtDebug) {
  SessionHarness h;
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_st>(log));
  spdlog::set_default_logger(capture);
  spdlog::set_level(spdlog::level::debug);
  h.say(kEhlo + kMail);
  spdlog::set_default_logger(previous);
  spdlog::set_level(spdlog::level::off);
  const std::string text = log.str();
  EXPECT_NE(text.find("event=phase from=idle to=busy"), std::string::npos) << text;
  EXPECT_NE(text.find("event=phase from=busy to=idle"), std::string::npos) << text;
  EXPECT_NE(text.find("event=state from=greeted to=helo"), std::string::npos) << text;
  EXPECT_NE(text.find("event=state from=helo to=mail"), std::string::npos) << text;
}

}  // namespace
}  // namespace portcullis::relay_test
