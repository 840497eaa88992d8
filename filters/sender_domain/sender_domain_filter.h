#pragma once
// sender_domain: at MAIL FROM, rejects a sender whose domain cannot receive mail, like Postfix's
// reject_unknown_sender_domain. MX first; a null MX (RFC 7505) is rejected; NODATA for MX falls
// back to A, then AAAA (RFC 5321 5.1 implicit MX). NXDOMAIN, or no MX and no address, is a
// 550; a DNS timeout or server failure is a 451 (the sender retries). The null sender <> and
// address-literal domains pass unchecked. The shared SenderDomainConfig is immutable; each
// session's filter owns its lookups (destroying it cancels them). Answers may arrive inline or
// from the event loop; the hook completes exactly once and touches nothing afterwards.
// Keys: check_a_records (true).

#include <memory>
#include <string>

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"
#include "portcullis/resolver.h"

namespace portcullis {

struct SenderDomainConfig {
  // Accept a domain without MX when it has an A or AAAA record (RFC 5321 5.1). false demands
  // an MX record.
  bool checkARecords = true;
};

class SenderDomainFilter final : public FilterWithHooks<SenderDomainFilter> {
 public:
  SenderDomainFilter(std::shared_ptr<const SenderDomainConfig> config, Resolver* resolver)
      : config_(std::move(config)), resolver_(resolver) {}

  void onMailFrom(const SessionView& s, Next next) override;

 private:
  void onMx(const DnsResult& result);
  void onAddress(DnsType type, const DnsResult& result);
  void startLookup(DnsType type, std::unique_ptr<DnsLookup>& handle);
  void complete(Verdict verdict);

  std::shared_ptr<const SenderDomainConfig> config_;
  Resolver* resolver_;
  // One handle per query type, so that a callback never destroys its own handle by starting
  // the next lookup.
  std::unique_ptr<DnsLookup> mxLookup_;
  std::unique_ptr<DnsLookup> aLookup_;
  std::unique_ptr<DnsLookup> aaaaLookup_;
  Next next_;
  std::string domain_;        // the domain being checked, trailing dot removed
  std::string shownAddress_;  // sanitised sender address, for the reply text
  std::string trail_;         // "MX nodata, A nxdomain" so far, for the log reason
  bool failedSoFar_ = false;  // an earlier lookup timed out or failed
};

class SenderDomainFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "sender_domain"; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
