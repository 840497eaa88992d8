#pragma once
// DnsResolver: the daemon's Resolver (include/portcullis/resolver.h) on libevent, with ldns for
// the wire format. It owns a TTL cache, merges identical in-flight queries (one network query,
// many callers), retries over the configured servers and falls back to TCP on truncation.
// Every callback runs from the event loop, never inside lookup(), cache hits included. Destroying
// a DnsLookup handle cancels that caller only; destroying the resolver closes every socket and
// event, and no callback runs after that. Single-threaded: use it from its event_base's thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "portcullis/resolver.h"
#include "proxy/base/dispatcher.h"
#include "proxy/services/dns/dns_cache.h"
#include "proxy/services/dns/dns_stats.h"
#include "proxy/services/dns/dns_transport.h"

namespace portcullis {

struct DnsSettings {
  // "127.0.0.1:5353", "[::1]:5353", "127.0.0.1" (port 53). Empty: every lookup fails with kError.
  std::vector<std::string> servers;
  std::chrono::milliseconds timeout{2000};  // per attempt (and again for a TCP fallback)
  int attempts = 2;                         // tries per query, rotating through the servers
  std::size_t cacheEntries = 10000;         // 0 disables the cache
  std::chrono::seconds maxTtl{3600};        // cap on positive answers
  std::chrono::seconds negativeTtl{300};    // NXDOMAIN/NODATA: cap, and the TTL without SOA
  std::size_t maxInFlight = 10000;          // distinct network queries at once; beyond: kError
};

class DnsResolver final : public Resolver {
 public:
  // nullptr and *error set when a server address does not parse or a setting is out of range.
  static std::unique_ptr<DnsResolver> create(Dispatcher& dispatcher, DnsSettings settings,
                                             std::string* error);
  // The nameserver addresses in a resolv.conf, in order; for when the config names none.
  static std::vector<std::string> serversFromResolvConf(
      const std::string& path = "/etc/resolv.conf");

  ~DnsResolver() override;
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  [[nodiscard]] std::unique_ptr<DnsLookup> lookup(std::string_view name, DnsType type,
                                                  Callback callback) override;

  DnsStats stats() const { return stats_; }
  std::size_t inFlight() const { return inflight_.size(); }  // distinct network queries
  std::size_t pending() const { return waiters_.size(); }    // callers not yet called back
  void clearCache() { cache_.clear(); }

 private:
  class Handle;
  struct Query;
  struct Waiter {
    Handle* handle = nullptr;
    Callback callback;
    Query* query = nullptr;                   // while waiting on the network
    std::shared_ptr<const DnsResult> result;  // once ready for delivery
  };

  DnsResolver(Dispatcher& dispatcher, DnsSettings settings, std::vector<DnsServer> servers);

  void cancel(std::uint64_t waiterId);
  void readyWith(std::uint64_t waiterId, std::shared_ptr<const DnsResult> result);
  void fail(std::uint64_t waiterId, DnsStatus status, std::string detail);
  void scheduleDelivery();
  void deliver();

  void startAttempt(Query* query);
  void onAttemptDone(Query* query, ExchangeOutcome outcome);
  void complete(Query* query, DnsResult result, std::optional<std::uint32_t> ttl);

  Dispatcher& dispatcher_;
  DnsSettings settings_;
  std::vector<DnsServer> servers_;
  DnsCache cache_;
  DnsStats stats_;
  std::uint64_t nextWaiterId_ = 1;
  std::unordered_map<std::uint64_t, Waiter> waiters_;
  std::unordered_map<std::string, std::unique_ptr<Query>> inflight_;
  std::deque<std::uint64_t> ready_;  // waiter ids; cancelled ones are skipped
  // Results reach their callbacks from the loop: in its current pass (deliverSoon_), or, after
  // kMaxChainedDeliveries deliveries whose callbacks queued more (cached lookups started from
  // callbacks), on the next iteration after I/O (deliverTimer_), so they cannot starve it.
  DeferredCall deliverSoon_;
  Timer deliverTimer_;
  bool deliverScheduled_ = false;
  bool delivering_ = false;
  unsigned chained_ = 0;
};

}  // namespace portcullis
