// LoopBridge and SessionGate: a caller on another thread gets the loop's answer, inline or
// later; a caller past its deadline gets none and the late answer is dropped; a job whose
// caller already gave up is never run; close() answers every waiting caller; the gate bounds.
// A real libevent loop (made thread-aware) on this thread, callers on their own threads.

#include "proxy/milter/loop_bridge.h"

#include <event2/thread.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <optional>
#include <thread>

#include "proxy/base/event_util.h"

namespace portcullis {
namespace {

using std::chrono::milliseconds;

class LoopBridgeTest : public ::testing::Test {
 public:
  LoopBridgeTest() : base_(event_base_new()), bridge_(base_.get()) {}
  ~LoopBridgeTest() override { bridge_.close(); }
  LoopBridgeTest(const LoopBridgeTest&) = delete;
  LoopBridgeTest& operator=(const LoopBridgeTest&) = delete;

 protected:
  static void SetUpTestSuite() { ASSERT_EQ(evthread_use_pthreads(), 0); }

  // Runs the loop until `done` is ready (a caller thread finished).
  template <typename T>
  T loopUntil(std::future<T>& done) {
    while (done.wait_for(milliseconds(0)) != std::future_status::ready) {
      event_base_loop(base_.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
      std::this_thread::sleep_for(milliseconds(1));
    }
    return done.get();
  }

  std::future<std::optional<MilterAction>> callFromThread(LoopBridge::Job job,
                                                          milliseconds deadline) {
    return std::async(std::launch::async, [this, job = std::move(job), deadline]() mutable {
      return bridge_.call(std::move(job), deadline);
    });
  }

  EventBasePtr base_;
  LoopBridge bridge_;
};

MilterAction rejectAction() {
  MilterAction a;
  a.status = MilterAction::Status::kReject;
  a.reply = Reply::permanent(554, "5.7.1", "listed");
  return a;
}

TEST_F(LoopBridgeTest, InlineCompletionReachesTheCaller) {
  auto done =
      callFromThread([](LoopBridge::Completion c) { c(rejectAction()); }, milliseconds(10'000));
  const auto got = loopUntil(done);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status, MilterAction::Status::kReject);
  EXPECT_EQ(got->reply->code(), 554);
}

TEST_F(LoopBridgeTest, DeferredCompletionFromTheLoopReachesTheCaller) {
  std::optional<LoopBridge::Completion> held;
  auto done = callFromThread([&](LoopBridge::Completion c) { held.emplace(std::move(c)); },
                             milliseconds(10'000));
  while (!held) event_base_loop(base_.get(), EVLOOP_ONCE);
  (*held)(MilterAction::proceed());  // later, from the loop, as a DNS answer would
  const auto got = loopUntil(done);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status, MilterAction::Status::kContinue);
}

TEST_F(LoopBridgeTest, DeadlineGivesNoAnswerAndTheLateCompletionIsDropped) {
  std::optional<LoopBridge::Completion> held;
  auto done = callFromThread([&](LoopBridge::Completion c) { held.emplace(std::move(c)); },
                             milliseconds(50));
  const auto got = loopUntil(done);
  EXPECT_FALSE(got.has_value());
  ASSERT_TRUE(held.has_value());  // the job ran and still holds its completion
  EXPECT_TRUE(held->abandoned());
  (*held)(rejectAction());  // the chain answers after the caller left: dropped, no crash
  held.reset();
}

TEST_F(LoopBridgeTest, AJobWhoseCallerGaveUpIsNotRun) {
  std::atomic<int> ran{0};
  // The loop does not run while the caller waits: its deadline passes first.
  auto got = bridge_.call(
      [&](LoopBridge::Completion c) {
        ++ran;
        c(MilterAction::proceed());
      },
      milliseconds(20));
  EXPECT_FALSE(got.has_value());
  event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  EXPECT_EQ(ran.load(), 0);
}

TEST_F(LoopBridgeTest, ACompletionDroppedUncalledAnswersNothingAtOnce) {
  auto done = callFromThread([](LoopBridge::Completion) {}, milliseconds(60'000));
  EXPECT_FALSE(loopUntil(done).has_value());  // not after 60 s: when the job dropped it
}

TEST_F(LoopBridgeTest, CloseAnswersQueuedCallersAndRefusesNewOnes) {
  std::atomic<int> ran{0};
  auto waiting = callFromThread([&](LoopBridge::Completion) { ++ran; }, milliseconds(60'000));
  // Wait until the call is queued (the loop is not running, so it stays queued).
  std::this_thread::sleep_for(milliseconds(50));
  bridge_.close();
  EXPECT_FALSE(waiting.get().has_value());
  EXPECT_EQ(ran.load(), 0);
  EXPECT_FALSE(bridge_.call([&](LoopBridge::Completion) { ++ran; }, milliseconds(60'000)));
  bridge_.post([&] { ++ran; });
  EXPECT_EQ(ran.load(), 0);
}

TEST_F(LoopBridgeTest, ManyCallersEachGetTheirOwnAnswer) {
  std::vector<std::future<std::optional<MilterAction>>> calls;
  calls.reserve(16);
  for (int i = 0; i < 16; ++i) {
    calls.push_back(callFromThread(
        [i](LoopBridge::Completion c) {
          MilterAction a;
          a.headerOps.push_back({MilterHeaderOp::Kind::kAdd, "X-N", std::to_string(i), 0});
          c(std::move(a));
        },
        milliseconds(10'000)));
  }
  for (int i = 0; i < 16; ++i) {
    const auto got = loopUntil(calls[static_cast<std::size_t>(i)]);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->headerOps.at(0).value, std::to_string(i));
  }
}

TEST(SessionGateTest, BoundsTheSessionsAtOnce) {
  SessionGate gate(2);
  EXPECT_TRUE(gate.enter());
  EXPECT_TRUE(gate.enter());
  EXPECT_FALSE(gate.enter());  // over the bound: the session is tempfailed
  gate.leave();
  EXPECT_TRUE(gate.enter());
  EXPECT_EQ(gate.active(), 2U);
}

}  // namespace
}  // namespace portcullis
