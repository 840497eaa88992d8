#pragma once
// Dispatcher: the event loop as the rest of the daemon sees it, and its one lifetime idiom.
//  - post(fn) runs fn from the loop after the current callback has returned, never inline.
//    Every asynchronous completion (MTA replies, DNS answers, filter verdicts) reaches its
//    caller through the loop: post(), a DeferredCall or Timer owned by the completing object
//    (cancelled with it), or an I/O event. A caller never has its callback run inside the call
//    that asked for it.
//  - deferredDelete(object) frees an object from the loop, after the current callback has
//    returned. An object whose callbacks may be on the stack is never destroyed in place: its
//    owner hands it here instead (as Envoy's dispatcher does). Nothing else keeps objects
//    alive across callbacks: no liveness tokens, no retired-object queues.
//  - Timers and now() come from the dispatcher, so tests can run on a manual clock
//    (tests/support/manual_dispatcher.h): no real sleeps in unit tests.
// Single-threaded: everything runs on the loop's thread.

#include <event2/event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "proxy/base/event_util.h"

namespace portcullis {

class Timer;

class Dispatcher {
 public:
  using Clock = std::chrono::steady_clock;

  virtual ~Dispatcher();

  // The libevent base for real I/O (sockets, signals, listeners).
  virtual event_base* base() = 0;
  virtual Clock::time_point now() const = 0;

  // Runs `fn` from the loop, after the current callback returns, in the order posted.
  void post(std::function<void()> fn);
  // Frees `object` from the loop, after the current callback returns (in its turn among what
  // was posted; an object still waiting when the dispatcher goes is freed with it).
  template <typename T>
  void deferredDelete(std::unique_ptr<T> object) {
    if (!object) return;
    // The object and how to free it, held as they are: no shared_ptr, no std::function.
    postDelete(object.release(), [](void* doomed) { delete static_cast<T*>(doomed); });
  }

 protected:
  explicit Dispatcher(event_base* base);
  // Runs everything posted so far (and what that posts, in turn).
  void runPosted();

 private:
  friend class Timer;
  // Timer backend; the default is libevent's timer on base().
  virtual void timerStart(Timer& timer, std::chrono::milliseconds delay);
  virtual void timerStop(Timer& timer);
  virtual bool timerArmed(const Timer& timer) const;
  virtual void timerGone(Timer& timer);
  static void onPosted(evutil_socket_t, short, void* self);

  // A posted callback, or an object to free (deferredDelete).
  struct Posted {
    std::function<void()> fn;
    void* doomed = nullptr;
    void (*destroy)(void*) = nullptr;
  };
  void postDelete(void* doomed, void (*destroy)(void*));
  void schedule();

  EventPtr postEvent_;
  std::vector<Posted> posted_;
  std::vector<Posted> running_;
  bool scheduled_ = false;
};

// The daemon's dispatcher: libevent's loop and the monotonic clock.
class EventDispatcher : public Dispatcher {
 public:
  explicit EventDispatcher(event_base* base) : Dispatcher(base), base_(base) {}
  event_base* base() override { return base_; }
  Clock::time_point now() const override { return Clock::now(); }

 private:
  event_base* base_;
};

// A one-shot timer bound to a dispatcher. start() (re)arms it; destroying it cancels it. The
// callback runs from the loop, never inside start().
class Timer {
 public:
  Timer(Dispatcher& dispatcher, std::function<void()> callback);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void start(std::chrono::milliseconds delay) { dispatcher_.timerStart(*this, delay); }
  void stop() { dispatcher_.timerStop(*this); }
  bool armed() const { return dispatcher_.timerArmed(*this); }

 private:
  friend class Dispatcher;
  friend class ManualDispatcher;  // tests: timers on a manual clock
  static void trampoline(evutil_socket_t, short, void* self);
  void fire() { callback_(); }

  Dispatcher& dispatcher_;
  std::function<void()> callback_;
  InlineEvent event_;        // libevent backend
  bool eventArmed_ = false;  // event_ is pending (started, and neither stopped nor fired)
  // Manual-clock backend.
  bool manualArmed_ = false;
  Dispatcher::Clock::time_point due_{};
  std::uint64_t sequence_ = 0;
};

// A callback run from the loop soon after schedule(), in the loop's current pass (no timer, no
// system call): how an object reports a result it already has without calling back inside the
// call that asked. Destroying it (or cancel()) cancels a scheduled run.
class DeferredCall {
 public:
  // kWait: while it is scheduled, streams wait with their flush until it has run
  // (WritesToCome), for a callback whose writes belong in the same send as those before it.
  enum class Flushes { kGo, kWait };

  DeferredCall(Dispatcher& dispatcher, std::function<void()> callback,
               Flushes flushes = Flushes::kGo)
      : callback_(std::move(callback)),
        event_(dispatcher.base(), -1, 0, &DeferredCall::trampoline, this),
        holdsFlushes_(flushes == Flushes::kWait) {}
  ~DeferredCall() { unqueue(); }
  DeferredCall(const DeferredCall&) = delete;
  DeferredCall& operator=(const DeferredCall&) = delete;

  void schedule() {
    if (holdsFlushes_ && !queued_) {
      queued_ = true;
      ++WritesToCome::queued;
    }
    event_active(event_.get(), 0, 0);
  }
  void cancel() {
    unqueue();
    event_del(event_.get());
  }

 private:
  static void trampoline(evutil_socket_t, short, void* self) {
    auto* call = static_cast<DeferredCall*>(self);
    call->unqueue();
    call->callback_();
  }
  void unqueue() {
    if (queued_) --WritesToCome::queued;
    queued_ = false;
  }
  std::function<void()> callback_;
  InlineEvent event_;
  bool holdsFlushes_;
  bool queued_ = false;
};

}  // namespace portcullis
