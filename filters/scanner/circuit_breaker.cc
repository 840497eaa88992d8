// CircuitBreaker. See circuit_breaker.h.

#include "filters/scanner/circuit_breaker.h"

namespace portcullis {

bool CircuitBreaker::allow(Clock::time_point now) {
  if (state_ == State::kOpen && now - openedAt_ >= config_.openFor) state_ = State::kHalfOpen;
  return state_ != State::kOpen;
}

CircuitBreaker::Admission CircuitBreaker::admit(Clock::time_point now, bool canProbe) {
  if (!canProbe) return allow(now) ? Admission::kScan : Admission::kSkip;
  if (state_ == State::kOpen && now - openedAt_ >= config_.openFor) {
    state_ = State::kProbing;
    return Admission::kProbe;
  }
  return state_ == State::kOpen || state_ == State::kProbing ? Admission::kSkip : Admission::kScan;
}

CircuitBreaker::Change CircuitBreaker::probeResult(bool healthy, Clock::time_point now) {
  if (state_ != State::kProbing) return Change::kNone;
  if (healthy) {
    recent_.clear();
    state_ = State::kClosed;
    return Change::kClosed;
  }
  state_ = State::kOpen;
  openedAt_ = now;
  return Change::kNone;  // it never closed: no second "opened" line
}

void CircuitBreaker::probeAbandoned() {
  if (state_ == State::kProbing) state_ = State::kOpen;  // openFor has passed: probe again
}

CircuitBreaker::Change CircuitBreaker::recordSuccess() {
  recent_.clear();
  if (state_ == State::kClosed) return Change::kNone;
  // A success while open is a scan that started before it opened: it proves the scanner is back
  // (a probe still in flight then finds the breaker closed and changes nothing).
  state_ = State::kClosed;
  return Change::kClosed;
}

CircuitBreaker::Change CircuitBreaker::recordFailure(Clock::time_point now) {
  if (config_.failures == 0) return Change::kNone;
  // A scan that started before it opened (or, while probing, before the probe).
  if (state_ == State::kOpen || state_ == State::kProbing) return Change::kNone;
  if (state_ == State::kHalfOpen) {
    state_ = State::kOpen;
    openedAt_ = now;
    return Change::kOpened;
  }
  while (!recent_.empty() && now - recent_.front() >= config_.window) recent_.pop_front();
  recent_.push_back(now);
  if (recent_.size() < config_.failures) return Change::kNone;
  recent_.clear();
  state_ = State::kOpen;
  openedAt_ = now;
  return Change::kOpened;
}

}  // namespace portcullis
