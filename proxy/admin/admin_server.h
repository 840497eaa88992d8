#pragma once
// The admin endpoint (admin.listen, off by default): libevent's evhttp on the daemon's own event
// loop, GET and HEAD only, small bounded requests, for a scraper and an orchestrator's probes:
//   /metrics  the stats registry and live gauges in the Prometheus text format
//   /healthz  200 while the process runs its loop
//   /readyz   200 when the MTA answered the last probe and the daemon is not draining, else 503
//   /status   a small HTML page: live sessions and refusals per stage over the last hour
// Everything else is 404. It must listen on a trusted address (loopback, a pod's own network):
// it has no authentication, like Postfix's and rspamd's own status endpoints.

#include <event2/event.h>
#include <event2/http.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "proxy/admin/stats_registry.h"
#include "proxy/admin/status_page.h"
#include "proxy/base/net_util.h"

namespace portcullis {

// What the server reports at scrape time (read on the loop).
struct AdminStatus {
  std::size_t sessions = 0;         // open client sessions
  std::size_t pooledUpstreams = 0;  // idle MTA connections kept for reuse
  bool upstreamReady = false;       // the MTA answered the last probe
  bool draining = false;
  std::uint64_t spoolMemoryBytes = 0;  // message bytes spooled in memory now
  std::uint64_t spoolDiskBytes = 0;    // and in spool files
  // The resolver's counters (DnsStats), monotonic.
  std::uint64_t dnsLookups = 0;
  std::uint64_t dnsCacheHits = 0;
  std::uint64_t dnsQueries = 0;
  std::uint64_t dnsTimeouts = 0;
  std::uint64_t dnsFailures = 0;
  std::uint64_t dnsRejected = 0;
};

class AdminServer {
 public:
  AdminServer(event_base* base, const StatsRegistry& stats, std::function<AdminStatus()> status);
  // What /status shows: the live sessions and the refusal ring. Without it /status is 404.
  void setStatusPage(std::function<StatusPageInput()> page) { page_ = std::move(page); }
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds `address`; false with `error` when it cannot.
  [[nodiscard]] bool start(const SocketAddress& address, std::string* error);

 private:
  static void onRequest(evhttp_request* request, void* self);
  static void respond(evhttp_request* request, int code, const char* reason,
                      const std::string& type, const std::string& body);

  const StatsRegistry& stats_;
  std::function<AdminStatus()> status_;
  std::function<StatusPageInput()> page_;
  evhttp* http_ = nullptr;
};

}  // namespace portcullis
