#pragma once
// Log: the daemon's log, offered to filters through FilterContext so that no filter includes a
// logging library. One call writes one line "<session id> <fields>" at a level, where `fields`
// is key=value pairs (event= first), as every portcullis log line is. Text from outside (DNS,
// the client) must go through logQuote() so that it stays one token. Thread-safe; never blocks
// on the network. Never log AUTH payloads or message bodies.

#include <cstddef>
#include <string>
#include <string_view>

namespace portcullis {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

class Log {
 public:
  virtual ~Log() = default;
  // False when a line at `level` would be dropped: check before building an expensive line.
  virtual bool enabled(LogLevel level) const = 0;
  virtual void write(LogLevel level, std::string_view sessionId, std::string_view fields) const = 0;

  void debug(std::string_view sessionId, std::string_view fields) const {
    if (enabled(LogLevel::kDebug)) write(LogLevel::kDebug, sessionId, fields);
  }
  void info(std::string_view sessionId, std::string_view fields) const {
    write(LogLevel::kInfo, sessionId, fields);
  }
  void warn(std::string_view sessionId, std::string_view fields) const {
    write(LogLevel::kWarn, sessionId, fields);
  }
  void error(std::string_view sessionId, std::string_view fields) const {
    write(LogLevel::kError, sessionId, fields);
  }
};

// A log value that stays one key=value token however odd the text: sanitised (sanitizeText),
// at most `max` bytes, double-quoted, with '"' and '\' replaced.
std::string logQuote(std::string_view value, std::size_t max = 200);

}  // namespace portcullis
