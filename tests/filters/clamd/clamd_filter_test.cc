// Tests for the clamd protocol (filters/clamd/): the reply parser as a table (clean, found,
// size limit, other errors, garbage, partial replies, hostile names), the INSTREAM chunk
// framing, and the config keys (defaults, bad addresses named by key).

#include "filters/clamd/clamd_filter.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "portcullis/connector.h"
#include "tests/support/filter_harness.h"

namespace portcullis {
namespace {

using namespace std::string_literals;

std::string show(const ClamdReply& r) {
  switch (r.kind) {
    case ClamdReply::Kind::kIncomplete:
      return "incomplete";
    case ClamdReply::Kind::kClean:
      return "clean";
    case ClamdReply::Kind::kFound:
      return "found " + r.text;
    case ClamdReply::Kind::kError:
      break;
  }
  return "error " + r.text;
}

TEST(ParseClamdReply, Table) {
  struct Case {
    std::string reply;
    bool closed;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"stream: OK\0"s, false, "clean"},
      {"stream: OK\n", false, "clean"},
      {"stream: OK", false, "incomplete"},
      {"stream: OK", true, "clean"},  // cut short by the close, still a whole line
      {"stream: O", false, "incomplete"},
      {"", false, "incomplete"},
      {"", true, "error empty reply"},
      {"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0"s, false,
       "found Eicar-Test-Signature.UNOFFICIAL"},
      {"stream: Win.Test.EICAR_HDB-1 FOUND\0trailing"s, false, "found Win.Test.EICAR_HDB-1"},
      {"INSTREAM size limit exceeded. ERROR\0"s, false, "error INSTREAM size limit exceeded"},
      {"stream: Can't allocate memory ERROR\0"s, false,
       "error clamd error: stream: Can't allocate memory"},
      {"UNKNOWN COMMAND\0"s, false, "error unexpected reply \"UNKNOWN COMMAND\""},
      {"stream:  FOUND\0"s, false, "error unexpected reply \"stream: FOUND\""},
      {"stream: FOUND\0"s, false, "error unexpected reply \"stream: FOUND\""},
      {"\0"s, false, "error unexpected reply \"\""},
      {"garbage\xff\x01\0"s, false, "error unexpected reply \"garbage\""},
      // Hostile names: CR becomes a space, control characters go; LF and NUL end the line
      // before FOUND, so such a "name" is never a name.
      {"stream: Evil\rName\x01\x1b[0m FOUND\0"s, false, "found Evil Name[0m"},
      {"stream: Evil\nName FOUND\0"s, false, "error unexpected reply \"stream: Evil\""},
      {"stream: Evil\0Name FOUND\0"s, false, "error unexpected reply \"stream: Evil\""},
      {"stream: \x01\x02 FOUND\0"s, false, "error unexpected reply \"stream: FOUND\""},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(show(parseClamdReply(c.reply, c.closed)), c.want)
        << "reply " << ::testing::PrintToString(c.reply) << " closed=" << c.closed;
  }
}

TEST(ParseClamdReply, LongNamesAreBounded) {
  const std::string name(5000, 'A');
  const ClamdReply r = parseClamdReply("stream: " + name + " FOUND\0"s, false);
  ASSERT_EQ(r.kind, ClamdReply::Kind::kFound);
  EXPECT_EQ(r.text, std::string(kMaxScannerText, 'A'));
  const ClamdReply e = parseClamdReply("stream: " + name + " ERROR\0"s, false);
  ASSERT_EQ(e.kind, ClamdReply::Kind::kError);
  EXPECT_LE(e.text.size(), kMaxScannerText + 20);
}

TEST(ClamdProbe, PingIsAnsweredByPongAlone) {
  const ClamdProtocol p;
  EXPECT_EQ(p.probe(), std::string("zPING\0", 6));
  EXPECT_EQ(p.parseProbeReply(std::string("PONG\0", 5), false), true);
  EXPECT_EQ(p.parseProbeReply("PON", false), std::nullopt);
  EXPECT_EQ(p.parseProbeReply("PON", true), false);
  EXPECT_EQ(p.parseProbeReply(std::string("PONGX\0", 6), false), false);
  EXPECT_EQ(p.parseProbeReply(std::string("UNKNOWN COMMAND\0", 16), false), false);
  EXPECT_EQ(p.parseProbeReply(std::string(64, 'P'), false), false) << "bounded";
}

TEST(FrameClamdChunk, LengthIsFourBytesBigEndian) {
  std::string out;
  frameClamdChunk("abc", out);
  EXPECT_EQ(out, "\0\0\0\3abc"s);
  out.clear();
  frameClamdChunk(std::string(0x010203, 'x'), out);
  EXPECT_EQ(out.substr(0, 4), "\0\x01\x02\x03"s);
  EXPECT_EQ(out.size(), 4u + 0x010203);
  out.clear();
  frameClamdChunk("", out);
  EXPECT_EQ(out, "\0\0\0\0"s);  // the terminator
  const ClamdProtocol protocol;
  EXPECT_EQ(protocol.trailer(), "\0\0\0\0"s);
}

TEST(ClamdProtocol, FoundRejectsWithAShortTextAndTheNameInTheReason) {
  const ClamdProtocol protocol;
  const ScanResult r = protocol.parseReply("stream: Bad.Thing FOUND\0"s, false);
  ASSERT_EQ(r.kind, ScanResult::Kind::kDone);
  ASSERT_TRUE(r.verdict);
  EXPECT_EQ(r.verdict->kind(), VerdictKind::kReject);
  EXPECT_EQ(r.verdict->reply()->summary(), "554 5.7.1 Message rejected: virus found");
  EXPECT_EQ(r.verdict->reason(), "virus=\"Bad.Thing\"");
  const ScanResult clean = protocol.parseReply("stream: OK\0"s, false);
  ASSERT_EQ(clean.kind, ScanResult::Kind::kDone);
  EXPECT_TRUE(clean.verdict->isContinue());
  EXPECT_EQ(protocol.parseReply("oops\0"s, false).kind, ScanResult::Kind::kError);
}

TEST(ClamdConfig, KeysAndErrors) {
  const FilterContext context;
  EXPECT_NO_THROW(testing::makeFilter("clamd", "", context));
  EXPECT_NO_THROW(testing::makeFilter("clamd",
                                      "address: \"127.0.0.1:3310\"\ntimeout: 5s\nmax_size: 10M\n"
                                      "max_connections: 4\nmax_queue: 0\n"
                                      "circuit_breaker: {failures: 3, window: 10s, open_for: 1m}",
                                      context));
  struct Bad {
    std::string yaml;
    std::string key;
  };
  const std::vector<Bad> bad = {
      {"address: \"clamd.example:3310\"", "filters[0].address"},
      {"address: \"127.0.0.1\"", "filters[0].address"},
      {"address: \"127.0.0.1:0\"", "filters[0].address"},
      {"address: \"unix:relative\"", "filters[0].address"},
      {"max_connections: 0", "filters[0].max_connections"},
      {"max_size: 0", "filters[0].max_size"},
      {"circuit_breaker: {window: 0s}", "filters[0].circuit_breaker.window"},
      {"circuit_breaker: {bogus: 1}", "filters[0].circuit_breaker.bogus"},
      {"bogus: 1", "filters[0].bogus"},
  };
  for (const Bad& b : bad) {
    try {
      testing::makeFilter("clamd", b.yaml, context);
      ADD_FAILURE() << b.yaml << ": no error";
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.key(), b.key) << b.yaml << ": " << e.what();
    }
  }
}

TEST(CheckConnectAddress, Table) {
  EXPECT_EQ(checkConnectAddress("127.0.0.1:3310"), std::nullopt);
  EXPECT_EQ(checkConnectAddress("[::1]:3310"), std::nullopt);
  EXPECT_EQ(checkConnectAddress("unix:/run/clamav/clamd.ctl"), std::nullopt);
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "::1:3310",
                          "localhost:3310", "unix:", "unix:run/x", "[::1]:x"}) {
    EXPECT_NE(checkConnectAddress(bad), std::nullopt) << bad;
  }
  EXPECT_NE(checkConnectAddress("unix:/" + std::string(200, 'a')), std::nullopt);
}

}  // namespace
}  // namespace portcullis
