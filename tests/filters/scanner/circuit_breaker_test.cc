// Tests for CircuitBreaker (filters/scanner/): opening after N failures inside the window (and
// not when they are spread out), skipping while open, half-open after open_for, closing on a
// success and reopening on a failure; failures: 0 never opens.

#include "filters/scanner/circuit_breaker.h"

#include <gtest/gtest.h>

namespace portcullis {
namespace {

using std::chrono::milliseconds;
using Change = CircuitBreaker::Change;
using State = CircuitBreaker::State;

const CircuitBreaker::Clock::time_point t0{};

TEST(CircuitBreaker, OpensAfterFailuresInTheWindowAndClosesOnSuccess) {
  CircuitBreaker b({3, milliseconds(1000), milliseconds(5000)});
  EXPECT_TRUE(b.allow(t0));
  EXPECT_EQ(b.recordFailure(t0), Change::kNone);
  EXPECT_EQ(b.recordFailure(t0 + milliseconds(100)), Change::kNone);
  EXPECT_EQ(b.recordFailure(t0 + milliseconds(200)), Change::kOpened);
  EXPECT_EQ(b.state(), State::kOpen);
  EXPECT_FALSE(b.allow(t0 + milliseconds(300)));
  EXPECT_FALSE(b.allow(t0 + milliseconds(5199)));
  // A scan that started before it opened and fails now changes nothing.
  EXPECT_EQ(b.recordFailure(t0 + milliseconds(400)), Change::kNone);
  EXPECT_TRUE(b.allow(t0 + milliseconds(5200)));  // half-open
  EXPECT_EQ(b.state(), State::kHalfOpen);
  EXPECT_EQ(b.recordSuccess(), Change::kClosed);
  EXPECT_EQ(b.state(), State::kClosed);
  EXPECT_EQ(b.recordSuccess(), Change::kNone);
}

TEST(CircuitBreaker, HalfOpenFailureReopens) {
  CircuitBreaker b({1, milliseconds(1000), milliseconds(100)});
  EXPECT_EQ(b.recordFailure(t0), Change::kOpened);
  EXPECT_TRUE(b.allow(t0 + milliseconds(100)));
  EXPECT_EQ(b.recordFailure(t0 + milliseconds(150)), Change::kOpened);
  EXPECT_FALSE(b.allow(t0 + milliseconds(200)));
  EXPECT_TRUE(b.allow(t0 + milliseconds(250)));
}

TEST(CircuitBreaker, FailuresSpreadBeyondTheWindowDoNotOpen) {
  CircuitBreaker b({3, milliseconds(1000), milliseconds(5000)});
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(b.recordFailure(t0 + milliseconds(600 * i)), Change::kNone) << i;
  }
  EXPECT_TRUE(b.allow(t0 + milliseconds(6000)));
}

TEST(CircuitBreaker, SuccessResetsTheCount) {
  CircuitBreaker b({2, milliseconds(1000), milliseconds(5000)});
  EXPECT_EQ(b.recordFailure(t0), Change::kNone);
  EXPECT_EQ(b.recordSuccess(), Change::kNone);
  EXPECT_EQ(b.recordFailure(t0 + milliseconds(1)), Change::kNone);
  EXPECT_EQ(b.recordFailure(t0 + milliseconds(2)), Change::kOpened);
}

TEST(CircuitBreaker, ZeroFailuresNeverOpens) {
  CircuitBreaker b({0, milliseconds(1000), milliseconds(5000)});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b.recordFailure(t0), Change::kNone);
  EXPECT_TRUE(b.allow(t0));
}

TEST(CircuitBreaker, AProbeableScannerIsProbedOnceThenClosedOrKeptOpen) {
  using Admission = CircuitBreaker::Admission;
  CircuitBreaker b({1, milliseconds(1000), milliseconds(100)});
  EXPECT_EQ(b.admit(t0, true), Admission::kScan);
  EXPECT_EQ(b.recordFailure(t0), Change::kOpened);
  EXPECT_EQ(b.admit(t0 + milliseconds(99), true), Admission::kSkip);
  EXPECT_EQ(b.admit(t0 + milliseconds(100), true), Admission::kProbe);
  // One probe at a time: the others are still skipped.
  EXPECT_EQ(b.admit(t0 + milliseconds(101), true), Admission::kSkip);
  EXPECT_EQ(b.state(), State::kProbing);
  // A scan that started before the probe changes nothing.
  EXPECT_EQ(b.recordFailure(t0 + milliseconds(102)), Change::kNone);
  // Failed: open for another openFor, and no second "opened".
  EXPECT_EQ(b.probeResult(false, t0 + milliseconds(150)), Change::kNone);
  EXPECT_EQ(b.admit(t0 + milliseconds(249), true), Admission::kSkip);
  EXPECT_EQ(b.admit(t0 + milliseconds(250), true), Admission::kProbe);
  // Abandoned: the next caller probes at once.
  b.probeAbandoned();
  EXPECT_EQ(b.state(), State::kOpen);
  EXPECT_EQ(b.admit(t0 + milliseconds(251), true), Admission::kProbe);
  EXPECT_EQ(b.probeResult(true, t0 + milliseconds(260)), Change::kClosed);
  EXPECT_EQ(b.admit(t0 + milliseconds(261), true), Admission::kScan);
  // A stale probe result after it closed changes nothing.
  EXPECT_EQ(b.probeResult(false, t0 + milliseconds(270)), Change::kNone);
  EXPECT_EQ(b.state(), State::kClosed);
}

TEST(CircuitBreaker, WithoutAProbeTheFirstMessageIsTheProbe) {
  using Admission = CircuitBreaker::Admission;
  CircuitBreaker b({1, milliseconds(1000), milliseconds(100)});
  EXPECT_EQ(b.recordFailure(t0), Change::kOpened);
  EXPECT_EQ(b.admit(t0 + milliseconds(50), false), Admission::kSkip);
  EXPECT_EQ(b.admit(t0 + milliseconds(100), false), Admission::kScan);
  EXPECT_EQ(b.state(), State::kHalfOpen);
}

}  // namespace
}  // namespace portcullis
