#pragma once
// CircuitBreaker: stops a scanner that keeps failing from costing every message its timeout.
// After `failures` failures within `window` it opens: scans are skipped (a failure under the
// filter's on_error, without trying) for `openFor`. Then it lets scans through again
// (half-open): the first success closes it, the first failure opens it for another `openFor`.
// The caller passes the time in, so tests need no clock; it logs nothing itself but says when
// it opened or closed so the caller writes one line for each. One event loop only (not
// thread-safe), shared by every session of one configured filter.

#include <chrono>
#include <cstddef>
#include <deque>

namespace portcullis {

struct CircuitBreakerConfig {
  std::size_t failures = 5;  // 0: never opens
  std::chrono::milliseconds window{30'000};
  std::chrono::milliseconds openFor{30'000};
};

class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  enum class State { kClosed, kOpen, kHalfOpen };
  // What a recorded result changed, for the caller's one log line.
  enum class Change { kNone, kOpened, kClosed };

  explicit CircuitBreaker(CircuitBreakerConfig config) : config_(config) {}

  // True when a scan may be tried now (an open breaker turns half-open once openFor passed).
  bool allow(Clock::time_point now);
  Change recordSuccess();
  Change recordFailure(Clock::time_point now);
  State state() const { return state_; }

 private:
  CircuitBreakerConfig config_;
  State state_ = State::kClosed;
  Clock::time_point openedAt_{};
  std::deque<Clock::time_point> recent_;  // failures inside the window, at most `failures`
};

}  // namespace portcullis
