// Dispatcher: posted callbacks on one libevent event, and the libevent timer backend.

#include "proxy/base/dispatcher.h"

#include <utility>

namespace portcullis {

Dispatcher::Dispatcher(event_base* base)
    : postEvent_(event_new(base, -1, 0, &Dispatcher::onPosted, this)) {}

Dispatcher::~Dispatcher() {
  // What is still posted goes with the dispatcher: objects waiting to be freed are freed, and
  // callbacks are dropped unrun. A destructor may post in turn (an object freeing another
  // from the loop): that is taken too, until nothing is left.
  while (!posted_.empty()) {
    std::vector<Posted> left;
    left.swap(posted_);
    for (Posted& p : left) {
      if (p.doomed != nullptr) p.destroy(std::exchange(p.doomed, nullptr));
    }
  }
}

void Dispatcher::post(std::function<void()> fn) {
  posted_.push_back({std::move(fn), nullptr, nullptr});
  schedule();
}

void Dispatcher::postDelete(void* doomed, void (*destroy)(void*)) {
  posted_.push_back({nullptr, doomed, destroy});
  schedule();
}

void Dispatcher::schedule() {
  if (!scheduled_) {
    scheduled_ = true;
    // An active event runs in the loop's current pass: no extra poll, no system call.
    event_active(postEvent_.get(), 0, 0);
  }
}

void Dispatcher::onPosted(evutil_socket_t, short, void* self) {
  static_cast<Dispatcher*>(self)->runPosted();
}

void Dispatcher::runPosted() {
  scheduled_ = false;
  // What these callbacks post runs in the next round (the event is re-activated), so a
  // callback that keeps posting cannot starve the loop's I/O.
  running_.swap(posted_);
  for (Posted& p : running_) {
    if (p.doomed != nullptr) {
      p.destroy(std::exchange(p.doomed, nullptr));
      continue;
    }
    p.fn();
    p.fn = nullptr;  // what it holds goes now, before the next callback runs
  }
  running_.clear();
}

void Dispatcher::timerStart(Timer& timer, std::chrono::milliseconds delay) {
  const timeval tv = toTimeval(delay);
  timer.eventArmed_ = evtimer_add(timer.event_.get(), &tv) == 0;
}

void Dispatcher::timerStop(Timer& timer) {
  // Most stops find the timer idle (a reply stops the command's timer whether or not one ran):
  // no call into libevent, which takes the base's lock, for those.
  if (!timer.eventArmed_) return;
  timer.eventArmed_ = false;
  evtimer_del(timer.event_.get());
}

bool Dispatcher::timerArmed(const Timer& timer) const { return timer.eventArmed_; }

void Dispatcher::timerGone(Timer&) {}

Timer::Timer(Dispatcher& dispatcher, std::function<void()> callback)
    : dispatcher_(dispatcher),
      callback_(std::move(callback)),
      event_(dispatcher.base(), -1, 0, &Timer::trampoline, this) {}

Timer::~Timer() { dispatcher_.timerGone(*this); }

void Timer::trampoline(evutil_socket_t, short, void* self) {
  auto* timer = static_cast<Timer*>(self);
  timer->eventArmed_ = false;  // libevent made it idle before calling
  timer->fire();
}

}  // namespace portcullis
