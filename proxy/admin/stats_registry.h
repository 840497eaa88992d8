#pragma once
// StatsRegistry: the daemon's Stats (include/portcullis/stats.h). It owns every series: a
// counter is a column of per-thread cells in a CounterChunk, a histogram one HistogramCells
// (proxy/api/stat_cells.h); none is ever freed, so the handles it gives out stay valid as long
// as the registry. Registration takes a mutex and allocates; the handles' add()/observe() take
// neither. snapshot() merges every series' per-thread cells (relaxed loads, so a snapshot taken
// while sessions run is a consistent-enough picture, not an atomic one) into a form a metrics
// endpoint renders as is: name, labels, value. Thread-safe.

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "portcullis/stats.h"
#include "proxy/api/stat_cells.h"

namespace portcullis {

using StatLabels = std::vector<std::pair<std::string, std::string>>;

struct StatSample {
  enum class Kind { kCounter, kHistogram };

  std::string name;
  StatLabels labels;  // in registration order
  Kind kind = Kind::kCounter;
  std::uint64_t value = 0;  // counter: the count; histogram: the number of observations
  // Histogram only: bucket upper bounds and cumulative counts (Prometheus `le`); `buckets` has
  // one more entry than `bounds`, the +Inf bucket, which equals `value`.
  std::vector<std::uint64_t> bounds;
  std::vector<std::uint64_t> buckets;
  std::uint64_t sum = 0;
};

class StatsRegistry final : public Stats {
 public:
  StatsRegistry() = default;
  StatsRegistry(const StatsRegistry&) = delete;
  StatsRegistry& operator=(const StatsRegistry&) = delete;

  Counter counter(std::string_view name, std::initializer_list<StatLabel> labels) override;
  Histogram histogram(std::string_view name, std::initializer_list<StatLabel> labels,
                      std::span<const std::uint64_t> bounds) override;

  // Every series, sorted by name, then labels.
  std::vector<StatSample> snapshot() const;
  // One counter's value; nullopt when no such series was registered (for tests and tools).
  std::optional<std::uint64_t> counterValue(std::string_view name,
                                            std::initializer_list<StatLabel> labels) const;

 private:
  using Key = std::pair<std::string, StatLabels>;
  static Key key(std::string_view name, std::initializer_list<StatLabel> labels);

  mutable std::mutex mutex_;
  std::map<Key, CounterCell*> counters_;
  std::vector<std::unique_ptr<CounterChunk>> counterChunks_;  // the last one has free columns
  std::map<Key, std::unique_ptr<HistogramCells>> histograms_;
};

// The daemon's registry, for the life of the process (what the metrics endpoint will serve).
StatsRegistry& processStats();

}  // namespace portcullis
