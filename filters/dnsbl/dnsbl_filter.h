#pragma once
// dnsbl: weighted DNS blocklists and allowlists at connect, like Postfix postscreen's DNSBL test.
// Zones use postscreen syntax `zone[=pattern][*weight]`; every distinct zone is queried once, in
// parallel, for the client address (RFC 5782 2.1 / 2.4 reversed form) and each matching entry
// adds its weight. Score >= threshold: reject/tempfail, with the TXT of the top zone in the
// reply; score <= allowlist_threshold: accept. Answers outside 127.0.0.0/8 and DNSBL error codes
// never count; failed lookups add nothing (fail open). The DnsblConfig is immutable and shared;
// each session's DnsblFilter owns its lookup handles, and destroying it cancels them. Answers may
// arrive inline or later; the hook completes exactly once and touches nothing afterwards.
// Error answers and failed lookups are logged and counted per zone through the FilterContext
// (portcullis_dnsbl_errors_total / portcullis_dnsbl_lookup_failures_total{zone}).

#include <array>
#include <bitset>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"
#include "portcullis/resolver.h"

namespace portcullis {

// One `zone[=pattern][*weight]` entry. Without a pattern any (valid) answer matches.
struct DnsblRule {
  std::size_t zone = 0;  // index into DnsblConfig::zones
  std::optional<std::array<std::bitset<256>, 4>> pattern;
  std::int64_t weight = 1;
};

struct DnsblConfig {
  std::vector<std::string> zones;  // distinct, lowercase, in config order: one query each
  std::vector<DnsblRule> rules;    // in config order; several may share a zone
  std::int64_t threshold = 1;
  std::int64_t allowlistThreshold = -1;
  bool tempfail = false;       // action: tempfail (4xx) instead of reject (5xx)
  std::optional<Reply> reply;  // `reply`, replacing the postscreen-style default text
};

// Per-zone counters (indexed like DnsblConfig::zones), registered once per configured filter.
struct DnsblZoneStats {
  std::vector<Counter> errors;    // answers outside 127.0.0.0/8 or DNSBL error codes
  std::vector<Counter> failures;  // lookups that timed out or failed (SERVFAIL, local error)
};

class DnsblFilter final : public FilterWithHooks<DnsblFilter> {
 public:
  // `stats` may be null (counts nothing); so may context.log (logs nothing).
  DnsblFilter(std::shared_ptr<const DnsblConfig> config, const FilterContext& context,
              std::shared_ptr<const DnsblZoneStats> stats)
      : config_(std::move(config)),
        resolver_(context.resolver),
        log_(context.log),
        stats_(std::move(stats)) {}
  ~DnsblFilter() override;
  DnsblFilter(const DnsblFilter&) = delete;
  DnsblFilter& operator=(const DnsblFilter&) = delete;

  void onConnect(const SessionView& s, Next next) override;
  void onDisconnect(const SessionView& s) override;

 private:
  // What one zone's A lookup said: its valid answers (host order) or that it failed.
  struct ZoneAnswer {
    bool done = false;
    std::vector<std::uint32_t> answers;
  };

  void onAnswer(std::size_t zone, const DnsResult& result);
  void maybeDecide();
  void startTxt(std::size_t zone);
  void onTxt(const DnsResult& result);
  Reply listedReply(const std::string& txt) const;
  // Cancels every lookup, then completes; the caller must not touch `this` afterwards.
  void complete(Verdict verdict);
  void cancel();

  void log(LogLevel level, const std::string& fields) const;

  std::shared_ptr<const DnsblConfig> config_;
  Resolver* resolver_;
  const Log* log_;
  std::shared_ptr<const DnsblZoneStats> stats_;
  Next next_;
  std::string sessionId_;
  std::string address_;   // as shown in the reply
  std::string reversed_;  // "2.0.0.127" or 32 nibbles
  std::vector<std::unique_ptr<DnsLookup>> lookups_;
  std::vector<ZoneAnswer> answers_;
  std::size_t outstanding_ = 0;
  bool issuing_ = false;  // inside resolver_->lookup(): an inline answer must not complete yet
  std::vector<std::string> failures_;  // "zone:timeout" for the log reason
  // Set once the score says "listed", while the TXT of the top zone is fetched.
  std::unique_ptr<DnsLookup> txtLookup_;
  bool txtDone_ = false;
  std::size_t txtZone_ = 0;
  std::string txt_;
  std::string reason_;
};

class DnsblFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "dnsbl"; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
