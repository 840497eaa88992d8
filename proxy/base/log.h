#pragma once
// Logging: spdlog set-up and the key=value helpers every log line uses. One line per event,
// session id first: "a3f9c2d1e0b4 event=reject stage=rcpt filter=dnsbl code=554 reason=\"...\"".
// Message bodies and AUTH payloads are never logged. Values are quoted and sanitised so that a
// hostile HELO cannot forge log lines.
// Outputs: stderr (text, or "<N>message" when stderr is journald's stream), an append-only
// file reopened by reopenLogs() (SIGUSR1, from the event loop), or RFC 3164 datagrams to a
// local syslog socket, never blocking (a bounded backlog, flushed from the loop once
// attachLogsToLoop() ran). Each as text or one JSON object per line. Any thread may log; on a
// thread that runs an event loop (a LogBatching on it), lines below warn wait up to
// log.flush_interval to leave together (one write; for syslog, sendmmsg calls).

#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <ctime>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

struct event_base;

namespace portcullis {

enum class LogOutput { kStderr, kSyslog, kFile };
enum class LogFormat { kText, kJson };

// The log: section of the config (config.h calls it LogConfig).
struct LogOptions {
  std::string level = "info";  // trace..off
  LogOutput output = LogOutput::kStderr;
  LogFormat format = LogFormat::kText;
  std::string file;                       // output=file: appended to, reopened by reopenLogs()
  std::string syslogSocket = "/dev/log";  // output=syslog: a unix datagram socket
  int syslogFacility = 2;                 // RFC 3164 4.1.1 facility code; 2 = mail
  // How long an info or debug line logged on an event loop may wait to be written with the
  // lines after it (one write for all; syslog: one sendmmsg per 64); 0: each line at once.
  std::chrono::milliseconds flushInterval{100};
};

// The most log.flush_interval may be: what a crash can lose, and how late `tail -f` may be.
inline constexpr std::chrono::milliseconds kMaxLogFlushInterval{10'000};

// RFC 3164 4.1.1 facility names, at their codes (auth..local7; "security" and "mark" left
// out). The config spelling of log.syslog_facility.
struct SyslogFacilityName {
  std::string_view name;
  int code;
};
inline constexpr std::array<SyslogFacilityName, 20> kSyslogFacilities = {{
    {"kern", 0},      {"user", 1},    {"mail", 2},    {"daemon", 3},  {"auth", 4},
    {"syslog", 5},    {"lpr", 6},     {"news", 7},    {"uucp", 8},    {"cron", 9},
    {"authpriv", 10}, {"ftp", 11},    {"local0", 16}, {"local1", 17}, {"local2", 18},
    {"local3", 19},   {"local4", 20}, {"local5", 21}, {"local6", 22}, {"local7", 23},
}};

// Configures the default logger. False, with `error`, when the output cannot be opened (the
// caller still has plain stderr for that message).
[[nodiscard]] bool setupLogging(const LogOptions& options, std::string* error);

// Whether start-up could open the configured output (--check-config): output=file opens the
// file for appending (creating it and a missing directory, as start-up would). A syslog
// socket may appear later, so it is not checked.
[[nodiscard]] bool checkLogOutput(const LogOptions& options, std::string* error);

// output=syslog: lets lines that wait for the daemon be sent as soon as its socket takes them
// (a write event on `base`). Call once the loop exists, and with null before freeing it.
void attachLogsToLoop(event_base* base);

// While it lives, the lines this thread logs below warn (with a flush_interval above 0) wait
// in this thread's buffer, written in one write (syslog: sendmmsg) when the first of
// them has waited flush_interval (a timer on `base`, so the thread must run that loop), when
// 64 KiB wait, when a warning or worse is logged (after them, at once), and when it is
// destroyed. Create one on each thread that runs an event loop, around the loop, after
// setupLogging; never two on a thread. Lines from other threads are written at once.
class LogBatching {
 public:
  explicit LogBatching(event_base* base);
  ~LogBatching();
  LogBatching(const LogBatching&) = delete;
  LogBatching& operator=(const LogBatching&) = delete;

  class Lines;

 private:
  std::unique_ptr<Lines> lines_;
};

// output=file: opens the file by name again (after logrotate moved it); on failure the old
// file stays in use. output=syslog: reconnects on the next line. Call from the event loop,
// never from a signal handler. True when there was nothing to do.
[[nodiscard]] bool reopenLogs(std::string* error);

// A value for key=value: bare when it is a simple token, otherwise double-quoted with
// backslash escapes; control characters become \xHH. Bounded to maxLen octets.
std::string logValue(std::string_view value, std::size_t maxLen = 256);

// A log line composed in place, for the lines every session writes (connect, transaction,
// session, reject): the pieces go straight into one buffer (1 KiB inside the object, growing
// past it) with no string made for each, and the finished line is logged as it is.
//   LogBuilder line;
//   line.add("{} event=transaction from=", id).value(sender).add(" size={}", size);
//   line.log(spdlog::level::info);
class LogBuilder {
 public:
  using Buffer = fmt::basic_memory_buffer<char, 1024>;

  template <typename... Args>
  LogBuilder& add(fmt::format_string<Args...> format, Args&&... args) {
    fmt::format_to(std::back_inserter(buf_), format, std::forward<Args>(args)...);
    return *this;
  }
  // `value` as logValue() writes it.
  LogBuilder& value(std::string_view value, std::size_t maxLen = 256) {
    appendLogValue(buf_, value, maxLen);
    return *this;
  }
  static std::string_view view(const Buffer& b) { return {b.data(), b.size()}; }

  void log(spdlog::level::level_enum level) const {
    spdlog::default_logger_raw()->log(level, spdlog::string_view_t(buf_.data(), buf_.size()));
  }

  // logValue(value, maxLen) appended to `out` (a std::string or a Buffer).
  template <typename Out>
  static void appendLogValue(Out& out, std::string_view value, std::size_t maxLen);

 private:
  Buffer buf_;
};

// A random 12-hex-digit session id.
std::string newSessionId();

// The pieces of each output, exposed for tests.
namespace logformat {

// RFC 5424 6.2.1 severities (the same numbers syslog(3) and sd-daemon(3) use): trace and debug
// are debug (7), info 6, warn warning (4), err 3, critical crit (2).
int severity(spdlog::level::level_enum level);

// {"ts":"2026-12-03T07:01:02.123Z","level":"info","session":"...","event":"...",...}: the
// message's fields in order, values as strings. "session" is the leading bare token (a
// session id, or "probe" and the like), other keyless tokens are joined into "text". Always
// valid JSON: controls escaped, invalid UTF-8 bytes replaced with U+FFFD. No newline.
std::string jsonLine(std::chrono::system_clock::time_point time, spdlog::level::level_enum level,
                     std::string_view message);

// A JSON string literal (with the quotes) for `text`, as jsonLine writes values.
std::string jsonString(std::string_view text);

// RFC 3164 4.1's header, "<PRI>Mmm dd hh:mm:ss portcullis[PID]: ", written over `out`; its
// length.
inline constexpr std::size_t kSyslogHeaderSize = 64;
std::size_t syslogHeader(char (&out)[kSyslogHeaderSize], int facility,
                         spdlog::level::level_enum level, std::tm localTime, long pid);

// RFC 3164 4.1: "<PRI>Mmm dd hh:mm:ss portcullis[PID]: message", local time, no hostname (as
// syslog(3) sends to the local daemon, which adds it).
std::string syslogDatagram(int facility, spdlog::level::level_enum level, std::tm localTime,
                           long pid, std::string_view message);

// sd-daemon(3): "<N>" before a line on a stream journald reads sets its priority.
std::string journaldPrefix(spdlog::level::level_enum level);

// Whether stderr is journald's stream: JOURNAL_STREAM ("DEV:INODE", set by systemd for
// StandardError=journal) names stderr's device and inode (sd_journal_stream_fd(3)).
bool stderrIsJournal(const char* journalStream);

}  // namespace logformat

}  // namespace portcullis
