#pragma once
// The storage behind a Histogram handle (include/portcullis/stats.h), shared by the handle's
// observe() (here, in the API library) and the registry that owns it (proxy/admin/). Not part
// of the public API. Buckets are not cumulative here; a snapshot accumulates them.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "portcullis/stats.h"

namespace portcullis {

class HistogramCells {
 public:
  explicit HistogramCells(std::vector<std::uint64_t> upperBounds)
      : bounds(std::move(upperBounds)), buckets(bounds.size() + 1) {}

  void observe(std::uint64_t value) {
    const auto it = std::lower_bound(bounds.begin(), bounds.end(), value);
    buckets[static_cast<std::size_t>(it - bounds.begin())].fetch_add(1, std::memory_order_relaxed);
    sum.fetch_add(value, std::memory_order_relaxed);
  }

  const std::vector<std::uint64_t> bounds;          // ascending upper bounds
  std::vector<std::atomic<std::uint64_t>> buckets;  // bounds.size() + 1 (the last is +Inf)
  std::atomic<std::uint64_t> sum{0};                // the count is the sum of the buckets
};

}  // namespace portcullis
