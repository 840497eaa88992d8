// Reply model: construction, validation, sanitising, wire form. See include/portcullis/reply.h.

#include "portcullis/reply.h"

#include <algorithm>
#include <charconv>

namespace portcullis {
namespace {

// "NNN-" + "X.YYY.ZZZ " + CRLF: what a line needs besides its text.
constexpr std::size_t kLineOverhead = 4 + 12 + 2;
constexpr std::size_t kMaxTextPerLine = Reply::kMaxLineLength - kLineOverhead;

bool isPrintableOrUtf8(unsigned char c) { return (c >= 0x20 && c < 0x7f) || c >= 0x80; }

bool validCode(int code) {
  // RFC 5321 4.2: three digits, first 2-5, second 0-5.
  return code >= 200 && code <= 559 && (code / 10) % 10 <= 5;
}

// RFC 5321 4.5.3.1.5: the whole line, code and enhanced code and CRLF included, fits in 512.
bool validText(const std::string& line, std::size_t enhancedLength) {
  const std::size_t overhead = 4 + (enhancedLength ? enhancedLength + 1 : 0) + 2;
  if (line.size() + overhead > Reply::kMaxLineLength) return false;
  return std::all_of(line.begin(), line.end(),
                     [](char c) { return isPrintableOrUtf8(static_cast<unsigned char>(c)); });
}

std::string classFix(int code, std::string_view enhanced) {
  const char cls = static_cast<char>('0' + code / 100);
  if (isEnhancedStatusCode(enhanced) && enhanced[0] == cls) return std::string(enhanced);
  if (code < 400 && code >= 300) return "";  // 3xx replies carry no enhanced code
  return std::string(1, cls) + ".0.0";
}

Reply build(int code, int fallback, std::string_view enhanced, std::string_view text,
            std::string_view generic) {
  if (!validCode(code) || code / 100 != fallback / 100) code = fallback;
  std::string clean = sanitizeText(text, kMaxTextPerLine);
  if (clean.empty()) clean = std::string(generic);
  return *Reply::make(code, classFix(code, enhanced), {std::move(clean)});
}

}  // namespace

bool isEnhancedStatusCode(std::string_view s) {
  // RFC 3463 2: class "." subject "." detail; subject and detail are 1-3 digits.
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
  std::size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    const std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    const std::size_t digits = i - start;
    if (digits == 0 || digits > 3) return false;
    if (digits > 1 && s[start] == '0') return false;
    if (part == 0) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
  }
  return i == s.size();
}

namespace {

// Length of the well-formed UTF-8 sequence at in[i] (RFC 3629 table), or 0 if there is none.
std::size_t utf8Length(std::string_view in, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(in[i + k]); };
  const unsigned char c = b(0);
  std::size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlong forms
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + len > in.size()) return 0;
  if (b(1) < lo || b(1) > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    if (b(k) < 0x80 || b(k) > 0xBF) return 0;
  }
  return len;
}

}  // namespace

std::string sanitizeText(std::string_view in, std::size_t max) {
  std::string out;
  out.reserve(std::min(in.size(), max));
  bool space = false;
  std::size_t i = 0;
  while (i < in.size()) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = !out.empty();  // runs collapse to one space; none at the start
      ++i;
      continue;
    }
    std::size_t len = (c > 0x20 && c < 0x7f) ? 1 : (c >= 0x80 ? utf8Length(in, i) : 0);
    if (len == 0) {
      ++i;  // a control character or a byte that is not UTF-8: dropped
      continue;
    }
    if (out.size() + (space ? 1 : 0) + len > max) break;  // whole characters only
    if (space) out.push_back(' ');
    space = false;
    out.append(in.substr(i, len));
    i += len;
  }
  return out;
}

std::optional<Reply> Reply::make(int code, std::string_view enhanced,
                                 std::vector<std::string> lines) {
  if (!validCode(code)) return std::nullopt;
  if (!enhanced.empty() && (!isEnhancedStatusCode(enhanced) || enhanced[0] != '0' + code / 100)) {
    return std::nullopt;
  }
  if (lines.empty()) lines.emplace_back();
  if (lines.size() > kMaxLines) return std::nullopt;
  for (const auto& l : lines) {
    if (!validText(l, enhanced.size())) return std::nullopt;
  }
  return Reply(code, std::string(enhanced), std::move(lines));
}

Reply Reply::transient(int code, std::string_view enhanced, std::string_view text) {
  return build(code, 451, enhanced, text, "Try again later");
}

Reply Reply::permanent(int code, std::string_view enhanced, std::string_view text) {
  return build(code, 550, enhanced, text, "Rejected");
}

Reply Reply::positive(int code, std::string_view enhanced, std::string_view text) {
  if (!validCode(code) || code >= 400) code = 250;
  return build(code, code, enhanced, text, "Ok");
}

std::optional<Reply> Reply::parseNegative(std::string_view line) {
  if (line.size() < 3) return std::nullopt;
  int code = 0;
  const auto [p, ec] = std::from_chars(line.data(), line.data() + 3, code);
  if (ec != std::errc() || p != line.data() + 3 || code < 400 || !validCode(code)) {
    return std::nullopt;
  }
  std::string_view rest = line.substr(3);
  if (!rest.empty() && rest.front() != ' ') return std::nullopt;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  std::string_view enhanced;
  const auto sp = rest.find(' ');
  const std::string_view first = rest.substr(0, sp);
  if (isEnhancedStatusCode(first)) {
    if (first[0] != line[0]) return std::nullopt;
    enhanced = first;
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
  }
  for (const char c : rest) {
    if (!isPrintableOrUtf8(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return make(code, enhanced, {std::string(rest)});
}

std::string Reply::wire() const {
  std::string out;
  const std::string code = std::to_string(code_);
  std::size_t size = 0;
  for (const auto& l : lines_) size += code.size() + enhanced_.size() + l.size() + 4;
  out.reserve(size);  // one allocation per reply
  for (std::size_t i = 0; i < lines_.size(); ++i) {
    out += code;
    out += (i + 1 < lines_.size()) ? '-' : ' ';
    if (!enhanced_.empty()) {
      out += enhanced_;
      if (!lines_[i].empty()) out += ' ';
    }
    out += lines_[i];
    out += "\r\n";
  }
  return out;
}

std::string Reply::summary() const {
  std::size_t size = 4 + enhanced_.size();
  for (const auto& l : lines_) size += l.size() + 3;
  std::string out;
  out.reserve(size);
  out += std::to_string(code_);
  if (!enhanced_.empty()) {
    out += ' ';
    out += enhanced_;
  }
  for (std::size_t i = 0; i < lines_.size(); ++i) {
    out += i == 0 ? " " : " | ";
    out += lines_[i];
  }
  return out;
}

Reply Reply::withCode(int code) const {
  if (!validCode(code) || code / 100 != code_ / 100) return *this;
  return Reply(code, enhanced_, lines_);
}

}  // namespace portcullis
