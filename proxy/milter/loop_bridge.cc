// LoopBridge and SessionGate. See loop_bridge.h.

#include "proxy/milter/loop_bridge.h"

#include <utility>

namespace portcullis {

struct LoopBridge::Call {
  std::mutex mutex;
  std::condition_variable answered;
  bool done = false;       // answered, or given up on
  bool abandoned = false;  // the caller stopped waiting
  std::optional<MilterAction> action;
};

LoopBridge::Completion::~Completion() {
  if (call_) finish(std::nullopt);
}

void LoopBridge::Completion::operator()(MilterAction action) {
  if (call_) finish(std::move(action));
}

bool LoopBridge::Completion::abandoned() const {
  if (!call_) return true;
  const std::lock_guard lock(call_->mutex);
  return call_->abandoned;
}

void LoopBridge::Completion::finish(std::optional<MilterAction> action) {
  const std::shared_ptr<Call> call = std::move(call_);
  {
    const std::lock_guard lock(call->mutex);
    if (call->done) return;  // the caller gave up first: dropped
    call->done = true;
    call->action = std::move(action);
  }
  call->answered.notify_one();
}

LoopBridge::LoopBridge(event_base* base)
    : wake_(event_new(base, -1, 0, &LoopBridge::onWake, this)) {}

LoopBridge::~LoopBridge() {
  if (wake_ != nullptr) event_free(wake_);
}

bool LoopBridge::enqueue(Queued q) {
  const std::lock_guard lock(mutex_);
  if (closed_) return false;
  queue_.push_back(std::move(q));
  // Thread-safe with evthread_use_pthreads(); activating an active event is a no-op, and the
  // loop drains the whole queue per wake-up.
  event_active(wake_, 0, 0);
  return true;
}

std::optional<MilterAction> LoopBridge::call(Job job, std::chrono::milliseconds deadline) {
  auto call = std::make_shared<Call>();
  if (!enqueue({call, std::move(job), {}})) return std::nullopt;
  std::unique_lock lock(call->mutex);
  if (!call->answered.wait_for(lock, deadline, [&] { return call->done; })) {
    call->done = true;
    call->abandoned = true;
    return std::nullopt;
  }
  return std::move(call->action);
}

void LoopBridge::post(std::function<void()> job) { (void)enqueue({nullptr, {}, std::move(job)}); }

void LoopBridge::onWake(evutil_socket_t, short, void* self) {
  static_cast<LoopBridge*>(self)->runQueued();
}

void LoopBridge::runQueued() {
  std::deque<Queued> batch;
  {
    const std::lock_guard lock(mutex_);
    batch.swap(queue_);
  }
  for (Queued& q : batch) {
    if (!q.call) {
      q.fire();
      continue;
    }
    {
      const std::lock_guard lock(q.call->mutex);
      if (q.call->abandoned) continue;  // the caller's deadline passed before we got here
    }
    q.job(Completion(std::move(q.call)));
  }
}

void LoopBridge::close() {
  std::deque<Queued> failed;
  {
    const std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
    failed.swap(queue_);
    event_free(wake_);
    wake_ = nullptr;
  }
  // The posts are dropped; each waiting caller is answered "no answer" as its Completion goes.
  for (Queued& q : failed) {
    if (q.call) Completion{std::move(q.call)};
  }
}

bool SessionGate::enter() {
  std::size_t n = active_.load();
  do {
    if (n >= max_) return false;
  } while (!active_.compare_exchange_weak(n, n + 1));
  return true;
}

void SessionGate::leave() { active_.fetch_sub(1); }

}  // namespace portcullis
