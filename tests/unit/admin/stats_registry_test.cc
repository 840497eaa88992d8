// StatsRegistry: get-or-create series, handles that count without the registry's lock, the
// snapshot a metrics endpoint renders (sorted; histograms cumulative with +Inf), and
// default-constructed handles that count nothing. FilterStats: every series of a filter is
// registered up front, and a verdict lands in exactly the counters its dimensions name.

#include "proxy/admin/stats_registry.h"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <thread>
#include <vector>

#include "proxy/admin/filter_stats.h"

namespace portcullis {
namespace {

std::string show(const StatSample& s) {
  std::string out = s.name + "{";
  for (std::size_t i = 0; i < s.labels.size(); ++i) {
    out += (i ? "," : "") + s.labels[i].first + "=" + s.labels[i].second;
  }
  out += "} " + std::to_string(s.value);
  if (s.kind == StatSample::Kind::kHistogram) {
    out += " buckets=";
    for (std::size_t i = 0; i < s.buckets.size(); ++i) {
      out += (i ? "," : "") +
             (i < s.bounds.size() ? std::to_string(s.bounds[i]) : std::string("+Inf")) + ":" +
             std::to_string(s.buckets[i]);
    }
    out += " sum=" + std::to_string(s.sum);
  }
  return out;
}

std::vector<std::string> shown(const StatsRegistry& r) {
  std::vector<std::string> out;
  for (const StatSample& s : r.snapshot()) out.push_back(show(s));
  return out;
}

TEST(StatsRegistryTest, SameNameAndLabelsGiveTheSameSeries) {
  StatsRegistry r;
  const Counter a = r.counter("x_total", {{"zone", "a"}});
  const Counter a2 = r.counter("x_total", {{"zone", "a"}});
  const Counter b = r.counter("x_total", {{"zone", "b"}});
  a.add();
  a2.add(2);
  b.add();
  EXPECT_EQ(a.value(), 3u);
  EXPECT_EQ(r.counterValue("x_total", {{"zone", "a"}}), 3u);
  EXPECT_EQ(r.counterValue("x_total", {{"zone", "b"}}), 1u);
  EXPECT_EQ(r.counterValue("x_total", {{"zone", "c"}}), std::nullopt) << "never registered";
  EXPECT_EQ(r.counterValue("y_total", {}), std::nullopt);
}

TEST(StatsRegistryTest, SnapshotIsSortedWithNamesLabelsAndValues) {
  StatsRegistry r;
  r.counter("b_total", {}).add(5);
  r.counter("a_total", {{"k", "2"}}).add(1);
  r.counter("a_total", {{"k", "1"}});
  const std::array<std::uint64_t, 3> bounds = {10, 100, 1000};
  const Histogram h = r.histogram("c_us", {{"stage", "rcpt"}}, bounds);
  for (const std::uint64_t v : {1, 10, 11, 500, 5000}) h.observe(v);
  const std::vector<std::string> want = {
      "a_total{k=1} 0",
      "a_total{k=2} 1",
      "b_total{} 5",
      "c_us{stage=rcpt} 5 buckets=10:2,100:3,1000:4,+Inf:5 sum=5522",
  };
  EXPECT_EQ(shown(r), want);
}

TEST(StatsRegistryTest, HistogramBoundsAreFixedByTheFirstRegistration) {
  StatsRegistry r;
  const std::array<std::uint64_t, 3> unsorted = {100, 10, 100};
  r.histogram("h", {}, unsorted).observe(50);
  const std::array<std::uint64_t, 1> other = {7};
  r.histogram("h", {}, other).observe(5);  // the same series: bounds 10, 100
  EXPECT_EQ(shown(r), std::vector<std::string>{"h{} 2 buckets=10:1,100:2,+Inf:2 sum=55"});
}

TEST(StatsRegistryTest, DefaultHandlesCountNothing) {
  const Counter c;
  c.add(3);
  EXPECT_EQ(c.value(), 0u);
  const Histogram h;
  h.observe(3);  // must not crash
}

TEST(StatsRegistryTest, ConcurrentIncrementsAreAllCounted) {
  StatsRegistry r;
  const Counter c = r.counter("n_total", {});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100'000;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) c.add();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(r.counterValue("n_total", {}), std::uint64_t{kThreads} * kPerThread);
}

TEST(StatsRegistryTest, MoreThreadsThanShardsAreAllCountedInCountersAndHistograms) {
  // Past kStatShards threads, shards are shared: every count must still land, in the counter,
  // the histogram's buckets and its sum.
  StatsRegistry r;
  const Counter c = r.counter("n_total", {});
  const std::array<std::uint64_t, 2> bounds = {10, 100};
  const Histogram h = r.histogram("h_us", {}, bounds);
  constexpr int kThreads = static_cast<int>(kStatShards) + 4;
  constexpr int kPerThread = 20'000;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        c.add(2);
        h.observe(i % 2 == 0 ? 5 : 50);
      }
    });
  }
  for (auto& t : threads) t.join();
  constexpr std::uint64_t kTotal = std::uint64_t{kThreads} * kPerThread;
  EXPECT_EQ(c.value(), 2 * kTotal);
  EXPECT_EQ(r.counterValue("n_total", {}), 2 * kTotal);
  const std::vector<std::string> want = {
      "h_us{} " + std::to_string(kTotal) + " buckets=10:" + std::to_string(kTotal / 2) +
          ",100:" + std::to_string(kTotal) + ",+Inf:" + std::to_string(kTotal) +
          " sum=" + std::to_string(kTotal / 2 * 55),
      "n_total{} " + std::to_string(2 * kTotal),
  };
  EXPECT_EQ(shown(r), want);
}

TEST(StatsRegistryTest, TwoThreadsCountInCellsOfTheirOwn) {
  // What keeps two workers off each other's cache lines: each new thread gets the next shard.
  std::size_t first = kStatShards;
  std::size_t second = kStatShards;
  std::thread([&] { first = statShard(); }).join();
  std::thread([&] { second = statShard(); }).join();
  EXPECT_LT(first, kStatShards);
  EXPECT_LT(second, kStatShards);
  EXPECT_EQ(second, (first + 1) % kStatShards);
  std::thread([&] { EXPECT_EQ(statShard(), statShard()) << "a thread keeps its shard"; }).join();
}

TEST(StatsRegistryTest, CountersPastOneChunkKeepTheirOwnCells) {
  // A chunk holds kCountersPerChunk counters; the next one starts a new chunk, and the handles
  // given out before stay valid.
  StatsRegistry r;
  std::vector<Counter> counters;
  for (std::size_t i = 0; i < kCountersPerChunk + 3; ++i) {
    counters.push_back(r.counter("c_total", {{"i", std::to_string(i)}}));
  }
  for (std::size_t i = 0; i < counters.size(); ++i) counters[i].add(i + 1);
  for (std::size_t i = 0; i < counters.size(); ++i) {
    EXPECT_EQ(counters[i].value(), i + 1) << i;
    EXPECT_EQ(r.counterValue("c_total", {{"i", std::to_string(i)}}), i + 1) << i;
  }
}

TEST(FilterStatsTest, EverySeriesIsRegisteredUpFront) {
  StatsRegistry r;
  const FilterStats f(r, "dnsbl");
  std::size_t verdicts = 0;
  std::size_t replies = 0;
  std::size_t errors = 0;
  std::size_t deferred = 0;
  std::size_t durations = 0;
  for (const StatSample& s : r.snapshot()) {
    EXPECT_EQ(s.labels.at(0), (std::pair<std::string, std::string>{"filter", "dnsbl"}));
    EXPECT_EQ(s.value, 0u) << show(s);
    verdicts += s.name == "portcullis_filter_verdicts_total";
    replies += s.name == "portcullis_filter_replies_total";
    errors += s.name == "portcullis_filter_errors_total";
    deferred += s.name == "portcullis_filter_deferred_total";
    durations += s.name == "portcullis_filter_duration_microseconds";
  }
  EXPECT_EQ(verdicts, kStageCount * kVerdictKindCount * 2);
  EXPECT_EQ(replies, (kCountedCodes.size() + 1) * 2);
  EXPECT_EQ(errors, kStageCount);
  EXPECT_EQ(deferred, kStageCount);
  EXPECT_EQ(durations, kStageCount);
}

TEST(FilterStatsTest, AVerdictLandsInTheCountersItNames) {
  struct Case {
    Stage stage;
    VerdictKind kind;
    bool observed;
    int code;
    std::vector<std::string> want;  // the non-zero counters afterwards
  };
  const std::vector<Case> cases = {
      {Stage::kRcptTo,
       VerdictKind::kReject,
       false,
       550,
       {"portcullis_filter_replies_total{filter=f,code=550,mode=enforce} 1",
        "portcullis_filter_verdicts_total{filter=f,stage=rcpt,verdict=reject,mode=enforce} 1"}},
      {Stage::kConnect,
       VerdictKind::kTempfail,
       true,
       421,
       {"portcullis_filter_replies_total{filter=f,code=421,mode=observe} 1",
        "portcullis_filter_verdicts_total{filter=f,stage=connect,verdict=tempfail,mode=observe} "
        "1"}},
      {Stage::kHelo,
       VerdictKind::kReject,
       false,
       599,
       {"portcullis_filter_replies_total{filter=f,code=other,mode=enforce} 1",
        "portcullis_filter_verdicts_total{filter=f,stage=helo,verdict=reject,mode=enforce} 1"}},
      {Stage::kEndOfMessage,
       VerdictKind::kDiscard,
       false,
       0,
       {"portcullis_filter_verdicts_total{filter=f,stage=end_of_message,verdict=discard,"
        "mode=enforce} 1"}},
  };
  for (const Case& c : cases) {
    StatsRegistry r;
    const FilterStats f(r, "f");
    f.countVerdict(c.stage, c.kind, c.observed, c.code);
    std::vector<std::string> got;
    for (const StatSample& s : r.snapshot()) {
      if (s.value != 0) got.push_back(show(s));
    }
    EXPECT_EQ(got, c.want) << "stage " << stageName(c.stage) << " code " << c.code;
  }
}

TEST(FilterStatsTest, TheProcessFilterStatsAreSharedByLabel) {
  const auto a = processFilterStats("stats-test-a");
  EXPECT_EQ(a, processFilterStats("stats-test-a")) << "a second config load reuses the handles";
  EXPECT_NE(a, processFilterStats("stats-test-b"));
  a->countError(Stage::kHelo);
  EXPECT_EQ(processStats().counterValue("portcullis_filter_errors_total",
                                        {{"filter", "stats-test-a"}, {"stage", "helo"}}),
            1u);
}

}  // namespace
}  // namespace portcullis
