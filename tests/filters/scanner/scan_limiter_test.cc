// Tests for ScanLimiter (filters/scanner/): at most max_active turns, FIFO waiting, a full queue
// refused, a turn always granted through the loop (never inside acquire() or a release), and a
// slot destroyed while waiting leaves the queue.

#include "filters/scanner/scan_limiter.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "proxy/chain/filter_services.h"
#include "tests/support/manual_dispatcher.h"

namespace portcullis {
namespace {

TEST(ScanLimiter, BoundsActiveAndQueuedAndGrantsInOrderThroughTheLoop) {
  ManualDispatcher loop;
  DispatcherTimers timers(loop);
  auto limiter = std::make_shared<ScanLimiter>(2, 2);
  std::string order;
  std::vector<std::unique_ptr<ScanSlot>> slots;
  for (char c : std::string("abcd")) {
    slots.push_back(limiter->acquire(timers, [&order, c] { order += c; }));
    ASSERT_NE(slots.back(), nullptr) << c;
  }
  EXPECT_EQ(order, "");  // never inline
  EXPECT_EQ(limiter->active(), 2u);
  EXPECT_EQ(limiter->queued(), 2u);
  EXPECT_EQ(limiter->acquire(timers, [] {}), nullptr);  // the queue is full
  loop.runUntilIdle();
  EXPECT_EQ(order, "ab");
  slots[0].reset();  // a's turn ends: c is next, through the loop
  EXPECT_EQ(order, "ab");
  loop.runUntilIdle();
  EXPECT_EQ(order, "abc");
  // d leaves the queue while waiting; then b's end wakes nobody.
  slots[3].reset();
  EXPECT_EQ(limiter->queued(), 0u);
  slots[1].reset();
  loop.runUntilIdle();
  EXPECT_EQ(order, "abc");
  EXPECT_EQ(limiter->active(), 1u);
  slots[2].reset();
  EXPECT_EQ(limiter->active(), 0u);
}

TEST(ScanLimiter, ZeroQueueRefusesWhenBusy) {
  ManualDispatcher loop;
  DispatcherTimers timers(loop);
  auto limiter = std::make_shared<ScanLimiter>(1, 0);
  auto first = limiter->acquire(timers, [] {});
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(limiter->acquire(timers, [] {}), nullptr);
  first.reset();
  EXPECT_NE(limiter->acquire(timers, [] {}), nullptr);
}

TEST(ScanLimiter, SlotDestroyedBeforeItsWakeDoesNotRun) {
  ManualDispatcher loop;
  DispatcherTimers timers(loop);
  auto limiter = std::make_shared<ScanLimiter>(1, 1);
  bool ran = false;
  auto slot = limiter->acquire(timers, [&ran] { ran = true; });
  slot.reset();
  loop.runUntilIdle();
  EXPECT_FALSE(ran);
  EXPECT_EQ(limiter->active(), 0u);
}

}  // namespace
}  // namespace portcullis
