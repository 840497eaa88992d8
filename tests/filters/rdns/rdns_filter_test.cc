// rdns filter: every ReverseStatus x require x permanent -> verdict, code and enhanced code;
// the reply text (Postfix's wording, RFC 7372 4.7.25), the log reason (status, PTR name, and a
// temporary DNS failure said as such), PTR names sanitised, config errors naming their key.
// The filter is inline only; exactly one completion per call. Table-driven; "got X, want Y".

#include "filters/rdns/rdns_filter.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "portcullis/config_section.h"
#include "tests/support/fake_resolver.h"
#include "tests/support/filter_harness.h"

namespace portcullis {
namespace {

using testing::Collector;

struct Outcome {
  std::string kind;  // continue | tempfail | reject | error
  int code = 0;
  std::string enhanced;
};

std::string show(const Outcome& o) {
  return o.kind + (o.code ? " " + std::to_string(o.code) + " " + o.enhanced : "");
}

struct Result {
  std::shared_ptr<Collector> sink = std::make_shared<Collector>();
  Outcome outcome;
};

Result runConnect(const std::string& yaml, ReverseStatus status, const std::string& ptrName,
                  const std::string& address = "192.0.2.1") {
  testing::FakeResolver resolver;
  const FilterContext context{&resolver};
  auto filter = testing::makeFilter("rdns", yaml, context);
  testing::TestSession view = testing::viewFor(address);
  view.client.reverse = status;
  view.client.ptrName = ptrName;
  view.client.name = status == ReverseStatus::kVerified ? ptrName : "";
  Result r;
  testing::callHook(*filter, &Filter::onConnect, view, r.sink);
  EXPECT_TRUE(resolver.queries().empty()) << "the rdns filter made its own DNS query";
  if (!r.sink->verdict) {
    r.outcome.kind = r.sink->completions ? "error" : "nothing";
  } else {
    r.outcome.kind = std::string(verdictName(r.sink->verdict->kind()));
    if (const auto& reply = r.sink->verdict->reply()) {
      r.outcome.code = reply->code();
      r.outcome.enhanced = reply->enhanced();
    }
  }
  return r;
}

TEST(RdnsFilterTest, StatusRequirePermanentTable) {
  struct Case {
    ReverseStatus status;
    std::string require;
    bool permanent;
    Outcome want;
  };
  const Outcome pass{"continue", 0, ""};
  const Outcome soft{"tempfail", 450, "4.7.25"};
  const Outcome hard{"reject", 550, "5.7.25"};
  const Outcome error{"error", 0, ""};
  using RS = ReverseStatus;
  const std::vector<Case> cases = {
      {RS::kVerified, "fcrdns", false, pass},
      {RS::kVerified, "fcrdns", true, pass},
      {RS::kVerified, "ptr", false, pass},
      {RS::kVerified, "ptr", true, pass},
      {RS::kMismatch, "fcrdns", false, soft},
      {RS::kMismatch, "fcrdns", true, hard},
      {RS::kMismatch, "ptr", false, pass},
      {RS::kMismatch, "ptr", true, pass},
      {RS::kNoPtr, "fcrdns", false, soft},
      {RS::kNoPtr, "fcrdns", true, hard},
      {RS::kNoPtr, "ptr", false, soft},
      {RS::kNoPtr, "ptr", true, hard},
      // DNS trouble is never permanent: the client can retry.
      {RS::kTempFail, "fcrdns", false, soft},
      {RS::kTempFail, "fcrdns", true, soft},
      {RS::kTempFail, "ptr", false, soft},
      {RS::kTempFail, "ptr", true, soft},
      {RS::kNotLooked, "fcrdns", false, error},
      {RS::kNotLooked, "fcrdns", true, error},
      {RS::kNotLooked, "ptr", false, error},
      {RS::kNotLooked, "ptr", true, error},
  };
  for (const auto& c : cases) {
    const std::string yaml =
        "require: " + c.require + "\npermanent: " + (c.permanent ? "true" : "false");
    const Result r = runConnect(yaml, c.status, "host.example.net");
    EXPECT_EQ(show(r.outcome), show(c.want))
        << reverseStatusName(c.status) << " require=" << c.require << " permanent=" << c.permanent
        << ": got X, want Y";
    EXPECT_EQ(r.sink->completions, 1) << reverseStatusName(c.status);
    EXPECT_EQ(r.sink->duplicates, 0) << reverseStatusName(c.status);
  }
}

TEST(RdnsFilterTest, DefaultsAreFcrdnsAndTemporary) {
  const Result r = runConnect("", ReverseStatus::kMismatch, "mismatch.test");
  EXPECT_EQ(show(r.outcome), "tempfail 450 4.7.25");
}

TEST(RdnsFilterTest, ReplyAndReason) {
  struct Case {
    std::string name;
    std::string yaml;
    ReverseStatus status;
    std::string ptr;
    std::string address;
    std::string wantReply;
    std::vector<std::string> wantInReason;
  };
  const std::vector<Case> cases = {
      {"no PTR",
       "",
       ReverseStatus::kNoPtr,
       "",
       "192.0.2.1",
       "450 4.7.25 Client host rejected: cannot find your reverse hostname, [192.0.2.1]",
       {"reverse=no-ptr", "ptr=none", "require=fcrdns"}},
      {"mismatch, permanent",
       "permanent: true",
       ReverseStatus::kMismatch,
       "mismatch.test",
       "2001:db8::25",
       "550 5.7.25 Client host rejected: cannot find your reverse hostname, [2001:db8::25]",
       {"reverse=mismatch", "ptr=mismatch.test"}},
      {"temporary DNS failure, permanent ignored",
       "permanent: true\nrequire: ptr",
       ReverseStatus::kTempFail,
       "",
       "192.0.2.1",
       "450 4.7.25 Client host rejected: cannot find your reverse hostname, [192.0.2.1]",
       {"temporary DNS failure", "reverse=tempfail", "require=ptr"}},
      {"PTR name from outside is sanitised",
       "",
       ReverseStatus::kMismatch,
       "evil.test\r\n250 ok\x01",
       "192.0.2.1",
       "450 4.7.25 Client host rejected: cannot find your reverse hostname, [192.0.2.1]",
       {"ptr=evil.test 250 ok"}},
  };
  for (const auto& c : cases) {
    const Result r = runConnect(c.yaml, c.status, c.ptr, c.address);
    ASSERT_TRUE(r.sink->verdict && r.sink->verdict->reply()) << c.name;
    EXPECT_EQ(r.sink->verdict->reply()->summary(), c.wantReply) << c.name << ": got X, want Y";
    const std::string& reason = r.sink->verdict->reason();
    for (const auto& want : c.wantInReason) {
      EXPECT_NE(reason.find(want), std::string::npos)
          << c.name << ": got reason \"" << reason << "\", want it to contain \"" << want << "\"";
    }
    EXPECT_EQ(reason.find_first_of("\r\n"), std::string::npos) << c.name << ": CR/LF in reason";
  }
}

TEST(RdnsFilterTest, NotLookedUpIsAFilterError) {
  const Result r = runConnect("", ReverseStatus::kNotLooked, "");
  EXPECT_EQ(r.sink->error, "reverse lookups are disabled (dns.reverse_lookup: false)");
  EXPECT_FALSE(r.sink->verdict.has_value());
}

TEST(RdnsFilterTest, ConfigErrorsNameTheKey) {
  struct Case {
    std::string yaml;
    std::string wantError;  // empty: valid
  };
  const std::vector<Case> cases = {
      {"", ""},
      {"require: ptr\npermanent: yes", ""},
      {"require: fcrdns\npermanent: false", ""},
      {"require: dns", "filters[0].require: expected one of fcrdns | ptr, got \"dns\""},
      {"permanent: maybe", "filters[0].permanent: expected true or false"},
      {"permanant: true", "filters[0].permanant: unknown key"},
  };
  testing::FakeResolver resolver;
  const FilterContext context{&resolver};
  for (const auto& c : cases) {
    std::string got;
    try {
      testing::makeFilter("rdns", c.yaml, context);
    } catch (const ConfigError& e) {
      got = e.what();
    }
    if (c.wantError.empty()) {
      EXPECT_EQ(got, "") << c.yaml << ": got error, want valid";
    } else {
      EXPECT_NE(got.find(c.wantError), std::string::npos)
          << c.yaml << ": got \"" << got << "\", want an error containing \"" << c.wantError
          << "\"";
    }
  }
}

}  // namespace
}  // namespace portcullis
