// The log outputs' formats: JSON lines (keys in order, escaping, always valid JSON whatever
// the bytes), RFC 3164 syslog datagrams, and the journald priority prefix; and when a loop
// thread's batched lines are written (LogBatching).

#include "proxy/base/log.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "proxy/base/event_util.h"

namespace portcullis {
namespace {

using logformat::jsonLine;
using logformat::jsonString;

// 2026-12-03T07:01:02.123Z
std::chrono::system_clock::time_point fixedTime() {
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(1796281262123LL));
}

// A strict RFC 8259 check of what jsonLine writes: one object whose values are strings.
// Refuses raw controls, bad escapes, and any octet sequence that is not well-formed UTF-8.
class StrictJson {
 public:
  explicit StrictJson(std::string_view s) : s_(s) {}

  // The decoded key/value pairs, or an error.
  bool parseObject(std::vector<std::pair<std::string, std::string>>& out, std::string& why) {
    if (!eat('{')) return fail("want {", why);
    if (eat('}')) return end(why);
    for (;;) {
      std::string k;
      std::string v;
      if (!string(k)) return fail("bad key", why);
      if (!eat(':')) return fail("want :", why);
      if (!string(v)) return fail("bad value", why);
      out.emplace_back(std::move(k), std::move(v));
      if (eat(',')) continue;
      if (eat('}')) return end(why);
      return fail("want , or }", why);
    }
  }

 private:
  bool fail(const char* what, std::string& why) const {
    why = std::string(what) + " at " + std::to_string(i_);
    return false;
  }
  bool end(std::string& why) { return i_ == s_.size() || fail("trailing text", why); }
  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static void putUtf8(unsigned cp, std::string& out) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }
  bool string(std::string& out) {
    if (!eat('"')) return false;
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++i_ >= s_.size()) return false;
        const char e = s_[i_++];
        const std::string_view simple = "\"\\/bfnrt";
        if (simple.find(e) != std::string_view::npos) {
          out += "\"\\/\b\f\n\r\t"[simple.find(e)];
        } else if (e == 'u') {
          if (i_ + 4 > s_.size()) return false;
          unsigned cp = 0;
          for (int k = 0; k < 4; ++k) {
            const int h = hex(s_[i_ + static_cast<std::size_t>(k)]);
            if (h < 0) return false;
            cp = cp * 16 + static_cast<unsigned>(h);
          }
          if (cp >= 0xd800 && cp <= 0xdfff) return false;  // we never write surrogate pairs
          i_ += 4;
          putUtf8(cp, out);
        } else {
          return false;
        }
        continue;
      }
      // Well-formed UTF-8 (RFC 3629 4).
      std::size_t n = c < 0x80                 ? 1
                      : c >= 0xc2 && c <= 0xdf ? 2
                      : c >= 0xe0 && c <= 0xef ? 3
                      : c >= 0xf0 && c <= 0xf4 ? 4
                                               : 0;
      if (n == 0 || i_ + n > s_.size()) return false;
      unsigned cp = n == 1 ? c : c & (0xff >> (n + 1));
      for (std::size_t k = 1; k < n; ++k) {
        const auto b = static_cast<unsigned char>(s_[i_ + k]);
        if ((b & 0xc0) != 0x80) return false;
        cp = (cp << 6) | (b & 0x3f);
      }
      const unsigned minimum[] = {0, 0, 0x80, 0x800, 0x10000};
      if (cp < minimum[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
      out.append(s_.substr(i_, n));
      i_ += n;
    }
    return false;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

std::vector<std::pair<std::string, std::string>> parseStrict(const std::string& json) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string why;
  EXPECT_TRUE(StrictJson(json).parseObject(out, why)) << why << " in " << json;
  return out;
}

TEST(LogJson, KeysInOrderSessionFirst) {
  const std::string got = jsonLine(fixedTime(), spdlog::level::info,
                                   "a3f9c2d1e0b4 event=reject from=<a@b.example> stage=rcpt "
                                   "code=550 reason=\"listed \\\"x\\\"\"");
  EXPECT_EQ(got, R"({"ts":"2026-12-03T07:01:02.123Z","level":"info","session":"a3f9c2d1e0b4",)"
                 R"("event":"reject","from":"<a@b.example>","stage":"rcpt","code":"550",)"
                 R"("reason":"listed \"x\""})");
  parseStrict(got);
}

TEST(LogJson, ServerWideLineHasNoSession) {
  const std::string got =
      jsonLine(fixedTime(), spdlog::level::warn, "event=listening address=127.0.0.1:25");
  EXPECT_EQ(got, R"({"ts":"2026-12-03T07:01:02.123Z","level":"warning","event":"listening",)"
                 R"("address":"127.0.0.1:25"})");
}

TEST(LogJson, KeylessTokensGoIntoText) {
  const std::string got =
      jsonLine(fixedTime(), spdlog::level::err, "probe event=x odd \"quoted bit\" code=1 happened");
  const auto kv = parseStrict(got);
  ASSERT_EQ(kv.size(), 6u) << got;
  EXPECT_EQ(kv[2], (std::pair<std::string, std::string>{"session", "probe"}));
  EXPECT_EQ(kv[3], (std::pair<std::string, std::string>{"event", "x"}));
  EXPECT_EQ(kv[4], (std::pair<std::string, std::string>{"code", "1"}));
  EXPECT_EQ(kv[5], (std::pair<std::string, std::string>{"text", "odd quoted bit happened"}));
}

TEST(LogJson, StringEscapes) {
  const struct {
    std::string in;
    std::string want;
  } cases[] = {
      {"plain", R"("plain")"},
      {"q\"b\\", R"("q\"b\\")"},
      {std::string("nul\0x", 5), R"("nul\u0000x")"},
      {"\r\n\t\x1b[31m\x7f", R"("\u000d\u000a\u0009\u001b[31m\u007f")"},
      {"caf\xc3\xa9 \xf0\x9f\x93\xa7", "\"caf\xc3\xa9 \xf0\x9f\x93\xa7\""},  // valid UTF-8 kept
      {"\xff", R"("\ufffd")"},
      {"\xc0\xaf", R"("\ufffd\ufffd")"},                      // overlong '/'
      {"\x80", R"("\ufffd")"},                                // lone continuation
      {"\xe2\x82", R"("\ufffd\ufffd")"},                      // truncated
      {"\xed\xa0\x80", R"("\ufffd\ufffd\ufffd")"},            // UTF-16 surrogate
      {"\xf4\x90\x80\x80", R"("\ufffd\ufffd\ufffd\ufffd")"},  // above U+10FFFF
      {"\xe2\x82\xac\xe2", "\"\xe2\x82\xac\\ufffd\""},
  };
  for (const auto& tc : cases) {
    const std::string got = jsonString(tc.in);
    EXPECT_EQ(got, tc.want) << "got " << got << ", want " << tc.want;
  }
}

TEST(LogJson, HostileValuesStillGiveValidJson) {
  // What a client controls (HELO, addresses) reaches the log through logValue(); whatever the
  // octets, each line must stay one valid JSON object that decodes back to the value (with
  // U+FFFD for bytes that are not UTF-8).
  std::vector<std::string> values = {
      "\"}{\"ts\":\"forged", "a\\",  "\n{\"level\":\"info\"}", "\xc3", "x\xff\xfe",
      "\xef\xbb\xbf",        "\\x41"};
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  values.push_back(all);
  for (const std::string& v : values) {
    const std::string message = "0123456789ab event=ehlo helo=" + logValue(v, 1024) + " ok=1";
    const std::string line = jsonLine(fixedTime(), spdlog::level::info, message);
    EXPECT_EQ(line.find('\n'), std::string::npos);
    const auto kv = parseStrict(line);
    ASSERT_EQ(kv.size(), 6u) << line;
    EXPECT_EQ(kv[3].first, "event");
    EXPECT_EQ(kv[4].first, "helo");
    EXPECT_EQ(kv[5], (std::pair<std::string, std::string>{"ok", "1"}));
    bool utf8 = true;
    for (const unsigned char c : v) utf8 = utf8 && c < 0x80;
    if (utf8) {
      EXPECT_EQ(kv[4].second, v);  // ASCII round-trips exactly
    }
  }
}

TEST(LogSyslog, Datagram) {
  std::tm tm{};
  tm.tm_mon = 11;
  tm.tm_mday = 3;
  tm.tm_hour = 7;
  tm.tm_min = 1;
  tm.tm_sec = 2;
  const struct {
    int facility;
    spdlog::level::level_enum level;
    int mday;
    std::string want;
  } cases[] = {
      // RFC 3164 4.1.1: PRI = facility * 8 + severity; mail.info = 22.
      {2, spdlog::level::info, 3, "<22>Dec  3 07:01:02 portcullis[123]: a3f9c2d1e0b4 event=x"},
      {2, spdlog::level::err, 13, "<19>Dec 13 07:01:02 portcullis[123]: a3f9c2d1e0b4 event=x"},
      {16, spdlog::level::warn, 3, "<132>Dec  3 07:01:02 portcullis[123]: a3f9c2d1e0b4 event=x"},
      {23, spdlog::level::debug, 3, "<191>Dec  3 07:01:02 portcullis[123]: a3f9c2d1e0b4 event=x"},
      {0, spdlog::level::critical, 3, "<2>Dec  3 07:01:02 portcullis[123]: a3f9c2d1e0b4 event=x"},
  };
  for (const auto& tc : cases) {
    tm.tm_mday = tc.mday;
    const std::string got =
        logformat::syslogDatagram(tc.facility, tc.level, tm, 123, "a3f9c2d1e0b4 event=x");
    EXPECT_EQ(got, tc.want) << "got " << got << ", want " << tc.want;
  }
}

TEST(LogJournald, PriorityPrefix) {
  const struct {
    spdlog::level::level_enum level;
    std::string want;
  } cases[] = {{spdlog::level::trace, "<7>"}, {spdlog::level::debug, "<7>"},
               {spdlog::level::info, "<6>"},  {spdlog::level::warn, "<4>"},
               {spdlog::level::err, "<3>"},   {spdlog::level::critical, "<2>"}};
  for (const auto& tc : cases) {
    EXPECT_EQ(logformat::journaldPrefix(tc.level), tc.want)
        << spdlog::level::to_string_view(tc.level).data();
  }
}

TEST(LogJournald, DetectsStderrByDeviceAndInode) {
  struct stat st {};
  ASSERT_EQ(::fstat(STDERR_FILENO, &st), 0);
  const std::string mine = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  const std::string other = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
  EXPECT_TRUE(logformat::stderrIsJournal(mine.c_str()));
  EXPECT_FALSE(logformat::stderrIsJournal(other.c_str())) << "another stream's inode";
  EXPECT_FALSE(logformat::stderrIsJournal(nullptr));
  EXPECT_FALSE(logformat::stderrIsJournal(""));
  EXPECT_FALSE(logformat::stderrIsJournal((mine + "x").c_str()));
  EXPECT_FALSE(logformat::stderrIsJournal(std::to_string(st.st_dev).c_str()));
}

TEST(LogValue, QuotesWhatIsNotASimpleToken) {
  EXPECT_EQ(logValue("mx.example"), "mx.example");
  EXPECT_EQ(logValue(""), "\"\"");
  EXPECT_EQ(logValue("two words"), "\"two words\"");
  EXPECT_EQ(logValue("a=b"), "\"a=b\"") << "a value must not read as another key";
  EXPECT_EQ(logValue("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
  EXPECT_EQ(logValue("x\r\nevent=forged"), "\"x\\x0d\\x0aevent=forged\"");
  EXPECT_EQ(logValue("abcdef", 4), "\"abcd...\"") << "bounded";
  EXPECT_EQ(logValue("abcd", 4), "abcd");
}

TEST(LogBuilder, ComposesTheLineAsLogValueWouldAndLogsItAsItIs) {
  std::ostringstream captured;
  auto capture = std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_st>(captured));
  capture->set_pattern("%l %v");
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(capture);
  const std::string hostile = "evil\r\nid event=forged {} {:x}";
  LogBuilder line;
  line.add("{} event=test n={} helo=", "id1", 42).value(hostile).add(" to=").value("<a@b>");
  for (int i = 0; i < 40; ++i) line.add(" k{}=", i).value(std::string(30, 'v'));  // past 1 KiB
  line.log(spdlog::level::info);
  spdlog::set_default_logger(previous);

  std::string want = "info id1 event=test n=42 helo=" + logValue(hostile) + " to=<a@b>";
  for (int i = 0; i < 40; ++i) want += " k" + std::to_string(i) + "=" + std::string(30, 'v');
  EXPECT_EQ(captured.str(), want + "\n") << "braces in a value are text, not a format";
}

// output: file, as an admin configures it, with the default logger put back afterwards.
class LogBatchingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    char dir[] = "/tmp/portcullis-log-test.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/portcullis.log";
  }
  void TearDown() override {
    spdlog::set_default_logger(previous_);
    std::remove(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  void logTo(std::chrono::milliseconds flushInterval, const std::string& file = {}) {
    LogOptions options;
    options.level = "debug";
    options.output = LogOutput::kFile;
    options.file = file.empty() ? path_ : file;
    options.flushInterval = flushInterval;
    std::string error;
    ASSERT_TRUE(setupLogging(options, &error)) << error;
  }

  // The file's lines, each without its time stamp ("info one").
  std::vector<std::string> written() const {
    std::ifstream in(path_);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
      const auto space = line.find(' ');
      lines.push_back(space == std::string::npos ? line : line.substr(space + 1));
    }
    return lines;
  }

  EventBasePtr base_{event_base_new()};
  std::string dir_;

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::string path_;
};

using Lines = std::vector<std::string>;

TEST_F(LogBatchingTest, InfoLinesWaitForTheIntervalThenLeaveTogetherInOrder) {
  logTo(std::chrono::milliseconds(5));
  const LogBatching batching(base_.get());
  spdlog::info("one");
  spdlog::debug("two");
  EXPECT_EQ(written(), Lines{}) << "waiting for the timer";
  ASSERT_EQ(event_base_loop(base_.get(), EVLOOP_ONCE), 0);  // returns once the timer ran
  EXPECT_EQ(written(), (Lines{"info one", "debug two"}));
  spdlog::info("three");
  ASSERT_EQ(event_base_loop(base_.get(), EVLOOP_ONCE), 0);
  EXPECT_EQ(written(), (Lines{"info one", "debug two", "info three"})) << "a timer again";
}

TEST_F(LogBatchingTest, AWarningIsWrittenAtOnceAfterWhatWaits) {
  logTo(std::chrono::seconds(10));
  const LogBatching batching(base_.get());
  spdlog::info("before");
  spdlog::warn("trouble");
  EXPECT_EQ(written(), (Lines{"info before", "warning trouble"}));
  spdlog::error("worse");
  EXPECT_EQ(written(), (Lines{"info before", "warning trouble", "error worse"}));
}

TEST_F(LogBatchingTest, NoMoreThan64KiBWait) {
  logTo(std::chrono::seconds(10));
  const LogBatching batching(base_.get());
  const std::string filler(1000, 'x');
  // Each line is 1,030-1,033 octets with its time stamp: 63 wait, the 64th passes 64 KiB.
  for (int i = 0; i < 63; ++i) spdlog::info("{} {}", i, filler);
  EXPECT_EQ(written(), Lines{}) << "under the bound, all wait";
  spdlog::info("63 {}", filler);
  const Lines lines = written();
  ASSERT_EQ(lines.size(), 64u) << "the line that passed 64 KiB writes them all";
  EXPECT_EQ(lines.front(), "info 0 " + filler);
  EXPECT_EQ(lines.back(), "info 63 " + filler);
}

TEST_F(LogBatchingTest, WhatWaitsIsWrittenWhenTheBatchingEnds) {
  logTo(std::chrono::seconds(10));
  {
    const LogBatching batching(base_.get());
    spdlog::info("last words");
    EXPECT_EQ(written(), Lines{});
  }
  EXPECT_EQ(written(), Lines{"info last words"});
  spdlog::info("after");
  EXPECT_EQ(written(), (Lines{"info last words", "info after"})) << "no batching: at once";
}

TEST_F(LogBatchingTest, ZeroIntervalWritesEachLineAtOnce) {
  logTo(std::chrono::milliseconds(0));
  const LogBatching batching(base_.get());
  spdlog::info("now");
  EXPECT_EQ(written(), Lines{"info now"});
}

TEST_F(LogBatchingTest, AFailingWriteLosesItsLinesSaysSoOnceAndTheLoopGoesOn) {
  logTo(std::chrono::milliseconds(1), "/dev/full");  // every write: ENOSPC
  testing::internal::CaptureStderr();
  {
    const LogBatching batching(base_.get());
    spdlog::info("lost");
    ASSERT_EQ(event_base_loop(base_.get(), EVLOOP_ONCE), 0);  // the timer's write fails
    spdlog::info("lost too");
    ASSERT_EQ(event_base_loop(base_.get(), EVLOOP_ONCE), 0);
    spdlog::warn("also lost");  // written at once: fails the same way
  }
  const std::string said = testing::internal::GetCapturedStderr();
  std::size_t notes = 0;
  for (auto at = said.find("event=log-write-failed"); at != std::string::npos;
       at = said.find("event=log-write-failed", at + 1)) {
    ++notes;
  }
  EXPECT_EQ(notes, 1u) << said;
  EXPECT_NE(said.find("file=/dev/full"), std::string::npos) << said;
}

// A private syslog daemon's socket: the datagrams that reached it, in order, without their
// RFC 3164 header ("info" lines at facility mail: "<22>").
class SyslogReceiver {
 public:
  explicit SyslogReceiver(const std::string& path) : fd_(::socket(AF_UNIX, SOCK_DGRAM, 0)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    bound_ = ::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~SyslogReceiver() { ::close(fd_); }
  SyslogReceiver(const SyslogReceiver&) = delete;
  SyslogReceiver& operator=(const SyslogReceiver&) = delete;

  bool bound() const { return bound_; }
  std::vector<std::string> received() {
    char buf[2048];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) break;
      const std::string datagram(buf, static_cast<std::size_t>(n));
      const auto colon = datagram.find("]: ");
      const std::string pri = datagram.substr(0, datagram.find('>') + 1);
      got_.push_back(pri + " " +
                     (colon == std::string::npos ? datagram : datagram.substr(colon + 3)));
    }
    return got_;
  }

 private:
  int fd_;
  bool bound_ = false;
  std::vector<std::string> got_;
};

TEST_F(LogBatchingTest, SyslogLinesWaitTooAndLeaveAsOneDatagramEach) {
  const std::string socketPath = dir_ + "/log.sock";
  SyslogReceiver daemon(socketPath);
  ASSERT_TRUE(daemon.bound());
  LogOptions options;
  options.level = "debug";
  options.output = LogOutput::kSyslog;
  options.syslogSocket = socketPath;
  options.flushInterval = std::chrono::milliseconds(5);
  std::string error;
  ASSERT_TRUE(setupLogging(options, &error)) << error;
  attachLogsToLoop(base_.get());  // a backlog leaves when the socket is writable again
  {
    const LogBatching batching(base_.get());
    for (int i = 0; i < 70; ++i) spdlog::info("line {}", i);  // more than one sendmmsg's 64
    EXPECT_EQ(daemon.received(), Lines{}) << "waiting for the timer";
    ASSERT_EQ(event_base_loop(base_.get(), EVLOOP_ONCE), 0);
    // The daemon's queue holds about 10: the rest wait in the backlog until it reads.
    Lines got = daemon.received();
    EXPECT_GT(got.size(), 0u);
    for (int i = 0; i < 1000 && got.size() < 70; ++i) {
      event_base_loop(base_.get(), EVLOOP_NONBLOCK);  // 1 once nothing is left to wait for
      got = daemon.received();
    }
    ASSERT_EQ(got.size(), 70u);
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i], "<22> line " + std::to_string(i)) << "one datagram per line, in order";
    }
    spdlog::info("waits");
    spdlog::warn("at once");
    got = daemon.received();
    ASSERT_EQ(got.size(), 72u);
    EXPECT_EQ(got[70], "<22> waits") << "what waited went first";
    EXPECT_EQ(got[71], "<20> at once");
  }
  attachLogsToLoop(nullptr);
  std::remove(socketPath.c_str());
}

TEST_F(LogBatchingTest, ARestartedSyslogDaemonGetsTheWholeBatch) {
  const std::string socketPath = dir_ + "/log.sock";
  auto daemon = std::make_unique<SyslogReceiver>(socketPath);
  ASSERT_TRUE(daemon->bound());
  LogOptions options;
  options.output = LogOutput::kSyslog;
  options.syslogSocket = socketPath;
  options.flushInterval = std::chrono::milliseconds(1);
  std::string error;
  ASSERT_TRUE(setupLogging(options, &error)) << error;
  const LogBatching batching(base_.get());
  spdlog::warn("before");  // connects to the first daemon
  EXPECT_EQ(daemon->received(), Lines{"<20> before"});
  daemon.reset();  // the daemon restarts: a new socket at the same path
  std::remove(socketPath.c_str());
  daemon = std::make_unique<SyslogReceiver>(socketPath);
  ASSERT_TRUE(daemon->bound());
  for (int i = 0; i < 5; ++i) spdlog::info("after {}", i);
  ASSERT_EQ(event_base_loop(base_.get(), EVLOOP_ONCE), 0);
  EXPECT_EQ(daemon->received(),
            (Lines{"<22> after 0", "<22> after 1", "<22> after 2", "<22> after 3", "<22> after 4"}))
      << "the first send fails on the old socket; the batch goes on a fresh one, whole";
  std::remove(socketPath.c_str());
}

TEST_F(LogBatchingTest, OtherThreadsWriteAtOnce) {
  logTo(std::chrono::seconds(10));
  const LogBatching batching(base_.get());
  spdlog::info("loop");
  std::thread([] { spdlog::info("milter thread"); }).join();
  EXPECT_EQ(written(), Lines{"info milter thread"}) << "this thread's line still waits";
}

}  // namespace
}  // namespace portcullis
