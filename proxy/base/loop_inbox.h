#pragma once
// LoopInbox: how another thread gets work run on an event loop (the workers' drain, reload and
// admin queries; proxy/server/workers.h). post() may be called from any thread: the job goes
// into a locked queue and a write to an eventfd wakes the loop, which watches it with an
// ordinary read event: no libevent call crosses threads, so the bases need no libevent locking
// (evthread_use_pthreads()). The loop runs the queued jobs in order, outside the lock, never
// inside post(). close() (loop thread, or once the loop has stopped) drops what is queued and
// refuses later posts, so a sender can tell a loop that has stopped from one that will answer.

#include <event2/event.h>

#include <functional>
#include <mutex>
#include <vector>

namespace portcullis {

class LoopInbox {
 public:
  explicit LoopInbox(event_base* base);
  ~LoopInbox();  // close()
  LoopInbox(const LoopInbox&) = delete;
  LoopInbox& operator=(const LoopInbox&) = delete;

  // Any thread. False, with `job` dropped unrun, once closed.
  [[nodiscard]] bool post(std::function<void()> job);
  // Loop thread (or once the loop has stopped): drops queued jobs, refuses later ones.
  void close();

 private:
  static void onWake(evutil_socket_t, short, void* self);
  void runQueued();

  std::mutex mutex_;
  std::vector<std::function<void()>> queue_;
  int fd_ = -1;  // the eventfd
  event* wake_ = nullptr;
  bool closed_ = false;
};

}  // namespace portcullis
