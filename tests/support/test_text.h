#pragma once
// Test helper: bytes shown readably in "got X, want Y" failure messages (CR, LF and other
// control characters escaped, long strings elided in the middle).

#include <string>
#include <string_view>

namespace portcullis::testing {

inline std::string escape(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out.push_back(ch);
    }
  }
  if (out.size() > 120) out = out.substr(0, 60) + "..." + out.substr(out.size() - 40);
  return "\"" + out + "\"";
}

}  // namespace portcullis::testing
