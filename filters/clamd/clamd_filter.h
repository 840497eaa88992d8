#pragma once
// clamd: ClamAV's daemon as a virus scanner at end-of-message. The message goes to clamd with
// zINSTREAM (clamd(8) "INSTREAM"): the NUL-terminated command, then the message in chunks each
// prefixed by its length as 4 big-endian bytes, then a zero length. The reply is one
// NUL-terminated line: "stream: OK", "stream: NAME FOUND", or "... ERROR" (among them
// "INSTREAM size limit exceeded. ERROR" past clamd's StreamMaxLength). FOUND rejects with
// 554 5.7.1 and the (sanitised) virus name in the log; every error, a timeout, a closed socket
// or a reply we cannot read is a failure under on_error. The streaming, limits, breaker and
// deadlines are filters/scanner's; this file is the protocol and the factory.

#include <cstdint>
#include <string>
#include <string_view>

#include "filters/scanner/scanner_filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

// What one clamd reply line says.
struct ClamdReply {
  enum class Kind { kIncomplete, kClean, kFound, kError };
  Kind kind = Kind::kIncomplete;
  std::string text;  // kFound: the virus name; kError: what went wrong (both sanitised)
};

// Parses the reply bytes so far; `closed` when clamd has closed the connection (so the bytes
// are all there will be). Pure, and fuzzed (tests/fuzz/fuzz_clamd_reply.cc).
ClamdReply parseClamdReply(std::string_view reply, bool closed);

// Appends `chunk` framed for INSTREAM (4-byte big-endian length, then the bytes) to `out`.
void frameClamdChunk(std::string_view chunk, std::string& out);

class ClamdProtocol final : public ScanProtocol {
 public:
  std::string_view scannerName() const override { return "clamd"; }
  std::string request(const SessionView& session, std::uint64_t size) const override;
  void frameChunk(std::string_view chunk, std::string& out) const override {
    frameClamdChunk(chunk, out);
  }
  std::string trailer() const override;
  ScanResult parseReply(std::string_view reply, bool closed) const override;
  std::size_t maxReply() const override;
  // clamd(8) "PING": answered "PONG", NUL-terminated with the z prefix.
  std::string probe() const override { return std::string("zPING\0", 6); }
  std::optional<bool> parseProbeReply(std::string_view reply, bool closed) const override;
};

class ClamdFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "clamd"; }
  FilterTraits traits() const override { return scannerTraits(); }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
