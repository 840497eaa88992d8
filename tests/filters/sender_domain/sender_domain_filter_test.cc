// Tests for the sender_domain filter (filters/sender_domain/): MX, null MX, A/AAAA fallback,
// NXDOMAIN, DNS failures as 451, exemptions, config errors; every DNS case with deferred and
// inline completion, cancellation on destruction, and exactly one completion per hook call.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "filters/sender_domain/sender_domain_filter.h"
#include "tests/support/fake_resolver.h"
#include "tests/support/filter_harness.h"

namespace portcullis {
namespace {

using testing::callHook;
using testing::Collector;
using testing::FakeResolver;
using testing::makeFilter;
using testing::show;
using testing::showQueries;
using testing::viewFor;

// tests/fixtures/dns/zones.conf as the sender_domain filter sees it, plus cases the fixture
// does not have (null MX, one family failing). In the static zone "test." a name that exists
// answers NODATA for the types it lacks; a name never listed is NXDOMAIN.
void loadTestZones(FakeResolver& r) {
  r.set("mx.test", DnsType::kMx, {"mail.mx.test"});
  r.set("mx.test", DnsType::kA, {});
  r.set("mx.test", DnsType::kAaaa, {});
  r.set("aonly.test", DnsType::kMx, {});
  r.set("aonly.test", DnsType::kA, {"127.0.0.1"});
  r.set("aonly.test", DnsType::kAaaa, {});
  r.set("ip6-client.test", DnsType::kMx, {});
  r.set("ip6-client.test", DnsType::kA, {});
  r.set("ip6-client.test", DnsType::kAaaa, {"::1"});
  r.set("nomx-noaddr.test", DnsType::kMx, {});
  r.set("nomx-noaddr.test", DnsType::kA, {});
  r.set("nomx-noaddr.test", DnsType::kAaaa, {});
  // nx.test: never set, so NXDOMAIN.
  r.setStatus("drop.test", DnsType::kMx, DnsStatus::kTimeout);
  r.setStatus("refused.test", DnsType::kMx, DnsStatus::kServFail);
  // Not in zones.conf.
  r.set("nullmx.test", DnsType::kMx, {""});       // our resolver's rendering of "."
  r.set("nullmx-dot.test", DnsType::kMx, {"."});  // a resolver that keeps the dot
  r.set("mixed-null.test", DnsType::kMx, {"", "mail.mixed-null.test"});
  r.set("a-timeout.test", DnsType::kMx, {});
  r.setStatus("a-timeout.test", DnsType::kA, DnsStatus::kTimeout);
  r.set("a-timeout.test", DnsType::kAaaa, {});
  r.set("a-timeout-aaaa.test", DnsType::kMx, {});
  r.setStatus("a-timeout-aaaa.test", DnsType::kA, DnsStatus::kTimeout);
  r.set("a-timeout-aaaa.test", DnsType::kAaaa, {"2001:db8::25"});
  r.set("aaaa-fail.test", DnsType::kMx, {});
  r.set("aaaa-fail.test", DnsType::kA, {});
  r.setStatus("aaaa-fail.test", DnsType::kAaaa, DnsStatus::kServFail);
  r.setStatus("error.test", DnsType::kMx, DnsStatus::kError);
}

testing::TestSession mailView(const std::string& from, bool nullSender = false) {
  testing::TestSession v = viewFor("192.0.2.1");
  v.helo = "client.example";
  v.envelope.nullSender = nullSender;
  v.envelope.mailFrom = from;
  return v;
}

struct Case {
  std::string from;
  std::string yaml;
  std::string want;
  std::vector<DnsType> wantQueries;
  std::string wantReason = {};  // prefix: names the outcome
  bool nullSender = false;
};

constexpr DnsType kMx = DnsType::kMx;
constexpr DnsType kA = DnsType::kA;
constexpr DnsType kAaaa = DnsType::kAaaa;

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      // Exempt: nothing to look up.
      {"", "", "continue", {}, "", true},
      {"user@[192.0.2.1]", "", "continue", {}},
      {"user@[IPv6:2001:db8::1]", "", "continue", {}},
      {"postmaster", "", "continue", {}},
      // An SMTPUTF8 U-label (RFC 6531) would need IDNA conversion first: not checked.
      {"user@bücher.test", "", "continue", {}},
      // MX found.
      {"user@mx.test", "", "continue", {kMx}},
      {"User@MX.Test.", "", "continue", {kMx}},
      {"\"odd@local\"@mx.test", "", "continue", {kMx}},
      {"user@mixed-null.test", "", "continue", {kMx}},
      // RFC 5321 5.1 implicit MX.
      {"user@aonly.test", "", "continue", {kMx, kA}},
      {"user@ip6-client.test", "", "continue", {kMx, kA, kAaaa}},
      {"user@a-timeout-aaaa.test", "", "continue", {kMx, kA, kAaaa}},
      // Not found.
      {"user@nx.test",
       "",
       "reject 550 5.1.8 <user@nx.test>: Sender address rejected: Domain not found",
       {kMx},
       "not_found: nx.test MX nxdomain"},
      {"user@nomx-noaddr.test",
       "",
       "reject 550 5.1.8 <user@nomx-noaddr.test>: Sender address rejected: Domain not found",
       {kMx, kA, kAaaa},
       "not_found: nomx-noaddr.test MX nodata, A nodata, AAAA nodata"},
      {"user@aonly.test",
       "check_a_records: false",
       "reject 550 5.1.8 <user@aonly.test>: Sender address rejected: Domain not found",
       {kMx},
       "not_found"},
      {"user@bad..test",
       "",
       "reject 550 5.1.8 <user@bad..test>: Sender address rejected: Domain not found",
       {},
       "not_found: invalid domain"},
      {"user@",
       "",
       "reject 550 5.1.8 <user@>: Sender address rejected: Domain not found",
       {},
       "not_found: invalid domain"},
      {"user@ex!ample.test",
       "",
       "reject 550 5.1.8 <user@ex!ample.test>: Sender address rejected: Domain not found",
       {},
       "not_found: invalid domain"},
      // RFC 7505 null MX.
      {"user@nullmx.test",
       "",
       "reject 550 5.7.27 <user@nullmx.test>: Sender address rejected: Domain does not accept "
       "mail",
       {kMx},
       "null_mx"},
      {"user@nullmx-dot.test",
       "",
       "reject 550 5.7.27 <user@nullmx-dot.test>: Sender address rejected: Domain does not "
       "accept mail",
       {kMx},
       "null_mx"},
      // DNS failures tempfail (the sender retries).
      {"user@drop.test",
       "",
       "tempfail 451 4.1.8 <user@drop.test>: Sender address rejected: Domain not found "
       "(temporary DNS failure)",
       {kMx},
       "dns_failure: drop.test MX timeout"},
      {"user@refused.test",
       "",
       "tempfail 451 4.1.8 <user@refused.test>: Sender address rejected: Domain not found "
       "(temporary DNS failure)",
       {kMx},
       "dns_failure: refused.test MX servfail"},
      {"user@error.test",
       "",
       "tempfail 451 4.1.8 <user@error.test>: Sender address rejected: Domain not found "
       "(temporary DNS failure)",
       {kMx},
       "dns_failure"},
      {"user@a-timeout.test",
       "",
       "tempfail 451 4.1.8 <user@a-timeout.test>: Sender address rejected: Domain not found "
       "(temporary DNS failure)",
       {kMx, kA, kAaaa},
       "dns_failure: a-timeout.test MX nodata, A timeout, AAAA nodata"},
      {"user@aaaa-fail.test",
       "",
       "tempfail 451 4.1.8 <user@aaaa-fail.test>: Sender address rejected: Domain not found "
       "(temporary DNS failure)",
       {kMx, kA, kAaaa},
       "dns_failure"},
      // Outside text is sanitised before it reaches the reply.
      {std::string("us\x01") + "er\r\n@nx.test",
       "",
       "reject 550 5.1.8 <user @nx.test>: Sender address rejected: Domain not found",
       {kMx},
       "not_found"},
  };
  return all;
}

void expectCase(const Case& c, const Collector& sink, const FakeResolver& resolver,
                const std::string& mode) {
  const std::string label = mode + " from=<" + c.from + "> yaml={" + c.yaml + "}";
  EXPECT_EQ(show(sink), c.want) << label << ": got " << show(sink) << " want " << c.want;
  EXPECT_EQ(sink.completions, 1) << label;
  EXPECT_EQ(sink.duplicates, 0) << label;
  std::vector<DnsType> types;
  for (const auto& q : resolver.queries()) types.push_back(q.second);
  EXPECT_EQ(types, c.wantQueries) << label << ": got queries " << showQueries(resolver);
  if (sink.verdict && !c.wantReason.empty()) {
    EXPECT_EQ(sink.verdict->reason().rfind(c.wantReason, 0), 0u)
        << label << ": got reason \"" << sink.verdict->reason() << "\" want prefix \""
        << c.wantReason << "\"";
  }
}

TEST(SenderDomainFilter, Deferred) {
  for (const auto& c : cases()) {
    FakeResolver resolver;
    loadTestZones(resolver);
    auto filter = makeFilter("sender_domain", c.yaml, {&resolver});
    auto sink = std::make_shared<Collector>();
    const testing::TestSession view = mailView(c.from, c.nullSender);
    callHook(*filter, &Filter::onMailFrom, view, sink);
    if (!c.wantQueries.empty()) {
      EXPECT_EQ(sink->completions, 0) << c.from << ": completed before the answer arrived";
      EXPECT_EQ(resolver.pendingCount(), 1u) << c.from;
    }
    resolver.flush();
    EXPECT_EQ(resolver.pendingCount(), 0u) << c.from;
    expectCase(c, *sink, resolver, "deferred");
  }
}

TEST(SenderDomainFilter, Inline) {
  for (const auto& c : cases()) {
    FakeResolver resolver;
    loadTestZones(resolver);
    resolver.setInline(true);
    auto filter = makeFilter("sender_domain", c.yaml, {&resolver});
    auto sink = std::make_shared<Collector>();
    const testing::TestSession view = mailView(c.from, c.nullSender);
    callHook(*filter, &Filter::onMailFrom, view, sink);
    expectCase(c, *sink, resolver, "inline");
    filter.reset();
    EXPECT_EQ(resolver.flush(), 0);
    EXPECT_EQ(sink->completions, 1) << c.from << ": completed again after destruction";
  }
}

TEST(SenderDomainFilter, DestroyingTheFilterCancelsItsLookups) {
  for (const std::string from : {"user@mx.test", "user@nomx-noaddr.test", "user@drop.test"}) {
    FakeResolver resolver;
    loadTestZones(resolver);
    auto filter = makeFilter("sender_domain", "", {&resolver});
    auto sink = std::make_shared<Collector>();
    const testing::TestSession view = mailView(from);
    callHook(*filter, &Filter::onMailFrom, view, sink);
    ASSERT_EQ(resolver.pendingCount(), 1u);
    filter.reset();  // the session went away
    EXPECT_EQ(resolver.pendingCount(), 0u) << from << ": lookup not cancelled";
    EXPECT_EQ(resolver.flush(), 0) << from << ": a cancelled answer was delivered";
    // No verdict ever arrives. (The unanswered Next reports itself as dropped; the real chain
    // disarms its sink before destroying filters, so that report goes nowhere.)
    EXPECT_FALSE(sink->verdict) << from << ": got " << show(*sink);
    EXPECT_LE(sink->completions, 1);
    EXPECT_EQ(sink->duplicates, 0);
  }
}

TEST(SenderDomainFilter, ANewMailSupersedesAPendingLookup) {
  // The chain timed out the first MAIL (client RSET and tried again).
  FakeResolver resolver;
  loadTestZones(resolver);
  auto filter = makeFilter("sender_domain", "", {&resolver});
  auto first = std::make_shared<Collector>();
  const testing::TestSession v1 = mailView("user@nx.test");
  callHook(*filter, &Filter::onMailFrom, v1, first);
  auto second = std::make_shared<Collector>();
  const testing::TestSession v2 = mailView("user@mx.test");
  callHook(*filter, &Filter::onMailFrom, v2, second);
  EXPECT_EQ(resolver.pendingCount(), 1u) << "the first lookup was not cancelled";
  resolver.flush();
  EXPECT_FALSE(first->verdict) << "got " << show(*first);
  EXPECT_EQ(show(*second), "continue");
  EXPECT_EQ(second->completions, 1);
}

TEST(SenderDomainFilter, ConfigErrorsNameTheKey) {
  struct ErrorCase {
    std::string yaml;
    std::string wantKey;
    std::string wantMessage;
  };
  const std::vector<ErrorCase> errors = {
      {"check_a_records: maybe", "filters[0].check_a_records", "expected true or false"},
      {"check_a_record: true", "filters[0].check_a_record", "unknown key"},
      {"reject_code: 554", "filters[0].reject_code", "unknown key"},
  };
  for (const auto& c : errors) {
    FakeResolver resolver;
    try {
      makeFilter("sender_domain", c.yaml, {&resolver});
      ADD_FAILURE() << c.yaml << ": got no error, want one naming " << c.wantKey;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.key(), c.wantKey) << c.yaml << ": got key " << e.key();
      EXPECT_NE(std::string(e.what()).find(c.wantMessage), std::string::npos)
          << c.yaml << ": got \"" << e.what() << "\" want it to contain \"" << c.wantMessage
          << "\"";
    }
  }
  FakeResolver resolver;
  EXPECT_NO_THROW(makeFilter("sender_domain", "check_a_records: true", {&resolver}));
}

}  // namespace
}  // namespace portcullis
