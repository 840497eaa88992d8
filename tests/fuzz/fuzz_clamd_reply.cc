// Fuzz target: the clamd reply parser (filters/clamd/) and the scanner text sanitiser.
// The input is a reply as clamd might send it, fed whole and as every prefix (a reply arrives
// in pieces), open and closed. Invariants: never crash; a prefix that is incomplete while open
// stays incomplete or decides once a terminator is in; a decision never changes as more bytes
// arrive after the terminator; found/error text has no control characters and at most
// kMaxScannerText (+ a short prefix) bytes; INSTREAM framing of the input round-trips.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "filters/clamd/clamd_filter.h"

namespace {

using portcullis::ClamdReply;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

void checkText(const ClamdReply& r) {
  // The error text quotes at most 80 bytes of an unexpected reply, plus its own words.
  require(r.text.size() <= portcullis::kMaxScannerText + 40, "text bounded");
  for (const char c : r.text) {
    const auto u = static_cast<unsigned char>(c);
    require(u >= 0x20 && u != 0x7f, "no control characters in scanner text");
  }
  if (r.kind == ClamdReply::Kind::kFound) require(!r.text.empty(), "a found name is not empty");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const ClamdReply whole = portcullis::parseClamdReply(input, false);
  checkText(whole);
  const ClamdReply closed = portcullis::parseClamdReply(input, true);
  checkText(closed);
  require(closed.kind != ClamdReply::Kind::kIncomplete, "a closed reply always decides");
  const std::size_t end = input.find_first_of(std::string_view("\0\n", 2));
  require((whole.kind == ClamdReply::Kind::kIncomplete) == (end == std::string_view::npos),
          "incomplete exactly until a terminator");
  if (end != std::string_view::npos) {
    for (std::size_t n = end + 1; n <= input.size(); n += 1 + n / 4) {
      const ClamdReply later = portcullis::parseClamdReply(input.substr(0, n), false);
      require(later.kind == whole.kind && later.text == whole.text,
              "bytes after the terminator change nothing");
    }
  }
  std::string framed;
  portcullis::frameClamdChunk(input, framed);
  require(framed.size() == input.size() + 4, "a frame is 4 bytes plus the chunk");
  const auto b = [&](std::size_t i) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(framed[i]));
  };
  require(((b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3)) == input.size(), "length prefix");
  return 0;
}
