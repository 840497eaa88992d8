// Logging helpers and outputs. See log.h.

#include "proxy/base/log.h"

#include <openssl/rand.h>
#include <poll.h>
#include <spdlog/details/file_helper.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <span>

#include "proxy/base/event_util.h"
#include "proxy/base/log_fields.h"

namespace portcullis {
namespace logformat {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// The length of the well-formed UTF-8 sequence at s[i] (RFC 3629 4: no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0.
std::size_t utf8SequenceLength(std::string_view s, std::size_t i) {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = at(i);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  // The range of the second byte.
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xbf) return 0;
  }
  return n;
}

std::string isoUtc(std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(time.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000 - (ms % 1000 < 0 ? 1 : 0));
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[96];  // room for any int the compiler can imagine in each field
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(((ms % 1000) + 1000) % 1000));
  return buf;
}

}  // namespace

int severity(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return 7;
    case spdlog::level::info:
      return 6;
    case spdlog::level::warn:
      return 4;
    case spdlog::level::err:
      return 3;
    default:
      return 2;  // critical (off is never logged)
  }
}

std::string jsonString(std::string_view text) {
  std::string out = "\"";
  out.reserve(text.size() + 2);
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      // RFC 8259 7: controls must be escaped; 0x7f too, so no terminal sees it raw.
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else if (const std::size_t n = utf8SequenceLength(text, i); n > 0) {
      out.append(text.substr(i, n));
      i += n;
    } else {
      // RFC 8259 8.1: JSON text is UTF-8. A HELO or address may carry any octet.
      out += "\\ufffd";
      ++i;
    }
  }
  out += '"';
  return out;
}

std::string jsonLine(std::chrono::system_clock::time_point time, spdlog::level::level_enum level,
                     std::string_view message) {
  LogFields f;
  parseLogFields(message, f);
  const auto levelName = spdlog::level::to_string_view(level);
  std::string out = "{\"ts\":\"" + isoUtc(time) + "\",\"level\":" +
                    jsonString(std::string_view(levelName.data(), levelName.size()));
  // The leading bare token: a session id, or the context of a line outside any session
  // ("probe" for the upstream probe).
  if (!f.session.empty()) out += ",\"session\":" + jsonString(f.session);
  std::string text;
  for (const LogField& field : f.fields) {
    if (field.key.empty()) {
      text += (text.empty() ? "" : " ") + field.value;
      continue;
    }
    out += ',';
    out += jsonString(field.key);
    out += ':';
    out += jsonString(field.value);
  }
  if (!text.empty()) out += ",\"text\":" + jsonString(text);
  out += '}';
  return out;
}

std::size_t syslogHeader(char (&out)[kSyslogHeaderSize], int facility,
                         spdlog::level::level_enum level, std::tm localTime, long pid) {
  // RFC 3164 4.1.2: English month abbreviations whatever the locale, day padded with a space.
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const int n =
      std::snprintf(out, sizeof out,
                    "<%d>%s %2d %02d:%02d:%02d portcullis[%ld]: ", facility * 8 + severity(level),
                    kMonths[(localTime.tm_mon % 12 + 12) % 12], localTime.tm_mday,
                    localTime.tm_hour, localTime.tm_min, localTime.tm_sec, pid);
  return n < 0 ? 0 : std::min(static_cast<std::size_t>(n), sizeof out - 1);
}

std::string syslogDatagram(int facility, spdlog::level::level_enum level, std::tm localTime,
                           long pid, std::string_view message) {
  char head[kSyslogHeaderSize];
  std::string out(head, syslogHeader(head, facility, level, localTime, pid));
  out.append(message);
  return out;
}

std::string journaldPrefix(spdlog::level::level_enum level) {
  return "<" + std::to_string(severity(level)) + ">";
}

bool stderrIsJournal(const char* journalStream) {
  if (journalStream == nullptr || *journalStream == '\0') return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long dev = std::strtoull(journalStream, &end, 10);
  if (errno != 0 || end == journalStream || *end != ':') return false;
  const char* inoText = end + 1;
  const unsigned long long ino = std::strtoull(inoText, &end, 10);
  if (errno != 0 || end == inoText || *end != '\0') return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace logformat

namespace {

// How one line is laid out; the sink then writes it.
enum class Framing {
  kLine,      // "2026-12-03T07:01:02.123 info message\n" (text) or "{json}\n"
  kJournald,  // "<6>message\n": journald stamps the time and takes the priority
  kBare,      // "message" or "{json}": the syslog sink adds its header
};

class LineFormatter final : public spdlog::formatter {
 public:
  LineFormatter(LogFormat format, Framing framing)
      : format_(format),
        framing_(framing),
        text_(std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%e %l %v")) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    if (format_ == LogFormat::kText && framing_ == Framing::kLine) {
      text_->format(msg, dest);
      return;
    }
    if (framing_ == Framing::kJournald) append(dest, logformat::journaldPrefix(msg.level));
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (format_ == LogFormat::kJson) {
      append(dest, logformat::jsonLine(msg.time, msg.level, payload));
    } else {
      append(dest, payload);
    }
    if (framing_ != Framing::kBare) dest.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<LineFormatter>(format_, framing_);
  }

 private:
  static void append(spdlog::memory_buf_t& dest, std::string_view s) {
    dest.append(s.data(), s.data() + s.size());
  }

  LogFormat format_;
  Framing framing_;
  std::unique_ptr<spdlog::pattern_formatter> text_;
};

// An output whose lines a loop thread may hold back and hand over in batches (LogBatching):
// lines below warn logged on such a thread wait in its buffer, formatted with the thread's own
// copy of the formatter; anything else is written at once, after what waits.
class BatchingSink : public spdlog::sinks::sink, public std::enable_shared_from_this<BatchingSink> {
 public:
  void log(const spdlog::details::log_msg& msg) final;  // after LogBatching::Lines
  // At shutdown (spdlog::shutdown) and when asked: what the output still holds (the syslog
  // backlog) gets another try. Lines waiting in a thread's batch are not touched.
  void flush() final {
    const std::lock_guard<std::mutex> lock(mutex_);
    retryLocked();
  }
  void set_pattern(const std::string& pattern) final {
    set_formatter(std::make_unique<spdlog::pattern_formatter>(pattern));
  }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) final {
    const std::lock_guard<std::mutex> lock(formatterMutex_);
    formatter_ = std::move(formatter);
  }

  // For a thread that formats its lines itself (a batch).
  std::unique_ptr<spdlog::formatter> copyFormatter() {
    const std::lock_guard<std::mutex> lock(formatterMutex_);
    return formatter_->clone();
  }

  // The line for `msg` as this output writes it, appended to `out`.
  virtual void compose(spdlog::formatter& formatter, const spdlog::details::log_msg& msg,
                       spdlog::memory_buf_t& out) = 0;

  // Writes the lines of `bytes` that end at `ends` (ascending offsets), in order.
  void writeLines(const spdlog::memory_buf_t& bytes, std::span<const std::size_t> ends) {
    const std::lock_guard<std::mutex> lock(mutex_);
    writeLocked(bytes, ends);
  }

 protected:
  virtual void writeLocked(const spdlog::memory_buf_t& bytes,
                           std::span<const std::size_t> ends) = 0;
  virtual void retryLocked() {}

  // A line this output writes of its own accord (syslog's drop count), with the formatter.
  void composeOwn(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& out) {
    const std::lock_guard<std::mutex> lock(formatterMutex_);
    compose(*formatter_, msg, out);
  }

  // Guards the output. Whoever holds it writes, and so (syslog) sends the backlog and arms the
  // write event again: SyslogSink::onWritable, which must not wait for it, relies on that.
  // The formatter has a mutex of its own, taken alone or inside this one, never around it.
  std::mutex mutex_;

 private:
  void writeNow(const spdlog::details::log_msg& msg) {
    spdlog::memory_buf_t line;
    composeOwn(msg, line);
    const std::size_t end = line.size();
    const std::lock_guard<std::mutex> lock(mutex_);
    writeLocked(line, std::span<const std::size_t>(&end, 1));
  }

  std::mutex formatterMutex_;  // spdlog's pattern formatter keeps the time it formatted last
  std::unique_ptr<spdlog::formatter> formatter_ =
      std::make_unique<spdlog::pattern_formatter>();  // replaced by setupLogging's
};

// output=stderr and output=file: each line, or a loop thread's batch of them, in one write.
// The file is spdlog's file_helper (appends, "ab"), opened again by name on reopen() so that
// logrotate's move-then-create works; a failed reopen keeps writing to the old file, so
// nothing is lost while the admin fixes the directory.
class LineSink final : public BatchingSink {
 public:
  // An empty path: stderr.
  explicit LineSink(std::string path) : path_(std::move(path)) {}

  // Throws spdlog::spdlog_ex (the first open only, from setupLogging).
  void open() {
    if (path_.empty()) return;
    const std::lock_guard<std::mutex> lock(mutex_);
    file_ = openFile();
  }

  bool reopen(std::string* error) {
    std::unique_ptr<spdlog::details::file_helper> fresh;
    try {
      fresh = openFile();
    } catch (const spdlog::spdlog_ex& e) {
      *error = e.what();
      return false;
    }
    const std::lock_guard<std::mutex> lock(mutex_);
    file_ = std::move(fresh);
    return true;
  }

  void compose(spdlog::formatter& formatter, const spdlog::details::log_msg& msg,
               spdlog::memory_buf_t& out) override {
    formatter.format(msg, out);
  }

 protected:
  void writeLocked(const spdlog::memory_buf_t& bytes, std::span<const std::size_t>) override {
    if (!path_.empty()) {
      if (file_) writeFileLocked(bytes);
      return;
    }
    // stderr: a pipe (journald, a container runtime) takes the batch in one write; a
    // non-blocking one that is full gets a bounded wait per write, then the rest is dropped,
    // as stdio's would be.
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(STDERR_FILENO, bytes.data() + done, bytes.size() - done);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && writableWithin(1000)) continue;
      return;
    }
  }

 private:
  static bool writableWithin(int ms) {
    pollfd ready{STDERR_FILENO, POLLOUT, 0};
    int n = 0;
    do {
      n = ::poll(&ready, 1, ms);
    } while (n < 0 && errno == EINTR);
    return n > 0;
  }

  // A write that fails (a full disk) loses its lines, as it would have with a line at a time,
  // and never throws: it may be called from the loop's timer. The first failure of a run of
  // them is said on stderr (where a supervisor looks), once.
  void writeFileLocked(const spdlog::memory_buf_t& bytes) {
    try {
      file_->write(bytes);
      file_->flush();
      failing_ = false;
    } catch (const spdlog::spdlog_ex& e) {
      if (failing_) return;
      failing_ = true;
      const std::string note = "portcullis: event=log-write-failed file=" + logValue(path_) +
                               " error=" + logValue(e.what()) +
                               " (lines are lost until a write succeeds)\n";
      [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, note.data(), note.size());
    }
  }

  std::unique_ptr<spdlog::details::file_helper> openFile() const {
    auto f = std::make_unique<spdlog::details::file_helper>();
    f->open(path_, /*truncate=*/false);
    return f;
  }

  std::string path_;
  std::unique_ptr<spdlog::details::file_helper> file_;
  bool failing_ = false;
};

// output=syslog: RFC 3164 datagrams to a unix datagram socket, one per line; a loop thread's
// batch leaves in sendmmsg calls of up to 64. spdlog's syslog_sink does not fit: it calls
// syslog(3), which always talks to /dev/log (no private socket for containers and tests) and
// blocks while the daemon's queue is full, stalling the event loop and every session on it.
// Here the socket is non-blocking and every send is MSG_DONTWAIT. The daemon's queue is short
// (net.unix.max_dgram_qlen, 10 by default), so a burst of lines waits in a bounded backlog,
// sent in order when the socket is writable again (a libevent write event once
// attachLogsToLoop() ran, else before the next line). What does not fit, and every line while
// no daemon listens, is dropped and counted; the count is logged (event=log-dropped) once
// lines get through. After an error other than a full queue the socket is connected afresh for
// the next line (a restarted daemon has a new socket).
class SyslogSink final : public BatchingSink {
 public:
  static constexpr std::size_t kMaxBacklog = 1024;  // datagrams; each line is a few hundred

  SyslogSink(std::string socketPath, int facility)
      : path_(std::move(socketPath)), facility_(facility) {}
  ~SyslogSink() override { closeSocket(); }

  void reconnect() {
    const std::lock_guard<std::mutex> lock(mutex_);
    closeSocket();
  }

  void attach(event_base* base) {
    const std::lock_guard<std::mutex> lock(mutex_);
    writable_.reset();
    base_ = base;
    if (!backlog_.empty()) arm();
  }

  void compose(spdlog::formatter& formatter, const spdlog::details::log_msg& msg,
               spdlog::memory_buf_t& out) override {
    const std::time_t secs = std::chrono::system_clock::to_time_t(msg.time);
    std::tm tm{};
    ::localtime_r(&secs, &tm);
    char head[logformat::kSyslogHeaderSize];
    const std::size_t n = logformat::syslogHeader(head, facility_, msg.level, tm, pid_);
    out.append(head, head + n);
    formatter.format(msg, out);
  }

 protected:
  void retryLocked() override { flushBacklog(); }

  void writeLocked(const spdlog::memory_buf_t& bytes, std::span<const std::size_t> ends) override {
    flushBacklog();
    std::size_t sent = 0;
    if (backlog_.empty()) sent = trySend(bytes, ends);
    if (sent == ends.size()) {
      noteDrops();
      return;
    }
    for (std::size_t i = sent; i < ends.size(); ++i) {
      if (fd_ < 0 || backlog_.size() >= kMaxBacklog) {
        ++dropped_;
        continue;
      }
      const std::size_t begin = i == 0 ? 0 : ends[i - 1];
      backlog_.emplace_back(bytes.data() + begin, ends[i] - begin);
    }
    arm();
  }

 private:
  // Sends `count` datagrams, the i-th `at(i)`, in order, up to 64 per sendmmsg, until one
  // does not go; how many went.
  template <typename DatagramAt>
  std::size_t sendDatagrams(std::size_t count, const DatagramAt& at) {
    if (count == 0 || (fd_ < 0 && !connectSocket())) return 0;
    bool reconnected = false;
    static constexpr std::size_t kPerCall = 64;
    std::array<iovec, kPerCall> iov{};
    std::array<mmsghdr, kPerCall> msgs{};
    std::size_t done = 0;
    while (done < count) {
      const std::size_t n = std::min(kPerCall, count - done);
      for (std::size_t i = 0; i < n; ++i) {
        const std::string_view datagram = at(done + i);
        iov[i] = {const_cast<char*>(datagram.data()), datagram.size()};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      const int went =
          ::sendmmsg(fd_, msgs.data(), static_cast<unsigned>(n), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (went > 0) done += static_cast<std::size_t>(went);
      if (went == static_cast<int>(n)) continue;
      // EAGAIN: the daemon's queue is full; the socket is fine. Anything else (ECONNREFUSED,
      // ENOENT, ENOTCONN after a daemon restart): connect afresh, once per call (a restarted
      // daemon has a new socket), and go on from the datagram that did not go.
      if (went >= 0 || errno == EAGAIN || errno == EWOULDBLOCK) break;
      closeSocket();
      if (reconnected || !connectSocket()) break;
      reconnected = true;
    }
    return done;
  }

  // The lines of `bytes` ending at `ends`, as sendDatagrams sends them.
  std::size_t trySend(const spdlog::memory_buf_t& bytes, std::span<const std::size_t> ends) {
    return sendDatagrams(ends.size(), [&](std::size_t i) {
      const std::size_t begin = i == 0 ? 0 : ends[i - 1];
      return std::string_view(bytes.data() + begin, ends[i] - begin);
    });
  }

  void flushBacklog() {
    const std::size_t went = sendDatagrams(
        backlog_.size(), [this](std::size_t i) { return std::string_view(backlog_[i]); });
    backlog_.erase(backlog_.begin(), backlog_.begin() + static_cast<std::ptrdiff_t>(went));
    if (!backlog_.empty()) {
      if (fd_ >= 0) {
        arm();
        return;
      }
      dropped_ += backlog_.size();  // the daemon went away; nothing will take them
      backlog_.clear();
    }
    noteDrops();
  }

  void noteDrops() {
    if (dropped_ == 0 || !backlog_.empty()) return;
    const std::string note = "event=log-dropped output=syslog lines=" + std::to_string(dropped_);
    const spdlog::details::log_msg msg("portcullis", spdlog::level::warn, note);
    spdlog::memory_buf_t datagram;
    composeOwn(msg, datagram);
    const std::size_t end = datagram.size();
    if (trySend(datagram, std::span<const std::size_t>(&end, 1)) == 1) dropped_ = 0;
  }

  void arm() {
    if (base_ == nullptr || fd_ < 0) return;
    if (!writable_) writable_.reset(event_new(base_, fd_, EV_WRITE, &SyslogSink::onWritable, this));
    if (writable_) event_add(writable_.get(), nullptr);
  }

  static void onWritable(evutil_socket_t, short, void* self) {
    auto* sink = static_cast<SyslogSink*>(self);
    // With several workers another thread may hold the lock while it frees this very event
    // (closeSocket), which waits for this callback: never wait here. That thread is writing a
    // line, and flushes the backlog (and re-arms) before it does.
    const std::unique_lock<std::mutex> lock(sink->mutex_, std::try_to_lock);
    if (lock.owns_lock()) sink->flushBacklog();
  }

  bool connectSocket() {
    sockaddr_un addr{};
    if (path_.size() >= sizeof addr.sun_path) return false;
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      closeSocket();
      return false;
    }
    return true;
  }

  void closeSocket() {
    writable_.reset();  // watches this descriptor
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  std::string path_;
  int facility_;
  long pid_ = static_cast<long>(::getpid());
  int fd_ = -1;
  event_base* base_ = nullptr;
  EventPtr writable_;
  std::deque<std::string> backlog_;
  std::uint64_t dropped_ = 0;
};

// The sinks reopenLogs() acts on, and LogBatching's interval; set by setupLogging.
std::shared_ptr<LineSink> gFileSink;
std::shared_ptr<SyslogSink> gSyslogSink;
std::chrono::milliseconds gFlushInterval{0};

}  // namespace

// One loop thread's waiting lines (and where each ends), formatted with the thread's own copy
// of the formatter, and the timer that writes them.
class LogBatching::Lines {
 public:
  static constexpr std::size_t kMaxWaiting = 64 * 1024;

  Lines(event_base* base, std::chrono::milliseconds interval)
      : timer_(base, -1, 0, &Lines::onTimer, this), interval_(toTimeval(interval)) {}
  ~Lines() { writeOut(); }
  Lines(const Lines&) = delete;
  Lines& operator=(const Lines&) = delete;

  void add(BatchingSink& sink, const spdlog::details::log_msg& msg) {
    if (sink_.get() != &sink) {
      writeOut();
      sink_ = sink.shared_from_this();
      formatter_ = sink.copyFormatter();
    }
    const bool first = ends_.empty();
    const std::size_t before = bytes_.size();
    try {
      sink.compose(*formatter_, msg, bytes_);
      ends_.push_back(bytes_.size());
    } catch (...) {
      bytes_.resize(before);  // no part of a line that failed to be made
      throw;                  // to spdlog, which reports it
    }
    if (bytes_.size() >= kMaxWaiting) {
      writeOut();
    } else if (first) {
      event_add(timer_.get(), &interval_);
    }
  }

  // Never throws (the timer and the destructor call it): what cannot be written is lost.
  void writeOut() noexcept {
    timer_.reset();
    if (ends_.empty()) return;
    try {
      sink_->writeLines(bytes_, ends_);
    } catch (...) {  // std::bad_alloc in the syslog backlog; the outputs report their own errors
    }
    bytes_.clear();  // both keep their capacity: no allocation for the next batch
    ends_.clear();
  }

 private:
  static void onTimer(evutil_socket_t, short, void* self) { static_cast<Lines*>(self)->writeOut(); }

  std::shared_ptr<BatchingSink> sink_;  // where the lines go
  std::unique_ptr<spdlog::formatter> formatter_;
  spdlog::memory_buf_t bytes_;
  std::vector<std::size_t> ends_;
  InlineEvent timer_;
  timeval interval_;
};

namespace {
thread_local LogBatching::Lines* tLines = nullptr;
}  // namespace

void BatchingSink::log(const spdlog::details::log_msg& msg) {
  LogBatching::Lines* lines = tLines;
  if (lines != nullptr && msg.level < spdlog::level::warn) {
    lines->add(*this, msg);
    return;
  }
  if (lines != nullptr) lines->writeOut();  // what waits goes first
  writeNow(msg);
}

LogBatching::LogBatching(event_base* base) {
  if (gFlushInterval.count() <= 0) return;
  lines_ = std::make_unique<Lines>(base, gFlushInterval);
  tLines = lines_.get();
}

LogBatching::~LogBatching() {
  if (!lines_) return;
  tLines = nullptr;
  lines_.reset();  // writes what waits
}

bool checkLogOutput(const LogOptions& options, std::string* error) {
  if (options.output != LogOutput::kFile) return true;
  // The same open start-up makes (file_helper creates a missing directory, as it will then).
  try {
    spdlog::details::file_helper probe;
    probe.open(options.file, /*truncate=*/false);
  } catch (const spdlog::spdlog_ex& e) {
    *error = e.what();
    return false;
  }
  return true;
}

bool setupLogging(const LogOptions& options, std::string* error) {
  spdlog::sink_ptr sink;
  switch (options.output) {
    case LogOutput::kStderr: {
      const bool journal = logformat::stderrIsJournal(std::getenv("JOURNAL_STREAM"));
      sink = std::make_shared<LineSink>(std::string());
      sink->set_formatter(std::make_unique<LineFormatter>(
          options.format, journal ? Framing::kJournald : Framing::kLine));
      break;
    }
    case LogOutput::kFile: {
      auto file = std::make_shared<LineSink>(options.file);
      try {
        file->open();
      } catch (const spdlog::spdlog_ex& e) {
        *error = e.what();
        return false;
      }
      file->set_formatter(std::make_unique<LineFormatter>(options.format, Framing::kLine));
      gFileSink = file;
      sink = file;
      break;
    }
    case LogOutput::kSyslog: {
      auto syslog = std::make_shared<SyslogSink>(options.syslogSocket, options.syslogFacility);
      syslog->set_formatter(std::make_unique<LineFormatter>(options.format, Framing::kBare));
      gSyslogSink = syslog;
      sink = syslog;
      break;
    }
  }
  gFlushInterval = options.flushInterval;
  auto logger = std::make_shared<spdlog::logger>("portcullis", sink);
  logger->set_level(spdlog::level::from_str(options.level));
  // Every write is complete when it returns; flush() is only for shutdown.
  logger->flush_on(spdlog::level::off);
  spdlog::set_default_logger(logger);
  return true;
}

void attachLogsToLoop(event_base* base) {
  if (gSyslogSink) gSyslogSink->attach(base);
}

bool reopenLogs(std::string* error) {
  if (tLines != nullptr) tLines->writeOut();  // this thread's lines from before go to the old file
  if (gSyslogSink) gSyslogSink->reconnect();
  return !gFileSink || gFileSink->reopen(error);
}

template <typename Out>
void LogBuilder::appendLogValue(Out& out, std::string_view value, std::size_t maxLen) {
  const auto put = [&out](std::string_view s) { out.append(s.data(), s.data() + s.size()); };
  bool simple = !value.empty() && value.size() <= maxLen;
  for (std::size_t i = 0; simple && i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    simple = c > ' ' && c < 0x7f && c != '"' && c != '\\' && c != '=';
  }
  if (simple) {
    put(value);
    return;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  put("\"");
  std::size_t n = 0;
  for (const char ch : value) {
    if (++n > maxLen) {
      put("...");
      break;
    }
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      const char escaped[2] = {'\\', ch};
      put(std::string_view(escaped, 2));
    } else if (c < 0x20 || c == 0x7f) {
      const char escaped[4] = {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
      put(std::string_view(escaped, 4));
    } else {
      put(std::string_view(&ch, 1));
    }
  }
  put("\"");
}

template void LogBuilder::appendLogValue(std::string&, std::string_view, std::size_t);
template void LogBuilder::appendLogValue(LogBuilder::Buffer&, std::string_view, std::size_t);

std::string logValue(std::string_view value, std::size_t maxLen) {
  std::string out;
  LogBuilder::appendLogValue(out, value, maxLen);
  return out;
}

std::string newSessionId() {
  // Unique, not secret: a generator per thread (the workers), seeded once from the CSPRNG.
  thread_local std::mt19937_64 generator = [] {
    std::uint64_t seed = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1) {
      seed = std::random_device{}();
    }
    return std::mt19937_64(seed);
  }();
  const std::uint64_t v = generator();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(12, '0');
  for (int i = 0; i < 12; ++i) id[static_cast<std::size_t>(i)] = kHex[(v >> (4 * i)) & 15];
  return id;
}

}  // namespace portcullis
