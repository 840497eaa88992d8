// Reading log files and taking lines apart. See log_reader.h.

#include "proxy/explain/log_reader.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "proxy/base/log.h"
#include "proxy/base/log_fields.h"

namespace portcullis {
namespace {

constexpr std::size_t kChunk = 4 * 1024 * 1024;  // one read; lines are never split across
constexpr std::size_t kMaxLine = 1024 * 1024;    // a longer "line" is cut (it is not ours)

bool writeAll(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzPtr = std::unique_ptr<std::remove_pointer_t<gzFile>, GzCloser>;

// Reads from fd, inflating when the data starts with the gzip magic. zlib's gzread does both:
// in "transparent" mode it copies data that is not gzip straight into our buffer.
class Source {
 public:
  Source(int fd, std::string name) : name_(std::move(name)) {
    const int own = ::dup(fd);
    if (own >= 0) gz_.reset(gzdopen(own, "rb"));
    if (!gz_) {
      if (own >= 0) ::close(own);
      error_ = name_ + ": cannot read: " + std::strerror(errno ? errno : ENOMEM);
      return;
    }
    gzbuffer(gz_.get(), 256 * 1024);
  }
  const std::string& error() const { return error_; }
  // Bytes read into buf (0 at the end); -1 on error (error() says why). A truncated gzip
  // stream ends the input with a warning rather than an error: it is usually the file logrotate
  // is still compressing, and what was read is worth reading.
  long read(char* buf, std::size_t n) {
    if (!gz_) return -1;
    const int got = gzread(gz_.get(), buf, static_cast<unsigned>(n));
    if (got > 0) return got;
    int err = 0;
    const char* msg = gzerror(gz_.get(), &err);
    if (got == 0 || err == Z_BUF_ERROR) {
      // zlib reports a truncated stream as Z_BUF_ERROR on the read that finds the end.
      if (err != Z_BUF_ERROR) return 0;
      warning_ = name_ + ": the compressed data ends early (truncated .gz); read what was there";
      return 0;
    }
    error_ = name_ + ": " + (err == Z_ERRNO ? std::strerror(errno) : msg);
    return -1;
  }
  std::string warning_;

 private:
  std::string name_;
  std::string error_;
  GzPtr gz_;
};

bool isHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

// A session id: 12 lower-case hex digits, then a space (proxy/base/log.h newSessionId).
bool startsWithSessionId(std::string_view s) {
  if (s.size() < 13 || s[12] != ' ') return false;
  return std::all_of(s.begin(), s.begin() + 12, isHex);
}

bool looksLikeMessage(std::string_view s) {
  return s.starts_with("event=") || (startsWithSessionId(s) && s.substr(13).starts_with("event="));
}

// "<6>" (journald, syslog PRI) prefix, removed.
std::string_view stripPriority(std::string_view s) {
  if (s.size() >= 3 && s[0] == '<') {
    std::size_t i = 1;
    while (i < s.size() && i < 5 && isDigit(s[i])) ++i;
    if (i > 1 && i < s.size() && s[i] == '>') return s.substr(i + 1);
  }
  return s;
}

bool isLevel(std::string_view s) {
  static constexpr std::string_view kLevels[] = {"trace", "debug", "info",     "warning",
                                                 "warn",  "error", "critical", "err"};
  return std::find(std::begin(kLevels), std::end(kLevels), s) != std::end(kLevels);
}

// "host portcullis[123]: message" or "portcullis[123]: message" or "portcullis: message":
// the message when the tag is ours, else nullopt-like empty with ok=false.
bool syslogMessage(std::string_view rest, std::string_view& message) {
  const std::size_t colon = rest.find(": ");
  if (colon == std::string_view::npos) return false;
  std::string_view head = rest.substr(0, colon);
  const std::size_t sp = head.rfind(' ');
  const std::string_view tag = sp == std::string_view::npos ? head : head.substr(sp + 1);
  if (!tag.starts_with("portcullis")) return false;
  // journalctl's short output of a unit whose "<6>" prefix journald did not take.
  message = stripPriority(rest.substr(colon + 2));
  return true;
}

constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// --- JSON: one flat object per line, values strings (numbers and literals kept as written).

void skipSpace(std::string_view s, std::size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
}

void appendUtf8(std::string& out, unsigned cp) {
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

bool readJsonString(std::string_view s, std::size_t& i, std::string& out) {
  if (i >= s.size() || s[i] != '"') return false;
  ++i;
  while (i < s.size()) {
    const char c = s[i++];
    if (c == '"') return true;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (i >= s.size()) return false;
    const char e = s[i++];
    switch (e) {
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'u': {
        if (i + 4 > s.size()) return false;
        unsigned cp = 0;
        for (int k = 0; k < 4; ++k) {
          const char h = s[i++];
          cp <<= 4;
          if (isDigit(h)) {
            cp |= static_cast<unsigned>(h - '0');
          } else if (h >= 'a' && h <= 'f') {
            cp |= static_cast<unsigned>(h - 'a' + 10);
          } else if (h >= 'A' && h <= 'F') {
            cp |= static_cast<unsigned>(h - 'A' + 10);
          } else {
            return false;
          }
        }
        appendUtf8(out, cp);
        break;
      }
      default:
        out += e;  // \" \\ \/
    }
  }
  return false;
}

// A value that is not a string: a number, true/false/null, or a nested object or array
// (kept as its raw text; ours has none).
bool readJsonOther(std::string_view s, std::size_t& i, std::string& out) {
  const std::size_t start = i;
  int depth = 0;
  bool inString = false;
  while (i < s.size()) {
    const char c = s[i];
    if (inString) {
      if (c == '\\') {
        i += 2;
        continue;
      }
      if (c == '"') inString = false;
    } else if (c == '"') {
      inString = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (depth == 0) break;
      --depth;
    } else if (c == ',' && depth == 0) {
      break;
    }
    ++i;
  }
  if (i > s.size()) i = s.size();
  out.assign(s.substr(start, i - start));
  while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
  return !out.empty();
}

bool isKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || isDigit(c) || c == '_' || c == '-' ||
         c == '.';
}

// Converts a JSON line to "<session> key=value ..." in out.storage; the timestamp and level go
// first into storage too (as "ts level " prefix) so the views stay valid.
bool parseJsonLine(std::string_view s, LogLine& out) {
  std::size_t i = 1;  // after '{'
  std::string ts;
  std::string level;
  std::string session;
  std::string fields;
  std::string key;
  std::string value;
  while (true) {
    skipSpace(s, i);
    if (i >= s.size()) return false;
    if (s[i] == '}') break;
    key.clear();
    value.clear();
    if (!readJsonString(s, i, key)) return false;
    skipSpace(s, i);
    if (i >= s.size() || s[i] != ':') return false;
    ++i;
    skipSpace(s, i);
    if (i >= s.size()) return false;
    if (s[i] == '"') {
      if (!readJsonString(s, i, value)) return false;
    } else if (!readJsonOther(s, i, value)) {
      return false;
    }
    if (key == "ts" || key == "time" || key == "timestamp") {
      ts = value;
    } else if (key == "level") {
      level = value;
    } else if (key == "session") {
      session = value;
    } else if (!key.empty() && std::all_of(key.begin(), key.end(), isKeyChar)) {
      if (!fields.empty()) fields += ' ';
      fields += key;
      fields += '=';
      fields += logValue(value, 64 * 1024);
    }
    skipSpace(s, i);
    if (i < s.size() && s[i] == ',') {
      ++i;
      continue;
    }
    if (i < s.size() && s[i] == '}') break;
    return false;
  }
  if (fields.empty()) return false;
  // ts and level are sanitised to one token each so the views cannot be confused.
  for (auto* str : {&ts, &level, &session}) {
    std::replace_if(
        str->begin(), str->end(), [](char c) { return c == ' ' || c == '\n'; }, '_');
  }
  out.storage = ts + ' ' + level + ' ' + session + (session.empty() ? "" : " ") + fields;
  const std::string_view st = out.storage;
  out.timestamp = st.substr(0, ts.size());
  out.level = st.substr(ts.size() + 1, level.size());
  out.message = st.substr(ts.size() + 1 + level.size() + 1);
  out.format = LineFormat::kJson;
  return true;
}

// Rotation suffix of a log file name: ".N", ".N.gz", "-YYYYMMDD", "-YYYYMMDD.gz". Larger is
// older.
struct RotationKey {
  std::string base;
  long age = 0;  // 0: the live file
};

RotationKey rotationKey(std::string_view path) {
  std::string_view name = path;
  if (name.ends_with(".gz")) name.remove_suffix(3);
  RotationKey key;
  std::size_t end = name.size();
  std::size_t i = end;
  while (i > 0 && isDigit(name[i - 1])) --i;
  if (i < end && i > 0 && end - i <= 9) {
    const long n = std::stol(std::string(name.substr(i, end - i)));
    if (name[i - 1] == '.' && end - i <= 4) {
      key.base.assign(name.substr(0, i - 1));
      key.age = n;
      return key;
    }
    if (name[i - 1] == '-' && end - i == 8) {
      key.base.assign(name.substr(0, i - 1));
      key.age = 100000000 - n;  // dateext: an older date is older
      return key;
    }
  }
  key.base.assign(name);
  return key;
}

}  // namespace

ReadResult readLogChunksFd(int fd, const std::string& name, const ChunkFn& fn, int spoolFd) {
  ReadResult result;
  Source src(fd, name);
  if (!src.error().empty()) {
    result.ok = false;
    result.error = src.error();
    return result;
  }
  std::unique_ptr<char[]> buf(new char[kChunk]);
  std::size_t have = 0;        // bytes in buf, all of them not yet handed out
  bool skipToNewline = false;  // dropping the rest of an over-long line
  while (true) {
    const long got = src.read(buf.get() + have, kChunk - have);
    if (got < 0) {
      result.ok = false;
      result.error = src.error();
      return result;
    }
    if (got > 0 && spoolFd >= 0 &&
        !writeAll(spoolFd, buf.get() + have, static_cast<std::size_t>(got))) {
      result.ok = false;
      result.error =
          "cannot spool standard input to a temporary file: " + std::string(std::strerror(errno));
      return result;
    }
    result.bytes += static_cast<std::size_t>(got);
    have += static_cast<std::size_t>(got);
    const bool eof = got == 0;
    std::string_view data(buf.get(), have);
    if (skipToNewline) {
      const std::size_t nl = data.find('\n');
      if (nl == std::string_view::npos) {
        have = 0;
        if (eof) break;
        continue;
      }
      skipToNewline = false;
      data.remove_prefix(nl + 1);
    }
    std::size_t usable = data.size();
    if (!eof) {
      const std::size_t lastNl = data.rfind('\n');
      usable = lastNl == std::string_view::npos ? 0 : lastNl + 1;
    }
    if (usable == 0 && !eof && data.size() >= kMaxLine) {
      // No newline in a megabyte: hand the start out as one line and drop the rest of it.
      usable = data.size();
      skipToNewline = true;
    }
    if (usable > 0 && !fn(data.substr(0, usable))) break;
    const std::size_t left = data.size() - usable;
    if (left > 0) std::memmove(buf.get(), data.data() + usable, left);
    have = left;
    if (eof) break;
  }
  result.warning = src.warning_;
  return result;
}

ReadResult readLogChunks(const std::string& path, const ChunkFn& fn, int spoolFd) {
  if (path == "-") return readLogChunksFd(STDIN_FILENO, "standard input", fn, spoolFd);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ReadResult r;
    r.ok = false;
    r.error = "cannot open " + path + ": " + std::strerror(errno);
    return r;
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  ReadResult r = readLogChunksFd(fd, path, fn, spoolFd);
  ::close(fd);
  return r;
}

bool forEachLineContaining(std::string_view chunk, std::string_view needle,
                           const std::function<bool(std::string_view line)>& fn) {
  if (needle.empty()) return true;
  const char* const begin = chunk.data();
  const char* const end = begin + chunk.size();
  const char* p = begin;
  while (p < end) {
    const void* hit = ::memmem(p, static_cast<std::size_t>(end - p), needle.data(), needle.size());
    if (!hit) break;
    const char* h = static_cast<const char*>(hit);
    const char* lineStart = h;
    while (lineStart > p && lineStart[-1] != '\n') --lineStart;
    const void* nl = std::memchr(h, '\n', static_cast<std::size_t>(end - h));
    const char* lineEnd = nl ? static_cast<const char*>(nl) : end;
    if (!fn(std::string_view(lineStart, static_cast<std::size_t>(lineEnd - lineStart)))) {
      return false;
    }
    p = lineEnd + 1;
  }
  return true;
}

std::vector<std::string> orderRotatedLogs(std::vector<std::string> paths) {
  // Stable: files of one base sort oldest first among the positions that base holds.
  std::vector<RotationKey> keys;
  keys.reserve(paths.size());
  for (const auto& p : paths) keys.push_back(rotationKey(p));
  std::vector<std::size_t> idx(paths.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::vector<std::string> bases;
  for (const auto& k : keys) {
    if (std::find(bases.begin(), bases.end(), k.base) == bases.end()) bases.push_back(k.base);
  }
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
    const auto ba = std::find(bases.begin(), bases.end(), keys[a].base) - bases.begin();
    const auto bb = std::find(bases.begin(), bases.end(), keys[b].base) - bases.begin();
    if (ba != bb) return ba < bb;
    return keys[a].age > keys[b].age;
  });
  std::vector<std::string> out;
  out.reserve(paths.size());
  for (const std::size_t i : idx) out.push_back(std::move(paths[i]));
  return out;
}

namespace {

LineFormat detectLine(std::string_view line, LogLine& out) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.empty()) return LineFormat::kOther;
  if (line.front() == '{') {
    return parseJsonLine(line, out) ? LineFormat::kJson : LineFormat::kOther;
  }
  const std::string_view s = stripPriority(line);
  // RFC 3164 timestamp "Dec  3 07:01:02 ", then "host tag: " (or just "tag: " on the wire).
  if (s.size() > 16 && s[3] == ' ' && s[6] == ' ' && s[9] == ':' && s[15] == ' ' &&
      std::find(std::begin(kMonths), std::end(kMonths), s.substr(0, 3)) != std::end(kMonths)) {
    std::string_view message;
    if (!syslogMessage(s.substr(16), message)) return LineFormat::kOther;
    out.timestamp = s.substr(0, 15);
    out.message = message;
    out.format = LineFormat::kSyslog;
    return out.format;
  }
  LogLineParts parts;
  if (s.size() > 10 && isDigit(s[0]) && splitLogLine(s, parts)) {
    if (isLevel(parts.level)) {
      out.timestamp = parts.timestamp;
      out.level = parts.level;
      out.message = parts.message;
      out.format = LineFormat::kText;
      return out.format;
    }
    // RFC 3339 syslog (rsyslog's default on Debian): "2026-12-03T07:01:02.123+00:00 host tag: ".
    std::string_view message;
    if (syslogMessage(s.substr(parts.timestamp.size() + 1), message)) {
      out.timestamp = parts.timestamp;
      out.message = message;
      out.format = LineFormat::kSyslog;
      return out.format;
    }
    return LineFormat::kOther;
  }
  if (looksLikeMessage(s)) {
    out.message = s;
    out.format = LineFormat::kBare;
    return out.format;
  }
  return LineFormat::kOther;
}

}  // namespace

LineFormat parseLogLine(std::string_view line, LogLine& out) {
  out = LogLine{};
  const LineFormat f = detectLine(line, out);
  // A line of ours always carries a message: "<timestamp> info " alone is not one.
  if (f == LineFormat::kOther || out.message.find_first_not_of(' ') == std::string_view::npos) {
    out = LogLine{};
    return LineFormat::kOther;
  }
  return f;
}

}  // namespace portcullis
