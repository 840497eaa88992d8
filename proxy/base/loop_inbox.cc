// LoopInbox. See loop_inbox.h.

#include "proxy/base/loop_inbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

namespace portcullis {

LoopInbox::LoopInbox(event_base* base) : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) return;
  wake_ = event_new(base, fd_, EV_READ | EV_PERSIST, &LoopInbox::onWake, this);
  if (wake_ != nullptr) event_add(wake_, nullptr);
}

LoopInbox::~LoopInbox() { close(); }

bool LoopInbox::post(std::function<void()> job) {
  const std::lock_guard lock(mutex_);
  if (closed_ || wake_ == nullptr) return false;
  queue_.push_back(std::move(job));
  if (queue_.size() == 1) {  // later ones ride on the same wake-up
    const std::uint64_t one = 1;
    (void)!::write(fd_, &one, sizeof one);  // only fails when the counter is full: awake anyway
  }
  return true;
}

void LoopInbox::onWake(evutil_socket_t, short, void* self) {
  static_cast<LoopInbox*>(self)->runQueued();
}

void LoopInbox::runQueued() {
  std::vector<std::function<void()>> batch;
  {
    const std::lock_guard lock(mutex_);
    std::uint64_t count = 0;
    (void)!::read(fd_, &count, sizeof count);  // reset under the lock: no wake-up is lost
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
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Freed outside the lock: a job's captures may post elsewhere as they go.
}

}  // namespace portcullis
