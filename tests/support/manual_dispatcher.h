#pragma once
// ManualDispatcher: a Dispatcher whose clock only moves when the test says so. Posted work and
// DeferredCalls run on a private event_base (no sockets, so a loop pass never blocks); timers
// are kept here, on virtual time: advance(d) fires every timer due within d, in order, running
// what each one posts before the next. Unit tests run timeouts of minutes in microseconds and
// never sleep.

#include <event2/event.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "proxy/base/dispatcher.h"
#include "proxy/base/event_util.h"

namespace portcullis {

namespace detail {
struct OwnedBase {
  EventBasePtr owned{event_base_new()};
};
}  // namespace detail

class ManualDispatcher final : private detail::OwnedBase, public Dispatcher {
 public:
  ManualDispatcher() : Dispatcher(owned.get()) {}
  ~ManualDispatcher() override { timers_.clear(); }

  event_base* base() override { return owned.get(); }
  Clock::time_point now() const override { return now_; }

  // Runs everything that is ready now: posted work, deferred calls, timers due at now().
  void runUntilIdle() {
    for (int rounds = 0; rounds < 10'000; ++rounds) {
      event_base_loop(owned.get(), EVLOOP_NONBLOCK);
      Timer* due = nextDue(now_);
      if (due != nullptr) {
        fire(due);
        continue;
      }
      if (event_base_get_num_events(owned.get(), EVENT_BASE_COUNT_ACTIVE) == 0) return;
    }
  }

  // Moves the clock forward by `d`, firing each timer when its time comes.
  void advance(std::chrono::milliseconds d) {
    const Clock::time_point target = now_ + d;
    runUntilIdle();
    while (Timer* due = nextDue(target)) {
      now_ = std::max(now_, due->due_);
      fire(due);
      runUntilIdle();
    }
    now_ = target;
    runUntilIdle();
  }

  // Moves the clock to the earliest armed timer and fires it (and what it causes); false when
  // no timer is armed.
  bool advanceToNextTimer() {
    runUntilIdle();
    Timer* due = nextDue(Clock::time_point::max());
    if (due == nullptr) return false;
    now_ = std::max(now_, due->due_);
    fire(due);
    runUntilIdle();
    return true;
  }

  std::size_t armedTimers() const { return timers_.size(); }

 private:
  Timer* nextDue(Clock::time_point limit) const {
    Timer* best = nullptr;
    for (Timer* t : timers_) {
      if (t->due_ > limit) continue;
      if (best == nullptr || t->due_ < best->due_ ||
          (t->due_ == best->due_ && t->sequence_ < best->sequence_)) {
        best = t;
      }
    }
    return best;
  }
  void fire(Timer* t) {
    timers_.erase(t);
    t->manualArmed_ = false;
    t->fire();
  }

  void timerStart(Timer& t, std::chrono::milliseconds delay) override {
    t.manualArmed_ = true;
    t.due_ = now_ + delay;
    t.sequence_ = ++sequence_;
    timers_.insert(&t);
  }
  void timerStop(Timer& t) override {
    t.manualArmed_ = false;
    timers_.erase(&t);
  }
  bool timerArmed(const Timer& t) const override { return t.manualArmed_; }
  void timerGone(Timer& t) override { timers_.erase(&t); }

  Clock::time_point now_ = Clock::time_point{} + std::chrono::hours(1);
  std::set<Timer*> timers_;
  std::uint64_t sequence_ = 0;
};

}  // namespace portcullis
