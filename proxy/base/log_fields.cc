// Reading key=value log lines. See log_fields.h.

#include "proxy/base/log_fields.h"

namespace portcullis {
namespace {

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads a quoted value starting after the opening quote; returns the index after the closing
// quote (or the end).
std::size_t readQuoted(std::string_view s, std::size_t i, std::string& out) {
  while (i < s.size()) {
    const char c = s[i];
    if (c == '"') return i + 1;
    if (c == '\\' && i + 1 < s.size()) {
      const char e = s[i + 1];
      if (e == 'x' && i + 3 < s.size() && hexDigit(s[i + 2]) >= 0 && hexDigit(s[i + 3]) >= 0) {
        out += static_cast<char>(hexDigit(s[i + 2]) * 16 + hexDigit(s[i + 3]));
        i += 4;
        continue;
      }
      out += e;
      i += 2;
      continue;
    }
    out += c;
    ++i;
  }
  return i;
}

}  // namespace

const std::string* LogFields::find(std::string_view key) const {
  for (const auto& f : fields) {
    if (f.key == key) return &f.value;
  }
  return nullptr;
}

void parseLogFields(std::string_view message, LogFields& out) {
  out.session = {};
  out.fields.clear();
  std::size_t i = 0;
  bool first = true;
  while (i < message.size()) {
    while (i < message.size() && message[i] == ' ') ++i;
    if (i >= message.size()) break;
    std::size_t keyEnd = i;
    while (keyEnd < message.size() && message[keyEnd] != '=' && message[keyEnd] != ' ' &&
           message[keyEnd] != '"') {
      ++keyEnd;
    }
    if (keyEnd >= message.size() || message[keyEnd] != '=') {
      // A bare token: the session id when it comes first, otherwise a keyless field.
      std::size_t end = keyEnd;
      LogField f;
      if (end < message.size() && message[end] == '"') {
        end = readQuoted(message, end + 1, f.value);
      } else {
        f.value.assign(message.substr(i, end - i));
      }
      if (first && f.value.size() == end - i) {
        out.session = message.substr(i, end - i);
      } else {
        out.fields.push_back(std::move(f));
      }
      first = false;
      i = end;
      continue;
    }
    first = false;
    LogField f;
    f.key = message.substr(i, keyEnd - i);
    i = keyEnd + 1;
    if (i < message.size() && message[i] == '"') {
      i = readQuoted(message, i + 1, f.value);
    } else {
      const std::size_t start = i;
      while (i < message.size() && message[i] != ' ') ++i;
      f.value.assign(message.substr(start, i - start));
    }
    out.fields.push_back(std::move(f));
  }
}

bool splitLogLine(std::string_view line, LogLineParts& out) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  const std::size_t a = line.find(' ');
  if (a == std::string_view::npos || a < 10 || line[4] != '-') return false;
  const std::size_t b = line.find(' ', a + 1);
  if (b == std::string_view::npos) return false;
  out.timestamp = line.substr(0, a);
  out.level = line.substr(a + 1, b - a - 1);
  out.message = line.substr(b + 1);
  return true;
}

}  // namespace portcullis
