// CircuitBreaker. See circuit_breaker.h.

#include "filters/scanner/circuit_breaker.h"

namespace portcullis {

bool CircuitBreaker::allow(Clock::time_point now) {
  if (state_ == State::kOpen && now - openedAt_ >= config_.openFor) state_ = State::kHalfOpen;
  return state_ != State::kOpen;
}

CircuitBreaker::Change CircuitBreaker::recordSuccess() {
  recent_.clear();
  if (state_ == State::kClosed) return Change::kNone;
  // A success while open is a scan that started before it opened: it proves the scanner is back.
  state_ = State::kClosed;
  return Change::kClosed;
}

CircuitBreaker::Change CircuitBreaker::recordFailure(Clock::time_point now) {
  if (config_.failures == 0) return Change::kNone;
  if (state_ == State::kOpen) return Change::kNone;  // a scan that started before it opened
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
