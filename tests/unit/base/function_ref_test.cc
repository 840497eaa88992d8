// FunctionRef: calls the very callable it was given (never a copy), with arguments and a result.

#include "proxy/base/function_ref.h"

#include <gtest/gtest.h>

#include <string>

namespace portcullis {
namespace {

int callTwice(FunctionRef<int(int)> f) { return f(1) + f(2); }

TEST(FunctionRef, CallsTheCallableItself) {
  int calls = 0;
  std::string seen;
  auto lambda = [&calls, &seen, text = std::string(40, 'x')](int n) {
    ++calls;
    seen = text;
    return n * 10;
  };
  EXPECT_EQ(callTwice(lambda), 30);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(seen, std::string(40, 'x'));
}

TEST(FunctionRef, StateLivesInTheCallableNotInACopy) {
  struct Counter {
    int count = 0;
    int operator()(int n) { return count += n; }
  } counter;
  EXPECT_EQ(callTwice(counter), 1 + 3);  // the second call sees the first one's count
  EXPECT_EQ(counter.count, 3);
}

TEST(FunctionRef, TakesATemporaryForTheCall) {
  EXPECT_EQ(callTwice([](int n) { return n; }), 3);
}

}  // namespace
}  // namespace portcullis
