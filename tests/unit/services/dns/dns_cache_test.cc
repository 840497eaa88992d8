// DnsCache: TTL expiry with an injected clock, LRU eviction, and the TTLs it hands back.

#include "proxy/services/dns/dns_cache.h"

#include <gtest/gtest.h>

namespace portcullis {
namespace {

using std::chrono::seconds;
using Clock = DnsCache::Clock;

DnsResult okResult(std::string value, std::uint32_t ttl = 60) {
  DnsResult r;
  r.status = DnsStatus::kOk;
  r.records.push_back(DnsRecord{DnsType::kA, ttl, std::move(value), 0});
  r.detail = "server=test";
  return r;
}

TEST(DnsCache, KeyIsTypeAndName) {
  EXPECT_EQ(DnsCache::key("a.test", DnsType::kA), "1/a.test");
  EXPECT_EQ(DnsCache::key("a.test", DnsType::kTxt), "16/a.test");
  EXPECT_NE(DnsCache::key("a.test", DnsType::kA), DnsCache::key("a.test", DnsType::kAaaa));
}

TEST(DnsCache, HitUntilExpiryThenMiss) {
  DnsCache cache(10);
  const auto t0 = Clock::now();
  cache.put("k", okResult("127.0.0.2"), seconds(30), t0);
  auto hit = cache.get("k", t0 + seconds(10));
  ASSERT_TRUE(hit);
  EXPECT_TRUE(hit->fromCache);
  EXPECT_EQ(hit->records.at(0).value, "127.0.0.2");
  EXPECT_EQ(hit->records.at(0).ttl, 20u)
      << "remaining TTL: got " << hit->records.at(0).ttl << " want 20";
  EXPECT_EQ(hit->detail, "server=test");
  EXPECT_FALSE(cache.get("k", t0 + seconds(30))) << "an entry must be gone at its expiry";
  EXPECT_EQ(cache.size(), 0u) << "an expired entry is dropped on access";
}

TEST(DnsCache, RecordTtlNeverRaised) {
  DnsCache cache(10);
  const auto t0 = Clock::now();
  cache.put("k", okResult("127.0.0.2", 5), seconds(30), t0);
  auto hit = cache.get("k", t0);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->records.at(0).ttl, 5u);
}

TEST(DnsCache, ZeroTtlOrZeroCapacityStoresNothing) {
  DnsCache cache(10);
  const auto t0 = Clock::now();
  cache.put("k", okResult("x"), seconds(0), t0);
  EXPECT_FALSE(cache.get("k", t0));
  DnsCache off(0);
  off.put("k", okResult("x"), seconds(60), t0);
  EXPECT_FALSE(off.get("k", t0));
}

TEST(DnsCache, EvictsLeastRecentlyUsed) {
  DnsCache cache(2);
  const auto t0 = Clock::now();
  cache.put("a", okResult("1"), seconds(60), t0);
  cache.put("b", okResult("2"), seconds(60), t0);
  ASSERT_TRUE(cache.get("a", t0));  // a is now the most recent
  cache.put("c", okResult("3"), seconds(60), t0);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_TRUE(cache.get("a", t0));
  EXPECT_FALSE(cache.get("b", t0)) << "b was least recently used and must have been evicted";
  EXPECT_TRUE(cache.get("c", t0));
}

TEST(DnsCache, PutReplaces) {
  DnsCache cache(2);
  const auto t0 = Clock::now();
  cache.put("a", okResult("1"), seconds(60), t0);
  cache.put("a", okResult("2"), seconds(5), t0);
  EXPECT_EQ(cache.size(), 1u);
  auto hit = cache.get("a", t0);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->records.at(0).value, "2");
  EXPECT_FALSE(cache.get("a", t0 + seconds(6)));
}

TEST(DnsCache, NegativeResultsAreStoredToo) {
  DnsCache cache(2);
  const auto t0 = Clock::now();
  DnsResult nx;
  nx.status = DnsStatus::kNxDomain;
  cache.put("n", nx, seconds(10), t0);
  auto hit = cache.get("n", t0);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->status, DnsStatus::kNxDomain);
  EXPECT_TRUE(hit->fromCache);
}

}  // namespace
}  // namespace portcullis
