// DnsResolver against an in-process fake server on 127.0.0.1 sharing the test's event loop, on a
// manual clock (real sockets, virtual time: timeouts and TTLs pass without sleeping):
// completion only through the loop (cache hits too), answer matching (RFC 5452), TCP fallback
// (RFC 7766), retries and timeouts, merging, cancellation and re-entrant callbacks.

#include "proxy/services/dns/dns_resolver.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <set>

#include "tests/support/manual_dispatcher.h"
#include "tests/unit/services/dns/fake_dns_server.h"

namespace portcullis {
namespace {

using namespace std::chrono_literals;
using dnstest::answerTo;
using dnstest::FakeDnsServer;
using dnstest::FakeRequest;
using dnstest::FakeSend;
using dnstest::rrA;
using dnstest::rrSoa;
using dnstest::rrTxt;
using dnstest::WireMessage;

struct Outcome {
  int calls = 0;
  DnsResult result;
};

Resolver::Callback collect(Outcome* out) {
  return [out](const DnsResult& r) {
    ++out->calls;
    out->result = r;
  };
}

// Answers every A query with 127.0.0.2 (TTL 60) at once.
std::vector<FakeSend> answerA(const FakeRequest& r) {
  return {FakeSend{answerTo(r, {rrA(r.query.name, "127.0.0.2")})}};
}

std::vector<FakeSend> neverAnswer(const FakeRequest&) { return {}; }

// A port on 127.0.0.1 where nothing listens (bound once, then closed).
std::uint16_t closedUdpPort() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  (void)::bind(fd, reinterpret_cast<sockaddr*>(&addr), len);
  (void)::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

class DnsResolverTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (resolver_) {
      EXPECT_EQ(resolver_->pending(), 0u) << "callers left waiting at the end of the test";
      EXPECT_EQ(resolver_->inFlight(), 0u) << "queries left in flight at the end of the test";
    }
  }

  FakeDnsServer& startServer(dnstest::FakeHandler udp, dnstest::FakeHandler tcp = {}) {
    servers_.push_back(std::make_unique<FakeDnsServer>(d_, std::move(udp), std::move(tcp)));
    EXPECT_TRUE(servers_.back()->ok());
    return *servers_.back();
  }

  static DnsSettings settingsFor(std::vector<std::string> servers) {
    DnsSettings s;
    s.servers = std::move(servers);
    s.timeout = 200ms;
    s.attempts = 2;
    return s;
  }

  void makeResolver(DnsSettings s) {
    std::string error;
    resolver_ = DnsResolver::create(d_, std::move(s), &error);
    ASSERT_TRUE(resolver_) << error;
  }

  // Runs the loop until done(): real socket I/O, and virtual time moved on only as far as the
  // fake servers' next delayed answer (their network latency). The resolver's own timeouts
  // pass only when a test calls advance(). false when done() never came (a real 5 s guard
  // against a hang, not a timing assertion).
  bool runUntil(const std::function<bool()>& done, bool followServers = true) {
    const auto guard = std::chrono::steady_clock::now() + 5s;
    EventPtr tick(event_new(
        d_.base(), -1, EV_PERSIST, [](evutil_socket_t, short, void*) {}, nullptr));
    const timeval tv = toTimeval(2ms);
    event_add(tick.get(), &tv);
    int quiet = 0;
    while (true) {
      d_.runUntilIdle();
      if (done()) return true;
      if (std::chrono::steady_clock::now() > guard) return false;
      if (followServers && ++quiet > 3) {
        if (auto due = nextServerSend()) {
          d_.advance(std::chrono::duration_cast<std::chrono::milliseconds>(*due - d_.now()));
          quiet = 0;
          continue;
        }
      }
      event_base_loop(d_.base(), EVLOOP_ONCE);
    }
  }
  // Lets I/O settle without moving the clock (for "nothing more happens" checks).
  void pump() {
    (void)runUntil([n = 0]() mutable { return ++n > 20; }, /*followServers=*/false);
  }
  // Moves the virtual clock, then lets the I/O it caused settle.
  void advance(std::chrono::milliseconds d) {
    d_.advance(d);
    pump();
  }
  std::optional<Dispatcher::Clock::time_point> nextServerSend() const {
    std::optional<Dispatcher::Clock::time_point> best;
    for (const auto& s : servers_) {
      auto due = s->nextSendDue();
      if (due && (!best || *due < *best)) best = due;
    }
    return best;
  }

  ManualDispatcher d_;  // declared first: destroyed last
  std::vector<std::unique_ptr<FakeDnsServer>> servers_;
  std::unique_ptr<DnsResolver> resolver_;
};

TEST_F(DnsResolverTest, AnswerArrivesThroughTheLoopNeverInline) {
  auto& server = startServer(answerA);
  makeResolver(settingsFor({server.address()}));
  Outcome out;
  auto handle = resolver_->lookup("Host.Test", DnsType::kA, collect(&out));
  EXPECT_EQ(out.calls, 0) << "callback ran inside lookup()";
  ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
  EXPECT_EQ(out.calls, 1);
  EXPECT_EQ(out.result.status, DnsStatus::kOk) << out.result.detail;
  ASSERT_EQ(out.result.records.size(), 1u);
  EXPECT_EQ(out.result.records[0].value, "127.0.0.2");
  EXPECT_EQ(out.result.records[0].ttl, 60u);
  EXPECT_FALSE(out.result.fromCache);
  EXPECT_NE(out.result.detail.find("server=" + server.address()), std::string::npos)
      << out.result.detail;
  EXPECT_EQ(server.udpQueries, 1);
  ASSERT_EQ(server.requests.size(), 1u);
  EXPECT_EQ(server.requests[0].query.name, "host.test");
  EXPECT_TRUE(server.requests[0].query.hasOpt) << "EDNS0 advertised";
}

TEST_F(DnsResolverTest, CacheHitIsStillDeliveredThroughTheLoop) {
  auto& server = startServer(answerA);
  makeResolver(settingsFor({server.address()}));
  Outcome first;
  auto h1 = resolver_->lookup("host.test", DnsType::kA, collect(&first));
  ASSERT_TRUE(runUntil([&] { return first.calls > 0; }));

  Outcome second;
  auto h2 = resolver_->lookup("HOST.test.", DnsType::kA, collect(&second));
  EXPECT_EQ(second.calls, 0) << "a cache hit must not call back inside lookup()";
  ASSERT_TRUE(runUntil([&] { return second.calls > 0; }));
  EXPECT_TRUE(second.result.fromCache);
  EXPECT_EQ(second.result.status, DnsStatus::kOk);
  ASSERT_EQ(second.result.records.size(), 1u);
  EXPECT_EQ(second.result.records[0].value, "127.0.0.2");
  EXPECT_EQ(server.udpQueries, 1) << "the second lookup must not reach the server";
  EXPECT_EQ(resolver_->stats().cacheHits, 1u);

  // Another type of the same name is another question.
  Outcome txt;
  auto h3 = resolver_->lookup("host.test", DnsType::kTxt, collect(&txt));
  ASSERT_TRUE(runUntil([&] { return txt.calls > 0; }));
  EXPECT_EQ(server.udpQueries, 2);
}

TEST_F(DnsResolverTest, IdenticalQueriesInFlightAreMerged) {
  auto& server = startServer([](const FakeRequest& r) {
    return std::vector<FakeSend>{FakeSend{answerTo(r, {rrA(r.query.name, "127.0.0.2")}), 30ms}};
  });
  makeResolver(settingsFor({server.address()}));
  const char* names[] = {"m.test", "M.TEST", "m.test.", "m.Test", "M.test."};
  std::vector<Outcome> outs(5);
  std::vector<std::unique_ptr<DnsLookup>> handles;
  for (std::size_t i = 0; i < outs.size(); ++i) {
    handles.push_back(resolver_->lookup(names[i], DnsType::kA, collect(&outs[i])));
  }
  EXPECT_EQ(resolver_->inFlight(), 1u);
  ASSERT_TRUE(runUntil([&] {
    return std::all_of(outs.begin(), outs.end(), [](const Outcome& o) { return o.calls > 0; });
  }));
  for (const auto& o : outs) {
    EXPECT_EQ(o.calls, 1);
    EXPECT_EQ(o.result.status, DnsStatus::kOk);
  }
  EXPECT_EQ(server.udpQueries, 1) << "merged lookups must send one query";
  EXPECT_EQ(resolver_->stats().merged, 4u);
}

TEST_F(DnsResolverTest, IgnoresForgedAndMismatchedAnswers) {
  // RFC 5452: wrong id, wrong question, not-a-response, garbage, and a "right" answer from
  // another port must all be ignored; the real answer that follows wins, in the first attempt.
  auto& server = startServer([](const FakeRequest& r) {
    std::vector<FakeSend> sends;
    WireMessage m;
    m.id = static_cast<std::uint16_t>(r.query.id + 1);
    m.qname = r.query.name;
    m.answer.push_back(rrA(r.query.name, "6.6.6.1"));
    sends.push_back({dnstest::encode(m)});  // wrong id
    m.id = r.query.id;
    m.qname = "other.test";
    m.answer = {rrA("other.test", "6.6.6.2")};
    sends.push_back({dnstest::encode(m)});  // wrong name
    m.qname = r.query.name;
    m.qtype = 16;
    m.answer = {rrA(r.query.name, "6.6.6.3")};
    sends.push_back({dnstest::encode(m)});  // wrong type
    m.qtype = 1;
    m.qr = false;
    sends.push_back({dnstest::encode(m)});  // not a response
    sends.push_back({{0xde, 0xad, 0xbe}});  // garbage
    m.qr = true;
    m.answer = {rrA(r.query.name, "6.6.6.4")};
    sends.push_back({dnstest::encode(m), 0ms, /*fromOtherPort=*/true});  // kernel drops it
    // The genuine answer, echoing the name in another case (RFC 5452 9.3), a little later.
    std::string upper = r.query.name;
    std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
    m.qname = upper;
    m.answer = {rrA(upper, "127.0.0.2")};
    sends.push_back({dnstest::encode(m), 40ms});
    return sends;
  });
  makeResolver(settingsFor({server.address()}));
  Outcome out;
  auto handle = resolver_->lookup("victim.test", DnsType::kA, collect(&out));
  ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
  EXPECT_EQ(out.result.status, DnsStatus::kOk) << out.result.detail;
  ASSERT_EQ(out.result.records.size(), 1u);
  EXPECT_EQ(out.result.records[0].value, "127.0.0.2");
  EXPECT_EQ(server.udpQueries, 1) << "a mismatch must not end the attempt";
  EXPECT_EQ(resolver_->stats().mismatches, 5u);
}

TEST_F(DnsResolverTest, TruncatedAnswerFallsBackToTcp) {
  auto& server = startServer(
      [](const FakeRequest& r) {
        return std::vector<FakeSend>{FakeSend{answerTo(r, {}, 0, /*tc=*/true)}};
      },
      [](const FakeRequest& r) {
        // ~20 KiB: more than any UDP answer we accept.
        std::vector<dnstest::WireRr> txt;
        txt.reserve(100);
        for (int i = 0; i < 100; ++i) {
          txt.push_back(rrTxt(r.query.name, {std::to_string(i) + ":" + std::string(200, 'x')}));
        }
        return std::vector<FakeSend>{FakeSend{answerTo(r, txt)}};
      });
  makeResolver(settingsFor({server.address()}));
  Outcome out;
  auto handle = resolver_->lookup("big.test", DnsType::kTxt, collect(&out));
  ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
  EXPECT_EQ(out.result.status, DnsStatus::kOk) << out.result.detail;
  EXPECT_EQ(out.result.records.size(), 100u);
  EXPECT_EQ(server.udpQueries, 1);
  EXPECT_EQ(server.tcpQueries, 1);
  EXPECT_EQ(resolver_->stats().tcpFallbacks, 1u);
  EXPECT_NE(out.result.detail.find("tcp"), std::string::npos) << out.result.detail;
}

TEST_F(DnsResolverTest, TcpAnswerForAnotherQuestionFails) {
  auto& server = startServer(
      [](const FakeRequest& r) {
        return std::vector<FakeSend>{FakeSend{answerTo(r, {}, 0, /*tc=*/true)}};
      },
      [](const FakeRequest& r) {
        FakeRequest other = r;
        other.query.name = "other.test";
        return std::vector<FakeSend>{FakeSend{answerTo(other, {rrA("other.test", "6.6.6.6")})}};
      });
  auto s = settingsFor({server.address()});
  s.attempts = 1;
  makeResolver(s);
  Outcome out;
  auto handle = resolver_->lookup("big.test", DnsType::kA, collect(&out));
  ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
  EXPECT_EQ(out.result.status, DnsStatus::kServFail) << out.result.detail;
  EXPECT_TRUE(out.result.records.empty());
}

TEST_F(DnsResolverTest, SilentServerTimesOutAfterEveryAttempt) {
  auto& server = startServer(neverAnswer);
  auto s = settingsFor({server.address()});
  s.timeout = 100ms;
  s.attempts = 3;
  makeResolver(s);
  Outcome out;
  auto handle = resolver_->lookup("slow.test", DnsType::kA, collect(&out));
  // On the manual clock: each attempt waits exactly its timeout, then the next one goes out.
  for (int attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_TRUE(runUntil([&] { return server.udpQueries == attempt; })) << attempt;
    advance(99ms);
    EXPECT_EQ(out.calls, 0) << "attempt " << attempt << " gave up early";
    EXPECT_EQ(server.udpQueries, attempt);
    advance(1ms);
  }
  ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
  EXPECT_EQ(out.result.status, DnsStatus::kTimeout) << out.result.detail;
  EXPECT_EQ(server.udpQueries, 3);
  EXPECT_EQ(resolver_->stats().timeouts, 3u);
  EXPECT_NE(out.result.detail.find("attempts=3"), std::string::npos) << out.result.detail;
  // RFC 5452 9.2: a fresh id and a fresh random source port per attempt.
  std::set<std::uint16_t> ids;
  std::set<std::uint16_t> ports;
  for (const auto& r : server.requests) {
    ids.insert(r.query.id);
    ports.insert(r.sourcePort);
  }
  EXPECT_GT(ids.size(), 1u);
  EXPECT_GT(ports.size(), 1u);

  // Timeouts are not cached.
  Outcome again;
  auto h2 = resolver_->lookup("slow.test", DnsType::kA, collect(&again));
  for (int attempt = 4; attempt <= 6; ++attempt) {
    ASSERT_TRUE(runUntil([&] { return server.udpQueries == attempt; })) << attempt;
    advance(100ms);
  }
  ASSERT_TRUE(runUntil([&] { return again.calls > 0; }));
  EXPECT_EQ(server.udpQueries, 6);
}

TEST_F(DnsResolverTest, RetriesRotateToTheNextServer) {
  auto& dead = startServer(neverAnswer);
  auto& alive = startServer(answerA);
  auto s = settingsFor({dead.address(), alive.address()});
  s.timeout = 100ms;
  makeResolver(s);
  Outcome out;
  auto handle = resolver_->lookup("r.test", DnsType::kA, collect(&out));
  ASSERT_TRUE(runUntil([&] { return dead.udpQueries == 1; }));
  advance(100ms);  // the first server's timeout
  ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
  EXPECT_EQ(out.result.status, DnsStatus::kOk) << out.result.detail;
  EXPECT_EQ(dead.udpQueries, 1);
  EXPECT_EQ(alive.udpQueries, 1);
  EXPECT_NE(out.result.detail.find(alive.address()), std::string::npos) << out.result.detail;
}

TEST_F(DnsResolverTest, ServFailFromTheOnlyServerIsFinalAndNotCached) {
  auto& server = startServer([](const FakeRequest& r) {
    return std::vector<FakeSend>{FakeSend{answerTo(r, {}, /*rcode=*/2)}};
  });
  makeResolver(settingsFor({server.address()}));
  Outcome out;
  auto h1 = resolver_->lookup("sf.test", DnsType::kA, collect(&out));
  ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
  EXPECT_EQ(out.result.status, DnsStatus::kServFail);
  EXPECT_NE(out.result.detail.find("rcode=SERVFAIL"), std::string::npos) << out.result.detail;
  EXPECT_EQ(server.udpQueries, 1);
  Outcome again;
  auto h2 = resolver_->lookup("sf.test", DnsType::kA, collect(&again));
  ASSERT_TRUE(runUntil([&] { return again.calls > 0; }));
  EXPECT_FALSE(again.result.fromCache);
  EXPECT_EQ(server.udpQueries, 2);
}

TEST_F(DnsResolverTest, RefusedByOneServerTriesTheOther) {
  auto& refusing = startServer([](const FakeRequest& r) {
    return std::vector<FakeSend>{FakeSend{answerTo(r, {}, /*rcode=*/5)}};
  });
  auto& good = startServer(answerA);
  makeResolver(settingsFor({refusing.address(), good.address()}));
  Outcome out;
  auto handle = resolver_->lookup("x.test", DnsType::kA, collect(&out));
  ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
  EXPECT_EQ(out.result.status, DnsStatus::kOk) << out.result.detail;
  EXPECT_EQ(refusing.udpQueries, 1);
  EXPECT_EQ(good.udpQueries, 1);
}

TEST_F(DnsResolverTest, NegativeAnswersAreCachedBySoa) {
  auto& server = startServer([](const FakeRequest& r) {
    WireMessage m;
    m.id = r.query.id;
    m.qname = r.query.name;
    m.qtype = r.query.type;
    m.rcode = r.query.name == "nx.test" ? 3 : 0;
    m.authority.push_back(rrSoa("test", 60, 30));
    return std::vector<FakeSend>{FakeSend{dnstest::encode(m)}};
  });
  makeResolver(settingsFor({server.address()}));
  struct Case {
    std::string name;
    DnsStatus want;
  };
  for (const Case& c :
       {Case{"nx.test", DnsStatus::kNxDomain}, Case{"empty.test", DnsStatus::kNoData}}) {
    const int before = server.udpQueries;
    for (int round = 0; round < 2; ++round) {
      Outcome out;
      auto h = resolver_->lookup(c.name, DnsType::kA, collect(&out));
      ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
      EXPECT_EQ(out.result.status, c.want) << c.name << ": got " << dnsStatusName(out.result.status)
                                           << " want " << dnsStatusName(c.want);
      EXPECT_EQ(out.result.fromCache, round == 1) << c.name << " round " << round;
    }
    EXPECT_EQ(server.udpQueries, before + 1) << c.name;
  }
}

TEST_F(DnsResolverTest, PositiveTtlIsCappedByMaxTtl) {
  auto& server = startServer(answerA);  // TTL 60
  auto s = settingsFor({server.address()});
  s.maxTtl = 1s;
  makeResolver(s);
  for (int round = 0; round < 3; ++round) {
    Outcome out;
    auto h = resolver_->lookup("ttl.test", DnsType::kA, collect(&out));
    ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
    EXPECT_EQ(out.result.fromCache, round == 1) << "round " << round;
    if (round == 1) {
      advance(1100ms);  // past maxTtl
    }
  }
  EXPECT_EQ(server.udpQueries, 2);
}

TEST_F(DnsResolverTest, UnreachableServerFailsFast) {
  auto s = settingsFor({"127.0.0.1:" + std::to_string(closedUdpPort())});
  s.timeout = 2s;
  makeResolver(s);
  Outcome out;
  const auto start = d_.now();
  auto handle = resolver_->lookup("x.test", DnsType::kA, collect(&out));
  ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
  EXPECT_EQ(d_.now(), start) << "ICMP unreachable must not wait for the timeout";
  EXPECT_EQ(out.result.status, DnsStatus::kServFail) << out.result.detail;
  EXPECT_NE(out.result.detail.find("refused"), std::string::npos) << out.result.detail;
}

TEST_F(DnsResolverTest, MalformedAnswerIsAnError) {
  auto& server = startServer([](const FakeRequest& r) {
    auto bytes = answerTo(r, {rrA(r.query.name, "127.0.0.2")});
    bytes.resize(bytes.size() - 3);  // header and question intact, the record cut short
    return std::vector<FakeSend>{FakeSend{bytes}};
  });
  auto s = settingsFor({server.address()});
  s.attempts = 1;
  makeResolver(s);
  Outcome out;
  auto handle = resolver_->lookup("bad.test", DnsType::kA, collect(&out));
  ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
  EXPECT_EQ(out.result.status, DnsStatus::kError) << out.result.detail;
  EXPECT_NE(out.result.detail.find("malformed"), std::string::npos) << out.result.detail;
}

TEST_F(DnsResolverTest, DestroyingTheHandleCancels) {
  auto& server = startServer([](const FakeRequest& r) {
    return std::vector<FakeSend>{FakeSend{answerTo(r, {rrA(r.query.name, "127.0.0.2")}), 30ms}};
  });
  makeResolver(settingsFor({server.address()}));
  Outcome out;
  auto handle = resolver_->lookup("c.test", DnsType::kA, collect(&out));
  ASSERT_TRUE(runUntil([&] { return server.udpQueries == 1; }));  // the query is on the wire
  handle.reset();
  EXPECT_EQ(resolver_->inFlight(), 0u) << "no waiter left: the query is abandoned";
  advance(100ms);  // the late answer meets a closed socket
  EXPECT_EQ(out.calls, 0);
  EXPECT_EQ(server.udpQueries, 1);
  EXPECT_EQ(resolver_->stats().abandoned, 1u);
}

TEST_F(DnsResolverTest, CancellingOneMergedWaiterLeavesTheOthers) {
  auto& server = startServer([](const FakeRequest& r) {
    return std::vector<FakeSend>{FakeSend{answerTo(r, {rrA(r.query.name, "127.0.0.2")}), 20ms}};
  });
  makeResolver(settingsFor({server.address()}));
  Outcome a;
  Outcome b;
  auto ha = resolver_->lookup("c.test", DnsType::kA, collect(&a));
  auto hb = resolver_->lookup("c.test", DnsType::kA, collect(&b));
  ha.reset();
  ASSERT_TRUE(runUntil([&] { return b.calls > 0; }));
  advance(10ms);
  EXPECT_EQ(a.calls, 0);
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(b.result.status, DnsStatus::kOk);
}

TEST_F(DnsResolverTest, CancelWhileReadyForDelivery) {
  auto& server = startServer(answerA);
  makeResolver(settingsFor({server.address()}));
  Outcome first;
  auto h1 = resolver_->lookup("c.test", DnsType::kA, collect(&first));
  ASSERT_TRUE(runUntil([&] { return first.calls > 0; }));
  Outcome out;
  auto h2 = resolver_->lookup("c.test", DnsType::kA, collect(&out));  // cache hit, queued
  h2.reset();
  advance(20ms);
  EXPECT_EQ(out.calls, 0);
}

TEST_F(DnsResolverTest, CallbackMayDestroyItsOwnHandle) {
  auto& server = startServer(answerA);
  makeResolver(settingsFor({server.address()}));
  std::unique_ptr<DnsLookup> handle;
  int calls = 0;
  handle = resolver_->lookup("self.test", DnsType::kA, [&](const DnsResult& r) {
    ++calls;
    handle.reset();                       // destroys the handle whose callback this is
    EXPECT_EQ(r.status, DnsStatus::kOk);  // r must still be valid
  });
  ASSERT_TRUE(runUntil([&] { return calls > 0; }));
  advance(10ms);
  EXPECT_EQ(calls, 1);
}

TEST_F(DnsResolverTest, CallbackMayDestroyAnotherPendingHandle) {
  auto& server = startServer(answerA);
  makeResolver(settingsFor({server.address()}));
  std::unique_ptr<DnsLookup> h1;
  std::unique_ptr<DnsLookup> h2;
  int calls = 0;
  // Merged: both become ready together; whichever runs first cancels the other.
  h1 = resolver_->lookup("o.test", DnsType::kA, [&](const DnsResult&) {
    ++calls;
    h2.reset();
  });
  h2 = resolver_->lookup("o.test", DnsType::kA, [&](const DnsResult&) {
    ++calls;
    h1.reset();
  });
  ASSERT_TRUE(runUntil([&] { return calls > 0; }));
  advance(20ms);
  EXPECT_EQ(calls, 1);
}

TEST_F(DnsResolverTest, CallbackMayStartANewLookup) {
  auto& server = startServer(answerA);
  makeResolver(settingsFor({server.address()}));
  std::unique_ptr<DnsLookup> inner;
  Outcome innerOut;
  bool innerInline = false;
  int outerCalls = 0;
  auto outer = resolver_->lookup("n.test", DnsType::kA, [&](const DnsResult&) {
    ++outerCalls;
    inner = resolver_->lookup("n.test", DnsType::kA, collect(&innerOut));  // a cache hit
    innerInline = innerOut.calls != 0;
  });
  ASSERT_TRUE(runUntil([&] { return innerOut.calls > 0; }));
  EXPECT_EQ(outerCalls, 1);
  EXPECT_FALSE(innerInline) << "a lookup started from a callback must not complete inline";
  EXPECT_TRUE(innerOut.result.fromCache);
}

TEST_F(DnsResolverTest, CachedAnswersChainedFromCallbacksYieldToTheLoop) {
  // Cache hits reach their callbacks in the loop's current pass (no zero timer, no extra
  // poll), but callbacks that keep starting cached lookups must not hold the pass forever.
  auto& server = startServer(answerA);
  makeResolver(settingsFor({server.address()}));
  Outcome warm;
  auto w = resolver_->lookup("c.test", DnsType::kA, collect(&warm));
  ASSERT_TRUE(runUntil([&] { return warm.calls > 0; }));

  constexpr int kChain = 100;
  int calls = 0;
  std::unique_ptr<DnsLookup> current;
  std::function<void(const DnsResult&)> next = [&](const DnsResult& r) {
    EXPECT_TRUE(r.fromCache);
    if (++calls < kChain) current = resolver_->lookup("c.test", DnsType::kA, next);
  };
  current = resolver_->lookup("c.test", DnsType::kA, next);
  EXPECT_EQ(calls, 0) << "a cache hit must not call back inside lookup()";
  event_base_loop(d_.base(), EVLOOP_NONBLOCK);  // one pass of the loop, no timer fired
  EXPECT_GT(calls, 1) << "cached answers started from callbacks wait for a timer each";
  EXPECT_LT(calls, kChain) << "the chain never yielded to the loop";
  ASSERT_TRUE(runUntil([&] { return calls == kChain; }));
  EXPECT_EQ(server.udpQueries, 1);
}

TEST_F(DnsResolverTest, DestroyingTheResolverSilencesEveryCallback) {
  auto& server = startServer([](const FakeRequest& r) {
    return std::vector<FakeSend>{FakeSend{answerTo(r, {rrA(r.query.name, "127.0.0.2")}), 20ms}};
  });
  makeResolver(settingsFor({server.address()}));
  Outcome a;
  Outcome b;
  Outcome c;
  auto ha = resolver_->lookup("d1.test", DnsType::kA, collect(&a));
  auto hb = resolver_->lookup("d2.test", DnsType::kA, collect(&b));
  auto hc = resolver_->lookup("bad name", DnsType::kA, collect(&c));  // already queued
  resolver_.reset();
  advance(80ms);
  EXPECT_EQ(a.calls + b.calls + c.calls, 0);
  ha.reset();  // handles outliving the resolver are inert
  hb.reset();
}

TEST_F(DnsResolverTest, ACallbackLetsGoOfTheResolverThroughTheLoop) {
  // The lifetime idiom: an owner done with the resolver inside one of its callbacks hands it to
  // deferredDelete. The answers delivered in that pass still arrive; then it is gone, and the
  // handles that outlive it are inert.
  auto& server = startServer(answerA);
  makeResolver(settingsFor({server.address()}));
  int calls = 0;
  auto cb = [&](const DnsResult& r) {
    ++calls;
    EXPECT_EQ(r.status, DnsStatus::kOk);
    if (resolver_) d_.deferredDelete(std::move(resolver_));
  };
  auto h1 = resolver_->lookup("z.test", DnsType::kA, cb);
  auto h2 = resolver_->lookup("z.test", DnsType::kA, cb);
  ASSERT_TRUE(runUntil([&] { return calls > 0; }));
  advance(20ms);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(resolver_, nullptr);
  h1.reset();
  h2.reset();
}

TEST_F(DnsResolverTest, LocalErrorsAreDeliveredThroughTheLoop) {
  makeResolver(settingsFor({}));  // no servers
  Outcome noServer;
  auto h1 = resolver_->lookup("a.test", DnsType::kA, collect(&noServer));
  EXPECT_EQ(noServer.calls, 0);
  ASSERT_TRUE(runUntil([&] { return noServer.calls > 0; }));
  EXPECT_EQ(noServer.result.status, DnsStatus::kError);
  EXPECT_NE(noServer.result.detail.find("no DNS servers"), std::string::npos);

  auto& server = startServer(answerA);
  makeResolver(settingsFor({server.address()}));
  for (const std::string& bad :
       std::vector<std::string>{"", "a..b", "sp ace.test", std::string(300, 'a')}) {
    Outcome out;
    auto h = resolver_->lookup(bad, DnsType::kA, collect(&out));
    EXPECT_EQ(out.calls, 0);
    ASSERT_TRUE(runUntil([&] { return out.calls > 0; }));
    EXPECT_EQ(out.result.status, DnsStatus::kError) << "\"" << bad << "\"";
  }
  EXPECT_EQ(server.udpQueries, 0);
}

TEST_F(DnsResolverTest, InFlightQueriesAreBounded) {
  auto& server = startServer(neverAnswer);
  auto s = settingsFor({server.address()});
  s.maxInFlight = 2;
  s.timeout = 50ms;
  s.attempts = 1;
  makeResolver(s);
  Outcome out[3];
  auto h0 = resolver_->lookup("q0.test", DnsType::kA, collect(&out[0]));
  auto h1 = resolver_->lookup("q1.test", DnsType::kA, collect(&out[1]));
  auto h2 = resolver_->lookup("q2.test", DnsType::kA, collect(&out[2]));
  EXPECT_EQ(out[2].calls, 0);
  ASSERT_TRUE(runUntil([&] { return out[2].calls > 0 && server.udpQueries == 2; }));
  advance(50ms);
  ASSERT_TRUE(runUntil([&] { return out[0].calls && out[1].calls && out[2].calls; }));
  EXPECT_EQ(out[2].result.status, DnsStatus::kError);
  EXPECT_NE(out[2].result.detail.find("too many"), std::string::npos);
  EXPECT_EQ(out[0].result.status, DnsStatus::kTimeout);
  EXPECT_EQ(server.udpQueries, 2);
}

TEST(DnsResolverCreate, ServerAddresses) {
  EventBasePtr base(event_base_new());
  EventDispatcher dispatcher(base.get());
  struct Case {
    std::string spec;
    bool ok;
  };
  const Case cases[] = {
      {"127.0.0.1", true},
      {"127.0.0.1:5353", true},
      {"[::1]:5353", true},
      {"[::1]", true},
      {"::1", true},
      {"127.0.0.1:0", false},
      {"127.0.0.1:65536", false},
      {"127.0.0.1:", false},
      {"localhost", false},
      {"[::1", false},
      {"[::1]x", false},
      {"1.2.3.4:53:53", false},
      {"", false},
      {"127.0.0.1:5x", false},
      {"[127.0.0.1]:53", true},
  };
  for (const auto& c : cases) {
    DnsSettings s;
    s.servers = {c.spec};
    std::string error;
    auto r = DnsResolver::create(dispatcher, s, &error);
    EXPECT_EQ(r != nullptr, c.ok) << "\"" << c.spec << "\": got " << (r ? "ok" : error) << " want "
                                  << (c.ok ? "ok" : "error");
    if (!c.ok) {
      EXPECT_NE(error.find(c.spec), std::string::npos)
          << "error should name the address: " << error;
    }
  }
  DnsSettings bad;
  bad.attempts = 0;
  std::string error;
  EXPECT_FALSE(DnsResolver::create(dispatcher, bad, &error));
  EXPECT_FALSE(error.empty());
}

TEST(DnsResolverCreate, ServersFromResolvConf) {
  char path[] = "/tmp/portcullis-resolv-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    std::ofstream out(path);
    out << "# comment\n"
           "search example.test\n"
           "nameserver 127.0.0.53\n"
           "  nameserver\t::1  # trailing comment\n"
           "; nameserver 10.0.0.1\n"
           "nameserver not-an-address\n"
           "nameserver 127.0.0.2\n"
           "options edns0\n";
  }
  const auto got = DnsResolver::serversFromResolvConf(path);
  const std::vector<std::string> want{"127.0.0.53", "::1", "127.0.0.2"};
  EXPECT_EQ(got, want);
  ::unlink(path);
  EXPECT_TRUE(DnsResolver::serversFromResolvConf("/nonexistent/resolv.conf").empty());
}

}  // namespace
}  // namespace portcullis
