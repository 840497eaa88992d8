#pragma once
// The reply of rspamd's POST /checkv2 (rspamd's protocol docs, "Rspamd protocol": a JSON
// object with action, score, required_score, symbols, messages.smtp_message, subject, milter
// and time_real), parsed into plain values, and the verdict portcullis makes of it.
// The JSON goes to yaml-cpp (already linked; JSON is YAML 1.2 flow style) only after our own
// bounds: the size, a nesting depth, and nothing outside strings but JSON's own tokens (so no
// YAML anchors, aliases, tags or comments reach it). Every text taken from the reply (reply
// text, subject, header names and values, symbol names) is sanitised here, before anything
// else sees it: DESIGN invariant 6. Pure, no I/O; fuzzed by tests/fuzz/fuzz_rspamd_reply.cc.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "filters/scanner/scanner_filter.h"
#include "portcullis/verdict.h"

namespace portcullis {

// rspamd's actions (rspamd's `action` strings), mildest last.
enum class RspamdAction { kReject, kSoftReject, kRewriteSubject, kAddHeader, kGreylist, kNoAction };

std::string_view rspamdActionName(RspamdAction a);  // "soft reject", as rspamd spells it

// Bounds (DESIGN invariant 5). A reply over kMaxRspamdReply or nested deeper than
// kMaxRspamdDepth is refused before it is parsed; the lists are cut at their bound.
inline constexpr std::size_t kMaxRspamdReply = 256 * 1024;
inline constexpr std::size_t kMaxRspamdDepth = 32;
inline constexpr std::size_t kMaxRspamdSymbols = 64;      // names kept for the log
inline constexpr std::size_t kMaxRspamdHeaderEdits = 32;  // milter adds + removes
inline constexpr std::size_t kMaxRspamdHeaderName = 76;
inline constexpr std::size_t kMaxRspamdHeaderValue = 900;  // under RFC 5322's 998 before folding

struct RspamdReply {
  RspamdAction action = RspamdAction::kNoAction;
  double score = 0;
  double required = 0;
  bool skipped = false;                   // is_skipped: rspamd did not run its rules
  std::vector<std::string> symbols;       // [A-Za-z0-9_] names only, at most kMaxRspamdSymbols
  std::size_t symbolCount = 0;            // how many rspamd reported
  std::string smtpMessage;                // messages.smtp_message, sanitised; may be empty
  std::string subject;                    // the rewritten subject (rspamd has substituted %s)
  std::vector<HeaderField> addHeaders;    // milter.add_headers, in rspamd's order
  std::vector<HeaderEdit> removeHeaders;  // milter.remove_headers (kRemove edits)
  std::size_t droppedEdits = 0;           // header edits refused (bad name, bad shape, bound)
  std::optional<double> timeReal;         // rspamd's own scan time, in seconds
};

struct RspamdParse {
  std::optional<RspamdReply> reply;
  std::string error;  // when !reply: why (our own words, or sanitised text)
};

// Parses a /checkv2 reply body.
RspamdParse parseRspamdReply(std::string_view body);

// A header field name we will write or match: RFC 5322 2.2 ftext (printable ASCII but ':'),
// at most kMaxRspamdHeaderName bytes.
bool isHeaderName(std::string_view name);

// The verdict and the log summary for a parsed reply:
//   reject -> 554 5.7.1; soft reject, greylist -> 451 4.7.1 (rspamd's smtp_message as the text
//   when it gave one); rewrite subject -> Subject replaced; add header -> X-Spam: Yes and
//   X-Spam-Score added (as rspamd's proxy does with its spam_header); no action -> continue.
// The milter block's removals and additions ride along with every continuing verdict, and so
// does the removal of the client's own X-Spam and X-Spam-Score (only the scanner sets those).
ScanResult rspamdScanResult(const RspamdReply& reply);

}  // namespace portcullis
