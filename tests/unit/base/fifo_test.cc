// Fifo: first in, first out, through growth, running dry and compaction (what it saves, two
// mallocs per session, shows in tests/bench/bench.sh --counts).

#include "proxy/base/fifo.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace portcullis {
namespace {

TEST(Fifo, KeepsOrderWhileItNeverRunsDry) {
  Fifo<std::string> q;
  EXPECT_TRUE(q.empty());
  int pushed = 0;
  int popped = 0;
  for (int round = 0; round < 500; ++round) {  // two in, one out: it grows past compaction
    q.push_back(std::to_string(pushed++));
    q.emplace_back(std::to_string(pushed++));
    ASSERT_EQ(q.front(), std::to_string(popped));
    q.pop_front();
    ++popped;
    ASSERT_EQ(q.size(), static_cast<std::size_t>(pushed - popped));
    ASSERT_EQ(q[q.size() - 1], std::to_string(pushed - 1));
  }
  while (!q.empty()) {
    ASSERT_EQ(q.front(), std::to_string(popped++));
    q.pop_front();
  }
  EXPECT_EQ(popped, pushed);
  q.push_back("again");  // usable after running dry
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.front(), "again");
}

TEST(Fifo, APoppedElementIsReleasedAtOnce) {
  Fifo<std::shared_ptr<int>> q;
  auto first = std::make_shared<int>(1);
  q.push_back(first);
  q.push_back(std::make_shared<int>(2));
  EXPECT_EQ(first.use_count(), 2);
  q.pop_front();
  EXPECT_EQ(first.use_count(), 1);  // not held until the queue empties
  EXPECT_EQ(*q.front(), 2);
}

}  // namespace
}  // namespace portcullis
