// Tests for the spamd protocol (filters/spamd/): the reply parser as a table (spam, ham, REPORT,
// partial replies, bad status, error status, missing headers, hostile symbols, over-long
// lines), the request head, the verdicts (tag, reject at reject_score, clean) and the keys.

#include "filters/spamd/spamd_filter.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/support/filter_harness.h"

namespace portcullis {
namespace {

using namespace std::string_literals;

std::string show(const SpamdReply& r) {
  switch (r.kind) {
    case SpamdReply::Kind::kIncomplete:
      return "incomplete";
    case SpamdReply::Kind::kError:
      return "error " + r.error;
    case SpamdReply::Kind::kDone:
      break;
  }
  std::string out = std::string(r.spam ? "spam " : "ham ") + formatSpamScore(r.score) + "/" +
                    formatSpamScore(r.threshold);
  for (const std::string& s : r.symbols) out += " " + s;
  return out;
}

const std::string kGtube =
    "SPAMD/1.1 0 EX_OK\r\nContent-length: 30\r\nSpam: True ; 1000.0 / 5.0\r\n\r\n"
    "GTUBE,MISSING_DATE,NO_RECEIVED";

TEST(ParseSpamdReply, Table) {
  struct Case {
    std::string reply;
    bool closed;
    std::string want;
  };
  const std::vector<Case> cases = {
      {kGtube, false, "spam 1000.0/5.0 GTUBE MISSING_DATE NO_RECEIVED"},
      {kGtube, true, "spam 1000.0/5.0 GTUBE MISSING_DATE NO_RECEIVED"},
      {kGtube + "\r\nextra", false, "spam 1000.0/5.0 GTUBE MISSING_DATE NO_RECEIVED"},
      {kGtube.substr(0, kGtube.size() - 3), false, "incomplete"},
      {kGtube.substr(0, kGtube.size() - 3), true, "error reply cut short (27 of 30 body bytes)"},
      {"SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.1 / 5.0\r\nContent-length: 0\r\n\r\n", false,
       "ham -0.1/5.0"},
      {"SPAMD/1.5 0 EX_OK\nspam: yes ; 6 / 5\n\nA_B\n", false, "incomplete"},  // no length
      {"SPAMD/1.5 0 EX_OK\nspam: yes ; 6 / 5\n\nA_B\n", true, "spam 6.0/5.0 A_B"},
      {"SPAMD/1.1 0 EX_OK\r\nContent-length: 6\r\nSpam: True ; 7.5 / 5.0\r\n\r\n A ,B \r\n", false,
       "spam 7.5/5.0 A B"},
      {"", false, "incomplete"},
      {"", true, "error empty reply"},
      {"SPAMD/1.1 0 EX", false, "incomplete"},
      {"SPAMD/1.1 0 EX_OK\r\n", false, "incomplete"},
      {"SPAMD/1.1 0 EX_OK\r\n", true, "error reply cut short in the headers"},
      {"SPAMD/1.0 76 Bad header line: (EOF)\r\n", false,
       "error spamd error 76 Bad header line: (EOF)"},
      {"SPAMD/1.0 76 Bad header line", true, "error spamd error 76 Bad header line"},
      {"SPAMD/1.0 65 \x01\x1b[31mevil\r\n"s, false, "error spamd error 65 [31mevil"},
      {"HTTP/1.1 200 OK\r\n", false, "error bad status line \"HTTP/1.1 200 OK\""},
      {"SPAMD/x 0 EX_OK\r\n", false, "error bad status line \"SPAMD/x 0 EX_OK\""},
      {"SPAMD/1.1 zero\r\n", false, "error bad status line \"SPAMD/1.1 zero\""},
      {"SPAMD/1.1 0x EX_OK\r\n", false, "error bad status line \"SPAMD/1.1 0x EX_OK\""},
      {"garbage\xff\x01\n"s, false, "error bad status line \"garbage\""},
      {"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n", false, "error no Spam header"},
      {"SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 1 / 5\r\n\r\n", false,
       "error bad Spam header \"Maybe ; 1 / 5\""},
      {"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1e9 / 5\r\n\r\n", false,
       "error bad Spam header \"True ; 1e9 / 5\""},
      {"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1.0\r\n\r\n", false,
       "error bad Spam header \"True ; 1.0\""},
      {"SPAMD/1.1 0 EX_OK\r\nSpam: True ; nan / 5\r\n\r\n", false,
       "error bad Spam header \"True ; nan / 5\""},
      {"SPAMD/1.1 0 EX_OK\r\nContent-length: -1\r\nSpam: True ; 1 / 5\r\n\r\n", false,
       "error bad Content-length \"-1\""},
      {"SPAMD/1.1 0 EX_OK\r\nContent-length: 99999999999\r\nSpam: True ; 1 / 5\r\n\r\n", false,
       "error bad Content-length \"99999999999\""},
      {"SPAMD/1.1 0 EX_OK\r\nno colon here\r\n\r\n", false,
       "error bad header line \"no colon here\""},
      // Hostile symbols: anything that is not a rule name is dropped, so no CR, LF, NUL or
      // header text ever reaches X-Spam-Status.
      {"SPAMD/1.1 0 EX_OK\r\nContent-length: 40\r\nSpam: True ; 9.0 / 5.0\r\n\r\n"
       "OK1,EV\rIL,X\nX-Injected: yes,NU\0L,\x01,,OK_2"s,
       false, "spam 9.0/5.0 OK1 OK_2"},
      {"SPAMD/1.1 0 EX_OK\r\nContent-length: 69\r\nSpam: True ; 9.0 / 5.0\r\n\r\n" +
           std::string(65, 'A') + ",B_C",
       false, "spam 9.0/5.0 B_C"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(show(parseSpamdReply(c.reply, c.closed, SpamdCommand::kSymbols)), c.want)
        << "reply " << ::testing::PrintToString(c.reply) << " closed=" << c.closed;
  }
}

TEST(ParseSpamdReply, OverLongLinesAndManyHeadersAreErrors) {
  const std::string longStatus = "SPAMD/1.1 0 " + std::string(2000, 'X');
  EXPECT_EQ(show(parseSpamdReply(longStatus, false, SpamdCommand::kSymbols)),
            "error status line too long");
  const std::string longHeader = "SPAMD/1.1 0 EX_OK\r\nX: " + std::string(2000, 'X');
  EXPECT_EQ(show(parseSpamdReply(longHeader, false, SpamdCommand::kSymbols)),
            "error header line too long");
  std::string many = "SPAMD/1.1 0 EX_OK\r\n";
  for (int i = 0; i < 40; ++i) many += "X-Filler: " + std::to_string(i) + "\r\n";
  EXPECT_EQ(show(parseSpamdReply(many, false, SpamdCommand::kSymbols)), "error too many headers");
}

TEST(ParseSpamdReply, SymbolsAreBoundedInCountAndInTheStatusHeader) {
  std::string body;
  for (int i = 0; i < 500; ++i) body += (i ? "," : "") + ("RULE_NUMBER_" + std::to_string(i));
  const std::string reply = "SPAMD/1.1 0 EX_OK\r\nContent-length: " + std::to_string(body.size()) +
                            "\r\nSpam: True ; 50.0 / 5.0\r\n\r\n" + body;
  const SpamdReply r = parseSpamdReply(reply, false, SpamdCommand::kSymbols);
  ASSERT_EQ(r.kind, SpamdReply::Kind::kDone);
  EXPECT_EQ(r.symbols.size(), kMaxSpamdSymbols);
  const std::string status = spamStatusValue(r);
  EXPECT_LE(status.size(), 900u);
  EXPECT_TRUE(status.starts_with("Yes, score=50.0 required=5.0 tests=RULE_NUMBER_0,RULE_NUMBER_1,"))
      << status;
  EXPECT_NE(status.back(), ',');
}

TEST(ParseSpamdReply, Report) {
  const std::string body =
      "Spam detection software, running on the system \"host\",\n"
      "has identified this incoming email as possible spam.\n\n"
      "Content analysis details:   (1000.0 points, 5.0 required)\n\n"
      " pts rule name              description\n"
      "---- ---------------------- --------------------------------------------------\n"
      "1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\n"
      "-0.0 NO_RELAYS              Informational: message was not relayed via SMTP\n"
      "                            continued 1.0 description\n"
      " 1.4 MISSING_DATE           Missing Date: header\n"
      " 0.1 EVIL\x01NAME             hostile\n"s;
  const std::string reply = "SPAMD/1.1 0 EX_OK\r\nContent-length: " + std::to_string(body.size()) +
                            "\r\nSpam: True ; 1000.0 / 5.0\r\n\r\n" + body;
  EXPECT_EQ(show(parseSpamdReply(reply, false, SpamdCommand::kReport)),
            "spam 1000.0/5.0 GTUBE NO_RELAYS MISSING_DATE");
}

TEST(SpamdRequest, Head) {
  EXPECT_EQ(spamdRequest(SpamdCommand::kSymbols, "", 1234),
            "SYMBOLS SPAMC/1.5\r\nContent-length: 1234\r\n\r\n");
  EXPECT_EQ(spamdRequest(SpamdCommand::kReport, "mail@x", 0),
            "REPORT SPAMC/1.5\r\nContent-length: 0\r\nUser: mail@x\r\n\r\n");
  const SpamdProtocol protocol({});
  std::string out;
  protocol.frameChunk("as is\r\n.\r\n", out);
  EXPECT_EQ(out, "as is\r\n.\r\n");
  EXPECT_EQ(protocol.trailer(), "");
}

TEST(SpamdProtocol, SpamIsTaggedAsSpamassassinWritesIt) {
  const SpamdProtocol protocol({});
  const ScanResult r = protocol.parseReply(kGtube, false);
  ASSERT_EQ(r.kind, ScanResult::Kind::kDone);
  ASSERT_TRUE(r.verdict);
  EXPECT_TRUE(r.verdict->isContinue());
  const std::vector<HeaderField> want = {
      {"X-Spam-Flag", "YES"},
      {"X-Spam-Score", "1000.0"},
      {"X-Spam-Status", "Yes, score=1000.0 required=5.0 tests=GTUBE,MISSING_DATE,NO_RECEIVED"},
  };
  EXPECT_EQ(r.verdict->headers(), want);
  EXPECT_EQ(r.summary,
            "scan=spam score=1000.0 required=5.0 tests=\"GTUBE,MISSING_DATE,NO_RECEIVED\"");
  // The client's own verdict headers go, whatever spamd said (spamass-milter does the same).
  ASSERT_EQ(r.verdict->headerEdits().size(), 6u);
  EXPECT_EQ(r.verdict->headerEdits().front(),
            (HeaderEdit{HeaderEdit::Kind::kRemove, "X-Spam-Flag", "", 0}));
}

TEST(SpamdProbe, PingIsAnsweredByPong) {
  const SpamdProtocol p({});
  EXPECT_EQ(p.probe(), "PING SPAMC/1.5\r\n\r\n");
  EXPECT_EQ(p.parseProbeReply("SPAMD/1.5 0 PONG\r\n", false), true);
  EXPECT_EQ(p.parseProbeReply("SPAMD/1.5 0 PO", false), std::nullopt);
  EXPECT_EQ(p.parseProbeReply("SPAMD/1.5 0 PO", true), false);
  EXPECT_EQ(p.parseProbeReply("SPAMD/1.5 76 Bad header line\r\n", false), false);
  EXPECT_EQ(p.parseProbeReply(std::string(256, 'S'), false), false) << "bounded";
}

TEST(SpamdProtocol, RejectsAtOrAboveRejectScore) {
  SpamdOptions options;
  options.rejectScore = 1000.0;
  const SpamdProtocol protocol(options);
  const ScanResult r = protocol.parseReply(kGtube, false);
  ASSERT_EQ(r.kind, ScanResult::Kind::kDone);
  EXPECT_EQ(r.verdict->kind(), VerdictKind::kReject);
  EXPECT_EQ(r.verdict->reply()->summary(), "550 5.7.1 Message rejected as spam");
  EXPECT_EQ(r.verdict->reason(),
            "score=1000.0 required=5.0 reject_score=1000.0 "
            "tests=\"GTUBE,MISSING_DATE,NO_RECEIVED\"");
  EXPECT_TRUE(r.verdict->headers().empty());
  options.rejectScore = 1000.1;
  const ScanResult below = SpamdProtocol(options).parseReply(kGtube, false);
  EXPECT_TRUE(below.verdict->isContinue());
  EXPECT_EQ(below.verdict->headers().size(), 3u);
}

TEST(SpamdProtocol, HamContinuesUntouchedAndErrorsGoToOnError) {
  const SpamdProtocol protocol({});
  const ScanResult ham = protocol.parseReply(
      "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 2.5 / 5.0\r\n\r\n", false);
  ASSERT_EQ(ham.kind, ScanResult::Kind::kDone);
  EXPECT_TRUE(ham.verdict->isContinue());
  EXPECT_TRUE(ham.verdict->headers().empty());
  EXPECT_EQ(ham.verdict->headerEdits().size(), 6u);
  EXPECT_EQ(ham.summary, "scan=clean score=2.5 required=5.0");
  const ScanResult bad = protocol.parseReply("SPAMD/1.0 76 Bad header line\r\n", false);
  EXPECT_EQ(bad.kind, ScanResult::Kind::kError);
  EXPECT_EQ(bad.error, "spamd error 76 Bad header line");
  EXPECT_EQ(protocol.parseReply("SPAMD/1.1 0 EX_OK\r\n", false).kind,
            ScanResult::Kind::kIncomplete);
}

TEST(SpamdConfig, KeysAndErrors) {
  const FilterContext context;
  EXPECT_NO_THROW(testing::makeFilter("spamd", "", context));
  EXPECT_NO_THROW(testing::makeFilter("spamd",
                                      "address: \"unix:/run/spamd.sock\"\ncommand: report\n"
                                      "user: \"debian-spamd\"\nreject_score: 15\ntimeout: 5s\n"
                                      "max_size: 1M\nmax_connections: 2\n",
                                      context));
  struct Bad {
    std::string yaml;
    std::string key;
  };
  const std::vector<Bad> bad = {
      {"address: \"spamd.example:783\"", "filters[0].address"},
      {"command: check", "filters[0].command"},
      {"user: \"a b\"", "filters[0].user"},
      {"user: \"a\\r\\nX: y\"", "filters[0].user"},
      {"user: \"" + std::string(65, 'u') + "\"", "filters[0].user"},
      {"reject_score: lots", "filters[0].reject_score"},
      {"reject_score: .nan", "filters[0].reject_score"},
      {"bogus: 1", "filters[0].bogus"},
  };
  for (const Bad& b : bad) {
    try {
      testing::makeFilter("spamd", b.yaml, context);
      ADD_FAILURE() << b.yaml << ": no error";
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.key(), b.key) << b.yaml << ": " << e.what();
    }
  }
}

}  // namespace
}  // namespace portcullis
