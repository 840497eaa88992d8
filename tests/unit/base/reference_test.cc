// Reply references: shape, alphabet, and no repeats.

#include "proxy/base/reference.h"

#include <gtest/gtest.h>

#include <unordered_set>

namespace portcullis {
namespace {

TEST(Reference, EightCharactersWithoutLookAlikes) {
  for (int i = 0; i < 1000; ++i) {
    const std::string r = newReference();
    ASSERT_EQ(r.size(), 8u);
    EXPECT_TRUE(looksLikeReference(r)) << r;
    for (const char bad : {'0', 'O', '1', 'I', 'L', 'U'}) {
      EXPECT_EQ(r.find(bad), std::string::npos) << r;
    }
  }
}

TEST(Reference, NoRepeatsAcrossTheWrap) {
  // Start just before the end of the 30^8 space: the counter wraps, the values stay distinct.
  ReferenceGenerator g(656100000000ULL - 50000);
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 100000; ++i) EXPECT_TRUE(seen.insert(g.next()).second);
}

TEST(Reference, ConsecutiveValuesDoNotLookAlike) {
  ReferenceGenerator g(0);
  const std::string a = g.next();
  const std::string b = g.next();
  int same = 0;
  for (std::size_t i = 0; i < a.size(); ++i) same += a[i] == b[i] ? 1 : 0;
  EXPECT_LT(same, 6) << a << " " << b;
}

TEST(Reference, Recognised) {
  EXPECT_TRUE(looksLikeReference("7Q2K9XHM"));
  EXPECT_TRUE(looksLikeReference("7q2k9xhm"));
  EXPECT_FALSE(looksLikeReference("7Q2K9XH"));
  EXPECT_FALSE(looksLikeReference("7Q2K9XH0"));
  EXPECT_FALSE(looksLikeReference("7Q2K9XHMM"));
}

}  // namespace
}  // namespace portcullis
