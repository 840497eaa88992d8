#pragma once
// Reply: an SMTP reply that is valid by construction (RFC 5321 4.2, RFC 3463).
// A Reply always has a three-digit code 2xx-5xx, an optional enhanced status code whose class
// matches the code's first digit, and one or more lines of printable text that fit the
// 512-octet reply-line limit. Text from outside (filters, DNS TXT, upstream) is sanitised on
// the way in: control characters never reach the wire. Pure value type; no I/O.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis {

class Reply {
 public:
  // RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including the CRLF.
  static constexpr std::size_t kMaxLineLength = 512;
  static constexpr std::size_t kMaxLines = 64;

  // Strict constructor: nullopt unless code, enhanced code and every line are valid as given.
  // An empty `enhanced` means "no enhanced status code". Used for replies we parse.
  static std::optional<Reply> make(int code, std::string_view enhanced,
                                   std::vector<std::string> lines);

  // Forgiving constructors for filter authors. They never fail: an out-of-class code becomes the
  // class default (451 / 550), a malformed or mismatched enhanced code becomes X.0.0, and the
  // text is sanitised (control characters dropped, over-long text truncated, empty -> generic).
  static Reply transient(int code, std::string_view enhanced, std::string_view text);
  static Reply permanent(int code, std::string_view enhanced, std::string_view text);
  // Success and intermediate replies the proxy itself writes (2xx/3xx); same sanitising.
  static Reply positive(int code, std::string_view enhanced, std::string_view text);

  // Parses "550 5.7.1 Message content rejected" (a single line, as written in config files).
  // nullopt when it is not a valid 4xx/5xx reply.
  static std::optional<Reply> parseNegative(std::string_view line);

  int code() const { return code_; }
  const std::string& enhanced() const { return enhanced_; }
  const std::vector<std::string>& lines() const { return lines_; }
  // The first line's text (without code and enhanced code).
  const std::string& text() const { return lines_.front(); }

  bool isPositive() const { return code_ < 400; }
  bool isTransient() const { return code_ >= 400 && code_ < 500; }
  bool isPermanent() const { return code_ >= 500; }
  bool isNegative() const { return code_ >= 400; }
  // RFC 5321 3.8: 421 means the server closes the channel.
  bool closesConnection() const { return code_ == 421; }

  // Wire form: every line as "CODE[-| ]ENHANCED TEXT\r\n".
  std::string wire() const;
  // One-line form for logs: "550 5.7.1 text | second line".
  std::string summary() const;

  // Copy with another code of the same class (e.g. stage-default substitution).
  Reply withCode(int code) const;

  bool operator==(const Reply&) const = default;

 private:
  Reply(int code, std::string enhanced, std::vector<std::string> lines)
      : code_(code), enhanced_(std::move(enhanced)), lines_(std::move(lines)) {}

  int code_;
  std::string enhanced_;
  std::vector<std::string> lines_;
};

// True if `s` is an RFC 3463 enhanced status code (class.subject.detail, class 2/4/5).
bool isEnhancedStatusCode(std::string_view s);

// Replaces control characters (and anything outside printable ASCII / UTF-8) with nothing,
// collapses whitespace runs, and truncates to max bytes. Used for text from the outside world:
// DNS TXT, PTR names, HELO, scanner output (DESIGN invariant 6).
std::string sanitizeText(std::string_view in, std::size_t max);

}  // namespace portcullis
