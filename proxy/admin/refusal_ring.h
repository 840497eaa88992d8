#pragma once
// RefusalRing: refusals (negative replies) per stage over the last hour, one slot a minute, for
// the /status page's picture. A slot remembers the minute it counts, so a slot last written an
// hour or more ago reads as zero and is reset on its next write: recording is an index, a
// compare and an increment, with no allocation and no timer. Minutes are counted on a
// monotonic clock (the dispatcher's), so "now" is only ever compared with earlier minutes.
// Thread-safe (one mutex): written by every worker's sessions, read by the admin endpoint.

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>

namespace portcullis {

class RefusalRing {
 public:
  static constexpr std::size_t kSlots = 60;  // minutes
  // The stage of a refusal, by the command it answered.
  static constexpr std::array<std::string_view, 7> kStages = {
      "connect", "helo", "mail", "rcpt", "data", "end_of_data", "other"};
  using Row = std::array<std::uint32_t, kSlots>;
  // [stage][i]: refusals in minute (now - kSlots + 1 + i); the last entry is the current minute.
  using Picture = std::array<Row, kStages.size()>;

  // The kStages index for a reply to `verb` ("CONNECT", "EHLO", "RCPT", "."...).
  static std::size_t stageOf(std::string_view verb);

  void record(std::size_t stage, std::int64_t minute);
  Picture lastHour(std::int64_t nowMinute) const;

 private:
  mutable std::mutex mutex_;
  std::array<std::int64_t, kSlots> minuteOf_{};  // the minute each slot counts
  std::array<bool, kSlots> used_{};
  Picture counts_{};  // [stage][slot]
};

// The daemon's ring (process-wide, like processStats()).
RefusalRing& processRefusals();

}  // namespace portcullis
