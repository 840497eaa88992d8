// FilterStats. See filter_stats.h.

#include "proxy/admin/filter_stats.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <string>

#include "proxy/admin/stats_registry.h"

namespace portcullis {
namespace {

static_assert(static_cast<std::size_t>(VerdictKind::kDiscard) + 1 == kVerdictKindCount,
              "kVerdictKindCount must follow VerdictKind");

constexpr std::array<std::string_view, 2> kModes = {"enforce", "observe"};

}  // namespace

FilterStats::FilterStats(Stats& stats, std::string_view filter) {
  for (std::size_t s = 0; s < kStageCount; ++s) {
    const std::string_view stage = kStageNames[s];
    for (std::size_t k = 0; k < kVerdictKindCount; ++k) {
      const std::string_view verdict = verdictName(static_cast<VerdictKind>(k));
      for (std::size_t m = 0; m < kModes.size(); ++m) {
        verdicts_[s][k][m] = stats.counter(
            "portcullis_filter_verdicts_total",
            {{"filter", filter}, {"stage", stage}, {"verdict", verdict}, {"mode", kModes[m]}});
      }
    }
    errors_[s] =
        stats.counter("portcullis_filter_errors_total", {{"filter", filter}, {"stage", stage}});
    deferred_[s] =
        stats.counter("portcullis_filter_deferred_total", {{"filter", filter}, {"stage", stage}});
    durations_[s] = stats.histogram("portcullis_filter_duration_microseconds",
                                    {{"filter", filter}, {"stage", stage}}, kDurationBoundsUs);
  }
  for (std::size_t m = 0; m < kModes.size(); ++m) {
    for (std::size_t c = 0; c <= kCountedCodes.size(); ++c) {
      const std::string code =
          c < kCountedCodes.size() ? std::to_string(kCountedCodes[c]) : "other";
      replies_[m][c] = stats.counter("portcullis_filter_replies_total",
                                     {{"filter", filter}, {"code", code}, {"mode", kModes[m]}});
    }
  }
}

void FilterStats::countVerdict(Stage stage, VerdictKind kind, bool observed, int code) const {
  const std::size_t m = observed ? 1 : 0;
  verdicts_[index(stage)][static_cast<std::size_t>(kind)][m].add();
  if (code == 0) return;
  const auto* const it = std::find(kCountedCodes.begin(), kCountedCodes.end(), code);
  replies_[m][static_cast<std::size_t>(it - kCountedCodes.begin())].add();
}

void FilterStats::observeDuration(Stage stage, std::chrono::microseconds d) const {
  durations_[index(stage)].observe(d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count()));
}

std::shared_ptr<const FilterStats> processFilterStats(std::string_view filter) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const FilterStats>, std::less<>> byLabel;
  const std::lock_guard lock(mutex);
  const auto it = byLabel.find(filter);
  if (it != byLabel.end()) return it->second;
  auto stats = std::make_shared<const FilterStats>(processStats(), filter);
  byLabel.emplace(std::string(filter), stats);
  return stats;
}

}  // namespace portcullis
