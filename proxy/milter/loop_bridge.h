#pragma once
// LoopBridge: how libmilter's threads get work done on the event loop, which is not thread-safe.
// A milter callback calls call(job, deadline) on its own thread: the job goes into a locked
// queue, an event (event_active, so the base must have been made after evthread_use_pthreads)
// wakes the loop, and the loop runs the job, which completes a Completion when the chain has
// answered, inline or later. The caller waits on a condition variable until then or until its
// deadline, whichever comes first; on the deadline the call is abandoned: a job not yet started
// is skipped, and a completion that arrives later finds the call abandoned and is dropped (the
// call's state is shared, so nothing is freed under it). close() (loop thread) fails every
// queued and future call at once. SessionGate bounds the sessions served at once.

#include <event2/event.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "proxy/milter/milter_action.h"

namespace portcullis {

class LoopBridge {
 public:
  struct Call;

  // Completes one call, once. Move-only; destroyed uncalled, the caller gets no answer (the
  // same as a deadline), so a job that loses its completion never leaves a caller hanging.
  class Completion {
   public:
    explicit Completion(std::shared_ptr<Call> call) : call_(std::move(call)) {}
    Completion(Completion&&) noexcept = default;
    Completion& operator=(Completion&&) noexcept = default;
    Completion(const Completion&) = delete;
    Completion& operator=(const Completion&) = delete;
    ~Completion();

    void operator()(MilterAction action);
    // The caller has given up (deadline, close): the job may stop early.
    bool abandoned() const;

   private:
    void finish(std::optional<MilterAction> action);
    std::shared_ptr<Call> call_;
  };
  using Job = std::function<void(Completion)>;

  // `base` must outlive close(). Call from the loop thread.
  explicit LoopBridge(event_base* base);
  ~LoopBridge();  // close() must have run (on the loop thread)
  LoopBridge(const LoopBridge&) = delete;
  LoopBridge& operator=(const LoopBridge&) = delete;

  // Any thread but the loop's: runs `job` on the loop and waits at most `deadline` for its
  // completion. nullopt: the deadline passed, the bridge is closed, or the job dropped it.
  [[nodiscard]] std::optional<MilterAction> call(Job job, std::chrono::milliseconds deadline);
  // Any thread: runs `job` on the loop without waiting (nothing to answer: close, abort).
  void post(std::function<void()> job);

  // Loop thread: fails queued and later calls at once and frees the event.
  void close();

 private:
  struct Queued {
    std::shared_ptr<Call> call;  // null: a post()
    Job job;
    std::function<void()> fire;
  };
  static void onWake(evutil_socket_t, short, void* self);
  bool enqueue(Queued q);
  void runQueued();

  std::mutex mutex_;
  std::deque<Queued> queue_;
  event* wake_ = nullptr;
  bool closed_ = false;
};

// Bounds the milter sessions served at once (milter.max_sessions); any thread.
class SessionGate {
 public:
  explicit SessionGate(std::size_t max) : max_(max) {}
  [[nodiscard]] bool enter();  // false: full, the session is tempfailed
  void leave();
  std::size_t active() const { return active_.load(); }

 private:
  const std::size_t max_;
  std::atomic<std::size_t> active_{0};
};

}  // namespace portcullis
