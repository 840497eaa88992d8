// LoopInbox: jobs posted from other threads run on the loop, in order, never inside post();
// after close() a post is refused and the job dropped unrun. No libevent locking (the eventfd
// is the only thing another thread touches).

#include "proxy/base/loop_inbox.h"

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

#include "proxy/base/event_util.h"

namespace portcullis {
namespace {

TEST(LoopInbox, RunsPostsFromOtherThreadsInOrderOnTheLoop) {
  EventBasePtr base(event_base_new());
  LoopInbox inbox(base.get());
  const std::thread::id loop = std::this_thread::get_id();
  std::vector<int> seen;
  bool wrongThread = false;
  std::thread poster([&] {
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(inbox.post([&, i] {
        wrongThread = wrongThread || std::this_thread::get_id() != loop;
        seen.push_back(i);
        if (i == 99) event_base_loopbreak(base.get());
      }));
    }
  });
  event_base_dispatch(base.get());
  poster.join();
  EXPECT_FALSE(wrongThread);
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], i);
}

TEST(LoopInbox, NeverRunsInsidePostAndDropsAfterClose) {
  EventBasePtr base(event_base_new());
  LoopInbox inbox(base.get());
  int runs = 0;
  ASSERT_TRUE(inbox.post([&] { ++runs; }));
  EXPECT_EQ(runs, 0);  // not inline
  event_base_loop(base.get(), EVLOOP_NONBLOCK);
  EXPECT_EQ(runs, 1);
  auto token = std::make_shared<int>(0);
  ASSERT_TRUE(inbox.post([&, token] { ++runs; }));
  inbox.close();
  EXPECT_EQ(token.use_count(), 1);  // the queued job was dropped (and freed) unrun
  EXPECT_FALSE(inbox.post([&] { ++runs; }));
  event_base_loop(base.get(), EVLOOP_NONBLOCK);
  EXPECT_EQ(runs, 1);
}

}  // namespace
}  // namespace portcullis
