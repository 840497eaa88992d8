// StatsRegistry. See stats_registry.h.

#include "proxy/admin/stats_registry.h"

#include <algorithm>

namespace portcullis {

StatsRegistry::Key StatsRegistry::key(std::string_view name,
                                      std::initializer_list<StatLabel> labels) {
  Key k{std::string(name), {}};
  k.second.reserve(labels.size());
  for (const StatLabel& l : labels) k.second.emplace_back(l.name, l.value);
  return k;
}

Counter StatsRegistry::counter(std::string_view name, std::initializer_list<StatLabel> labels) {
  Key k = key(name, labels);
  const std::lock_guard lock(mutex_);
  CounterCell*& cell = counters_[std::move(k)];
  if (cell == nullptr) {
    const std::size_t column = (counters_.size() - 1) % kCountersPerChunk;
    if (column == 0) counterChunks_.push_back(std::make_unique<CounterChunk>());
    cell = &counterChunks_.back()->cells[column];
  }
  return Counter(cell);
}

Histogram StatsRegistry::histogram(std::string_view name, std::initializer_list<StatLabel> labels,
                                   std::span<const std::uint64_t> bounds) {
  Key k = key(name, labels);
  const std::lock_guard lock(mutex_);
  auto& cells = histograms_[std::move(k)];
  if (!cells) {
    std::vector<std::uint64_t> sorted(bounds.begin(), bounds.end());
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    cells = std::make_unique<HistogramCells>(std::move(sorted));
  }
  return Histogram(cells.get());
}

std::vector<StatSample> StatsRegistry::snapshot() const {
  std::vector<StatSample> out;
  const std::lock_guard lock(mutex_);
  out.reserve(counters_.size() + histograms_.size());
  for (const auto& [k, cell] : counters_) {
    StatSample s;
    s.name = k.first;
    s.labels = k.second;
    s.value = counterTotal(cell);
    out.push_back(std::move(s));
  }
  for (const auto& [k, cells] : histograms_) {
    StatSample s;
    s.name = k.first;
    s.labels = k.second;
    s.kind = StatSample::Kind::kHistogram;
    s.bounds = cells->bounds;
    std::uint64_t running = 0;
    for (std::size_t i = 0; i <= cells->bounds.size(); ++i) {
      running += cells->bucket(i);
      s.buckets.push_back(running);
    }
    // The count is the +Inf bucket, so that a renderer's _count and le="+Inf" always agree even
    // while observations land during the snapshot.
    s.value = running;
    s.sum = cells->sum();
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const StatSample& a, const StatSample& b) {
    return std::tie(a.name, a.labels) < std::tie(b.name, b.labels);
  });
  return out;
}

std::optional<std::uint64_t> StatsRegistry::counterValue(
    std::string_view name, std::initializer_list<StatLabel> labels) const {
  const Key k = key(name, labels);
  const std::lock_guard lock(mutex_);
  const auto it = counters_.find(k);
  if (it == counters_.end()) return std::nullopt;
  return counterTotal(it->second);
}

StatsRegistry& processStats() {
  static StatsRegistry registry;
  return registry;
}

}  // namespace portcullis
