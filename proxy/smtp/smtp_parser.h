#pragma once
// SMTP command parser: one command line (CRLF already removed) -> Command, or the reply that the
// client gets for it. Pure, allocation-bounded and fuzzed (tests/fuzz/fuzz_command_parser.cc).
// Enforces the RFC 5321 4.5.3.1 size limits and the path grammar of RFC 5321 4.1.2, tolerating
// the common deviations Postfix tolerates (a space after "FROM:", an unbracketed address).
// Also home of the line scanner that cuts command lines out of the input stream.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "portcullis/reply.h"

namespace portcullis {

// RFC 5321 4.5.3.1.4: command line <= 512 octets including CRLF.
constexpr std::size_t kMaxCommandLine = 512;
// RFC 5321 4.5.3.1.1-3: local-part 64, domain 255, path 256 (including the angle brackets).
constexpr std::size_t kMaxLocalPart = 64;
constexpr std::size_t kMaxDomain = 255;
constexpr std::size_t kMaxPath = 256;

enum class Verb {
  kEhlo,
  kHelo,
  kMail,
  kRcpt,
  kData,
  kRset,
  kNoop,
  kQuit,
  kVrfy,
  kExpn,
  kHelp,
  kStartTls,
  kAuth,
  kBdat,
  kEtrn,
  kTurn,
  kXclient,
  kXforward,
  kUnknown,
};

std::string_view verbName(Verb v);

struct EsmtpParam {
  std::string keyword;  // upper-cased
  std::string value;    // verbatim
  bool hasValue = false;
  std::string wire() const { return hasValue ? keyword + "=" + value : keyword; }
};

struct Command {
  Verb verb = Verb::kUnknown;
  std::string argument;  // everything after the verb, trimmed (EHLO name, VRFY argument...)
  // MAIL / RCPT
  std::string address;  // "local@domain" without brackets or source route; empty for <>
  bool nullPath = false;
  bool nonAscii = false;  // the address has octets >= 0x80 (needs SMTPUTF8)
  std::vector<EsmtpParam> params;
  // BDAT
  std::uint64_t chunkSize = 0;
  bool lastChunk = false;

  const EsmtpParam* param(std::string_view keyword) const;
};

using ParseResult = std::variant<Command, Reply>;

// Parses one command line without its CRLF. Never throws.
ParseResult parseCommand(std::string_view line);

// The canonical line we send upstream for a MAIL or RCPT command, by its verb (no CRLF),
// written over `out` (its storage is reused), or returned.
void writeEnvelopeCommandLine(const Command& c, std::string& out);
std::string envelopeCommandLine(const Command& c);

// Cuts the next command line out of `input`.
struct LineScan {
  enum class Status {
    kNeedMore,  // no line terminator yet and under the limit
    kLine,      // a line ended by CRLF: `line` is its content
    kBareLf,    // a line ended by LF without CR (RFC 5321 2.3.8 forbids it)
    kTooLong,   // more than kMaxCommandLine octets without a line end
  };
  Status status = Status::kNeedMore;
  std::string_view line;     // without terminator (kLine, kBareLf)
  std::size_t consumed = 0;  // octets to drop from input (kLine, kBareLf)
};
LineScan scanLine(std::string_view input, std::size_t maxLine = kMaxCommandLine);

}  // namespace portcullis
