// RefusalRing: refusals per stage and minute over the last hour.

#include "proxy/admin/refusal_ring.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>

namespace portcullis {
namespace {

std::uint32_t total(const RefusalRing::Row& row) {
  return std::accumulate(row.begin(), row.end(), std::uint32_t{0});
}

TEST(RefusalRing, StagesByVerb) {
  EXPECT_EQ(RefusalRing::kStages[RefusalRing::stageOf("CONNECT")], "connect");
  EXPECT_EQ(RefusalRing::kStages[RefusalRing::stageOf("EHLO")], "helo");
  EXPECT_EQ(RefusalRing::kStages[RefusalRing::stageOf("HELO")], "helo");
  EXPECT_EQ(RefusalRing::kStages[RefusalRing::stageOf("MAIL")], "mail");
  EXPECT_EQ(RefusalRing::kStages[RefusalRing::stageOf("RCPT")], "rcpt");
  EXPECT_EQ(RefusalRing::kStages[RefusalRing::stageOf("BDAT")], "data");
  EXPECT_EQ(RefusalRing::kStages[RefusalRing::stageOf(".")], "end_of_data");
  EXPECT_EQ(RefusalRing::kStages[RefusalRing::stageOf("XYZZY")], "other");
  EXPECT_EQ(RefusalRing::kStages[RefusalRing::stageOf("TIMEOUT")], "other");
}

TEST(RefusalRing, CountsLandInTheirMinuteNewestLast) {
  RefusalRing ring;
  const std::size_t rcpt = RefusalRing::stageOf("RCPT");
  ring.record(rcpt, 1000);
  ring.record(rcpt, 1000);
  ring.record(rcpt, 1000);
  ring.record(RefusalRing::stageOf("MAIL"), 990);
  const RefusalRing::Picture p = ring.lastHour(1000);
  EXPECT_EQ(p[rcpt].back(), 3U);
  EXPECT_EQ(total(p[rcpt]), 3U);
  EXPECT_EQ(p[RefusalRing::stageOf("MAIL")][RefusalRing::kSlots - 1 - 10], 1U);
  // Five minutes on, the same counts sit five slots further back.
  const RefusalRing::Picture later = ring.lastHour(1005);
  EXPECT_EQ(later[rcpt][RefusalRing::kSlots - 1 - 5], 3U);
  EXPECT_EQ(later[rcpt].back(), 0U);
}

TEST(RefusalRing, AnHourLaterTheSlotIsForgottenAndReused) {
  RefusalRing ring;
  ring.record(0, 100);
  ring.record(0, 100);
  EXPECT_EQ(total(ring.lastHour(159)[0]), 2U);  // 59 minutes ago: still in the picture
  EXPECT_EQ(total(ring.lastHour(160)[0]), 0U);  // an hour ago: gone, though never overwritten
  ring.record(3, 160);  // the same slot, a new minute: the old counts are reset
  const RefusalRing::Picture p = ring.lastHour(160);
  EXPECT_EQ(total(p[0]), 0U);
  EXPECT_EQ(p[3].back(), 1U);
  EXPECT_EQ(total(ring.lastHour(100)[0]), 0U);  // reading an old minute does not resurrect it
}

TEST(RefusalRing, OutOfRangeInputCountsNothing) {
  RefusalRing ring;
  ring.record(RefusalRing::kStages.size(), 5);
  ring.record(0, -1);
  for (const auto& row : ring.lastHour(5)) EXPECT_EQ(total(row), 0U);
  ring.record(1, 200);
  ring.record(1, 140);  // a minute older than the slot's: dropped, not mixed in
  EXPECT_EQ(ring.lastHour(200)[1].back(), 1U);
}

}  // namespace
}  // namespace portcullis
