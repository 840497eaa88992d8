// dnsbl filter: config parsing (postscreen zone syntax, weights, every key named in errors),
// scoring (thresholds, sums, ranges and lists, allowlists), error answers and lookup failures,
// IPv6 query names, TXT in the reply (sanitised), action and custom reply; every outcome on the
// deferred path (answers from flush()) and the inline path (answers inside lookup()), exactly
// one completion, and nothing left pending after a disconnect or destruction.
// The FakeResolver tables mirror tests/fixtures/dns/zones.conf, so the same config gives the
// same outcomes against unbound in the end-to-end tests. Table-driven; "got X, want Y".

#include "filters/dnsbl/dnsbl_filter.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "portcullis/config_section.h"
#include "proxy/admin/stats_registry.h"
#include "tests/support/fake_resolver.h"
#include "tests/support/filter_harness.h"

namespace portcullis {
namespace {

using testing::Collector;
using testing::FakeResolver;

constexpr std::string_view kV6Loopback =
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0";
constexpr std::string_view kV6Doc =  // 2001:db8::1
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2";

// The DNSBL blocks of tests/fixtures/dns/zones.conf (unlisted names are NXDOMAIN there too).
void loadFixtureZones(FakeResolver& r) {
  r.set("2.0.0.127.dnsbl.test", DnsType::kA, {"127.0.0.2"});
  r.set("2.0.0.127.dnsbl.test", DnsType::kTxt,
        {"Listed in dnsbl.test, see http://dnsbl.test/q?127.0.0.2"});
  r.set("10.0.0.127.dnsbl.test", DnsType::kA, {"127.0.0.10", "127.0.0.11"});
  r.set("252.0.0.127.dnsbl.test", DnsType::kA, {"127.255.255.252"});
  r.set("9.0.0.127.dnsbl.test", DnsType::kA, {"10.0.0.9"});
  r.set(std::string(kV6Loopback) + ".dnsbl.test", DnsType::kA, {"127.0.0.2"});
  r.set("5.0.0.127.dnswl.test", DnsType::kA, {"127.0.5.1"});
}

// The config the end-to-end tests use against the same zone data.
constexpr std::string_view kFixtureConfig = R"(
zones:
  - dnsbl.test=127.0.0.[2..11]*2
  - dnswl.test=127.0.[0..255].[1..3]*-5
threshold: 2
)";

std::string kindName(const Collector& c) {
  if (!c.verdict) return c.completions == 0 ? "nothing" : "error(" + c.error + ")";
  return std::string(verdictName(c.verdict->kind()));
}

std::string replyOf(const Collector& c) {
  if (!c.verdict || !c.verdict->reply()) return "";
  return c.verdict->reply()->summary();
}

// Runs onConnect for `address` with `yaml`, on the inline or the deferred path, and returns
// the collector after every answer has been delivered.
struct ConnectRun {
  std::shared_ptr<Collector> sink = std::make_shared<Collector>();
  std::vector<std::pair<std::string, DnsType>> queries;
  std::size_t pendingBeforeFlush = 0;
};

// Every line written to it, as "<level> <session id> <fields>".
class CapturingLog final : public Log {
 public:
  bool enabled(LogLevel) const override { return true; }
  void write(LogLevel level, std::string_view id, std::string_view fields) const override {
    lines.push_back(std::to_string(static_cast<int>(level)) + " " + std::string(id) + " " +
                    std::string(fields));
  }
  mutable std::vector<std::string> lines;
};

ConnectRun runConnect(FakeResolver& resolver, std::string_view yaml, const std::string& address,
                      bool inlineAnswers, Stats* stats = nullptr, const Log* log = nullptr) {
  resolver.setInline(inlineAnswers);
  FilterContext context{&resolver, log, stats, nullptr};
  auto filter = testing::makeFilter("dnsbl", std::string(yaml), context);
  ConnectRun run;
  const testing::TestSession view = testing::viewFor(address);
  testing::callHook(*filter, &Filter::onConnect, view, run.sink);
  run.pendingBeforeFlush = resolver.pendingCount();
  resolver.flush();
  run.queries = resolver.queries();
  EXPECT_EQ(resolver.pendingCount(), 0u) << address << ": answers left pending";
  return run;
}

const char* pathName(bool inlineAnswers) { return inlineAnswers ? "inline" : "deferred"; }

// --- Config ---

struct ConfigCase {
  std::string name;
  std::string yaml;
  std::string wantError;  // empty: valid; else a substring of the ConfigError
};

TEST(DnsblConfigTest, ParsesAndRejects) {
  const std::string longZone = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                               std::string(63, 'c') + ".test";  // 195 octets
  std::string manyZones = "zones:\n";
  for (int i = 0; i < 33; ++i) manyZones += "  - z" + std::to_string(i) + ".test\n";

  const std::vector<ConfigCase> cases = {
      {"plain zone", "zones: [dnsbl.test]", ""},
      {"postscreen examples",
       "zones: ['zen.spamhaus.org=127.0.0.[2..11]*3', 'list.dnswl.org=127.0.[0..255].[1..3]*-5']",
       ""},
      {"list with ranges inside", "zones: ['a.test=127.0.0.[2;4..6;8]*+2']", ""},
      {"several entries in one string", "zones: 'a.test*2, b.test*1 c.test'", ""},
      {"same zone twice", "zones: ['a.test=127.0.0.2*3', 'a.test=127.0.0.[10;11]*8']", ""},
      {"trailing dot and case", "zones: [DNSBL.Test.]", ""},
      {"weight zero", "zones: ['a.test*0']", ""},
      {"all keys",
       "zones: [a.test]\nthreshold: 3\nallowlist_threshold: -2\naction: tempfail\n"
       "reply: '451 4.7.1 try later'",
       ""},
      {"missing zones", "threshold: 2", "filters[0].zones: required key is missing"},
      {"empty zones", "zones: []", "filters[0].zones: at least one zone"},
      {"empty item", "zones: ['a.test', ' ']", "filters[0].zones[1]: empty entry"},
      {"octet over 255", "zones: ['a.test=127.0.0.[2..300]']",
       "filters[0].zones[0]: \"a.test=127.0.0.[2..300]\": pattern \"127.0.0.[2..300]\": \"300\" "
       "is not an octet"},
      {"three octets", "zones: ['a.test=127.0.0']", "expected four dot-separated octets"},
      {"five octets", "zones: ['a.test=127.0.0.2.5']", "after the fourth octet"},
      {"empty range", "zones: ['a.test=127.0.0.[5..2]']", "range [5..2] is empty"},
      {"unclosed bracket", "zones: ['a.test=127.0.0.[2']", "missing ']'"},
      {"empty brackets", "zones: ['a.test=127.0.0.[]']", "empty item inside [...]"},
      {"empty list item", "zones: ['a.test=127.0.0.[2;]']", "empty item inside [...]"},
      {"letters in octet", "zones: ['a.test=127.0.x.2']", "\"\" is not an octet"},
      {"not 127/8", "zones: ['a.test=10.0.0.2']", "can never match"},
      {"empty pattern", "zones: ['a.test=']", "empty pattern after '='"},
      {"weight not a number", "zones: ['a.test*x']", "weight \"x\" is not an integer"},
      {"weight missing", "zones: ['a.test*']", "weight \"\" is not an integer"},
      {"weight too big", "zones: ['a.test*99999999']", "out of range"},
      {"no zone", "zones: ['=127.0.0.2']", "missing zone name"},
      {"bad character", "zones: ['a!b.test']", "invalid character \"!\""},
      {"empty label", "zones: ['a..test']", "empty or over-long label"},
      {"long label", "zones: ['" + std::string(64, 'a') + ".test']", "empty or over-long label"},
      {"zone too long", "zones: ['" + longZone + "']", "longer than 189 octets"},
      {"error names its item", "zones: [a.test, 'b.test*q']", "filters[0].zones[1]:"},
      {"too many zones", manyZones, "filters[0].zones: at most 32 distinct zones"},
      {"zones not a list", "zones: {a: b}", "filters[0].zones"},
      {"threshold zero", "zones: [a.test]\nthreshold: 0", "filters[0].threshold: value 0"},
      {"threshold text", "zones: [a.test]\nthreshold: two", "filters[0].threshold"},
      {"allowlist zero", "zones: [a.test]\nallowlist_threshold: 0",
       "filters[0].allowlist_threshold: value 0"},
      {"bad action", "zones: [a.test]\naction: drop", "filters[0].action: expected one of"},
      {"reply not negative", "zones: [a.test]\nreply: '250 ok'", "filters[0].reply: expected"},
      {"reply without text", "zones: [a.test]\nreply: '554 5.7.1'", "filters[0].reply"},
      {"reject needs 5xx", "zones: [a.test]\nreply: '451 4.7.1 later'",
       "filters[0].reply: action reject needs a 5xx reply, got 451"},
      {"tempfail needs 4xx", "zones: [a.test]\naction: tempfail\nreply: '554 5.7.1 no'",
       "filters[0].reply: action tempfail needs a 4xx reply, got 554"},
      {"unknown key", "zones: [a.test]\nzone: b.test", "filters[0].zone: unknown key"},
  };
  FakeResolver resolver;
  const FilterContext context{&resolver};
  for (const auto& c : cases) {
    std::string got;
    try {
      testing::makeFilter("dnsbl", c.yaml, context);
    } catch (const ConfigError& e) {
      got = e.what();
    }
    if (c.wantError.empty()) {
      EXPECT_EQ(got, "") << c.name << ": got error, want valid";
    } else {
      EXPECT_NE(got.find(c.wantError), std::string::npos)
          << c.name << ": got \"" << got << "\", want an error containing \"" << c.wantError
          << "\"";
    }
  }
}

// --- Outcomes ---

struct OutcomeCase {
  std::string name;
  std::string yaml;
  std::string address;
  std::string wantKind;    // proceed | accept | tempfail | reject | error(...)
  std::string wantReply;   // exact summary, or "" for none
  std::string wantReason;  // substring of the reason, or ""
};

void checkOutcomes(const std::vector<OutcomeCase>& cases,
                   void (*setup)(FakeResolver&) = loadFixtureZones) {
  for (const bool inlineAnswers : {false, true}) {
    for (const auto& c : cases) {
      FakeResolver resolver;
      setup(resolver);
      const ConnectRun run = runConnect(resolver, c.yaml, c.address, inlineAnswers);
      const std::string where = c.name + " (" + pathName(inlineAnswers) + ")";
      const std::string wantKind = c.wantKind == "proceed" ? "continue" : c.wantKind;
      EXPECT_EQ(kindName(*run.sink), wantKind) << where << ": got verdict X, want Y";
      EXPECT_EQ(replyOf(*run.sink), c.wantReply) << where << ": got reply X, want Y";
      if (!c.wantReason.empty() && run.sink->verdict) {
        EXPECT_NE(run.sink->verdict->reason().find(c.wantReason), std::string::npos)
            << where << ": got reason \"" << run.sink->verdict->reason()
            << "\", want it to contain \"" << c.wantReason << "\"";
      }
      EXPECT_EQ(run.sink->completions, 1) << where << ": got completions X, want 1";
      EXPECT_EQ(run.sink->duplicates, 0) << where;
      if (!inlineAnswers && c.wantKind.rfind("error", 0) != 0) {
        EXPECT_GT(run.pendingBeforeFlush, 0u) << where << ": deferred path answered inline";
      }
    }
  }
}

TEST(DnsblFilterTest, FixtureZonesGiveTheEndToEndOutcomes) {
  const std::string cfg(kFixtureConfig);
  checkOutcomes({
      {"127.0.0.2 listed, TXT in the reply", cfg, "127.0.0.2", "reject",
       "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using dnsbl.test; Listed in "
       "dnsbl.test, see http://dnsbl.test/q?127.0.0.2",
       "score=2 threshold=2 dnsbl.test=127.0.0.2*2"},
      {"127.0.0.5 allowlisted by dnswl.test", cfg, "127.0.0.5", "accept", "",
       "score=-5 allowlist_threshold=-1 dnswl.test=127.0.5.1*-5"},
      {"127.0.0.1 not listed", cfg, "127.0.0.1", "proceed", "", ""},
      {"127.0.0.10 two answers, one entry, no TXT", cfg, "127.0.0.10", "reject",
       "554 5.7.1 Service unavailable; client [127.0.0.10] blocked using dnsbl.test",
       "dnsbl.test=127.0.0.10,127.0.0.11*2"},
      {"127.0.0.252 error code never counts", cfg, "127.0.0.252", "proceed", "", ""},
      {"127.0.0.9 answer outside 127/8 never counts", cfg, "127.0.0.9", "proceed", "", ""},
      {"::1 listed over IPv6", cfg, "::1", "reject",
       "554 5.7.1 Service unavailable; client [::1] blocked using dnsbl.test", ""},
      {"IPv4-mapped client queried as IPv4", cfg, "::ffff:127.0.0.2", "reject",
       "554 5.7.1 Service unavailable; client [::ffff:127.0.0.2] blocked using dnsbl.test; Listed "
       "in dnsbl.test, see http://dnsbl.test/q?127.0.0.2",
       ""},
  });
}

void loadScoringZones(FakeResolver& r) {
  loadFixtureZones(r);
  r.set("2.0.0.127.a.test", DnsType::kA, {"127.0.0.2"});
  r.set("2.0.0.127.b.test", DnsType::kA, {"127.0.0.4"});
  r.set("2.0.0.127.b.test", DnsType::kTxt, {"b says no"});
  r.set("2.0.0.127.wl.test", DnsType::kA, {"127.0.10.2"});
  r.set("2.0.0.127.wide.test", DnsType::kA, {"127.255.255.254", "10.0.0.9", "127.0.0.3"});
}

TEST(DnsblFilterTest, Scoring) {
  checkOutcomes(
      {
          {"default: any 127/8 answer, weight 1", "zones: [a.test]", "127.0.0.2", "reject",
           "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using a.test",
           "score=1 threshold=1 a.test=127.0.0.2*1"},
          {"weights sum to the threshold", "zones: ['a.test*2', 'b.test*2']\nthreshold: 4",
           "127.0.0.2", "reject",
           "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using a.test",
           "score=4 threshold=4 a.test=127.0.0.2*2 b.test=127.0.0.4*2"},
          {"one zone is below the threshold", "zones: ['a.test*2', 'c.test*2']\nthreshold: 4",
           "127.0.0.2", "proceed", "", ""},
          {"the top zone names the listing and gives the TXT", "zones: ['a.test*1', 'b.test*3']",
           "127.0.0.2", "reject",
           "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using b.test; b says no",
           "score=4"},
          {"range matches", "zones: ['b.test=127.0.0.[3..5]']", "127.0.0.2", "reject",
           "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using b.test; b says no", ""},
          {"range misses", "zones: ['b.test=127.0.0.[5..9]']", "127.0.0.2", "proceed", "", ""},
          {"list matches", "zones: ['b.test=127.0.0.[1;4;9]']", "127.0.0.2", "reject",
           "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using b.test; b says no", ""},
          {"list misses", "zones: ['b.test=127.0.0.[1;3;5..9]']", "127.0.0.2", "proceed", "", ""},
          {"range inside a list on a multi-answer listing",
           "zones: ['dnsbl.test=127.0.0.[3..9;11]*3']", "127.0.0.10", "reject",
           "554 5.7.1 Service unavailable; client [127.0.0.10] blocked using dnsbl.test",
           "dnsbl.test=127.0.0.11*3"},
          {"same zone, two entries, per-code weights",
           "zones: ['dnsbl.test=127.0.0.2*3', 'dnsbl.test=127.0.0.[10;11]*8']\nthreshold: 8",
           "127.0.0.10", "reject",
           "554 5.7.1 Service unavailable; client [127.0.0.10] blocked using dnsbl.test",
           "score=8 threshold=8 dnsbl.test=127.0.0.10,127.0.0.11*8"},
          {"allowlist outweighs a listing", "zones: ['a.test*2', 'wl.test=127.0.[0..255].2*-5']",
           "127.0.0.2", "accept", "", "score=-3 allowlist_threshold=-1"},
          {"allowlist threshold not reached", "zones: ['wl.test*-1']\nallowlist_threshold: -2",
           "127.0.0.2", "proceed", "", ""},
          {"error answers skipped, the valid one counts",
           "zones: ['wide.test=127.[0..255].[0..255].[0..255]*5']\nthreshold: 5", "127.0.0.2",
           "reject", "554 5.7.1 Service unavailable; client [127.0.0.2] blocked using wide.test",
           "wide.test=127.0.0.3*5"},
          {"action tempfail", "zones: [a.test]\naction: tempfail", "127.0.0.2", "tempfail",
           "451 4.7.1 Service unavailable; client [127.0.0.2] blocked using a.test", ""},
          {"custom reply", "zones: [a.test]\nreply: '550 5.7.1 Go away, see https://x.test/'",
           "127.0.0.2", "reject", "550 5.7.1 Go away, see https://x.test/", "a.test=127.0.0.2*1"},
          {"custom tempfail reply", "zones: [a.test]\naction: tempfail\nreply: '421 4.7.0 Later'",
           "127.0.0.2", "tempfail", "421 4.7.0 Later", ""},
          {"not an IP address", "zones: [a.test]", "unix:/run/x",
           "error(client address "
           "\"unix:/run/x\" is not an IP address)",
           "", ""},
      },
      loadScoringZones);
}

// A custom reply does not need the TXT, so it is not fetched.
TEST(DnsblFilterTest, CustomReplySkipsTxt) {
  FakeResolver resolver;
  loadScoringZones(resolver);
  const ConnectRun run =
      runConnect(resolver, "zones: [b.test]\nreply: '554 5.7.1 Blocked'", "127.0.0.2", false);
  for (const auto& [name, type] : run.queries) {
    EXPECT_NE(type, DnsType::kTxt) << "got a TXT query for " << name << ", want none";
  }
}

TEST(DnsblFilterTest, QueryNames) {
  struct Case {
    std::string address;
    std::vector<std::pair<std::string, DnsType>> want;
  };
  const std::string yaml = "zones: ['dnsbl.test*2', 'dnswl.test*-1']\nthreshold: 2";
  const std::vector<Case> cases = {
      {"127.0.0.2",
       {{"2.0.0.127.dnsbl.test", DnsType::kA},
        {"2.0.0.127.dnswl.test", DnsType::kA},
        {"2.0.0.127.dnsbl.test", DnsType::kTxt}}},
      {"192.0.2.77",
       {{"77.2.0.192.dnsbl.test", DnsType::kA}, {"77.2.0.192.dnswl.test", DnsType::kA}}},
      {"::1",
       {{std::string(kV6Loopback) + ".dnsbl.test", DnsType::kA},
        {std::string(kV6Loopback) + ".dnswl.test", DnsType::kA},
        {std::string(kV6Loopback) + ".dnsbl.test", DnsType::kTxt}}},
      {"2001:db8::1",
       {{std::string(kV6Doc) + ".dnsbl.test", DnsType::kA},
        {std::string(kV6Doc) + ".dnswl.test", DnsType::kA}}},
      {"2001:DB8:0:0:0:0:0:1",
       {{std::string(kV6Doc) + ".dnsbl.test", DnsType::kA},
        {std::string(kV6Doc) + ".dnswl.test", DnsType::kA}}},
  };
  for (const bool inlineAnswers : {false, true}) {
    for (const auto& c : cases) {
      FakeResolver resolver;
      loadFixtureZones(resolver);
      const ConnectRun run = runConnect(resolver, yaml, c.address, inlineAnswers);
      EXPECT_EQ(run.queries, c.want)
          << c.address << " (" << pathName(inlineAnswers) << "): got queries X, want Y";
      EXPECT_EQ(run.sink->completions, 1) << c.address;
    }
  }
}

// Error answers and failed lookups never add score; both are counted per zone.
TEST(DnsblFilterTest, ErrorsAndFailuresAddNoScore) {
  struct Case {
    std::string name;
    DnsStatus status;  // kOk: use `answers`
    std::vector<std::string> answers;
    std::uint64_t wantErrors;
    std::uint64_t wantFailures;
  };
  const std::vector<Case> cases = {
      {"Spamhaus 127.255.255.254", DnsStatus::kOk, {"127.255.255.254"}, 1, 0},
      {"Spamhaus 127.255.255.252 and .255",
       DnsStatus::kOk,
       {"127.255.255.252", "127.255.255.255"},
       2,
       0},
      {"outside 127/8", DnsStatus::kOk, {"10.0.0.9"}, 1, 0},
      {"timeout", DnsStatus::kTimeout, {}, 0, 1},
      {"servfail", DnsStatus::kServFail, {}, 0, 1},
      {"local error", DnsStatus::kError, {}, 0, 1},
      {"nxdomain is just not listed", DnsStatus::kNxDomain, {}, 0, 0},
  };
  // The allowlist entry proves the failure adds nothing: -1 alone reaches allowlist_threshold.
  const std::string yaml = "zones: ['err.test=127.[0..255].[0..255].[0..255]*5', 'wl.test*-1']";
  for (const bool inlineAnswers : {false, true}) {
    for (const auto& c : cases) {
      FakeResolver resolver;
      if (c.status == DnsStatus::kOk) {
        resolver.set("2.0.0.127.err.test", DnsType::kA, c.answers);
      } else {
        resolver.setStatus("2.0.0.127.err.test", DnsType::kA, c.status);
      }
      resolver.set("2.0.0.127.wl.test", DnsType::kA, {"127.0.0.2"});
      StatsRegistry stats;
      CapturingLog log;
      const ConnectRun run = runConnect(resolver, yaml, "127.0.0.2", inlineAnswers, &stats, &log);
      const std::string where = c.name + " (" + pathName(inlineAnswers) + ")";
      EXPECT_EQ(kindName(*run.sink), "accept") << where << ": got X, want accept (score -1)";
      EXPECT_EQ(stats.counterValue("portcullis_dnsbl_errors_total", {{"zone", "err.test"}}),
                c.wantErrors)
          << where << ": got error count X, want Y";
      EXPECT_EQ(
          stats.counterValue("portcullis_dnsbl_lookup_failures_total", {{"zone", "err.test"}}),
          c.wantFailures)
          << where << ": got failure count X, want Y";
      // The other zone's counters exist (registered with the filter) and stay at zero.
      EXPECT_EQ(stats.counterValue("portcullis_dnsbl_errors_total", {{"zone", "wl.test"}}), 0u)
          << where;
      // Each error or failure is one warning line through the context's log, session id first.
      std::size_t warnings = 0;
      for (const std::string& line : log.lines) {
        if (line.rfind("2 test event=dnsbl-error zone=err.test ", 0) == 0 ||
            line.rfind("2 test event=dnsbl-lookup-failed zone=err.test ", 0) == 0) {
          ++warnings;
        }
      }
      EXPECT_EQ(warnings, c.wantErrors + c.wantFailures) << where << ": log lines were:\n"
                                                         << [&] {
                                                              std::string all;
                                                              for (const auto& l : log.lines)
                                                                all += l + "\n";
                                                              return all;
                                                            }();
      if (c.wantFailures > 0) {
        EXPECT_NE(run.sink->verdict->reason().find("failed=err.test:"), std::string::npos)
            << where << ": got reason \"" << run.sink->verdict->reason() << "\"";
      }
    }
  }
}

TEST(DnsblFilterTest, TxtIsSanitised) {
  struct Case {
    std::string name;
    DnsStatus status;
    std::string txt;
    std::string wantText;  // the reply text after "554 5.7.1 "
  };
  const std::string base = "Service unavailable; client [127.0.0.2] blocked using a.test";
  const std::vector<Case> cases = {
      {"CRLF injection", DnsStatus::kOk, "bad\r\n250 ok\r\nMAIL FROM:<x>",
       base + "; bad 250 ok MAIL FROM:<x>"},
      {"control characters", DnsStatus::kOk, std::string("a\x01\x1b[31mb\x7f\tc\0d", 13),
       base + "; a[31mb cd"},
      {"over-long TXT is truncated", DnsStatus::kOk, std::string(5000, 'x'),
       base + "; " + std::string(200, 'x')},
      {"only control characters: omitted", DnsStatus::kOk, "\r\n\x01", base},
      {"TXT lookup times out: omitted", DnsStatus::kTimeout, "", base},
      {"no TXT record: omitted", DnsStatus::kNxDomain, "", base},
  };
  for (const bool inlineAnswers : {false, true}) {
    for (const auto& c : cases) {
      FakeResolver resolver;
      resolver.set("2.0.0.127.a.test", DnsType::kA, {"127.0.0.2"});
      if (c.status == DnsStatus::kOk) {
        resolver.set("2.0.0.127.a.test", DnsType::kTxt, {c.txt});
      } else {
        resolver.setStatus("2.0.0.127.a.test", DnsType::kTxt, c.status);
      }
      const ConnectRun run = runConnect(resolver, "zones: [a.test]", "127.0.0.2", inlineAnswers);
      const std::string where = c.name + " (" + pathName(inlineAnswers) + ")";
      ASSERT_TRUE(run.sink->verdict && run.sink->verdict->reply()) << where;
      const Reply& reply = *run.sink->verdict->reply();
      EXPECT_EQ(reply.text(), c.wantText) << where << ": got reply text X, want Y";
      const std::string wire = reply.wire();
      EXPECT_EQ(wire.find('\r'), wire.size() - 2) << where << ": a CR before the end of the line";
      EXPECT_EQ(wire.find('\n'), wire.size() - 1) << where << ": an LF before the end of the line";
      EXPECT_LE(wire.size(), Reply::kMaxLineLength) << where;
    }
  }
}

// --- Lifetime: exactly once, and nothing left behind ---

TEST(DnsblFilterTest, DeferredAnswersCompleteOnlyWhenAllArrive) {
  FakeResolver resolver;
  loadFixtureZones(resolver);
  FilterContext context{&resolver};
  auto filter = testing::makeFilter("dnsbl", std::string(kFixtureConfig), context);
  auto sink = std::make_shared<Collector>();
  const testing::TestSession view = testing::viewFor("127.0.0.2");
  testing::callHook(*filter, &Filter::onConnect, view, sink);
  EXPECT_EQ(resolver.pendingCount(), 2u) << "got X queries in flight, want one per zone";
  EXPECT_EQ(sink->completions, 0) << "completed before any answer";
  resolver.flush();
  EXPECT_EQ(sink->completions, 1);
  EXPECT_EQ(sink->duplicates, 0);
  EXPECT_EQ(resolver.pendingCount(), 0u);
  // A disconnect after completing changes nothing.
  filter->onDisconnect(view);
  EXPECT_EQ(sink->completions, 1);
}

// Answers some lookups at once (inline) and defers the rest, to stop a check at each phase:
// every A pending, one A answered and one pending, or the A answers in and the TXT pending.
class SplitResolver final : public Resolver {
 public:
  using Predicate = std::function<bool(const std::string& name, DnsType type)>;
  explicit SplitResolver(Predicate answerNow) : answerNow_(std::move(answerNow)) {
    now.setInline(true);
    loadFixtureZones(now);
    loadFixtureZones(later);
  }
  std::unique_ptr<DnsLookup> lookup(std::string_view name, DnsType type,
                                    Callback callback) override {
    FakeResolver& r = answerNow_(std::string(name), type) ? now : later;
    return r.lookup(name, type, std::move(callback));
  }
  FakeResolver now;
  FakeResolver later;

 private:
  Predicate answerNow_;
};

struct Phase {
  std::string name;
  SplitResolver::Predicate answerNow;
};

std::vector<Phase> phases() {
  return {
      {"every A pending", [](const std::string&, DnsType) { return false; }},
      {"dnsbl.test answered, dnswl.test pending",
       [](const std::string& n, DnsType t) {
         return t == DnsType::kA && n.find("dnsbl.test") != std::string::npos;
       }},
      {"A answered, TXT pending", [](const std::string&, DnsType t) { return t == DnsType::kA; }},
  };
}

TEST(DnsblFilterTest, DisconnectWithLookupsPendingCancelsThem) {
  for (const Phase& phase : phases()) {
    SplitResolver resolver(phase.answerNow);
    FilterContext context{&resolver};
    auto filter = testing::makeFilter("dnsbl", std::string(kFixtureConfig), context);
    auto sink = std::make_shared<Collector>();
    const testing::TestSession view = testing::viewFor("127.0.0.2");
    testing::callHook(*filter, &Filter::onConnect, view, sink);
    EXPECT_GT(resolver.later.pendingCount(), 0u) << phase.name << ": nothing pending";
    EXPECT_EQ(sink->completions, 0) << phase.name << ": completed too early";
    filter->onDisconnect(view);
    EXPECT_EQ(resolver.later.pendingCount(), 0u) << phase.name << ": got pending X, want 0";
    EXPECT_EQ(resolver.later.flush(), 0) << phase.name << ": a callback ran after disconnect";
    EXPECT_EQ(sink->completions, 0) << phase.name << ": completed after the disconnect";
    // The chain disarms its sink before it destroys the filters; mirror that order.
    sink.reset();
    filter.reset();
    EXPECT_EQ(resolver.later.flush(), 0) << phase.name;
  }
}

TEST(DnsblFilterTest, DestroyingTheFilterCancelsEverything) {
  for (const bool chainOrder : {true, false}) {
    for (const Phase& phase : phases()) {
      const std::string where = phase.name + (chainOrder ? " (sink first)" : " (filter first)");
      SplitResolver resolver(phase.answerNow);
      FilterContext context{&resolver};
      auto filter = testing::makeFilter("dnsbl", std::string(kFixtureConfig), context);
      auto sink = std::make_shared<Collector>();
      const testing::TestSession view = testing::viewFor("127.0.0.2");
      testing::callHook(*filter, &Filter::onConnect, view, sink);
      ASSERT_GT(resolver.later.pendingCount(), 0u) << where;
      std::weak_ptr<Collector> watch = sink;
      if (chainOrder) sink.reset();  // what FilterChain's destructor does
      filter.reset();
      EXPECT_EQ(resolver.later.pendingCount(), 0u) << where << ": got pending X, want 0";
      EXPECT_EQ(resolver.later.flush(), 0) << where << ": a callback ran after destruction";
      if (!chainOrder) {
        // Filter first: the Next it held reports itself dropped, the chain's "filter error";
        // no verdict ever arrives.
        EXPECT_FALSE(sink->verdict.has_value()) << where << ": got a verdict, want none";
        EXPECT_EQ(sink->completions, 1) << where;
        EXPECT_EQ(sink->error, "filter dropped its completion") << where;
        EXPECT_EQ(sink->duplicates, 0) << where;
      } else {
        EXPECT_TRUE(watch.expired()) << where;
      }
    }
  }
}

}  // namespace
}  // namespace portcullis
