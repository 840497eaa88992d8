// parseLogFields reads back what logValue writes.

#include "proxy/base/log_fields.h"

#include <gtest/gtest.h>

#include "proxy/base/log.h"

namespace portcullis {
namespace {

TEST(LogFields, SessionIdThenFields) {
  LogFields f;
  parseLogFields("a3f9c2d1e0b4 event=reject stage=rcpt code=550 reason=\"listed \\\"x\\\"\"", f);
  EXPECT_EQ(f.session, "a3f9c2d1e0b4");
  ASSERT_EQ(f.fields.size(), 4u);
  EXPECT_EQ(f.fields[0].key, "event");
  EXPECT_EQ(*f.find("stage"), "rcpt");
  EXPECT_EQ(*f.find("reason"), "listed \"x\"");
  EXPECT_EQ(f.find("missing"), nullptr);
}

TEST(LogFields, NoSessionId) {
  LogFields f;
  parseLogFields("event=listening address=127.0.0.1:25", f);
  EXPECT_TRUE(f.session.empty());
  EXPECT_EQ(*f.find("address"), "127.0.0.1:25");
}

TEST(LogFields, RoundTripsLogValue) {
  for (const std::string& v :
       {std::string("plain"), std::string("two words"), std::string("a=b \"q\" back\\slash"),
        std::string("ctl\r\n\x01\x7f"), std::string("<a@b>,<c@d>"), std::string("")}) {
    const std::string line = "id1 k=" + logValue(v) + " z=1";  // the fields point into it
    LogFields f;
    parseLogFields(line, f);
    ASSERT_NE(f.find("k"), nullptr) << v;
    EXPECT_EQ(*f.find("k"), v);
    EXPECT_EQ(*f.find("z"), "1");
  }
}

TEST(LogFields, HostileInputNeverFails) {
  LogFields f;
  parseLogFields("x=\"unterminated \\", f);
  EXPECT_EQ(f.fields.size(), 1u);
  parseLogFields("= == \"\" a b=", f);
  parseLogFields("", f);
  EXPECT_TRUE(f.fields.empty());
}

TEST(LogFields, SplitsTextLine) {
  LogLineParts p;
  ASSERT_TRUE(splitLogLine("2026-12-03T07:01:02.123 info abc event=x\n", p));
  EXPECT_EQ(p.timestamp, "2026-12-03T07:01:02.123");
  EXPECT_EQ(p.level, "info");
  EXPECT_EQ(p.message, "abc event=x");
  EXPECT_FALSE(splitLogLine("garbage", p));
}

}  // namespace
}  // namespace portcullis
