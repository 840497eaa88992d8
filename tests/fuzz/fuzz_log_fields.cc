// Fuzz target: reading log lines back (proxy/base/log_fields.cc parseLogFields, splitLogLine;
// proxy/explain/log_reader.cc parseLogLine, the format detection and JSON conversion).
// Input: the whole input is one log line (any format); its first half is also used as a value
// written with logValue and read back.
// Invariants: never crash; every view points into the text it was parsed from; keys contain no
// space, '=' or '"'; a line detected as ours yields a message parseLogFields can read; and
// logValue's output reads back to the value it was given (the writer and reader agree).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/base/log.h"
#include "proxy/base/log_fields.h"
#include "proxy/explain/log_reader.h"

namespace {

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

bool inside(std::string_view part, std::string_view whole) {
  if (part.empty()) return true;
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

void checkFields(std::string_view message) {
  portcullis::LogFields f;
  portcullis::parseLogFields(message, f);
  require(inside(f.session, message), "session id outside the message");
  require(f.session.find_first_of(" =") == std::string_view::npos, "session id with ' ' or '='");
  for (const auto& field : f.fields) {
    require(inside(field.key, message), "key outside the message");
    require(field.key.find_first_of(" =\"") == std::string_view::npos, "key with ' ', '=' or '\"'");
    require(field.value.size() <= message.size(), "value longer than the message");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  checkFields(line);

  portcullis::LogLineParts parts;
  if (portcullis::splitLogLine(line, parts)) {
    require(
        inside(parts.timestamp, line) && inside(parts.level, line) && inside(parts.message, line),
        "splitLogLine view outside the line");
  }

  portcullis::LogLine parsed;
  const portcullis::LineFormat format = portcullis::parseLogLine(line, parsed);
  if (format != portcullis::LineFormat::kOther) {
    const std::string_view home =
        format == portcullis::LineFormat::kJson ? std::string_view(parsed.storage) : line;
    require(inside(parsed.message, home), "message outside its line");
    require(inside(parsed.timestamp, home), "timestamp outside its line");
    require(inside(parsed.level, home), "level outside its line");
    require(!parsed.message.empty(), "a line of ours with an empty message");
    checkFields(parsed.message);
  } else {
    require(parsed.message.empty(), "a line not ours with a message");
  }

  // Writer and reader agree: "id k=<logValue(v)> z=1" reads back v and z.
  const std::string value(line.substr(0, size / 2));
  const std::string written =
      "0123456789ab k=" + portcullis::logValue(value, value.size() + 1) + " z=1";
  portcullis::LogFields f;
  portcullis::parseLogFields(written, f);
  require(f.session == "0123456789ab", "session id not read back");
  const std::string* k = f.find("k");
  require(k != nullptr && *k == value, "logValue output does not read back");
  const std::string* z = f.find("z");
  require(z != nullptr && *z == "1", "the field after a logValue is lost");
  return 0;
}
