#pragma once
// The storage behind the Counter and Histogram handles (include/portcullis/stats.h), shared by
// the handles' add()/observe() (proxy/api/stats.cc) and the registry that owns it
// (proxy/admin/). Not part of the public API.
//
// Per-thread cells, merged when read: every series has one cell (a histogram one row of cells)
// per shard, and a thread counts in its own shard's, so two workers never write the same cache
// line and a count costs an uncontended atomic add. A thread's shard is given on its first
// count, round robin over kStatShards; past kStatShards threads, shards are shared, which stays
// exact (the adds are atomic) and only costs the contention back. A read sums the shards with
// relaxed loads: a total taken while sessions run is a consistent-enough picture, not an atomic
// one. Histogram buckets are not cumulative here; a snapshot accumulates them.

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "portcullis/stats.h"

namespace portcullis {

inline constexpr std::size_t kStatShards = 16;
inline constexpr std::size_t kCacheLine = 64;

// The calling thread's shard, in [0, kStatShards).
std::size_t statShard();

// One counter's cell in one shard.
class CounterCell {
 public:
  std::atomic<std::uint64_t> count{0};
};

// Counters are allocated kCountersPerChunk at a time: a chunk is kStatShards rows of
// kCountersPerChunk cells, and a counter's cells are one column. A Counter handle points at its
// shard-0 cell; shard s's is kCountersPerChunk * s further on.
inline constexpr std::size_t kCountersPerChunk = 256;

struct alignas(kCacheLine) CounterChunk {
  std::array<CounterCell, kStatShards * kCountersPerChunk> cells;
};

// The sum of a counter's cells over every shard; `first` is its shard-0 cell.
inline std::uint64_t counterTotal(const CounterCell* first) {
  std::uint64_t total = 0;
  for (std::size_t s = 0; s < kStatShards; ++s) {
    total += first[s * kCountersPerChunk].count.load(std::memory_order_relaxed);
  }
  return total;
}

class HistogramCells {
 public:
  explicit HistogramCells(std::vector<std::uint64_t> upperBounds)
      : bounds(std::move(upperBounds)),
        rowLines_((bounds.size() + 2 + kCellsPerLine - 1) / kCellsPerLine),
        lines_(std::make_unique<Line[]>(rowLines_ * kStatShards)) {}

  // Counts `value` in this thread's shard: the first bucket whose bound is >= value, and the sum.
  void observe(std::uint64_t value) {
    const auto it = std::lower_bound(bounds.begin(), bounds.end(), value);
    const std::size_t shard = statShard();
    cell(shard, static_cast<std::size_t>(it - bounds.begin()))
        .fetch_add(1, std::memory_order_relaxed);
    cell(shard, bounds.size() + 1).fetch_add(value, std::memory_order_relaxed);
  }

  // Over every shard: bucket i's count (i == bounds.size() is +Inf), and the sum of the values.
  std::uint64_t bucket(std::size_t i) const { return total(i); }
  std::uint64_t sum() const { return total(bounds.size() + 1); }

  const std::vector<std::uint64_t> bounds;  // ascending upper bounds

 private:
  static constexpr std::size_t kCellsPerLine = kCacheLine / sizeof(std::atomic<std::uint64_t>);
  struct alignas(kCacheLine) Line {
    std::array<std::atomic<std::uint64_t>, kCellsPerLine> cells{};
  };

  // A shard's row: the buckets (bounds.size() + 1, the last +Inf), then the sum, in whole lines.
  std::atomic<std::uint64_t>& cell(std::size_t shard, std::size_t i) const {
    return lines_[shard * rowLines_ + i / kCellsPerLine].cells[i % kCellsPerLine];
  }
  std::uint64_t total(std::size_t i) const {
    std::uint64_t t = 0;
    for (std::size_t s = 0; s < kStatShards; ++s) t += cell(s, i).load(std::memory_order_relaxed);
    return t;
  }

  const std::size_t rowLines_;
  const std::unique_ptr<Line[]> lines_;
};

}  // namespace portcullis
