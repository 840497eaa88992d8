#pragma once
// Reading portcullis logs for `portcullis explain`: whole files (plain or gzip, told apart by
// the gzip magic, so rotated "mail.log.2.gz" works), or standard input, in large chunks of
// whole lines (no per-line I/O: a day of logs is read at disk or memory speed); and taking one
// line apart whatever output wrote it: our text format, syslog, journald's bare messages, JSON.
// Everything here is synchronous and owned by the caller; nothing is kept between calls.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis {

// A chunk of whole lines (each ends with '\n', except perhaps the input's last line). Return
// false to stop reading.
using ChunkFn = std::function<bool(std::string_view chunk)>;

struct ReadResult {
  bool ok = true;
  std::string error;    // why not ok (cannot open, read error)
  std::string warning;  // something odd but readable (a truncated .gz)
  std::size_t bytes = 0;
};

// Reads `path` ("-": standard input) in chunks of whole lines. gzip data (magic 1f 8b) is
// inflated, also on standard input. When spoolFd >= 0 every byte read (after inflating) is
// also written there, so that a second pass can read standard input again.
ReadResult readLogChunks(const std::string& path, const ChunkFn& fn, int spoolFd = -1);

// The same on an open descriptor (not closed; read from its current offset).
ReadResult readLogChunksFd(int fd, const std::string& name, const ChunkFn& fn, int spoolFd = -1);

// Calls fn(line) for each line of `chunk` that contains `needle` (without its '\n'), found with
// memmem: lines without it cost nothing. fn returns false to stop; so does this function.
bool forEachLineContaining(std::string_view chunk, std::string_view needle,
                           const std::function<bool(std::string_view line)>& fn);

// Orders log files oldest first by their rotation suffix, so a session that spans a rotation
// reads in order: "mail.log.2.gz", "mail.log.1", "mail.log"; "x.log-20261201.gz" before
// "x.log". Files with different bases keep their relative order; "-" stays where it is.
std::vector<std::string> orderRotatedLogs(std::vector<std::string> paths);

enum class LineFormat {
  kText,    // 2026-12-03T07:01:02.123 info <message>
  kSyslog,  // Dec  3 07:01:02 host portcullis[123]: <message> (also an RFC 3339 timestamp)
  kBare,    // <message>, optionally with a "<6>" priority prefix (journald, journalctl -o cat)
  kJson,    // {"ts":"...","level":"info","session":"...","event":"...",...}
  kOther,   // not one of ours (another program's syslog line, noise)
};

struct LogLine {
  LineFormat format = LineFormat::kOther;
  std::string_view timestamp;  // may be empty (bare messages carry none)
  std::string_view level;      // may be empty
  // "<session id> key=value ...": what parseLogFields reads. Points into the line, or into
  // `storage` for JSON lines (converted to key=value).
  std::string_view message;
  std::string storage;
};

// Takes `line` apart. The views in `out` point into `line` (or into out.storage).
LineFormat parseLogLine(std::string_view line, LogLine& out);

}  // namespace portcullis
