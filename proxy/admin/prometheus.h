#pragma once
// The Prometheus text exposition format (version 0.0.4) of a stats snapshot plus a few gauges
// the caller reads at scrape time. One # TYPE line per metric family, families in name order;
// label values escaped (\\, \", \n); histograms as _bucket{le=...} (cumulative, +Inf last),
// _sum and _count. Pure: no I/O.

#include <string>
#include <vector>

#include "proxy/admin/stats_registry.h"

namespace portcullis {

// A value read at scrape time: a gauge, or a counter kept elsewhere (the resolver's).
struct GaugeSample {
  std::string name;  // e.g. "portcullis_sessions_active"
  std::string help;
  StatLabels labels;
  double value = 0;
  bool counter = false;  // TYPE counter (the name ends in _total)
};

std::string renderPrometheus(const std::vector<StatSample>& samples,
                             const std::vector<GaugeSample>& gauges);

}  // namespace portcullis
