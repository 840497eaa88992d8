// Fuzz target: scanLine and parseCommand on arbitrary bytes.
// Invariants: never crash; scanLine cuts lines exactly at CRLF / LF within the 512 limit; every
// error is a valid permanent reply 500-555 with a class-5 enhanced code; an accepted command
// came from a short, control-free line; an accepted MAIL/RCPT gives a canonical line (what we
// send upstream) that re-parses to the same envelope.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/smtp/smtp_parser.h"

namespace {

using portcullis::Command;
using portcullis::LineScan;
using portcullis::ParseResult;
using portcullis::Reply;
using portcullis::Verb;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

void checkScan(std::string_view in, const LineScan& s) {
  const std::size_t window =
      in.size() < portcullis::kMaxCommandLine ? in.size() : portcullis::kMaxCommandLine;
  const bool lfInWindow = in.substr(0, window).find('\n') != std::string_view::npos;
  switch (s.status) {
    case LineScan::Status::kNeedMore:
      require(!lfInWindow && in.size() < portcullis::kMaxCommandLine, "need-more with a line");
      break;
    case LineScan::Status::kTooLong:
      require(!lfInWindow && in.size() >= portcullis::kMaxCommandLine, "too-long too early");
      break;
    case LineScan::Status::kLine:
      require(s.consumed == s.line.size() + 2, "CRLF line: consumed");
      require(s.consumed <= portcullis::kMaxCommandLine, "CRLF line over the limit");
      require(in.substr(s.line.size(), 2) == "\r\n", "CRLF line: terminator");
      require(s.line.find('\n') == std::string_view::npos, "CRLF line contains LF");
      require(s.line.data() == in.data(), "line is not a prefix");
      break;
    case LineScan::Status::kBareLf:
      require(s.consumed == s.line.size() + 1, "bare LF: consumed");
      require(s.consumed <= portcullis::kMaxCommandLine, "bare LF line over the limit");
      require(in[s.line.size()] == '\n', "bare LF: terminator");
      require(s.line.empty() || s.line.back() != '\r', "bare LF after CR");
      require(s.line.find('\n') == std::string_view::npos, "bare LF line contains LF");
      break;
  }
}

bool sameParams(const Command& a, const Command& b) {
  if (a.params.size() != b.params.size()) return false;
  for (std::size_t i = 0; i < a.params.size(); ++i) {
    if (a.params[i].keyword != b.params[i].keyword || a.params[i].value != b.params[i].value ||
        a.params[i].hasValue != b.params[i].hasValue) {
      return false;
    }
  }
  return true;
}

void checkCommand(std::string_view line) {
  const ParseResult r = portcullis::parseCommand(line);
  if (const auto* e = std::get_if<Reply>(&r)) {
    require(e->code() >= 500 && e->code() <= 555, "error reply outside 500-555");
    require(!e->enhanced().empty(), "error reply without enhanced code");
    require(portcullis::isEnhancedStatusCode(e->enhanced()) && e->enhanced()[0] == '5',
            "error reply with a bad enhanced code");
    require(Reply::make(e->code(), e->enhanced(), e->lines()).has_value(),
            "error reply not valid by construction");
    return;
  }
  const Command& c = std::get<Command>(r);
  require(line.size() + 2 <= portcullis::kMaxCommandLine, "accepted an over-long line");
  require(c.verb != Verb::kUnknown, "accepted an unknown verb");
  for (const char ch : line) {
    const auto u = static_cast<unsigned char>(ch);
    require(!((u < 0x20 && u != '\t') || u == 0x7f), "accepted a control character");
  }
  if (c.verb == Verb::kEhlo || c.verb == Verb::kHelo) {
    require(!c.argument.empty(), "EHLO/HELO without a name");
  }
  if (c.verb != Verb::kMail && c.verb != Verb::kRcpt) return;

  require(c.nullPath == c.address.empty(), "null path and address disagree");
  require(!c.nullPath || c.verb == Verb::kMail, "RCPT with the null path");
  require(c.address.size() + 2 <= portcullis::kMaxPath, "address over the path limit");
  require(c.params.size() <= 16, "too many parameters");
  for (std::size_t i = 0; i < c.params.size(); ++i) {
    for (const char ch : c.params[i].keyword) require(!(ch >= 'a' && ch <= 'z'), "lower keyword");
    for (std::size_t j = 0; j < i; ++j) {
      require(c.params[i].keyword != c.params[j].keyword, "duplicate parameter accepted");
    }
  }
  const std::string canonical = portcullis::envelopeCommandLine(c);
  require(canonical.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos,
          "canonical line with CR, LF or NUL");
  // An unbracketed address gains two octets of brackets; a 511/512-octet canonical line is
  // reported by the unit tests, not here.
  if (canonical.size() + 2 > portcullis::kMaxCommandLine) return;
  const ParseResult again = portcullis::parseCommand(canonical);
  const auto* c2 = std::get_if<Command>(&again);
  require(c2 != nullptr, "canonical MAIL/RCPT line does not re-parse");
  require(c2->verb == c.verb, "canonical line: verb changed");
  require(c2->address == c.address, "canonical line: address changed");
  require(c2->nullPath == c.nullPath, "canonical line: null path changed");
  require(c2->nonAscii == c.nonAscii, "canonical line: nonAscii changed");
  require(sameParams(c, *c2), "canonical line: parameters changed");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  // As a stream: cut lines the way the session does and parse each.
  std::string_view rest = in;
  while (true) {
    const LineScan s = portcullis::scanLine(rest);
    checkScan(rest, s);
    if (s.status != LineScan::Status::kLine && s.status != LineScan::Status::kBareLf) break;
    checkCommand(s.line);
    rest.remove_prefix(s.consumed);
  }
  // And the whole input as one line (CR, LF and NUL included).
  checkCommand(in);
  return 0;
}
