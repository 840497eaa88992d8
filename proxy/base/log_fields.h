#pragma once
// Reading our own log lines back: the inverse of logValue(). A line's message (what follows the
// timestamp and level) is an optional session id, then key=value fields, each value either a
// bare token or a double-quoted string with \" \\ and \xHH escapes:
//   a3f9c2d1e0b4 event=reject stage=rcpt code=550 reason="client \"x\" listed"
// The JSON log format and `portcullis explain` both read lines through this one parser.

#include <string>
#include <string_view>
#include <vector>

namespace portcullis {

struct LogField {
  std::string_view key;
  std::string value;  // unescaped
};

struct LogFields {
  std::string_view session;  // the leading bare token, if there is one (a session id)
  std::vector<LogField> fields;
  // The value of `key`, or null. The first one if the key repeats.
  const std::string* find(std::string_view key) const;
};

// Parses `message`. Never fails: a token without '=' after the first is kept as a field with
// an empty key; an unterminated quoted value runs to the end of the line. The views in `out`
// point into `message`.
void parseLogFields(std::string_view message, LogFields& out);

// Splits a text-format line "2026-12-03T07:01:02.123 info <message>" into its parts. False if
// the line does not have that shape.
struct LogLineParts {
  std::string_view timestamp;
  std::string_view level;
  std::string_view message;
};
bool splitLogLine(std::string_view line, LogLineParts& out);

}  // namespace portcullis
