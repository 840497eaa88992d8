// Header formatting. See header_util.h.

#include "proxy/base/header_util.h"

#include <algorithm>

#include "portcullis/reply.h"

namespace portcullis {

bool validHeaderName(std::string_view name) {
  if (name.empty() || name.size() > 76) return false;
  // RFC 5322 2.2: printable US-ASCII except ':'.
  return std::all_of(name.begin(), name.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c >= 33 && c <= 126 && c != ':';
  });
}

std::optional<std::string> formatHeader(std::string_view name, std::string_view value,
                                        std::size_t maxValue) {
  if (!validHeaderName(name)) return std::nullopt;
  const std::string clean = sanitizeText(value, maxValue);
  std::string out(name);
  out += ":";
  std::size_t column = out.size();
  std::size_t pos = 0;
  // Fold between words so that lines stay within 78 octets where words allow it.
  while (pos < clean.size()) {
    auto sp = clean.find(' ', pos);
    if (sp == std::string::npos) sp = clean.size();
    const std::string_view word(clean.data() + pos, sp - pos);
    if (column + 1 + word.size() > 78 && column > name.size() + 1) {
      out += "\r\n";
      column = 0;
    }
    out += ' ';
    out += word;
    column += 1 + word.size();
    pos = sp + 1;
  }
  out += "\r\n";
  return out;
}

}  // namespace portcullis
