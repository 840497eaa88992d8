#pragma once
// DnsCache: a bounded LRU of finished lookups keyed by (type, lowercase name), each entry living
// until the expiry the resolver computed from the answer's TTLs. The clock is passed in, so tests
// can move time. Purely a data structure: no events, no callbacks, single-threaded.

#include <chrono>
#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>

#include "portcullis/resolver.h"

namespace portcullis {

class DnsCache {
 public:
  using Clock = std::chrono::steady_clock;

  explicit DnsCache(std::size_t capacity) : capacity_(capacity) {}

  static std::string key(std::string_view normalizedName, DnsType type);

  // Stores result until now + ttl, replacing any entry with that key and evicting the least
  // recently used entry when full. A zero ttl or a zero capacity stores nothing.
  void put(const std::string& key, const DnsResult& result, std::chrono::seconds ttl,
           Clock::time_point now);

  // A copy of the cached result with fromCache set and each record's TTL lowered to the time it
  // has left; nullopt if absent or expired (an expired entry is dropped).
  std::optional<DnsResult> get(const std::string& key, Clock::time_point now);

  std::size_t size() const { return map_.size(); }
  void clear();

 private:
  struct Entry {
    std::string key;
    DnsResult result;
    Clock::time_point expires;
  };
  using List = std::list<Entry>;

  std::size_t capacity_;
  List lru_;  // front: most recently used
  std::unordered_map<std::string, List::iterator> map_;
};

}  // namespace portcullis
