// The log reader: each output format taken apart, chunked reading of plain, .gz and odd input,
// and the order of rotated files.

#include "proxy/explain/log_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "proxy/base/log_fields.h"

namespace portcullis {
namespace {

constexpr const char* kMessage =
    "a3f9c2d1e0b4 event=reject stage=rcpt code=550 dsn=5.7.1 filter=dnsbl "
    "reason=\"client listed\" ref=7Q2K9XHM";

TEST(LogReader, TakesEachFormatApart) {
  struct Case {
    std::string line;
    LineFormat format;
    const char* timestamp;
  };
  const std::vector<Case> cases = {
      {std::string("2026-12-03T07:01:02.123 info ") + kMessage, LineFormat::kText,
       "2026-12-03T07:01:02.123"},
      {std::string("Dec  3 07:01:02 mx1 portcullis[123]: ") + kMessage, LineFormat::kSyslog,
       "Dec  3 07:01:02"},
      {std::string("<22>Dec  3 07:01:02 portcullis[123]: ") + kMessage, LineFormat::kSyslog,
       "Dec  3 07:01:02"},
      // journalctl -u portcullis (short, and short-iso)
      {std::string("Dec 03 07:01:02 mx1 portcullis[123]: <6>") + kMessage, LineFormat::kSyslog,
       "Dec 03 07:01:02"},
      {std::string("2026-12-03T07:01:02+0000 mx1 portcullis[123]: ") + kMessage,
       LineFormat::kSyslog, "2026-12-03T07:01:02+0000"},
      {std::string("2026-12-03T07:01:02.123456+00:00 mx1 portcullis[123]: ") + kMessage,
       LineFormat::kSyslog, "2026-12-03T07:01:02.123456+00:00"},
      {kMessage, LineFormat::kBare, ""},
      {std::string("<6>") + kMessage + "\r\n", LineFormat::kBare, ""},
      {"{\"ts\":\"2026-12-03T07:01:02.123Z\",\"level\":\"info\",\"session\":\"a3f9c2d1e0b4\","
       "\"event\":\"reject\",\"stage\":\"rcpt\",\"code\":\"550\",\"dsn\":\"5.7.1\","
       "\"filter\":\"dnsbl\",\"reason\":\"client listed\",\"ref\":\"7Q2K9XHM\"}",
       LineFormat::kJson, "2026-12-03T07:01:02.123Z"},
  };
  for (const auto& c : cases) {
    LogLine line;
    ASSERT_EQ(parseLogLine(c.line, line), c.format) << c.line;
    EXPECT_EQ(line.timestamp, c.timestamp) << c.line;
    LogFields f;
    parseLogFields(line.message, f);
    EXPECT_EQ(f.session, "a3f9c2d1e0b4") << c.line;
    ASSERT_NE(f.find("reason"), nullptr) << c.line;
    EXPECT_EQ(*f.find("reason"), "client listed") << c.line;
    EXPECT_EQ(*f.find("ref"), "7Q2K9XHM") << c.line;
    EXPECT_EQ(*f.find("event"), "reject") << c.line;
  }
}

TEST(LogReader, IgnoresLinesThatAreNotOurs) {
  for (const std::string line :
       {"Dec  3 07:01:02 mx1 postfix/smtpd[99]: connect from unknown[127.0.0.1]",
        "2026-12-03T07:01:02.1+00:00 mx1 postfix/smtpd[99]: NOQUEUE: reject: RCPT", "random text",
        "", "{\"no\":", "{}", "2026-12-03 garbage",
        // Found by fuzz_log_fields: a syslog line of ours with nothing after the tag.
        "Dec  3 07:01:02 m{\"ts\":\"2026-12-0x1 portcullis[1323]:{: ",
        "2026-12-03T07:01:02.123 info ", "2026-12-03T07:01:02.123 info    "}) {
    LogLine l;
    EXPECT_EQ(parseLogLine(line, l), LineFormat::kOther) << line;
  }
}

TEST(LogReader, JsonEscapesAndNonStringValues) {
  LogLine l;
  ASSERT_EQ(parseLogLine("{\"ts\":\"t\", \"session\":\"0123456789ab\", \"event\":\"x\", "
                         "\"n\": 12, \"q\":\"a \\\"b\\\" \\u00e9\\n\"}",
                         l),
            LineFormat::kJson);
  LogFields f;
  parseLogFields(l.message, f);
  EXPECT_EQ(f.session, "0123456789ab");
  EXPECT_EQ(*f.find("n"), "12");
  EXPECT_EQ(*f.find("q"), "a \"b\" \xc3\xa9\n");
}

std::string tempDir() {
  std::string t = ::testing::TempDir() + "explain-reader-XXXXXX";
  EXPECT_NE(::mkdtemp(t.data()), nullptr);
  return t;
}

void writeFile(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(data.data(), 1, data.size(), f);
  std::fclose(f);
}

void writeGz(const std::string& path, const std::string& data) {
  gzFile g = gzopen(path.c_str(), "wb");
  ASSERT_NE(g, nullptr);
  ASSERT_EQ(gzwrite(g, data.data(), static_cast<unsigned>(data.size())),
            static_cast<int>(data.size()));
  gzclose(g);
}

std::vector<std::string> readLines(const std::string& path, ReadResult* result = nullptr) {
  std::vector<std::string> lines;
  const ReadResult r = readLogChunks(path, [&](std::string_view chunk) {
    while (!chunk.empty()) {
      const std::size_t nl = chunk.find('\n');
      lines.emplace_back(chunk.substr(0, nl));
      chunk.remove_prefix(nl == std::string_view::npos ? chunk.size() : nl + 1);
    }
    return true;
  });
  EXPECT_TRUE(r.ok) << r.error;
  if (result) *result = r;
  return lines;
}

TEST(LogReader, ReadsPlainAndGzipTheSame) {
  const std::string dir = tempDir();
  std::string data;
  for (int i = 0; i < 100000; ++i) data += "line " + std::to_string(i) + " event=x\n";
  data += "last line without a newline";
  writeFile(dir + "/a.log", data);
  writeGz(dir + "/a.log.1.gz", data);
  const auto plain = readLines(dir + "/a.log");
  const auto gz = readLines(dir + "/a.log.1.gz");
  ASSERT_EQ(plain.size(), 100001u);
  EXPECT_EQ(plain, gz);
  EXPECT_EQ(plain.back(), "last line without a newline");
  EXPECT_EQ(plain[99999], "line 99999 event=x");
}

TEST(LogReader, TruncatedGzipIsReadAsFarAsItGoesWithAWarning) {
  const std::string dir = tempDir();
  std::string data;
  for (int i = 0; i < 20000; ++i) data += "line " + std::to_string(i) + "\n";
  writeGz(dir + "/full.gz", data);
  FILE* f = std::fopen((dir + "/full.gz").c_str(), "rb");
  std::string gz(1 << 20, '\0');
  gz.resize(std::fread(gz.data(), 1, gz.size(), f));
  std::fclose(f);
  writeFile(dir + "/cut.gz", gz.substr(0, gz.size() / 2));
  ReadResult r;
  const auto lines = readLines(dir + "/cut.gz", &r);
  EXPECT_FALSE(r.warning.empty());
  EXPECT_GT(lines.size(), 10u);
  EXPECT_EQ(lines[5], "line 5");
}

TEST(LogReader, AnOverlongLineIsCutNotFatal) {
  const std::string dir = tempDir();
  const std::string data = "first\n" + std::string(3 * 1024 * 1024, 'x') + "\nafter\n";
  writeFile(dir + "/long.log", data);
  const auto lines = readLines(dir + "/long.log");
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines.front(), "first");
  EXPECT_EQ(lines.back(), "after");
}

TEST(LogReader, MissingFileIsAnError) {
  const ReadResult r =
      readLogChunks("/nonexistent/portcullis.log", [](std::string_view) { return true; });
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("/nonexistent/portcullis.log"), std::string::npos);
}

TEST(LogReader, SpoolsWhatItReads) {
  const std::string dir = tempDir();
  writeGz(dir + "/in.gz", "one\ntwo\n");
  const int spool = ::open((dir + "/spool").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(spool, 0);
  ASSERT_TRUE(readLogChunks(
                  dir + "/in.gz", [](std::string_view) { return true; }, spool)
                  .ok);
  ::close(spool);
  EXPECT_EQ(readLines(dir + "/spool"), (std::vector<std::string>{"one", "two"}));
}

TEST(LogReader, LinesContainingFindsWholeLines) {
  const std::string chunk = "a x1\nb\nc x1 x1\nd x1";
  std::vector<std::string> got;
  forEachLineContaining(chunk, "x1", [&](std::string_view l) {
    got.emplace_back(l);
    return true;
  });
  EXPECT_EQ(got, (std::vector<std::string>{"a x1", "c x1 x1", "d x1"}));
}

TEST(LogReader, OrdersRotatedFilesOldestFirst) {
  struct Case {
    std::vector<std::string> in;
    std::vector<std::string> want;
  };
  const Case cases[] = {
      {{"mail.log", "mail.log.1", "mail.log.2.gz", "mail.log.10.gz"},
       {"mail.log.10.gz", "mail.log.2.gz", "mail.log.1", "mail.log"}},
      {{"p.log", "p.log-20261202.gz", "p.log-20261201"},
       {"p.log-20261201", "p.log-20261202.gz", "p.log"}},
      {{"b.log", "a.log.1", "a.log"}, {"b.log", "a.log.1", "a.log"}},
      {{"-"}, {"-"}},
  };
  for (const auto& c : cases) EXPECT_EQ(orderRotatedLogs(c.in), c.want);
}

}  // namespace
}  // namespace portcullis
