#pragma once
// CircuitBreaker: stops a scanner that keeps failing from costing every message its timeout.
// After `failures` failures within `window` it opens: scans are skipped (a failure under the
// filter's on_error, without trying) for `openFor`. Then it lets scans through again
// (half-open): the first success closes it, the first failure opens it for another `openFor`.
// A scanner with a health probe (clamd's PING) is asked first instead: once openFor has passed,
// one caller probes while the others are still skipped; a good answer closes the breaker, a bad
// one keeps it open for another `openFor`, so no message pays for a scanner that is still down.
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
  enum class State { kClosed, kOpen, kHalfOpen, kProbing };
  // What the caller does with this message.
  enum class Admission { kScan, kSkip, kProbe };
  // What a recorded result changed, for the caller's one log line.
  enum class Change { kNone, kOpened, kClosed };

  explicit CircuitBreaker(CircuitBreakerConfig config) : config_(config) {}

  // True when a scan may be tried now (an open breaker turns half-open once openFor passed).
  bool allow(Clock::time_point now);
  // allow() for a scanner that can be probed: kProbe hands this caller the one probe, which it
  // must end with probeResult() or probeAbandoned().
  Admission admit(Clock::time_point now, bool canProbe);
  Change probeResult(bool healthy, Clock::time_point now);
  void probeAbandoned();  // the probing session went away: the next caller probes again
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
