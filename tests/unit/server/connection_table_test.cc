// ConnectionTable: the limits, the PROXY listener's exemption, release and rekey, and exactness
// when several threads admit at once.

#include "proxy/server/connection_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace portcullis {
namespace {

using V = ConnectionTable::Verdict;

TEST(ConnectionTable, AdmitsUpToEachLimit) {
  struct Step {
    const char* key;
    bool checkPerKey;
    V want;
  };
  // max total 4, max per key 2.
  const Step steps[] = {
      {"a", true, V::kAdmitted},           {"a", true, V::kAdmitted},
      {"a", true, V::kTooManyFromAddress}, {"a", false, V::kAdmitted},  // PROXY: not limited
      {"b", true, V::kAdmitted},           {"c", true, V::kTooMany},
  };
  ConnectionTable t;
  for (const Step& s : steps) {
    EXPECT_EQ(t.admit(s.key, 4, 2, s.checkPerKey).verdict, s.want) << s.key;
  }
  EXPECT_EQ(t.total(), 4u);
  t.release("a");
  t.release("a");
  const auto a = t.admit("a", 4, 2, true);
  EXPECT_EQ(a.verdict, V::kAdmitted);
  EXPECT_EQ(a.total, 2u);
  EXPECT_EQ(a.fromKey, 1u);
}

TEST(ConnectionTable, RekeyMovesTheCount) {
  ConnectionTable t;
  ASSERT_EQ(t.admit("lb", 10, 1, false).verdict, V::kAdmitted);
  ASSERT_EQ(t.admit("lb", 10, 1, false).verdict, V::kAdmitted);
  EXPECT_TRUE(t.rekey("lb", "client", 1));
  EXPECT_FALSE(t.rekey("lb", "client", 1));  // a second connection of the same client
  EXPECT_EQ(t.admit("client", 10, 1, true).fromKey, 2u);
  t.release("client");
  t.release("client");
  EXPECT_EQ(t.total(), 0u);
  EXPECT_EQ(t.admit("client", 10, 1, true).verdict, V::kAdmitted);
}

TEST(ConnectionTable, ExactUnderConcurrentAdmission) {
  constexpr int kThreads = 4;
  constexpr int kTries = 1000;
  constexpr std::size_t kLimit = 7;
  ConnectionTable t;
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int n = 0; n < kTries; ++n) {
        if (t.admit("one", 1000, kLimit, true).verdict == V::kAdmitted) ++admitted;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), static_cast<int>(kLimit));
  EXPECT_EQ(t.total(), kLimit);
}

}  // namespace
}  // namespace portcullis
