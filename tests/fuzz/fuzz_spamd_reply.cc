// Fuzz target: the spamd reply parser (filters/spamd/), SYMBOLS and REPORT, and the
// X-Spam-Status value built from it. The input is a reply as spamd might send it, fed whole
// and as prefixes (a reply arrives in pieces), open and closed. Invariants: never crash; a
// closed reply always decides; an open prefix that decided keeps its decision as more bytes
// arrive (spamd's Content-length ends the reply); every symbol is a bounded rule name; the
// error text and the status header have no control characters and are bounded.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "filters/spamd/spamd_filter.h"

namespace {

using portcullis::SpamdCommand;
using portcullis::SpamdReply;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

void checkText(std::string_view text, std::size_t max) {
  require(text.size() <= max, "text bounded");
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    require(u >= 0x20 && u != 0x7f, "no control characters");
  }
}

bool same(const SpamdReply& a, const SpamdReply& b) {
  return a.kind == b.kind && a.spam == b.spam && a.score == b.score && a.threshold == b.threshold &&
         a.symbols == b.symbols && a.error == b.error;
}

void check(const SpamdReply& r) {
  checkText(r.error, 200);
  require(r.symbols.size() <= portcullis::kMaxSpamdSymbols, "symbol count bounded");
  for (const std::string& s : r.symbols) {
    require(!s.empty() && s.size() <= 64, "symbol length bounded");
    for (const char c : s) {
      const bool ok =
          (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
      require(ok, "a symbol is a rule name");
    }
  }
  if (r.kind == SpamdReply::Kind::kDone) {
    checkText(portcullis::spamStatusValue(r), 900);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  for (const SpamdCommand command : {SpamdCommand::kSymbols, SpamdCommand::kReport}) {
    const SpamdReply open = portcullis::parseSpamdReply(input, false, command);
    check(open);
    const SpamdReply closed = portcullis::parseSpamdReply(input, true, command);
    check(closed);
    require(closed.kind != SpamdReply::Kind::kIncomplete, "a closed reply always decides");
    // The first prefix that decides while open: every longer prefix decides the same.
    std::size_t first = 0;
    for (; first <= input.size(); first += 1 + first / 8) {
      if (portcullis::parseSpamdReply(input.substr(0, first), false, command).kind !=
          SpamdReply::Kind::kIncomplete) {
        break;
      }
    }
    if (first <= input.size()) {
      const SpamdReply decided =
          portcullis::parseSpamdReply(input.substr(0, first), false, command);
      require(same(decided, open), "bytes after a decision change nothing");
    }
  }
  return 0;
}
