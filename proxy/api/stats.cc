// Histogram handles. See include/portcullis/stats.h and stat_cells.h.

#include "proxy/api/stat_cells.h"

namespace portcullis {

void Histogram::observe(std::uint64_t value) const {
  if (cells_ != nullptr) cells_->observe(value);
}

}  // namespace portcullis
