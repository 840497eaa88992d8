#pragma once
// FilterStats: the series the chain counts for one filter (by its label, "dnsbl" or "dnsbl#2"),
// registered all at once when the filter's spec is built at config load, so that counting a
// verdict is an array index and a relaxed atomic add. Families (Prometheus names):
//   portcullis_filter_verdicts_total{filter,stage,verdict,mode}   every non-continue verdict;
//       mode="observe" is what an observe-mode filter would have done
//   portcullis_filter_replies_total{filter,code,mode}             the reply code of those
//       verdicts as the stage would send it; a code outside kCountedCodes counts as "other"
//   portcullis_filter_errors_total{filter,stage}                  failures and timeouts
//   portcullis_filter_deferred_total{filter,stage}                verdicts held by defer_to
//   portcullis_filter_duration_microseconds{filter,stage}         hook call to completion
// Immutable after construction; shared by every session of a config (thread-safe).

#include <array>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string_view>

#include "portcullis/stage.h"
#include "portcullis/stats.h"
#include "portcullis/verdict.h"

namespace portcullis {

inline constexpr std::size_t kVerdictKindCount = 6;  // VerdictKind::kContinue .. kDiscard

// The negative codes some stage allows (DESIGN stage table); the chain's normalised replies are
// always one of them, so "other" stays at zero unless that table grows.
inline constexpr std::array<int, 12> kCountedCodes = {421, 450, 451, 452, 455, 504,
                                                      550, 551, 552, 553, 554, 555};

// Upper bounds of the duration buckets, in microseconds (1 ms .. 30 s: DNS answers to the
// default filter timeout).
inline constexpr std::array<std::uint64_t, 12> kDurationBoundsUs = {
    1'000,   5'000,   10'000,    25'000,    50'000,     100'000,
    250'000, 500'000, 1'000'000, 2'500'000, 10'000'000, 30'000'000};

class FilterStats {
 public:
  FilterStats(Stats& stats, std::string_view filter);

  // A non-continue verdict at `stage`; `observed`: observe mode (logged only); `code`: the reply
  // code as the stage would send it, 0 when the verdict has no reply (accept, discard).
  void countVerdict(Stage stage, VerdictKind kind, bool observed, int code) const;
  void countError(Stage stage) const { errors_[index(stage)].add(); }
  void countDeferred(Stage stage) const { deferred_[index(stage)].add(); }
  void observeDuration(Stage stage, std::chrono::microseconds d) const;

 private:
  static std::size_t index(Stage s) { return static_cast<std::size_t>(s); }

  // [stage][kind][observed]
  std::array<std::array<std::array<Counter, 2>, kVerdictKindCount>, kStageCount> verdicts_;
  // [observed][code index; the last is "other"]
  std::array<std::array<Counter, kCountedCodes.size() + 1>, 2> replies_;
  std::array<Counter, kStageCount> errors_;
  std::array<Counter, kStageCount> deferred_;
  std::array<Histogram, kStageCount> durations_;
};

// The FilterStats of `filter` in processStats(), made on first use and shared by every config
// load after it (a reload, --check-config), so that loading a config registers nothing twice.
std::shared_ptr<const FilterStats> processFilterStats(std::string_view filter);

}  // namespace portcullis
