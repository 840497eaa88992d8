#pragma once
// ReplyParser: assembles and validates one SMTP reply from the upstream MTA, line by line
// (RFC 5321 4.2.1 multi-line form). Anything that is not "NNN[- ]text" with a legal code
// (2xx-5xx), a consistent code across lines, printable text and a bounded size is garbage:
// the caller turns it into 451/421 and never relays it (DESIGN invariant 4). Pure; fuzzed.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portcullis/reply.h"

namespace portcullis {

class ReplyParser {
 public:
  enum class Status { kNeedMore, kDone, kError };

  // Feeds one line without its CRLF.
  Status feed(std::string_view line);
  // The finished reply (after kDone); resets the parser for the next reply.
  Reply take();
  const std::string& error() const { return error_; }
  bool midReply() const { return code_ != 0; }
  void reset();

 private:
  Status fail(std::string why);

  int code_ = 0;
  std::string enhanced_;
  std::vector<std::string> lines_;
  std::optional<Reply> done_;
  std::string error_;
};

// The MTA's reply with an enhanced status code added when it had none: we offer
// ENHANCEDSTATUSCODES, so every reply we relay carries one (`positive` for 2xx, X.0.0 else).
Reply withEnhancedCode(const Reply& reply, std::string_view positive);
// The same without a copy: `reply` itself when it has one already (as Postfix's always do),
// else the amended reply, kept in `amended`.
const Reply& withEnhancedCode(const Reply& reply, std::string_view positive,
                              std::optional<Reply>& amended);

// EHLO capability list from a 250 reply (RFC 5321 4.1.1.1): the keyword of every line after
// the first, upper-cased, with its parameters.
struct Capability {
  std::string keyword;
  std::vector<std::string> params;
};
std::vector<Capability> parseEhloCapabilities(const Reply& reply);

}  // namespace portcullis
