// RefusalRing. See refusal_ring.h.

#include "proxy/admin/refusal_ring.h"

namespace portcullis {

std::size_t RefusalRing::stageOf(std::string_view verb) {
  if (verb == "CONNECT") return 0;
  if (verb == "HELO" || verb == "EHLO") return 1;
  if (verb == "MAIL") return 2;
  if (verb == "RCPT") return 3;
  if (verb == "DATA" || verb == "BDAT") return 4;
  if (verb == ".") return 5;
  return kStages.size() - 1;
}

void RefusalRing::record(std::size_t stage, std::int64_t minute) {
  if (stage >= kStages.size() || minute < 0) return;
  const std::lock_guard lock(mutex_);
  const auto slot = static_cast<std::size_t>(minute % static_cast<std::int64_t>(kSlots));
  if (!used_[slot] || minuteOf_[slot] != minute) {
    if (used_[slot] && minuteOf_[slot] > minute) return;  // older than the slot's minute
    for (Row& row : counts_) row[slot] = 0;
    minuteOf_[slot] = minute;
    used_[slot] = true;
  }
  ++counts_[stage][slot];
}

RefusalRing::Picture RefusalRing::lastHour(std::int64_t nowMinute) const {
  Picture out{};
  const std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < kSlots; ++i) {
    const std::int64_t minute = nowMinute - static_cast<std::int64_t>(kSlots - 1 - i);
    if (minute < 0) continue;
    const auto slot = static_cast<std::size_t>(minute % static_cast<std::int64_t>(kSlots));
    if (!used_[slot] || minuteOf_[slot] != minute) continue;
    for (std::size_t s = 0; s < kStages.size(); ++s) out[s][i] = counts_[s][slot];
  }
  return out;
}

RefusalRing& processRefusals() {
  static RefusalRing ring;
  return ring;
}

}  // namespace portcullis
