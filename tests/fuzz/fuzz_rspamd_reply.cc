// Fuzz target: rspamd's /checkv2 reply parser (filters/rspamd/rspamd_reply.h) and the verdict
// made of it. The input is a reply body as rspamd (or anything on its port) might send it.
// Invariants: never crash, whatever the nesting or the YAML in it; a parsed reply's texts
// (reply text, subject, header names and values, symbol names) have no control characters and
// are bounded; the lists are bounded; a refusal carries a reply of the right class and no
// header edits; an error text is bounded and clean too.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "filters/rspamd/rspamd_reply.h"

namespace {

using namespace portcullis;

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

void checkVerdict(const Verdict& v) {
  checkText(v.reason(), 1024);
  if (v.reply()) {
    for (const std::string& line : v.reply()->lines()) checkText(line, 512);
  }
  for (const HeaderField& h : v.headers()) {
    require(isHeaderName(h.name), "added header names are header names");
    checkText(h.value, kMaxRspamdHeaderValue);
  }
  for (const HeaderEdit& e : v.headerEdits()) {
    require(isHeaderName(e.name), "edited header names are header names");
    checkText(e.value, kMaxRspamdHeaderValue);
  }
  if (!v.isContinue()) require(v.headers().empty() && v.headerEdits().empty(), "no edits");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const RspamdParse p = parseRspamdReply(input);
  if (!p.reply) {
    require(!p.error.empty(), "an error says why");
    checkText(p.error, 300);
    return 0;
  }
  const RspamdReply& r = *p.reply;
  checkText(r.smtpMessage, kMaxScannerText);
  checkText(r.subject, kMaxRspamdHeaderValue);
  require(r.symbols.size() <= kMaxRspamdSymbols, "symbols bounded");
  require(r.symbols.size() <= r.symbolCount, "symbols counted");
  for (const std::string& s : r.symbols) checkText(s, 64);
  require(r.addHeaders.size() + r.removeHeaders.size() <= kMaxRspamdHeaderEdits, "edits bounded");
  const ScanResult result = rspamdScanResult(r);
  require(result.kind == ScanResult::Kind::kDone && result.verdict.has_value(), "decides");
  checkText(result.summary, 1024);
  checkVerdict(*result.verdict);
  return 0;
}
