#pragma once
// RAII wrappers for libevent objects, and a one-shot/periodic Timer.
// Every libevent object the proxy creates is owned by one of these; destroying the owner frees
// the object and so cancels its callbacks. Timer callbacks run on the event loop, never inline.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <chrono>
#include <functional>
#include <memory>

namespace portcullis {

struct EventBaseDeleter {
  void operator()(event_base* b) const { event_base_free(b); }
};
struct EventDeleter {
  void operator()(event* e) const { event_free(e); }
};
struct BufferEventDeleter {
  void operator()(bufferevent* b) const { bufferevent_free(b); }
};
struct ListenerDeleter {
  void operator()(evconnlistener* l) const { evconnlistener_free(l); }
};
struct EvbufferDeleter {
  void operator()(evbuffer* b) const { evbuffer_free(b); }
};

using EventBasePtr = std::unique_ptr<event_base, EventBaseDeleter>;
using EventPtr = std::unique_ptr<event, EventDeleter>;
using BufferEventPtr = std::unique_ptr<bufferevent, BufferEventDeleter>;
using ListenerPtr = std::unique_ptr<evconnlistener, ListenerDeleter>;
using EvbufferPtr = std::unique_ptr<evbuffer, EvbufferDeleter>;

inline timeval toTimeval(std::chrono::milliseconds d) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(d.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
  return tv;
}

// A timer bound to an event base. start() (re)arms it; destroying it cancels it.
class Timer {
 public:
  Timer(event_base* base, std::function<void()> callback)
      : callback_(std::move(callback)), event_(evtimer_new(base, &Timer::trampoline, this)) {}
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void start(std::chrono::milliseconds delay) {
    const timeval tv = toTimeval(delay);
    evtimer_add(event_.get(), &tv);
  }
  void stop() { evtimer_del(event_.get()); }
  bool armed() const { return evtimer_pending(event_.get(), nullptr) != 0; }

 private:
  static void trampoline(evutil_socket_t, short, void* self) {
    static_cast<Timer*>(self)->callback_();
  }
  std::function<void()> callback_;
  EventPtr event_;
};

}  // namespace portcullis
