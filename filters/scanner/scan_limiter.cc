// ScanLimiter. See scan_limiter.h.

#include "filters/scanner/scan_limiter.h"

namespace portcullis {

std::unique_ptr<ScanSlot> ScanLimiter::acquire(Timers& timers, std::function<void()> ready) {
  if (active_ >= maxActive_ && queue_.size() >= maxQueued_) return nullptr;
  std::unique_ptr<ScanSlot> slot(new ScanSlot(shared_from_this(), timers, std::move(ready)));
  if (active_ < maxActive_) {
    ++active_;
    slot->grant();
  } else {
    slot->queued_ = queue_.insert(queue_.end(), slot.get());
    slot->inQueue_ = true;
  }
  return slot;
}

void ScanLimiter::release() {
  --active_;
  if (queue_.empty()) return;
  ScanSlot* next = queue_.front();
  queue_.pop_front();
  next->inQueue_ = false;
  ++active_;
  next->grant();
}

void ScanSlot::grant() {
  granted_ = true;
  // Through the loop: the caller of acquire() or of the releasing slot's destructor is still on
  // the stack.
  wake_ = timers_.start(std::chrono::milliseconds(0), [this] {
    std::function<void()> ready = std::move(ready_);
    if (ready) ready();  // may destroy this slot: touch nothing afterwards
  });
}

ScanSlot::~ScanSlot() {
  wake_.reset();
  if (inQueue_) {
    limiter_->queue_.erase(queued_);
  } else if (granted_) {
    limiter_->release();
  }
}

}  // namespace portcullis
