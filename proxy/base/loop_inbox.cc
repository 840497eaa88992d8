// LoopInbox. See loop_inbox.h.

#include "proxy/base/loop_inbox.h"

namespace portcullis {

LoopInbox::LoopInbox(event_base* base) : wake_(event_new(base, -1, 0, &LoopInbox::onWake, this)) {}

LoopInbox::~LoopInbox() { close(); }

bool LoopInbox::post(std::function<void()> job) {
  const std::lock_guard lock(mutex_);
  if (closed_ || wake_ == nullptr) return false;
  queue_.push_back(std::move(job));
  if (queue_.size() == 1) event_active(wake_, 0, 0);  // later ones ride on the same wake-up
  return true;
}

void LoopInbox::onWake(evutil_socket_t, short, void* self) {
  static_cast<LoopInbox*>(self)->runQueued();
}

void LoopInbox::runQueued() {
  std::vector<std::function<void()>> batch;
  {
    const std::lock_guard lock(mutex_);
    batch.swap(queue_);
  }
  for (auto& job : batch) job();
}

void LoopInbox::close() {
  std::vector<std::function<void()>> dropped;
  {
    const std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
    dropped.swap(queue_);
    if (wake_ != nullptr) event_free(wake_);
    wake_ = nullptr;
  }
  // Freed outside the lock: a job's captures may post elsewhere as they go.
}

}  // namespace portcullis
