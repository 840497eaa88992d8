// Tests for the header_checks filter (filters/header_checks/): first-match order per header
// line, each action, add_header accumulation (once per rule per message), case sensitivity,
// the stage key, config errors naming their keys, and the match limit that stops a
// catastrophic pattern. header_checks never waits, so every call completes inline, once.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "filters/header_checks/header_checks_filter.h"
#include "tests/support/filter_harness.h"

namespace portcullis {
namespace {

using testing::callHook;
using testing::Collector;
using testing::makeFilter;
using testing::show;
using testing::viewFor;

testing::TestSession messageView(std::vector<HeaderField> headers) {
  testing::TestSession v = viewFor("192.0.2.1");
  v.envelope.mailFrom = "sender@example.test";
  v.envelope.recipients = {"rcpt@example.test"};
  v.message.headers = std::move(headers);
  return v;
}

// The rules from the issue.
const char* const kRules = R"(
rules:
  - match: '^Subject:.*viagra'
    action: reject
  - match: '^X-Spam-Flag:\s*YES'
    action: discard
  - match: '^From:.*@partner\.example'
    action: accept
  - match: '^Received:'
    action: add_header
    header: "X-Checked: yes"
)";

struct Case {
  std::string name;
  std::string yaml;
  std::vector<HeaderField> headers;
  std::string want;
  std::string wantReason = {};  // exact, when set
};

TEST(HeaderChecksFilter, Rules) {
  const std::vector<Case> cases = {
      {"no headers", kRules, {}, "continue"},
      {"nothing matches", kRules, {{"Subject", "hello"}, {"From", "a@example.test"}}, "continue"},
      {"reject, caseless by default",
       kRules,
       {{"Subject", "cheap VIAGRA now"}},
       "reject 550 5.7.1 Message content rejected",
       "rules[0] matched header Subject: cheap VIAGRA now"},
      {"header name matched caselessly too",
       kRules,
       {{"SUBJECT", "viagra"}},
       "reject 550 5.7.1 Message content rejected"},
      {"discard",
       kRules,
       {{"Subject", "hi"}, {"X-Spam-Flag", "YES"}},
       "discard",
       "rules[1] matched header X-Spam-Flag: YES"},
      {"accept stops before a later reject",
       kRules,
       {{"From", "Bob <bob@partner.example>"}, {"Subject", "viagra"}},
       "accept"},
      {"header order decides: reject comes first",
       kRules,
       {{"Subject", "viagra"}, {"From", "bob@partner.example"}},
       "reject 550 5.7.1 Message content rejected"},
      {"add_header fires once per message",
       kRules,
       {{"Received", "from a"}, {"Received", "from b"}, {"Subject", "hi"}},
       "continue +X-Checked: yes"},
      {"added headers travel with accept",
       kRules,
       {{"Received", "from a"}, {"From", "bob@partner.example"}},
       "accept +X-Checked: yes"},
      {"a later reject wins over an add_header",
       kRules,
       {{"Received", "from a"}, {"Subject", "viagra"}},
       "reject 550 5.7.1 Message content rejected"},
      {"unfolded value: the folding whitespace stays, the CRLF is gone",
       kRules,
       {{"Subject", "part one\tand viagra"}},
       "reject 550 5.7.1 Message content rejected"},
      // First match per line: the add_header rule decides for "Subject: viagra", so the reject
      // rule below it never sees that line; it still sees other lines.
      {"first matching rule decides for a line",
       R"(
rules:
  - match: '^Subject:'
    action: add_header
    header: "X-Had-Subject: 1"
  - match: 'viagra'
    action: reject
)",
       {{"Subject", "viagra"}},
       "continue +X-Had-Subject: 1"},
      {"first matching rule decides for a line, other lines still checked",
       R"(
rules:
  - match: '^Subject:'
    action: add_header
    header: "X-Had-Subject: 1"
  - match: 'viagra'
    action: reject
)",
       {{"Subject", "viagra"}, {"X-Note", "viagra"}},
       "reject 550 5.7.1 Message content rejected",
       "rules[1] matched header X-Note: viagra"},
      {"several add_header rules accumulate in firing order",
       R"(
rules:
  - match: '^DKIM-Signature:'
    action: add_header
    header: "X-B: two"
  - match: '^Received:'
    action: add_header
    header: "X-A:   one  "
)",
       {{"Received", "x"}, {"DKIM-Signature", "v=1"}, {"Received", "y"}},
       "continue +X-A: one +X-B: two"},
      {"case_sensitive: true does not match other case",
       R"(
rules:
  - match: '^Subject:.*Viagra'
    action: reject
    case_sensitive: true
)",
       {{"Subject", "VIAGRA"}},
       "continue"},
      {"case_sensitive: true matches same case",
       R"(
rules:
  - match: '^Subject:.*Viagra'
    action: reject
    case_sensitive: true
)",
       {{"Subject", "Viagra"}},
       "reject 550 5.7.1 Message content rejected"},
      {"inline (?i) still works with case_sensitive",
       R"(
rules:
  - match: '(?i)^subject:.*viagra'
    action: reject
    case_sensitive: true
)",
       {{"Subject", "VIAGRA"}},
       "reject 550 5.7.1 Message content rejected"},
      {"tempfail default reply",
       R"(
rules:
  - match: '^X-Virus:'
    action: tempfail
)",
       {{"X-Virus", "maybe"}},
       "tempfail 451 4.7.1 Message content deferred"},
      {"custom replies",
       R"(
rules:
  - match: '^X-Virus:'
    action: tempfail
    reply: "450 4.7.1 Try again later"
  - match: '^Subject:'
    action: reject
    reply: "554 5.7.0 Go away"
)",
       {{"Subject", "x"}},
       "reject 554 5.7.0 Go away"},
      {"custom tempfail reply",
       R"(
rules:
  - match: '^X-Virus:'
    action: tempfail
    reply: "450 4.7.1 Try again later"
)",
       {{"X-Virus", "x"}},
       "tempfail 450 4.7.1 Try again later"},
      {"backreferences (PCRE syntax)",
       R"(
rules:
  - match: '^From:.*<([^@>]+)@[^>]+>.*\1'
    action: discard
)",
       {{"From", "\"joe\" <joe@example.test> joe"}},
       "discard"},
      {"lookaround (PCRE syntax)",
       R"(
rules:
  - match: '^Subject:(?!.*\[ok\]).*urgent'
    action: reject
)",
       {{"Subject", "urgent [ok]"}, {"Subject", "urgent!!"}},
       "reject 550 5.7.1 Message content rejected"},
  };
  for (const auto& c : cases) {
    auto filter = makeFilter("header_checks", c.yaml, {});
    auto sink = std::make_shared<Collector>();
    const testing::TestSession view = messageView(c.headers);
    callHook(*filter, &Filter::onEndOfHeaders, view, sink);
    EXPECT_EQ(show(*sink), c.want) << c.name << ": got " << show(*sink) << " want " << c.want;
    EXPECT_EQ(sink->completions, 1) << c.name;
    EXPECT_EQ(sink->duplicates, 0) << c.name;
    if (!c.wantReason.empty() && sink->verdict) {
      EXPECT_EQ(sink->verdict->reason(), c.wantReason) << c.name;
    }
    // The default stage is end_of_headers; end_of_message has nothing to add.
    auto eom = std::make_shared<Collector>();
    callHook(*filter, &Filter::onEndOfMessage, view, eom);
    EXPECT_EQ(show(*eom), "continue") << c.name << ": end_of_message";
  }
}

TEST(HeaderChecksFilter, StageEndOfMessage) {
  const std::string yaml = std::string("stage: end_of_message\n") + kRules;
  auto filter = makeFilter("header_checks", yaml, {});
  const testing::TestSession view = messageView({{"Received", "x"}, {"Subject", "viagra"}});
  auto eoh = std::make_shared<Collector>();
  callHook(*filter, &Filter::onEndOfHeaders, view, eoh);
  EXPECT_EQ(show(*eoh), "continue") << "got " << show(*eoh) << " at end_of_headers";
  auto eom = std::make_shared<Collector>();
  callHook(*filter, &Filter::onEndOfMessage, view, eom);
  EXPECT_EQ(show(*eom), "reject 550 5.7.1 Message content rejected");
  EXPECT_EQ(eom->completions, 1);

  // The same filter instance serves the next message: add_header fires again there.
  const testing::TestSession next = messageView({{"Received", "x"}});
  auto again = std::make_shared<Collector>();
  callHook(*filter, &Filter::onEndOfMessage, next, again);
  EXPECT_EQ(show(*again), "continue +X-Checked: yes");
}

TEST(HeaderChecksFilter, ReasonNamesRuleAndHeaderButTruncatesTheValue) {
  auto filter = makeFilter("header_checks", kRules, {});
  const std::string huge = "viagra " + std::string(100'000, 'x') + "\r\n\x01";
  const testing::TestSession view = messageView({{"Subject", huge}});
  auto sink = std::make_shared<Collector>();
  callHook(*filter, &Filter::onEndOfHeaders, view, sink);
  ASSERT_TRUE(sink->verdict) << show(*sink);
  const std::string& reason = sink->verdict->reason();
  EXPECT_EQ(reason.rfind("rules[0] matched header Subject: viagra xxx", 0), 0u) << reason;
  EXPECT_LT(reason.size(), 200u) << "got a reason of " << reason.size() << " octets";
  EXPECT_EQ(reason.find_first_of("\r\n\x01"), std::string::npos);
}

TEST(HeaderChecksFilter, CatastrophicPatternHitsTheMatchLimitInsteadOfHanging) {
  // (a+)+$ against "aaaa...!" backtracks exponentially; the match limit ends it. The call
  // completes (here with a failure the chain's on_error turns into a tempfail or a continue).
  const std::vector<std::string> patterns = {"(a+)+$", "^X-Long:\\s*(a|aa)+$",
                                             "^X-Long: (\\w+\\s?)*$"};
  for (const auto& pattern : patterns) {
    const std::string yaml = "rules:\n  - match: '" + pattern + "'\n    action: reject\n";
    auto filter = makeFilter("header_checks", yaml, {});
    const testing::TestSession view =
        messageView({{"Subject", "short"}, {"X-Long", std::string(30'000, 'a') + "!"}});
    auto sink = std::make_shared<Collector>();
    callHook(*filter, &Filter::onEndOfHeaders, view, sink);
    EXPECT_EQ(sink->completions, 1) << pattern;
    const bool failed = !sink->verdict && !sink->error.empty();
    const bool proceeded = sink->verdict && sink->verdict->isContinue();
    EXPECT_TRUE(failed || proceeded)
        << pattern << ": got " << show(*sink) << " want a failure or continue";
    if (failed) {
      EXPECT_EQ(sink->error.rfind("rules[0]: match error on header X-Long: ", 0), 0u)
          << sink->error;
    }
  }
}

TEST(HeaderChecksFilter, ConfigErrorsNameTheKey) {
  struct ErrorCase {
    std::string yaml;
    std::string wantKey;
    std::string wantMessage;
  };
  const std::vector<ErrorCase> cases = {
      {"", "filters[0].rules", "required key is missing"},
      {"rules: []", "filters[0].rules", "at least one rule"},
      {"rules: {match: x}", "filters[0].rules", "expected a list"},
      {"rules: [x]", "filters[0].rules[0]", "expected a map"},
      {"rules: [{action: reject}]", "filters[0].rules[0].match", "required key is missing"},
      {"rules: [{match: '', action: reject}]", "filters[0].rules[0].match", "must not be empty"},
      {"rules: [{match: '(', action: reject}]", "filters[0].rules[0].match",
       "invalid regular expression at offset 1: missing closing parenthesis"},
      {"rules: [{match: 'a', action: reject}, {match: 'a[', action: reject}]",
       "filters[0].rules[1].match", "invalid regular expression at offset 2"},
      {"rules: [{match: x}]", "filters[0].rules[0].action", "required key is missing"},
      {"rules: [{match: x, action: bounce}]", "filters[0].rules[0].action",
       "expected one of reject | tempfail | discard | add_header | accept"},
      {"rules: [{match: x, action: reject, reply: '250 2.0.0 ok'}]", "filters[0].rules[0].reply",
       "expected a reply like"},
      {"rules: [{match: x, action: reject, reply: '550 4.7.1 mixed classes'}]",
       "filters[0].rules[0].reply", "expected a reply like"},
      {"rules: [{match: x, action: reject, reply: '451 4.7.1 later'}]", "filters[0].rules[0].reply",
       "action reject needs a 5xx reply, got 451"},
      {"rules: [{match: x, action: tempfail, reply: '550 5.7.1 no'}]", "filters[0].rules[0].reply",
       "action tempfail needs a 4xx reply, got 550"},
      {"rules: [{match: x, action: discard, reply: '550 5.7.1 no'}]", "filters[0].rules[0].reply",
       "only rules with action reject or tempfail"},
      {"rules: [{match: x, action: add_header}]", "filters[0].rules[0].header",
       "required key is missing"},
      {"rules: [{match: x, action: add_header, header: 'NoColon'}]", "filters[0].rules[0].header",
       "expected \"Name: value\""},
      {"rules: [{match: x, action: add_header, header: 'Bad Name: x'}]",
       "filters[0].rules[0].header", "invalid header name"},
      {"rules: [{match: x, action: add_header, header: ': x'}]", "filters[0].rules[0].header",
       "invalid header name"},
      // A line break in the value would be a second header: refused at load.
      {"rules: [{match: x, action: add_header, header: \"X-A: one\\r\\nX-B: two\"}]",
       "filters[0].rules[0].header", "single line"},
      {"rules: [{match: x, action: add_header, header: \"X-A: one\\nBcc: evil\"}]",
       "filters[0].rules[0].header", "single line"},
      {"rules: [{match: x, action: reject, header: 'X-A: 1'}]", "filters[0].rules[0].header",
       "only rules with action add_header"},
      {"rules: [{match: x, action: reject, case_sensitive: maybe}]",
       "filters[0].rules[0].case_sensitive", "expected true or false"},
      {"rules: [{match: x, action: reject, mtach: y}]", "filters[0].rules[0].mtach", "unknown key"},
      {"stage: data\nrules: [{match: x, action: reject}]", "filters[0].stage",
       "expected one of end_of_headers | end_of_message"},
  };
  for (const auto& c : cases) {
    try {
      makeFilter("header_checks", c.yaml, {});
      ADD_FAILURE() << c.yaml << ": got no error, want one naming " << c.wantKey;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.key(), c.wantKey)
          << c.yaml << ": got key " << e.key() << " (" << e.what() << ") want " << c.wantKey;
      EXPECT_NE(std::string(e.what()).find(c.wantMessage), std::string::npos)
          << c.yaml << ": got \"" << e.what() << "\" want it to contain \"" << c.wantMessage
          << "\"";
    }
  }
}

TEST(HeaderChecksFilter, TrailingNewlineFromAYamlBlockIsTrimmed) {
  const char* yaml = R"(
rules:
  - match: '^Received:'
    action: add_header
    header: >
      X-Checked: yes
)";
  auto filter = makeFilter("header_checks", yaml, {});
  const testing::TestSession view = messageView({{"Received", "x"}});
  auto sink = std::make_shared<Collector>();
  callHook(*filter, &Filter::onEndOfHeaders, view, sink);
  EXPECT_EQ(show(*sink), "continue +X-Checked: yes");
}

}  // namespace
}  // namespace portcullis
