// Verdict: named constructors always pair a kind with a reply of the right class (tempfail ->
// 4xx, reject -> 5xx, disconnect -> 421/554), whatever the filter passed in.

#include "portcullis/verdict.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace portcullis {
namespace {

TEST(Verdict, ConstructorsCoerceTheReplyClass) {
  const Reply r550 = Reply::permanent(550, "5.7.1", "listed");
  const Reply r451 = Reply::transient(451, "4.7.1", "later");
  const Reply r250 = Reply::positive(250, "2.0.0", "fine");
  const struct {
    std::string name;
    Verdict v;
    VerdictKind kind;
    int code;
    std::string enhanced;
    std::string text;
  } cases[] = {
      {"tempfail 451", Verdict::tempfail(r451, "r"), VerdictKind::kTempfail, 451, "4.7.1", "later"},
      {"tempfail given 550", Verdict::tempfail(r550, "r"), VerdictKind::kTempfail, 451, "4.7.1",
       "listed"},
      {"tempfail given 250", Verdict::tempfail(r250, "r"), VerdictKind::kTempfail, 451, "4.7.1",
       "fine"},
      {"reject 550", Verdict::reject(r550, "r"), VerdictKind::kReject, 550, "5.7.1", "listed"},
      {"reject given 451", Verdict::reject(r451, "r"), VerdictKind::kReject, 550, "5.7.1", "later"},
      {"disconnect given 550", Verdict::disconnect(r550, "r"), VerdictKind::kDisconnect, 554,
       "5.7.1", "listed"},
      {"disconnect given 451", Verdict::disconnect(r451, "r"), VerdictKind::kDisconnect, 421,
       "4.7.1", "later"},
      {"disconnect given 250", Verdict::disconnect(r250, "r"), VerdictKind::kDisconnect, 421,
       "4.7.0", "fine"},
  };
  for (const auto& tc : cases) {
    EXPECT_EQ(tc.v.kind(), tc.kind) << tc.name;
    ASSERT_TRUE(tc.v.reply()) << tc.name;
    const Reply& r = *tc.v.reply();
    const std::string want = std::to_string(tc.code) + " " + tc.enhanced + " " + tc.text;
    EXPECT_EQ(r.summary(), want) << tc.name << ": got " << r.summary() << ", want " << want;
    EXPECT_EQ(tc.v.reason(), "r");
  }
}

TEST(Verdict, KindsWithoutReply) {
  EXPECT_TRUE(Verdict::proceed().isContinue());
  EXPECT_FALSE(Verdict::proceed().reply());
  EXPECT_EQ(Verdict::accept("allowlisted").kind(), VerdictKind::kAccept);
  EXPECT_EQ(Verdict::accept("allowlisted").reason(), "allowlisted");
  EXPECT_FALSE(Verdict::accept().reply());
  EXPECT_EQ(Verdict::discard("trap").kind(), VerdictKind::kDiscard);
  EXPECT_FALSE(Verdict::discard("trap").reply());
}

TEST(Verdict, HeadersTravelInOrder) {
  Verdict v = Verdict::proceed();
  v.addHeader("X-A", "1").addHeader("X-B", "2");
  EXPECT_EQ(v.headers(), (std::vector<HeaderField>{{"X-A", "1"}, {"X-B", "2"}}));
}

TEST(Verdict, EditsTravelInOrderAndSurviveANewReason) {
  Verdict v = Verdict::reject(Reply::permanent(550, "5.7.1", "no"), "spam");
  v.addHeader("X-A", "1").removeHeader("X-Spam-Flag").replaceHeader("Subject", "[SPAM] s");
  v.removeHeader("Received", -1);
  const std::vector<HeaderEdit> want = {{HeaderEdit::Kind::kRemove, "X-Spam-Flag", "", 0},
                                        {HeaderEdit::Kind::kReplace, "Subject", "[SPAM] s", 0},
                                        {HeaderEdit::Kind::kRemove, "Received", "", -1}};
  EXPECT_EQ(v.headerEdits(), want);
  const Verdict t = v.withReason("spam time=3ms");
  EXPECT_EQ(t.reason(), "spam time=3ms");
  EXPECT_EQ(t.kind(), VerdictKind::kReject);
  EXPECT_EQ(t.reply()->code(), 550);
  EXPECT_EQ(t.headers(), v.headers());
  EXPECT_EQ(t.headerEdits(), want);
}

TEST(Verdict, Names) {
  const struct {
    VerdictKind k;
    std::string want;
  } cases[] = {{VerdictKind::kContinue, "continue"},     {VerdictKind::kAccept, "accept"},
               {VerdictKind::kTempfail, "tempfail"},     {VerdictKind::kReject, "reject"},
               {VerdictKind::kDisconnect, "disconnect"}, {VerdictKind::kDiscard, "discard"}};
  for (const auto& tc : cases) EXPECT_EQ(verdictName(tc.k), tc.want);
}

}  // namespace
}  // namespace portcullis
