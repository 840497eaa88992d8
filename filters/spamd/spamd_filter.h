#pragma once
// spamd: SpamAssassin's daemon as a spam scanner at end-of-message, over SPAMC/1.5 (spamd's
// PROTOCOL file). The request is "SYMBOLS SPAMC/1.5" (or REPORT), a "Content-length:" header
// with the message size, an optional "User:" header, an empty line, then the message as is.
// spamd answers "SPAMD/1.x 0 EX_OK", a "Spam: True|False ; SCORE / THRESHOLD" header, a
// "Content-length:" header, an empty line and a body: the matched rule names separated by
// commas (SYMBOLS) or the human-readable report (REPORT), then closes.
// Spam: True tags the message (X-Spam-Flag, X-Spam-Score, X-Spam-Status as spamassassin writes
// them); a score at or above reject_score rejects with 550 5.7.1; anything else continues
// untouched. A non-zero status, a reply we cannot read, a timeout or a closed socket is a
// failure under on_error. Streaming, limits, breaker and deadlines are filters/scanner's.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "filters/scanner/scanner_filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

enum class SpamdCommand { kSymbols, kReport };

// What one spamd reply says. Scores are kept as the numbers spamd sent; the rule names are
// only those made of [A-Za-z0-9_] (at most kMaxSpamdSymbols of them, each at most 64 bytes),
// so they can go into a header and a log line as they are.
struct SpamdReply {
  enum class Kind { kIncomplete, kDone, kError };
  Kind kind = Kind::kIncomplete;
  bool spam = false;
  double score = 0;
  double threshold = 0;
  std::vector<std::string> symbols;
  std::string error;  // kError: what went wrong (sanitised)
};

inline constexpr std::size_t kMaxSpamdSymbols = 100;

// Parses the reply bytes so far; `closed` when spamd has closed the connection. Pure, and
// fuzzed (tests/fuzz/fuzz_spamd_reply.cc).
SpamdReply parseSpamdReply(std::string_view reply, bool closed, SpamdCommand command);

// The request head for a message of `size` bytes; `user` empty: no User header.
std::string spamdRequest(SpamdCommand command, std::string_view user, std::uint64_t size);

// A score as spamassassin prints it (_SCORE_, one decimal): "1000.0", "-0.1".
std::string formatSpamScore(double score);

// The X-Spam-Status value spamassassin writes for a tagged message, bounded:
// "Yes, score=5.2 required=5.0 tests=SYM1,SYM2".
std::string spamStatusValue(const SpamdReply& reply);

struct SpamdOptions {
  SpamdCommand command = SpamdCommand::kSymbols;
  std::string user;                   // empty: spamd's default user
  std::optional<double> rejectScore;  // absent: never reject, only tag
};

class SpamdProtocol final : public ScanProtocol {
 public:
  explicit SpamdProtocol(SpamdOptions options) : options_(std::move(options)) {}
  std::string_view scannerName() const override { return "spamd"; }
  std::string request(const SessionView& session, std::uint64_t size) const override;
  void frameChunk(std::string_view chunk, std::string& out) const override { out.append(chunk); }
  std::string trailer() const override { return {}; }
  ScanResult parseReply(std::string_view reply, bool closed) const override;
  std::size_t maxReply() const override;
  // spamd's PING (spamc -K): "SPAMD/1.5 0 PONG".
  std::string probe() const override { return "PING SPAMC/1.5\r\n\r\n"; }
  std::optional<bool> parseProbeReply(std::string_view reply, bool closed) const override;

 private:
  SpamdOptions options_;
};

class SpamdFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "spamd"; }
  FilterTraits traits() const override { return scannerTraits(); }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
