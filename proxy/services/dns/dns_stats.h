#pragma once
// DnsStats: monotonically increasing counters kept by DnsResolver and its transport, meant for
// logs and, later, metrics. Plain data, owned by the resolver and read with
// DnsResolver::stats(); nothing here is thread-safe or calls back.

#include <cstdint>

namespace portcullis {

struct DnsStats {
  std::uint64_t lookups = 0;       // lookup() calls
  std::uint64_t cacheHits = 0;     // answered from the cache
  std::uint64_t merged = 0;        // joined an identical query already in flight
  std::uint64_t queries = 0;       // network queries started (one per distinct in-flight name)
  std::uint64_t udpSent = 0;       // datagrams sent (one per attempt)
  std::uint64_t tcpFallbacks = 0;  // truncated UDP answers retried over TCP (RFC 7766)
  std::uint64_t timeouts = 0;      // attempts that timed out
  std::uint64_t mismatches = 0;    // datagrams ignored: wrong id, question or source, unparsable
  std::uint64_t failures = 0;      // attempts that failed otherwise (unreachable, bad answer)
  std::uint64_t abandoned = 0;     // network queries dropped because every caller cancelled
  std::uint64_t rejected = 0;      // lookups refused locally: bad name, no server, too many
};

}  // namespace portcullis
