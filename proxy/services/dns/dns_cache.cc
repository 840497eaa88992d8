// DnsCache: see dns_cache.h.

#include "proxy/services/dns/dns_cache.h"

#include <algorithm>

namespace portcullis {

std::string DnsCache::key(std::string_view normalizedName, DnsType type) {
  std::string k = std::to_string(static_cast<unsigned>(type));
  k.push_back('/');
  k.append(normalizedName);
  return k;
}

void DnsCache::put(const std::string& key, const DnsResult& result, std::chrono::seconds ttl,
                   Clock::time_point now) {
  if (capacity_ == 0 || ttl.count() <= 0) {
    return;
  }
  if (auto it = map_.find(key); it != map_.end()) {
    lru_.erase(it->second);
    map_.erase(it);
  }
  while (map_.size() >= capacity_ && !lru_.empty()) {
    map_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{key, result, now + ttl});
  lru_.front().result.fromCache = false;
  map_.emplace(key, lru_.begin());
}

std::optional<DnsResult> DnsCache::get(const std::string& key, Clock::time_point now) {
  auto it = map_.find(key);
  if (it == map_.end()) {
    return std::nullopt;
  }
  if (it->second->expires <= now) {
    lru_.erase(it->second);
    map_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  DnsResult copy = it->second->result;
  copy.fromCache = true;
  // Round up so a record never claims less than zero seconds while it is still served.
  const auto left = std::chrono::ceil<std::chrono::seconds>(it->second->expires - now).count();
  for (auto& rec : copy.records) {
    rec.ttl = std::min<std::uint32_t>(rec.ttl, static_cast<std::uint32_t>(left));
  }
  return copy;
}

void DnsCache::clear() {
  map_.clear();
  lru_.clear();
}

}  // namespace portcullis
