#pragma once
// rdns: judges the client's reverse DNS at connect, like Postfix's
// reject_unknown_client_hostname (require: fcrdns) and reject_unknown_reverse_client_hostname
// (require: ptr). The core looks every client up once (proxy/client_lookup.cc) and the result
// arrives in SessionView::client; this filter only decides, inline, with no I/O of its own.
// Failing clients get 450 4.7.25 (550 5.7.25 with permanent: true; RFC 7372 3.3); a temporary
// DNS failure always gets 450. The RdnsConfig is immutable and shared by every session.

#include <memory>

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

struct RdnsConfig {
  bool requireFcrdns = true;  // require: fcrdns (PTR and a matching A/AAAA) or ptr (any PTR)
  bool permanent = false;     // 550 5.7.25 instead of 450 4.7.25 for a definite failure
};

class RdnsFilter final : public FilterWithHooks<RdnsFilter> {
 public:
  explicit RdnsFilter(std::shared_ptr<const RdnsConfig> config) : config_(std::move(config)) {}

  void onConnect(const SessionView& s, Next next) override;

 private:
  std::shared_ptr<const RdnsConfig> config_;
};

class RdnsFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "rdns"; }
  // It judges the core's FCrDNS result rather than looking anything up itself.
  FilterTraits traits() const override { return {.needsReverseLookup = true}; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
