// FilterServices: the timers a filter gets through its context fire later from the event loop
// (never inside start()), once, and not at all once their handle is destroyed; install() fills
// every service of a context and keeps its resolver.

#include "proxy/chain/filter_services.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "proxy/admin/stats_registry.h"
#include "tests/support/manual_dispatcher.h"

namespace portcullis {
namespace {

using std::chrono::milliseconds;

class FilterServicesTest : public ::testing::Test {
 protected:
  void SetUp() override { services_.install(d_, context_); }
  // Lets a minute of (manual) time pass: every armed timer fires or has been cancelled.
  void drain() { d_.advance(std::chrono::minutes(1)); }

  ManualDispatcher d_;
  FilterServices services_;
  FilterContext context_;
};

TEST_F(FilterServicesTest, InstallFillsEveryServiceAndKeepsTheResolver) {
  struct NoResolver final : Resolver {
    std::unique_ptr<DnsLookup> lookup(std::string_view, DnsType, Callback) override {
      return nullptr;
    }
  } resolver;
  FilterContext c;
  c.resolver = &resolver;
  services_.install(d_, c);
  EXPECT_EQ(c.resolver, &resolver);
  EXPECT_NE(c.log, nullptr);
  EXPECT_NE(c.timers, nullptr);
  EXPECT_EQ(c.stats, &processStats());
}

TEST_F(FilterServicesTest, ATimerFiresLaterAndOnce) {
  for (const milliseconds delay : {milliseconds(0), milliseconds(5)}) {
    int fired = 0;
    auto handle = context_.timers->start(delay, [&] { ++fired; });
    EXPECT_EQ(fired, 0) << "delay " << delay.count() << "ms: never inline";
    if (delay.count() > 0) {
      d_.advance(delay - milliseconds(1));
      EXPECT_EQ(fired, 0) << "delay " << delay.count() << "ms: fired early";
    }
    drain();
    EXPECT_EQ(fired, 1) << "delay " << delay.count() << "ms";
  }
}

TEST_F(FilterServicesTest, DestroyingTheHandleCancels) {
  int fired = 0;
  auto handle = context_.timers->start(milliseconds(0), [&] { ++fired; });
  handle.reset();
  drain();
  EXPECT_EQ(fired, 0);
}

TEST_F(FilterServicesTest, TheCallbackMayDestroyItsOwnHandle) {
  int fired = 0;
  std::unique_ptr<TimerHandle> handle;
  handle = context_.timers->start(milliseconds(0), [&] {
    ++fired;
    handle.reset();
  });
  drain();
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(handle, nullptr);
}

}  // namespace
}  // namespace portcullis
