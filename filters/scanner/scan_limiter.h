#pragma once
// ScanLimiter: at most `maxActive` scans of one configured scanner at a time, across sessions,
// and at most `maxQueued` waiting for a turn; a scan that finds the queue full is refused (a
// failure under on_error) rather than waiting without bound. acquire() hands back a ScanSlot
// that owns the turn: destroying it gives the turn back (or leaves the queue). `ready` runs
// from the loop through Timers, never inside acquire() or inside another slot's release, so one
// session's completion never runs another session's filter code. One event loop only.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>

#include "portcullis/timer.h"

namespace portcullis {

class ScanLimiter;

class ScanSlot {
 public:
  ~ScanSlot();  // gives the turn back, or leaves the queue
  ScanSlot(const ScanSlot&) = delete;
  ScanSlot& operator=(const ScanSlot&) = delete;
  bool granted() const { return granted_; }

 private:
  friend class ScanLimiter;
  ScanSlot(std::shared_ptr<ScanLimiter> limiter, Timers& timers, std::function<void()> ready)
      : limiter_(std::move(limiter)), timers_(timers), ready_(std::move(ready)) {}
  void grant();

  std::shared_ptr<ScanLimiter> limiter_;
  Timers& timers_;
  std::function<void()> ready_;
  std::unique_ptr<TimerHandle> wake_;
  bool granted_ = false;
  std::list<ScanSlot*>::iterator queued_;
  bool inQueue_ = false;
};

class ScanLimiter : public std::enable_shared_from_this<ScanLimiter> {
 public:
  ScanLimiter(std::size_t maxActive, std::size_t maxQueued)
      : maxActive_(maxActive), maxQueued_(maxQueued) {}

  // A slot whose `ready` will run once it holds a turn; nullptr when the queue is full.
  [[nodiscard]] std::unique_ptr<ScanSlot> acquire(Timers& timers, std::function<void()> ready);

  std::size_t active() const { return active_; }
  std::size_t queued() const { return queue_.size(); }

 private:
  friend class ScanSlot;
  void release();

  std::size_t maxActive_;
  std::size_t maxQueued_;
  std::size_t active_ = 0;
  std::list<ScanSlot*> queue_;
};

}  // namespace portcullis
