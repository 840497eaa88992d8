// The reply code table has an entry, written for admins, for every code of RFC 5321 4.2.3 and
// RFC 3463 (and the later registry codes admins meet). The codes are listed here explicitly,
// not taken from the table, so a missing entry fails.

#include "proxy/explain/reply_codes.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace portcullis {
namespace {

// RFC 5321 4.2.3, "Reply Codes in Numeric Order".
constexpr int kRfc5321Codes[] = {211, 214, 220, 221, 250, 251, 252, 354, 421, 450, 451, 452,
                                 455, 500, 501, 502, 503, 504, 550, 551, 552, 553, 554, 555};

// RFC 3463 section 3, every subject and detail, with the classes each is used with (X.1.5 is
// the positive "destination address valid"; the others are failures, 4 or 5; X.0.0 is all).
const std::vector<std::string> kRfc3463Codes = {
    "2.0.0",
    "4.0.0",
    "5.0.0",
    // 3.2 addressing
    "2.1.0",
    "4.1.0",
    "5.1.0",
    "4.1.1",
    "5.1.1",
    "4.1.2",
    "5.1.2",
    "4.1.3",
    "5.1.3",
    "4.1.4",
    "5.1.4",
    "2.1.5",
    "4.1.6",
    "5.1.6",
    "4.1.7",
    "5.1.7",
    "4.1.8",
    "5.1.8",
    // 3.3 mailbox
    "4.2.0",
    "5.2.0",
    "4.2.1",
    "5.2.1",
    "4.2.2",
    "5.2.2",
    "4.2.3",
    "5.2.3",
    "4.2.4",
    "5.2.4",
    // 3.4 mail system
    "4.3.0",
    "5.3.0",
    "4.3.1",
    "5.3.1",
    "4.3.2",
    "5.3.2",
    "4.3.3",
    "5.3.3",
    "4.3.4",
    "5.3.4",
    "4.3.5",
    "5.3.5",
    // 3.5 network and routing
    "4.4.0",
    "5.4.0",
    "4.4.1",
    "5.4.1",
    "4.4.2",
    "5.4.2",
    "4.4.3",
    "5.4.3",
    "4.4.4",
    "5.4.4",
    "4.4.5",
    "5.4.5",
    "4.4.6",
    "5.4.6",
    "4.4.7",
    "5.4.7",
    // 3.6 mail delivery protocol
    "4.5.0",
    "5.5.0",
    "4.5.1",
    "5.5.1",
    "4.5.2",
    "5.5.2",
    "4.5.3",
    "5.5.3",
    "4.5.4",
    "5.5.4",
    "4.5.5",
    "5.5.5",
    // 3.7 message content or media
    "4.6.0",
    "5.6.0",
    "4.6.1",
    "5.6.1",
    "4.6.2",
    "5.6.2",
    "4.6.3",
    "5.6.3",
    "2.6.4",
    "4.6.4",
    "5.6.4",
    "4.6.5",
    "5.6.5",
    // 3.8 security or policy
    "2.7.0",
    "4.7.0",
    "5.7.0",
    "4.7.1",
    "5.7.1",
    "4.7.2",
    "5.7.2",
    "4.7.3",
    "5.7.3",
    "4.7.4",
    "5.7.4",
    "4.7.5",
    "5.7.5",
    "4.7.6",
    "5.7.6",
    "4.7.7",
    "5.7.7",
};

// Later registry codes admins meet (RFC 3886, 4468, 4954, 5248, 6531, 6710, 7293, 7372, 7505).
const std::vector<std::string> kRegistryCodes = {
    "5.1.10", "4.3.6",  "5.3.6",  "4.5.6",  "5.5.6",  "5.6.6",  "5.6.7",  "5.6.8",
    "5.6.9",  "5.6.10", "5.7.8",  "5.7.9",  "4.7.10", "5.7.11", "4.7.12", "5.7.13",
    "5.7.14", "5.7.20", "5.7.23", "4.7.24", "5.7.24", "5.7.25", "5.7.26", "5.7.27",
};

TEST(ReplyCodes, EveryRfc5321CodeHasAnAdminEntry) {
  for (const int code : kRfc5321Codes) {
    const BasicReplyCode* e = findBasicCode(code);
    ASSERT_NE(e, nullptr) << "no entry for " << code;
    EXPECT_FALSE(e->text.empty()) << code;
    EXPECT_FALSE(e->meaning.empty()) << code;
    EXPECT_FALSE(e->admin.empty()) << code;
    EXPECT_NE(replyClassOf(code), ReplyClass::kInvalid) << code;
  }
}

void expectEnhancedEntries(const std::vector<std::string>& codes) {
  for (const auto& code : codes) {
    const auto parsed = parseEnhancedCode(code);
    ASSERT_TRUE(parsed.has_value()) << code;
    const EnhancedStatusCode* e = findEnhancedCode(parsed->cls, parsed->subject, parsed->detail);
    ASSERT_NE(e, nullptr) << "no entry for " << code;
    EXPECT_FALSE(e->title.empty()) << code;
    EXPECT_FALSE(e->meaning.empty()) << code;
    EXPECT_FALSE(e->admin.empty()) << code;
  }
}

TEST(ReplyCodes, EveryRfc3463CodeHasAnAdminEntry) { expectEnhancedEntries(kRfc3463Codes); }

TEST(ReplyCodes, CommonRegistryCodesHaveAnEntry) { expectEnhancedEntries(kRegistryCodes); }

TEST(ReplyCodes, ClassesThatDoNotApplyAreNotFound) {
  EXPECT_EQ(findEnhancedCode(5, 1, 5), nullptr);  // X.1.5 is a positive report only
  EXPECT_EQ(findEnhancedCode(2, 7, 1), nullptr);  // a refusal cannot be a success
  EXPECT_EQ(findEnhancedCode(3, 0, 0), nullptr);  // RFC 3463 2: classes are 2, 4, 5
  EXPECT_EQ(findEnhancedCode(5, 7, 999), nullptr);
  EXPECT_EQ(findBasicCode(299), nullptr);
}

TEST(ReplyCodes, ParsesCodeSpecs) {
  struct Case {
    const char* in;
    bool ok;
    int basic;  // 0: none
    const char* enhanced;
  };
  const Case cases[] = {
      {"451", true, 451, ""},
      {"5.7.1", true, 0, "5.7.1"},
      {"550 5.7.1", true, 550, "5.7.1"},
      {" 550-5.7.1 ", true, 550, "5.7.1"},
      {"4.7.25", true, 0, "4.7.25"},
      {"45", false, 0, ""},
      {"650", false, 0, ""},
      {"3.1.1", false, 0, ""},
      {"550 x", false, 0, ""},
      {"", false, 0, ""},
      {"5.7", false, 0, ""},
      {"5.7.1000", false, 0, ""},
  };
  for (const auto& c : cases) {
    const auto spec = parseCodeSpec(c.in);
    ASSERT_EQ(spec.has_value(), c.ok)
        << "got " << spec.has_value() << ", want " << c.ok << " for \"" << c.in << "\"";
    if (!spec) continue;
    EXPECT_EQ(spec->basic.value_or(0), c.basic) << c.in;
    if (*c.enhanced) {
      ASSERT_TRUE(spec->enhanced.has_value()) << c.in;
      const auto want = parseEnhancedCode(c.enhanced);
      EXPECT_EQ(spec->enhanced->cls, want->cls);
      EXPECT_EQ(spec->enhanced->subject, want->subject);
      EXPECT_EQ(spec->enhanced->detail, want->detail);
    } else {
      EXPECT_FALSE(spec->enhanced.has_value()) << c.in;
    }
  }
}

TEST(ReplyCodes, DescriptionSaysTransientOrPermanentAndWhatHappensNext) {
  const std::string t = describeCode(*parseCodeSpec("451 4.4.3"));
  EXPECT_NE(t.find("transient"), std::string::npos) << t;
  EXPECT_NE(t.find("retries"), std::string::npos) << t;
  EXPECT_NE(t.find("Directory server failure"), std::string::npos) << t;
  EXPECT_NE(t.find("Admin:"), std::string::npos) << t;

  const std::string p = describeCode(*parseCodeSpec("5.7.1"));
  EXPECT_NE(p.find("permanent"), std::string::npos) << p;
  EXPECT_NE(p.find("bounce"), std::string::npos) << p;

  // Not in the table: read by the subject and the first digit (RFC 5321 4.2, RFC 3463 2).
  const std::string u = describeCode(*parseCodeSpec("459 4.7.99"));
  EXPECT_NE(u.find("not in the table"), std::string::npos) << u;
  EXPECT_NE(u.find("transient"), std::string::npos) << u;
}

}  // namespace
}  // namespace portcullis
