// Recycled: a freed object's block goes to the next object of its class on the same thread,
// which is constructed anew; the list is bounded, per thread, freed at thread exit, and (under
// AddressSanitizer) poisoned, so a use after free is still caught.

#include "proxy/base/recycled.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace portcullis {
namespace {

struct Probe : Recycled<Probe> {
  int value = 7;
  std::string name = "a name too long for the string's own buffer";
};

struct Few : Recycled<Few, 4> {
  long value = 0;
};

struct Bigger : Probe {
  char extra[64] = {};
};

TEST(Recycled, AFreedBlockHoldsTheNextObjectWhichStartsAnew) {
  auto first = std::make_unique<Probe>();
  first->value = 42;
  first->name = "the first object's own";
  const void* block = first.get();
  const std::size_t before = Probe::kept();
  first.reset();
  EXPECT_EQ(Probe::kept(), before + 1);

  auto second = std::make_unique<Probe>();
  EXPECT_EQ(second.get(), block);
  EXPECT_EQ(Probe::kept(), before);
  EXPECT_EQ(second->value, 7);
  EXPECT_EQ(second->name, "a name too long for the string's own buffer");
}

TEST(Recycled, KeepsAtMostItsBoundAndFreesTheRest) {
  std::vector<std::unique_ptr<Few>> many;
  many.reserve(10);
  for (int i = 0; i < 10; ++i) many.push_back(std::make_unique<Few>());
  many.clear();
  EXPECT_EQ(Few::kept(), 4U);
  // The kept ones are used first, then malloc again.
  for (int i = 0; i < 6; ++i) many.push_back(std::make_unique<Few>());
  EXPECT_EQ(Few::kept(), 0U);
  many.clear();
  EXPECT_EQ(Few::kept(), 4U);
}

TEST(Recycled, ASubclassOfAnotherSizeUsesPlainNewAndDelete) {
  const std::size_t before = Probe::kept();
  auto bigger = std::make_unique<Bigger>();
  EXPECT_EQ(Probe::kept(), before);
  bigger.reset();
  EXPECT_EQ(Probe::kept(), before);
}

TEST(Recycled, EachThreadKeepsItsOwnBlocks) {
  auto mine = std::make_unique<Probe>();
  const void* block = mine.get();
  mine.reset();
  const std::size_t kept = Probe::kept();
  ASSERT_GE(kept, 1U);

  std::size_t keptThere = 99;
  const void* madeThere = nullptr;
  std::size_t keptThereAfter = 0;
  std::thread([&] {
    keptThere = Probe::kept();
    auto theirs = std::make_unique<Probe>();
    madeThere = theirs.get();
    theirs.reset();
    keptThereAfter = Probe::kept();
    // Its list is freed when the thread ends (LeakSanitizer, in the ASan build, checks).
  }).join();
  EXPECT_EQ(keptThere, 0U);
  EXPECT_NE(madeThere, block);
  EXPECT_EQ(keptThereAfter, 1U);
  EXPECT_EQ(Probe::kept(), kept);
}

#if defined(__SANITIZE_ADDRESS__)
#define PORTCULLIS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PORTCULLIS_TEST_ASAN 1
#endif
#endif

#ifdef PORTCULLIS_TEST_ASAN
TEST(RecycledDeathTest, AUseAfterFreeOfAKeptBlockIsStillCaught) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Probe* volatile freed = new Probe;
        delete freed;
        const int value = freed->value;
        std::printf("%d\n", value);
      },
      "use-after-poison");
}
#endif

}  // namespace
}  // namespace portcullis
