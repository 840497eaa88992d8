// Dispatcher's deferred deletes: freed from the loop in their turn among what was posted, and
// freed with the dispatcher when the loop never got to them, including what their own
// destructors free from the loop in turn.

#include "proxy/base/dispatcher.h"

#include <event2/event.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace portcullis {
namespace {

struct EventBaseDeleter {
  void operator()(event_base* b) const { event_base_free(b); }
};

// Records its destruction; may hand another object to the dispatcher as it goes.
struct Doomed {
  Doomed(std::vector<std::string>& log, std::string name) : log(log), name(std::move(name)) {}
  ~Doomed() {
    log.push_back(name);
    if (dispatcher != nullptr) dispatcher->deferredDelete(std::move(next));
  }
  Doomed(const Doomed&) = delete;
  Doomed& operator=(const Doomed&) = delete;

  std::vector<std::string>& log;
  std::string name;
  Dispatcher* dispatcher = nullptr;
  std::unique_ptr<Doomed> next;
};

TEST(Dispatcher, ADeferredDeleteHappensInItsTurnFromTheLoop) {
  std::unique_ptr<event_base, EventBaseDeleter> base(event_base_new());
  EventDispatcher d(base.get());
  std::vector<std::string> log;
  d.post([&] { log.emplace_back("posted first"); });
  d.deferredDelete(std::make_unique<Doomed>(log, "doomed"));
  d.post([&] { log.emplace_back("posted last"); });
  EXPECT_TRUE(log.empty()) << "nothing inside the call";
  event_base_loop(base.get(), EVLOOP_NONBLOCK);
  EXPECT_EQ(log, (std::vector<std::string>{"posted first", "doomed", "posted last"}));
}

TEST(Dispatcher, WhatTheLoopNeverFreedGoesWithTheDispatcher) {
  std::unique_ptr<event_base, EventBaseDeleter> base(event_base_new());
  std::vector<std::string> log;
  bool ran = false;
  {
    EventDispatcher d(base.get());
    auto outer = std::make_unique<Doomed>(log, "outer");
    outer->dispatcher = &d;
    outer->next = std::make_unique<Doomed>(log, "inner");  // freed from outer's destructor
    d.deferredDelete(std::move(outer));
    d.post([&] { ran = true; });
  }
  EXPECT_FALSE(ran) << "a callback is dropped unrun";
  EXPECT_EQ(log, (std::vector<std::string>{"outer", "inner"}));  // and nothing leaks (ASan)
}

}  // namespace
}  // namespace portcullis
