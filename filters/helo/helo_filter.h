#pragma once
// helo: checks the EHLO/HELO argument at the helo stage, like Postfix's
// reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname and reject_unknown_helo_hostname,
// plus "you are not me" (our own name or address) and address literals that are not the client.
// The shared HeloConfig is immutable; each session's HeloFilter owns its A/AAAA lookups, and
// destroying the filter cancels them. Resolver answers may arrive inline or from the event
// loop; either way the hook completes exactly once, and nothing is touched after completing.
// Keys: require_fqdn (true), reject_own_name (true), require_resolvable (false).

#include <memory>
#include <string>

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"
#include "portcullis/resolver.h"

namespace portcullis {

struct HeloConfig {
  bool requireFqdn = true;
  bool rejectOwnName = true;
  bool requireResolvable = false;
};

class HeloFilter final : public FilterWithHooks<HeloFilter> {
 public:
  HeloFilter(std::shared_ptr<const HeloConfig> config, Resolver* resolver)
      : config_(std::move(config)), resolver_(resolver) {}

  void onHelo(const SessionView& s, Next next) override;

 private:
  void onAddress(DnsType type, const DnsResult& result);
  void complete(Verdict verdict);
  void completeFailure(std::string error);

  std::shared_ptr<const HeloConfig> config_;
  Resolver* resolver_;
  // The lookup in progress (A, then AAAA): one handle each, so that starting the AAAA lookup
  // from the A callback never destroys the handle whose callback is running.
  std::unique_ptr<DnsLookup> aLookup_;
  std::unique_ptr<DnsLookup> aaaaLookup_;
  Next next_;
  std::string name_;       // the HELO name being resolved, trailing dot removed
  std::string shownName_;  // sanitised, for the reply text
  std::string aOutcome_;   // "A nxdomain" etc., for the log reason
  bool aFailed_ = false;   // the A lookup timed out or failed (not a negative answer)
};

class HeloFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "helo"; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
