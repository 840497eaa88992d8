// ReplyParser: multi-line assembly (RFC 5321 4.2.1) and validation of upstream replies
// (DESIGN invariant 4), and parseEhloCapabilities.

#include "proxy/smtp/reply_parser.h"

#include <gtest/gtest.h>

#include "tests/support/test_text.h"

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis {
namespace {

using testing::escape;

const char* statusName(ReplyParser::Status s) {
  switch (s) {
    case ReplyParser::Status::kNeedMore:
      return "need-more";
    case ReplyParser::Status::kDone:
      return "done";
    case ReplyParser::Status::kError:
      return "error";
  }
  return "?";
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : " | ") + escape(l);
  return "[" + out + "]";
}

std::string describe(const Reply& r) {
  return std::to_string(r.code()) + " enhanced=" + escape(r.enhanced()) +
         " lines=" + joined(r.lines());
}

struct ParseCase {
  std::string name;
  std::vector<std::string> lines;
  ReplyParser::Status want;  // the status of the last line; all earlier lines need more
  int code;
  std::string enhanced;
  std::vector<std::string> text;
};

void expectParse(const ParseCase& tc) {
  ReplyParser p;
  ReplyParser::Status st = ReplyParser::Status::kNeedMore;
  for (std::size_t i = 0; i < tc.lines.size(); ++i) {
    st = p.feed(tc.lines[i]);
    if (i + 1 < tc.lines.size()) {
      ASSERT_EQ(st, ReplyParser::Status::kNeedMore)
          << tc.name << ": line " << i << " " << escape(tc.lines[i]) << ": got " << statusName(st)
          << " (" << p.error() << "), want need-more";
      EXPECT_TRUE(p.midReply()) << tc.name << ": after line " << i;
    }
  }
  ASSERT_EQ(st, tc.want) << tc.name << ": got " << statusName(st) << " (" << p.error() << "), want "
                         << statusName(tc.want);
  EXPECT_FALSE(p.midReply()) << tc.name << ": a finished or failed reply leaves no state";
  if (st == ReplyParser::Status::kError) {
    EXPECT_FALSE(p.error().empty()) << tc.name << ": an error says why";
    return;
  }
  const Reply r = p.take();
  EXPECT_EQ(r.code(), tc.code) << tc.name << ": got " << r.summary();
  EXPECT_EQ(r.enhanced(), tc.enhanced) << tc.name << ": got " << r.summary();
  EXPECT_EQ(r.lines(), tc.text) << tc.name << ": got lines " << joined(r.lines()) << ", want "
                                << joined(tc.text);
}

TEST(ReplyParser, Table) {
  using S = ReplyParser::Status;
  std::vector<std::string> sixtyFour(63, "250-line");
  sixtyFour.emplace_back("250 last");
  std::vector<std::string> sixtyFourText(63, "line");
  sixtyFourText.emplace_back("last");
  std::vector<std::string> sixtyFive(64, "250-line");
  sixtyFive.emplace_back("250 last");

  const std::vector<ParseCase> cases = {
      {"one line", {"250 Ok"}, S::kDone, 250, "", {"Ok"}},
      {"greeting",
       {"220 mx.example ESMTP Postfix"},
       S::kDone,
       220,
       "",
       {"mx.example ESMTP Postfix"}},
      {"354",
       {"354 End data with <CR><LF>.<CR><LF>"},
       S::kDone,
       354,
       "",
       {"End data with <CR><LF>.<CR><LF>"}},
      {"enhanced", {"550 5.7.1 Rejected"}, S::kDone, 550, "5.7.1", {"Rejected"}},
      {"enhanced only", {"250 2.0.0"}, S::kDone, 250, "2.0.0", {""}},
      {"enhanced class mismatch is text", {"550 4.7.1 odd"}, S::kDone, 550, "", {"4.7.1 odd"}},
      {"code only", {"250"}, S::kDone, 250, "", {""}},
      {"code and space", {"250 "}, S::kDone, 250, "", {""}},
      {"tab becomes space", {"250 a\tb"}, S::kDone, 250, "", {"a b"}},
      {"UTF-8 text",
       {"550 5.1.1 M\xc3\xbcller unknown"},
       S::kDone,
       550,
       "5.1.1",
       {"M\xc3\xbcller unknown"}},
      {"multi-line EHLO",
       {"250-mx.example", "250-PIPELINING", "250-SIZE 10240000", "250 8BITMIME"},
       S::kDone,
       250,
       "",
       {"mx.example", "PIPELINING", "SIZE 10240000", "8BITMIME"}},
      {"multi-line enhanced on every line",
       {"550-5.7.1 first", "550-5.7.1 second", "550 5.7.1 third"},
       S::kDone,
       550,
       "5.7.1",
       {"first", "second", "third"}},
      {"multi-line enhanced on the first line only",
       {"451-4.3.0 first", "451 second"},
       S::kDone,
       451,
       "4.3.0",
       {"first", "second"}},
      {"multi-line empty continuation", {"250-", "250 x"}, S::kDone, 250, "", {"", "x"}},
      {"64 lines", sixtyFour, S::kDone, 250, "", sixtyFourText},
      // Errors.
      {"65 lines", sixtyFive, S::kError, 0, "", {}},
      {"code changes mid-reply", {"250-a", "251 b"}, S::kError, 0, "", {}},
      {"class changes mid-reply", {"250-a", "550 b"}, S::kError, 0, "", {}},
      {"199", {"199 x"}, S::kError, 0, "", {}},
      {"100", {"100 x"}, S::kError, 0, "", {}},
      {"600", {"600 x"}, S::kError, 0, "", {}},
      {"099", {"099 x"}, S::kError, 0, "", {}},
      {"000", {"000"}, S::kError, 0, "", {}},
      {"260", {"260 x"}, S::kError, 0, "", {}},
      {"abc", {"abc x"}, S::kError, 0, "", {}},
      {"2x0", {"2x0 x"}, S::kError, 0, "", {}},
      {"+25", {"+25 x"}, S::kError, 0, "", {}},
      {"too short", {"25"}, S::kError, 0, "", {}},
      {"empty", {""}, S::kError, 0, "", {}},
      {"bad separator", {"250x"}, S::kError, 0, "", {}},
      {"bad separator underscore", {"250_ok"}, S::kError, 0, "", {}},
      {"bad separator mid-reply", {"250-a", "250+b"}, S::kError, 0, "", {}},
      {"four digits", {"2500 x"}, S::kError, 0, "", {}},
      {"control character",
       {"250 a\x01"
        "b"},
       S::kError,
       0,
       "",
       {}},
      {"DEL", {"250 a\x7f"}, S::kError, 0, "", {}},
      {"CR", {"250 a\rb"}, S::kError, 0, "", {}},
      {"LF", {"250 a\nb"}, S::kError, 0, "", {}},
      {"NUL", {std::string("250 a\0b", 7)}, S::kError, 0, "", {}},
      {"control on a later line", {"250-a", "250 b\x02"}, S::kError, 0, "", {}},
      {"511-octet line", {"250 " + std::string(507, 'x')}, S::kError, 0, "", {}},
  };
  for (const auto& tc : cases) expectParse(tc);
}

TEST(ReplyParser, AcceptsReplyLinesUpToTheRfcLimit) {
  // RFC 5321 4.5.3.1.5: a reply line is up to 512 octets including CRLF, so 510 without.
  for (const std::size_t n : {495u, 500u, 506u}) {
    ReplyParser p;
    const std::string line = "250 " + std::string(n, 'x');
    const auto st = p.feed(line);
    EXPECT_EQ(st, ReplyParser::Status::kDone)
        << line.size() << "-octet line: got " << statusName(st) << " (" << p.error()
        << "), want done";
  }
}

TEST(ReplyParser, RecoversAfterAnErrorAndIsReusable) {
  ReplyParser p;
  ASSERT_EQ(p.feed("250-a"), ReplyParser::Status::kNeedMore);
  ASSERT_TRUE(p.midReply());
  ASSERT_EQ(p.feed("999 broken"), ReplyParser::Status::kError);
  EXPECT_NE(p.error().find("999"), std::string::npos) << "got error " << escape(p.error());
  EXPECT_FALSE(p.midReply());
  ASSERT_EQ(p.feed("221 2.0.0 Bye"), ReplyParser::Status::kDone);
  const Reply bye = p.take();
  EXPECT_EQ(bye.summary(), "221 2.0.0 Bye");
  ASSERT_EQ(p.feed("250 again"), ReplyParser::Status::kDone);
  EXPECT_EQ(p.take().summary(), "250 again");
  p.feed("250-x");
  p.reset();
  EXPECT_FALSE(p.midReply());
  ASSERT_EQ(p.feed("250 after reset"), ReplyParser::Status::kDone);
  EXPECT_EQ(p.take().lines().size(), 1u);
}

TEST(ReplyParser, WireFormReparsesToTheSameReply) {
  const std::vector<std::vector<std::string>> inputs = {
      {"250 Ok"},
      {"250-mx.example", "250-PIPELINING", "250 SIZE 100"},
      {"550-5.7.1 a", "550 5.7.1 b"},
      {"451-4.3.0 a", "451 b"},
      {"250 2.0.0"},
      {"250-", "250 x"},
  };
  for (const auto& lines : inputs) {
    ReplyParser p;
    ReplyParser::Status st = ReplyParser::Status::kNeedMore;
    for (const auto& l : lines) st = p.feed(l);
    ASSERT_EQ(st, ReplyParser::Status::kDone) << lines.front();
    const Reply r = p.take();
    const std::string wire = r.wire();
    ReplyParser q;
    std::size_t pos = 0;
    while (pos < wire.size()) {
      const auto eol = wire.find("\r\n", pos);
      ASSERT_NE(eol, std::string::npos);
      st = q.feed(std::string_view(wire).substr(pos, eol - pos));
      pos = eol + 2;
    }
    ASSERT_EQ(st, ReplyParser::Status::kDone) << escape(wire);
    const Reply again = q.take();
    EXPECT_EQ(again, r) << "got " << describe(again) << ", want " << describe(r);
  }
}

TEST(ReplyParser, TabAfterTheEnhancedCodeReparsesTheSame) {
  // Found by tests/fuzz/fuzz_reply_parser.cc. "451 4.3.0<TAB>text": the enhanced code is looked
  // for before tabs become spaces, so it is taken as text; the relayed wire form
  // "451 4.3.0 text" then parses with an enhanced code: relaying changes the reply.
  ReplyParser p;
  ASSERT_EQ(p.feed("451 4.3.0\tTry later"), ReplyParser::Status::kDone);
  const Reply r = p.take();
  ReplyParser q;
  const std::string wire = r.wire();
  ASSERT_EQ(q.feed(std::string_view(wire).substr(0, wire.size() - 2)), ReplyParser::Status::kDone);
  const Reply again = q.take();
  EXPECT_EQ(again, r) << "got " << describe(again) << ", want " << describe(r);
}

// ---- EHLO capabilities ----

TEST(EnhancedCode, AddedOnlyWhereTheMtaGaveNone) {
  const std::string longText(Reply::kMaxLineLength - 6, 'x');  // "250 " + text + CRLF: 512
  const struct {
    std::string name;
    Reply mta;
    std::string positive;
    std::string want;  // wire form relayed to the client
    bool same;         // the MTA's reply itself, not a copy
  } cases[] = {
      {"Postfix's own code is kept", *Reply::make(250, "2.1.0", {"Ok"}), "2.1.0",
       "250 2.1.0 Ok\r\n", true},
      {"a 2xx without one gets the stage's", *Reply::make(250, "", {"Ok"}), "2.1.5",
       "250 2.1.5 Ok\r\n", false},
      {"a 4xx without one gets 4.0.0", *Reply::make(451, "", {"try later"}), "2.0.0",
       "451 4.0.0 try later\r\n", false},
      {"a 5xx without one gets 5.0.0, on every line",
       *Reply::make(550, "", {"no such user", "really"}), "2.1.5",
       "550-5.0.0 no such user\r\n550 5.0.0 really\r\n", false},
      {"a 354 never gets one", *Reply::make(354, "", {"go ahead"}), "2.0.0", "354 go ahead\r\n",
       true},
      {"a line with no room for the code is relayed as it was", *Reply::make(250, "", {longText}),
       "2.0.0", "250 " + longText + "\r\n", true},
  };
  for (const auto& tc : cases) {
    std::optional<Reply> amended;
    const Reply& relayed = withEnhancedCode(tc.mta, tc.positive, amended);
    EXPECT_EQ(relayed.wire(), tc.want) << tc.name;
    EXPECT_EQ(&relayed == &tc.mta, tc.same) << tc.name;
    EXPECT_EQ(withEnhancedCode(tc.mta, tc.positive).wire(), tc.want) << tc.name << " (copy)";
  }
}

TEST(EhloCapabilities, Parse) {
  const Reply ehlo = *Reply::make(
      250, "",
      {"mx.example Hello client", "PIPELINING", "size 10240000", "AUTH PLAIN LOGIN", "8bitmime", "",
       "  STARTTLS  ", "XCLIENT NAME ADDR PROTO HELO", "X-Odd  two   spaces"});
  const struct {
    std::string keyword;
    std::vector<std::string> params;
  } want[] = {
      {"PIPELINING", {}},
      {"SIZE", {"10240000"}},
      {"AUTH", {"PLAIN", "LOGIN"}},
      {"8BITMIME", {}},
      {"STARTTLS", {}},
      {"XCLIENT", {"NAME", "ADDR", "PROTO", "HELO"}},
      {"X-ODD", {"two", "spaces"}},
  };
  const auto caps = parseEhloCapabilities(ehlo);
  ASSERT_EQ(caps.size(), std::size(want)) << "the greeting line is not a capability; empty "
                                             "lines are skipped";
  for (std::size_t i = 0; i < caps.size(); ++i) {
    EXPECT_EQ(caps[i].keyword, want[i].keyword)
        << "capability " << i << ": got " << caps[i].keyword << ", want " << want[i].keyword;
    EXPECT_EQ(caps[i].params, want[i].params) << "capability " << caps[i].keyword;
  }
  EXPECT_TRUE(parseEhloCapabilities(*Reply::make(250, "", {"mx.example"})).empty())
      << "a one-line reply has no capabilities";
}

}  // namespace
}  // namespace portcullis
