#pragma once
// RAII wrappers for libevent objects. Every libevent object the proxy creates is owned by one
// of these; destroying the owner frees the object and so cancels its callbacks. Timers and
// posted callbacks: proxy/base/dispatcher.h.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>

#include <chrono>
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

// An event kept inside the object that owns it: event_assign() on storage that is part of the
// owner, where event_new() allocates each one (a Stream has three, every Timer and DeferredCall
// one: a dozen allocations per session). libevent keeps its address while it is pending, so it
// is never copied or moved; reset() and destruction take it out of the loop (event_del), as
// EventPtr's event_free() does. The layout comes from event2/event_struct.h, fixed for the
// libevent ABI the daemon links (libevent 2.1, soname 7).
class InlineEvent {
 public:
  InlineEvent(event_base* base, evutil_socket_t fd, short what, event_callback_fn callback,
              void* arg) {
    event_assign(&event_, base, fd, what, callback, arg);
  }
  ~InlineEvent() { event_del(&event_); }
  InlineEvent(const InlineEvent&) = delete;
  InlineEvent& operator=(const InlineEvent&) = delete;

  event* get() { return &event_; }
  const event* get() const { return &event_; }
  // Out of the loop (not pending, not active) until added again.
  void reset() { event_del(&event_); }

 private:
  event event_{};
};

// Callbacks queued in the loop's current pass that will write to streams (a DeferredCall made
// with Flushes::kWait: a filter chain's outcome when every filter answered inline). While there
// are any, a stream's flush goes to the back of the pass (Stream::onFlush), so that what they
// write leaves in the same send: a pipelined MAIL and the RCPTs behind it reach the MTA in one
// segment, as the client sent them. Only callbacks already queued are counted, and each runs in
// this pass, so the count is back to zero before the loop polls again. One loop per thread.
struct WritesToCome {
  static inline thread_local int queued = 0;
};

inline timeval toTimeval(std::chrono::milliseconds d) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(d.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
  return tv;
}

}  // namespace portcullis
