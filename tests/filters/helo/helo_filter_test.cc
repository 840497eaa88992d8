// Tests for the helo filter (filters/helo/): every check with its code and enhanced code, config
// errors naming their keys, and the DNS path (require_resolvable) with deferred and inline
// completion, cancellation on destruction, and exactly one completion per hook call.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "filters/helo/helo_filter.h"
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

constexpr const char* kClient = "192.0.2.1";
constexpr const char* kLocal = "198.51.100.25";  // our listening address in these tests

// tests/fixtures/dns/zones.conf, as the helo filter sees it (plus failure modes).
void loadTestZones(FakeResolver& r) {
  r.set("mx.test", DnsType::kMx, {"mail.mx.test"});
  r.set("mx.test", DnsType::kA, {});
  r.set("mx.test", DnsType::kAaaa, {});
  r.set("mail.mx.test", DnsType::kA, {"127.0.0.1"});
  r.set("mail.mx.test", DnsType::kAaaa, {});
  r.set("aonly.test", DnsType::kA, {"127.0.0.1"});
  r.set("aonly.test", DnsType::kAaaa, {});
  r.set("ip6-client.test", DnsType::kA, {});
  r.set("ip6-client.test", DnsType::kAaaa, {"::1"});
  r.set("nomx-noaddr.test", DnsType::kA, {});
  r.set("nomx-noaddr.test", DnsType::kAaaa, {});
  // nx.test: never set, so NXDOMAIN.
  r.setStatus("drop.test", DnsType::kA, DnsStatus::kTimeout);
  r.setStatus("drop.test", DnsType::kAaaa, DnsStatus::kTimeout);
  r.setStatus("refused.test", DnsType::kA, DnsStatus::kServFail);
  r.setStatus("refused.test", DnsType::kAaaa, DnsStatus::kServFail);
  // Not in zones.conf: one family times out, the other answers.
  r.setStatus("a-timeout.test", DnsType::kA, DnsStatus::kTimeout);
  r.set("a-timeout.test", DnsType::kAaaa, {"2001:db8::25"});
  r.setStatus("a-timeout-nodata.test", DnsType::kA, DnsStatus::kTimeout);
  r.set("a-timeout-nodata.test", DnsType::kAaaa, {});
  r.set("aaaa-fail.test", DnsType::kA, {});
  r.setStatus("aaaa-fail.test", DnsType::kAaaa, DnsStatus::kServFail);
}

testing::TestSession heloView(const std::string& helo, const std::string& client = kClient) {
  testing::TestSession v = viewFor(client);
  v.localAddress = kLocal;
  v.hostname = "mx.test.local";
  v.helo = helo;
  return v;
}

TEST(HeloFilter, ChecksWithoutDns) {
  struct Case {
    std::string helo;
    std::string yaml;
    std::string want;
    std::string wantReason;  // prefix: names the check
    std::string client = kClient;
  };
  const std::string longLabel(64, 'a');
  const std::vector<Case> cases = {
      // Valid names.
      {"mail.example.com", "", "continue", ""},
      {"mail.example.com.", "", "continue", ""},
      {"MAIL.Example.COM", "", "continue", ""},
      {"under_score.example.com", "", "continue", ""},
      {"a-b.c-d.example", "", "continue", ""},
      // Address literals: the client's own address, compared by value.
      {"[192.0.2.1]", "", "continue", ""},
      {"[192.0.2.1]", "", "continue", "", "::ffff:192.0.2.1"},
      {"[IPv6:2001:db8::1]", "", "continue", "", "2001:db8::1"},
      {"[ipv6:2001:DB8:0:0::1]", "", "continue", "", "2001:db8::1"},
      // A literal that is not the client.
      {"[192.0.2.99]", "",
       "reject 550 5.7.1 <[192.0.2.99]>: Helo command rejected: Address literal does not match "
       "your address",
       "literal_mismatch"},
      {"[IPv6:2001:db8::2]", "",
       "reject 550 5.7.1 <[IPv6:2001:db8::2]>: Helo command rejected: Address literal does not "
       "match your address",
       "literal_mismatch"},
      // Malformed literals.
      {"[192.0.2.1", "", "reject 550 5.5.2 <[192.0.2.1>: Helo command rejected: Invalid name",
       "invalid_name"},
      {"[999.0.2.1]", "", "reject 550 5.5.2 <[999.0.2.1]>: Helo command rejected: Invalid name",
       "invalid_name"},
      {"[2001:db8::1]", "", "reject 550 5.5.2 <[2001:db8::1]>: Helo command rejected: Invalid name",
       "invalid_name", "2001:db8::1"},
      {"[]", "", "reject 550 5.5.2 <[]>: Helo command rejected: Invalid name", "invalid_name"},
      // RFC 5321 4.1.3: a bare address needs brackets.
      {"192.0.2.1", "", "reject 550 5.5.2 <192.0.2.1>: Helo command rejected: Invalid name",
       "bare_ip"},
      {"2001:db8::1", "", "reject 550 5.5.2 <2001:db8::1>: Helo command rejected: Invalid name",
       "bare_ip", "2001:db8::1"},
      // Syntax.
      {"", "", "reject 550 5.5.2 <>: Helo command rejected: Invalid name", "invalid_name"},
      {"-bad.example.com", "",
       "reject 550 5.5.2 <-bad.example.com>: Helo command rejected: Invalid name", "invalid_name"},
      {"bad-.example.com", "",
       "reject 550 5.5.2 <bad-.example.com>: Helo command rejected: Invalid name", "invalid_name"},
      {"a..example.com", "",
       "reject 550 5.5.2 <a..example.com>: Helo command rejected: Invalid name", "invalid_name"},
      {".example.com", "", "reject 550 5.5.2 <.example.com>: Helo command rejected: Invalid name",
       "invalid_name"},
      {"ex!ample.com", "", "reject 550 5.5.2 <ex!ample.com>: Helo command rejected: Invalid name",
       "invalid_name"},
      {"exa mple.com", "", "reject 550 5.5.2 <exa mple.com>: Helo command rejected: Invalid name",
       "invalid_name"},
      {"foo.123", "", "reject 550 5.5.2 <foo.123>: Helo command rejected: Invalid name",
       "invalid_name"},
      {longLabel + ".example", "",
       "reject 550 5.5.2 <" + longLabel + ".example>: Helo command rejected: Invalid name",
       "invalid_name"},
      // Outside text is sanitised before it reaches the reply.
      {"evil\r\n250 ok", "", "reject 550 5.5.2 <evil 250 ok>: Helo command rejected: Invalid name",
       "invalid_name"},
      // require_fqdn.
      {"localhost", "",
       "reject 504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname",
       "non_fqdn"},
      {"localhost.", "",
       "reject 504 5.5.2 <localhost.>: Helo command rejected: need fully-qualified hostname",
       "non_fqdn"},
      {"localhost", "require_fqdn: false", "continue", ""},
      // reject_own_name: our hostname, our address (bare or bracketed).
      {"mx.test.local", "",
       "reject 550 5.7.1 <mx.test.local>: Helo command rejected: you are not me", "own_name"},
      {"MX.Test.Local.", "",
       "reject 550 5.7.1 <MX.Test.Local.>: Helo command rejected: you are not me", "own_name"},
      {"mx.test.local", "reject_own_name: false", "continue", ""},
      {"198.51.100.25", "",
       "reject 550 5.7.1 <198.51.100.25>: Helo command rejected: you are not me", "own_address"},
      {"198.51.100.25", "reject_own_name: false",
       "reject 550 5.5.2 <198.51.100.25>: Helo command rejected: Invalid name", "bare_ip"},
      {"[198.51.100.25]", "",
       "reject 550 5.7.1 <[198.51.100.25]>: Helo command rejected: you are not me", "own_address"},
      {"[198.51.100.25]", "reject_own_name: false",
       "reject 550 5.7.1 <[198.51.100.25]>: Helo command rejected: Address literal does not match "
       "your address",
       "literal_mismatch"},
      // A client on our own address that names it is telling the truth (local submission).
      {"[198.51.100.25]", "", "continue", "", kLocal},
  };
  for (const auto& c : cases) {
    FakeResolver resolver;
    auto filter = makeFilter("helo", c.yaml, {&resolver});
    auto sink = std::make_shared<Collector>();
    const testing::TestSession view = heloView(c.helo, c.client);
    callHook(*filter, &Filter::onHelo, view, sink);
    const std::string label =
        "helo=\"" + c.helo + "\" client=" + c.client + " yaml={" + c.yaml + "}";
    EXPECT_EQ(show(*sink), c.want) << label << ": got " << show(*sink) << " want " << c.want;
    EXPECT_EQ(sink->completions, 1) << label;
    EXPECT_EQ(sink->duplicates, 0) << label;
    EXPECT_TRUE(resolver.queries().empty()) << label << ": no DNS without require_resolvable";
    if (sink->verdict && !c.wantReason.empty()) {
      EXPECT_EQ(sink->verdict->reason().rfind(c.wantReason, 0), 0u)
          << label << ": got reason \"" << sink->verdict->reason() << "\" want prefix \""
          << c.wantReason << "\"";
    }
  }
}

TEST(HeloFilter, OverlongNamesAreInvalidAndTheReplyStaysWithinLimits) {
  const std::vector<std::string> names = {
      std::string(300, 'a') + ".example",        // > 255 octets
      std::string(2000, 'x') + "\x01\x7f.test",  // garbage, longer than a reply line
  };
  for (const auto& name : names) {
    FakeResolver resolver;
    auto filter = makeFilter("helo", "", {&resolver});
    auto sink = std::make_shared<Collector>();
    const testing::TestSession view = heloView(name);
    callHook(*filter, &Filter::onHelo, view, sink);
    ASSERT_TRUE(sink->verdict) << name.size();
    EXPECT_EQ(sink->verdict->kind(), VerdictKind::kReject);
    const Reply& reply = *sink->verdict->reply();
    EXPECT_EQ(reply.code(), 550);
    EXPECT_EQ(reply.enhanced(), "5.5.2");
    for (const auto& line : reply.lines()) {
      EXPECT_LE(line.size() + 18, Reply::kMaxLineLength) << "got a reply line of " << line.size();
      EXPECT_EQ(line.find_first_of("\r\n\x01\x7f"), std::string::npos);
    }
  }
}

struct DnsCase {
  std::string helo;
  std::string want;
  std::vector<DnsType> wantQueries;
};

const std::vector<DnsCase>& dnsCases() {
  static const std::vector<DnsCase> cases = {
      {"mail.mx.test", "continue", {DnsType::kA}},
      {"aonly.test", "continue", {DnsType::kA}},
      {"ip6-client.test", "continue", {DnsType::kA, DnsType::kAaaa}},
      {"a-timeout.test", "continue", {DnsType::kA, DnsType::kAaaa}},
      {"nx.test",
       "tempfail 450 4.7.1 <nx.test>: Helo command rejected: Host not found",
       {DnsType::kA, DnsType::kAaaa}},
      {"nomx-noaddr.test",
       "tempfail 450 4.7.1 <nomx-noaddr.test>: Helo command rejected: Host not found",
       {DnsType::kA, DnsType::kAaaa}},
      {"NX.test.",
       "tempfail 450 4.7.1 <NX.test.>: Helo command rejected: Host not found",
       {DnsType::kA, DnsType::kAaaa}},
      // Unknown answers are not a verdict: the chain's on_error decides.
      {"drop.test",
       "fail(unknown_host: lookup failed for drop.test: A timeout, AAAA timeout)",
       {DnsType::kA, DnsType::kAaaa}},
      {"refused.test",
       "fail(unknown_host: lookup failed for refused.test: A servfail, AAAA servfail)",
       {DnsType::kA, DnsType::kAaaa}},
      {"a-timeout-nodata.test",
       "fail(unknown_host: lookup failed for a-timeout-nodata.test: A timeout, AAAA nodata)",
       {DnsType::kA, DnsType::kAaaa}},
      {"aaaa-fail.test",
       "fail(unknown_host: lookup failed for aaaa-fail.test: A nodata, AAAA servfail)",
       {DnsType::kA, DnsType::kAaaa}},
      // Literals and names that fail earlier checks are never looked up.
      {"[192.0.2.1]", "continue", {}},
      {"localhost",
       "reject 504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname",
       {}},
      {"bad..test", "reject 550 5.5.2 <bad..test>: Helo command rejected: Invalid name", {}},
  };
  return cases;
}

TEST(HeloFilter, RequireResolvableDeferred) {
  for (const auto& c : dnsCases()) {
    FakeResolver resolver;
    loadTestZones(resolver);
    auto filter = makeFilter("helo", "require_resolvable: true", {&resolver});
    auto sink = std::make_shared<Collector>();
    const testing::TestSession view = heloView(c.helo);
    callHook(*filter, &Filter::onHelo, view, sink);
    if (!c.wantQueries.empty()) {
      EXPECT_EQ(sink->completions, 0) << c.helo << ": completed before the answer arrived";
      EXPECT_EQ(resolver.pendingCount(), 1u) << c.helo;
    }
    resolver.flush();
    EXPECT_EQ(show(*sink), c.want) << c.helo << ": got " << show(*sink) << " want " << c.want;
    EXPECT_EQ(sink->completions, 1) << c.helo;
    EXPECT_EQ(sink->duplicates, 0) << c.helo;
    EXPECT_EQ(resolver.pendingCount(), 0u) << c.helo;
    std::vector<DnsType> types;
    for (const auto& q : resolver.queries()) types.push_back(q.second);
    EXPECT_EQ(types, c.wantQueries) << c.helo << ": got queries " << showQueries(resolver);
  }
}

TEST(HeloFilter, RequireResolvableInline) {
  for (const auto& c : dnsCases()) {
    FakeResolver resolver;
    loadTestZones(resolver);
    resolver.setInline(true);
    auto filter = makeFilter("helo", "require_resolvable: true", {&resolver});
    auto sink = std::make_shared<Collector>();
    const testing::TestSession view = heloView(c.helo);
    callHook(*filter, &Filter::onHelo, view, sink);
    EXPECT_EQ(show(*sink), c.want) << c.helo << ": got " << show(*sink) << " want " << c.want;
    EXPECT_EQ(sink->completions, 1) << c.helo;
    EXPECT_EQ(sink->duplicates, 0) << c.helo;
    std::vector<DnsType> types;
    for (const auto& q : resolver.queries()) types.push_back(q.second);
    EXPECT_EQ(types, c.wantQueries) << c.helo << ": got queries " << showQueries(resolver);
    // Nothing completes twice, even after the filter is gone.
    filter.reset();
    EXPECT_EQ(resolver.flush(), 0);
    EXPECT_EQ(sink->completions, 1) << c.helo;
  }
}

TEST(HeloFilter, RejectReasonNamesTheCheckAndTheAnswers) {
  FakeResolver resolver;
  loadTestZones(resolver);
  auto filter = makeFilter("helo", "require_resolvable: true", {&resolver});
  auto sink = std::make_shared<Collector>();
  const testing::TestSession view = heloView("nx.test");
  callHook(*filter, &Filter::onHelo, view, sink);
  resolver.flush();
  ASSERT_TRUE(sink->verdict);
  EXPECT_EQ(sink->verdict->reason(), "unknown_host: nx.test: A nxdomain, AAAA nxdomain");
}

TEST(HeloFilter, DestroyingTheFilterCancelsItsLookups) {
  for (const std::string helo : {"nx.test", "mail.mx.test"}) {
    FakeResolver resolver;
    loadTestZones(resolver);
    auto filter = makeFilter("helo", "require_resolvable: true", {&resolver});
    auto sink = std::make_shared<Collector>();
    const testing::TestSession view = heloView(helo);
    callHook(*filter, &Filter::onHelo, view, sink);
    ASSERT_EQ(resolver.pendingCount(), 1u);
    filter.reset();  // the session went away
    EXPECT_EQ(resolver.pendingCount(), 0u) << helo << ": lookup not cancelled";
    EXPECT_EQ(resolver.flush(), 0) << helo << ": a cancelled answer was delivered";
    // No verdict ever arrives. (The unanswered Next reports itself as dropped; the real chain
    // disarms its sink before destroying filters, so that report goes nowhere.)
    EXPECT_FALSE(sink->verdict) << helo << ": got " << show(*sink);
    EXPECT_LE(sink->completions, 1);
    EXPECT_EQ(sink->duplicates, 0);
  }
}

TEST(HeloFilter, ANewHeloSupersedesAPendingLookup) {
  // The chain timed out the first call and the client sent EHLO again.
  FakeResolver resolver;
  loadTestZones(resolver);
  auto filter = makeFilter("helo", "require_resolvable: true", {&resolver});
  auto first = std::make_shared<Collector>();
  const testing::TestSession v1 = heloView("nx.test");
  callHook(*filter, &Filter::onHelo, v1, first);
  auto second = std::make_shared<Collector>();
  const testing::TestSession v2 = heloView("aonly.test");
  callHook(*filter, &Filter::onHelo, v2, second);
  EXPECT_EQ(resolver.pendingCount(), 1u) << "the first lookup was not cancelled";
  resolver.flush();
  EXPECT_FALSE(first->verdict) << "got " << show(*first);
  EXPECT_EQ(show(*second), "continue");
  EXPECT_EQ(second->completions, 1);
}

TEST(HeloFilter, ConfigErrorsNameTheKey) {
  struct Case {
    std::string yaml;
    std::string wantKey;
    std::string wantMessage;
  };
  const std::vector<Case> cases = {
      {"require_fqdn: maybe", "filters[0].require_fqdn", "expected true or false"},
      {"reject_own_name: 3", "filters[0].reject_own_name", "expected true or false"},
      {"require_resolvable: [true]", "filters[0].require_resolvable", "expected a single value"},
      {"requre_fqdn: true", "filters[0].requre_fqdn", "unknown key"},
  };
  for (const auto& c : cases) {
    FakeResolver resolver;
    try {
      makeFilter("helo", c.yaml, {&resolver});
      ADD_FAILURE() << c.yaml << ": got no error, want one naming " << c.wantKey;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.key(), c.wantKey) << c.yaml << ": got key " << e.key();
      EXPECT_NE(std::string(e.what()).find(c.wantMessage), std::string::npos)
          << c.yaml << ": got \"" << e.what() << "\" want it to contain \"" << c.wantMessage
          << "\"";
    }
  }
}

TEST(HeloFilter, DefaultsAndExplicitKeysLoad) {
  FakeResolver resolver;
  EXPECT_NO_THROW(makeFilter("helo", "", {&resolver}));
  EXPECT_NO_THROW(
      makeFilter("helo", "{require_fqdn: true, reject_own_name: true, require_resolvable: false}",
                 {&resolver}));
}

}  // namespace
}  // namespace portcullis
