// Counter and Histogram handles over per-thread cells. See include/portcullis/stats.h and
// stat_cells.h.

#include "proxy/api/stat_cells.h"

namespace portcullis {

namespace {
constinit thread_local std::size_t tShard = kStatShards;  // kStatShards: not given yet
std::atomic<std::size_t> gNextShard{0};
}  // namespace

std::size_t statShard() {
  if (tShard == kStatShards) [[unlikely]] {
    tShard = gNextShard.fetch_add(1, std::memory_order_relaxed) % kStatShards;
  }
  return tShard;
}

void Counter::add(std::uint64_t n) const {
  if (cell_ != nullptr) {
    cell_[statShard() * kCountersPerChunk].count.fetch_add(n, std::memory_order_relaxed);
  }
}

std::uint64_t Counter::value() const { return cell_ != nullptr ? counterTotal(cell_) : 0; }

void Histogram::observe(std::uint64_t value) const {
  if (cells_ != nullptr) cells_->observe(value);
}

}  // namespace portcullis
