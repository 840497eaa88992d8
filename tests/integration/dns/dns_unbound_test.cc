// DnsResolver against real servers on loopback: unbound serving tests/fixtures/dns/zones.conf
// (A, AAAA, PTR, MX, TXT, NXDOMAIN, NODATA, REFUSED, a dropped zone, TC -> TCP fallback), and
// tests/fixtures/dns/slowdns.py for answers that come late, fail or never come.
// Each suite starts its server on a free high port in a temp dir and kills it in teardown.
// Nothing here queries anything but 127.0.0.1 and ::1.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "portcullis/resolver.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/event_util.h"
#include "proxy/services/dns/dns_resolver.h"

namespace portcullis {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

fs::path fixturesDir() {
  if (const char* env = std::getenv("PORTCULLIS_DNS_FIXTURES")) {
    return env;
  }
  return PORTCULLIS_DNS_FIXTURES;
}

std::string findProgram(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates) {
    if (::access(c.c_str(), X_OK) == 0) {
      return c;
    }
  }
  return {};
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A port free for both UDP and TCP on 127.0.0.1 (and ::1 when wanted), found by binding port 0.
std::uint16_t freePort(bool alsoV6) {
  for (int tries = 0; tries < 50; ++tries) {
    const int probe = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (::bind(probe, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ::close(probe);
      continue;
    }
    ::close(probe);
    bool ok = true;
    for (int type : {SOCK_DGRAM, SOCK_STREAM}) {
      const int s = ::socket(AF_INET, type, 0);
      ok = ok && ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
      ::close(s);
      if (alsoV6) {
        const int s6 = ::socket(AF_INET6, type, 0);
        sockaddr_in6 b{};
        b.sin6_family = AF_INET6;
        b.sin6_addr = in6addr_loopback;
        b.sin6_port = a.sin_port;
        ok = ok && ::bind(s6, reinterpret_cast<sockaddr*>(&b), sizeof(b)) == 0;
        ::close(s6);
      }
    }
    if (ok) {
      return ntohs(a.sin_port);
    }
  }
  return 0;
}

bool ipv6LoopbackUsable() {
  const int s = ::socket(AF_INET6, SOCK_DGRAM, 0);
  if (s < 0) {
    return false;
  }
  sockaddr_in6 b{};
  b.sin6_family = AF_INET6;
  b.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(s, reinterpret_cast<sockaddr*>(&b), sizeof(b)) == 0;
  ::close(s);
  return ok;
}

// A child process with stdout to a pipe (for "ready") and stderr to a log file.
class Child {
 public:
  bool start(const std::vector<std::string>& argv, const fs::path& log) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      return false;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    stdout_ = fds[0];
    if (rc != 0) {
      pid_ = -1;
      return false;
    }
    return true;
  }
  ~Child() { stop(); }

  bool running() {
    if (pid_ <= 0) {
      return false;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  // Waits for a stdout line starting with `word`.
  bool waitForLine(const std::string& word, std::chrono::milliseconds limit) {
    std::string seen;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        char buf[256];
        const ssize_t n = ::read(stdout_, buf, sizeof(buf));
        if (n <= 0) {
          return false;
        }
        seen.append(buf, static_cast<std::size_t>(n));
        if (seen.rfind(word, 0) == 0) {
          return true;
        }
      }
    }
    return false;
  }

  void stop() {
    if (running()) {
      ::kill(pid_, SIGTERM);
      for (int i = 0; i < 100 && running(); ++i) {
        std::this_thread::sleep_for(20ms);
      }
      if (running()) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
      }
    }
    pid_ = -1;
    if (stdout_ >= 0) {
      ::close(stdout_);
      stdout_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
  int stdout_ = -1;
};

struct Lookup {
  std::string name;
  DnsType type = DnsType::kA;
};

// Resolves each name with one fresh resolver and returns the results in order.
std::vector<DnsResult> resolveAll(DnsSettings settings, const std::vector<Lookup>& lookups,
                                  DnsStats* stats = nullptr) {
  EventBasePtr base(event_base_new());
  EventDispatcher dispatcher(base.get());
  std::string error;
  auto resolver = DnsResolver::create(dispatcher, std::move(settings), &error);
  EXPECT_TRUE(resolver) << error;
  std::vector<DnsResult> results(lookups.size());
  if (!resolver) {
    return results;
  }
  std::size_t done = 0;
  std::vector<std::unique_ptr<DnsLookup>> handles;
  for (std::size_t i = 0; i < lookups.size(); ++i) {
    handles.push_back(
        resolver->lookup(lookups[i].name, lookups[i].type, [&, i](const DnsResult& r) {
          results[i] = r;
          if (++done == lookups.size()) {
            event_base_loopbreak(base.get());
          }
        }));
  }
  // Every lookup has a deadline of its own, so this returns.
  event_base_dispatch(base.get());
  EXPECT_EQ(done, lookups.size());
  if (stats != nullptr) {
    *stats = resolver->stats();
  }
  return results;
}

DnsResult resolveOne(DnsSettings settings, std::string name, DnsType type,
                     DnsStats* stats = nullptr) {
  return resolveAll(std::move(settings), {{std::move(name), type}}, stats).at(0);
}

std::vector<std::string> sortedValues(const DnsResult& r) {
  std::vector<std::string> v;
  for (const auto& rec : r.records) {
    v.push_back(rec.value);
  }
  std::sort(v.begin(), v.end());
  return v;
}

std::string show(const std::vector<std::string>& v) {
  std::string out = "{";
  for (const auto& s : v) {
    out += (out.size() > 1 ? ", \"" : "\"") + s + "\"";
  }
  return out + "}";
}

// ---------------------------------------------------------------------------------------------
// unbound

class UnboundTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    unbound_ = findProgram({"/usr/sbin/unbound", "/usr/local/sbin/unbound"});
    if (unbound_.empty()) {
      return;
    }
    v6_ = ipv6LoopbackUsable();
    port_ = freePort(v6_);
    char tmpl[] = "/tmp/portcullis-unbound-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    const fs::path zones = fixturesDir() / "zones.conf";
    std::ofstream conf(dir_ / "unbound.conf");
    const std::string p = std::to_string(port_);
    conf << "# generated by dns_unbound_tests\n"
            "server:\n"
            "  interface: 127.0.0.1@"
         << p << "\n";
    if (v6_) {
      conf << "  interface: ::1@" << p << "\n";
    }
    conf << "  port: " << p << "\n"
         << "  do-ip6: " << (v6_ ? "yes" : "no") << "\n"
         << "  interface-automatic: no\n"
            "  do-daemonize: no\n"
            "  chroot: \"\"\n"
            "  username: \"\"\n"
            "  directory: \""
         << dir_.string()
         << "\"\n"
            "  pidfile: \""
         << (dir_ / "unbound.pid").string()
         << "\"\n"
            "  use-syslog: no\n"
            "  logfile: \"\"\n"
            "  verbosity: 1\n"
            "  num-threads: 1\n"
            "  so-reuseport: no\n"
            "  access-control: 127.0.0.0/8 allow\n"
            "  access-control: ::1/128 allow\n"
            "  module-config: \"iterator\"\n"
            "  outgoing-interface: 127.0.0.1\n"
            "  cache-max-ttl: 0\n"
            "  cache-max-negative-ttl: 0\n"
            "  msg-cache-size: 1m\n"
            "  rrset-cache-size: 1m\n"
            "  local-zone: \".\" refuse\n"
            "  include: \""
         << zones.string()
         << "\"\n"
            "remote-control:\n"
            "  control-enable: no\n";
    conf.close();
    child_ = new Child();
    if (!child_->start({unbound_, "-d", "-c", (dir_ / "unbound.conf").string()},
                       dir_ / "unbound.log")) {
      startError_ = "cannot spawn " + unbound_;
      return;
    }
    // Ready when it answers; unbound takes ~30 ms.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!child_->running()) {
        startError_ = "unbound exited: " + readFile(dir_ / "unbound.log");
        return;
      }
      DnsSettings s = settings();
      s.timeout = 100ms;
      s.attempts = 1;
      if (resolveOne(s, "client.test", DnsType::kA).ok()) {
        ready_ = true;
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
    startError_ = "unbound did not answer: " + readFile(dir_ / "unbound.log");
  }

  static void TearDownTestSuite() {
    delete child_;  // SIGTERM, then SIGKILL
    child_ = nullptr;
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  void SetUp() override {
    if (unbound_.empty()) {
      GTEST_SKIP() << "unbound is not installed";
    }
    ASSERT_TRUE(ready_) << startError_;
  }

  static DnsSettings settings() {
    DnsSettings s;
    s.servers = {"127.0.0.1:" + std::to_string(port_)};
    s.timeout = 1000ms;
    s.attempts = 2;
    return s;
  }

  static inline std::string unbound_;
  static inline bool v6_ = false;
  static inline std::uint16_t port_ = 0;
  static inline fs::path dir_;
  static inline Child* child_ = nullptr;
  static inline bool ready_ = false;
  static inline std::string startError_;
};

TEST_F(UnboundTest, ZoneData) {
  const std::string v6nibbles = *reverseNibbles("::1");
  struct Case {
    std::string name;
    DnsType type;
    DnsStatus want;
    std::vector<std::string> values;  // sorted
  };
  const Case cases[] = {
      // DNSBL / allowlist
      {"2.0.0.127.dnsbl.test", DnsType::kA, DnsStatus::kOk, {"127.0.0.2"}},
      {"2.0.0.127.dnsbl.test",
       DnsType::kTxt,
       DnsStatus::kOk,
       {"Listed in dnsbl.test, see http://dnsbl.test/q?127.0.0.2"}},
      {"10.0.0.127.dnsbl.test", DnsType::kA, DnsStatus::kOk, {"127.0.0.10", "127.0.0.11"}},
      {"252.0.0.127.dnsbl.test", DnsType::kA, DnsStatus::kOk, {"127.255.255.252"}},
      {"9.0.0.127.dnsbl.test", DnsType::kA, DnsStatus::kOk, {"10.0.0.9"}},
      {"3.0.0.127.dnsbl.test", DnsType::kA, DnsStatus::kNxDomain, {}},
      {v6nibbles + ".dnsbl.test", DnsType::kA, DnsStatus::kOk, {"127.0.0.2"}},
      {"5.0.0.127.dnswl.test", DnsType::kA, DnsStatus::kOk, {"127.0.5.1"}},
      // PTR and forward confirmation
      {*ptrQueryName("127.0.0.1"), DnsType::kPtr, DnsStatus::kOk, {"client.test"}},
      {*ptrQueryName("127.0.0.2"), DnsType::kPtr, DnsStatus::kOk, {"good.test"}},
      {*ptrQueryName("127.0.0.3"), DnsType::kPtr, DnsStatus::kOk, {"mismatch.test"}},
      {*ptrQueryName("127.0.0.4"), DnsType::kPtr, DnsStatus::kNxDomain, {}},
      {*ptrQueryName("127.0.0.5"), DnsType::kPtr, DnsStatus::kOk, {"client5.test"}},
      {*ptrQueryName("::1"), DnsType::kPtr, DnsStatus::kOk, {"ip6-client.test"}},
      {"client.test", DnsType::kA, DnsStatus::kOk, {"127.0.0.1"}},
      {"good.test", DnsType::kA, DnsStatus::kOk, {"127.0.0.2"}},
      {"mismatch.test", DnsType::kA, DnsStatus::kOk, {"127.0.0.99"}},
      {"client5.test", DnsType::kA, DnsStatus::kOk, {"127.0.0.5"}},
      {"ip6-client.test", DnsType::kAaaa, DnsStatus::kOk, {"::1"}},
      {"client.test", DnsType::kAaaa, DnsStatus::kNoData, {}},
      // MX
      {"mx.test", DnsType::kMx, DnsStatus::kOk, {"mail.mx.test"}},
      {"mail.mx.test", DnsType::kA, DnsStatus::kOk, {"127.0.0.1"}},
      {"aonly.test", DnsType::kMx, DnsStatus::kNoData, {}},
      {"aonly.test", DnsType::kA, DnsStatus::kOk, {"127.0.0.1"}},
      {"nomx-noaddr.test", DnsType::kMx, DnsStatus::kNoData, {}},
      {"nomx-noaddr.test", DnsType::kA, DnsStatus::kNoData, {}},
      {"nomx-noaddr.test", DnsType::kTxt, DnsStatus::kOk, {"no mail here"}},
      {"nx.test", DnsType::kA, DnsStatus::kNxDomain, {}},
      {"nx.test", DnsType::kMx, DnsStatus::kNxDomain, {}},
      // TXT made of two character-strings
      {"multi.test", DnsType::kTxt, DnsStatus::kOk, {"part one, part two"}},
      // REFUSED: a refuse zone, and everything outside our zones
      {"refused.test", DnsType::kA, DnsStatus::kServFail, {}},
      {"example.com", DnsType::kA, DnsStatus::kServFail, {}},
  };
  std::vector<Lookup> lookups;
  for (const auto& c : cases) {
    lookups.push_back({c.name, c.type});
  }
  // All at once through one resolver: also exercises many queries in flight.
  const auto results = resolveAll(settings(), lookups);
  for (std::size_t i = 0; i < std::size(cases); ++i) {
    const auto& c = cases[i];
    const auto& r = results[i];
    const std::string what = c.name + "/" + std::string(dnsTypeName(c.type));
    EXPECT_EQ(r.status, c.want) << what << ": got " << dnsStatusName(r.status) << " want "
                                << dnsStatusName(c.want) << " (" << r.detail << ")";
    EXPECT_EQ(sortedValues(r), c.values)
        << what << ": got " << show(sortedValues(r)) << " want " << show(c.values);
    for (const auto& rec : r.records) {
      EXPECT_EQ(rec.ttl, 60u) << what;
      EXPECT_EQ(rec.type, c.type) << what;
    }
  }
}

TEST_F(UnboundTest, MxPreferenceAndRefusedDetail) {
  const auto mx = resolveOne(settings(), "MX.Test.", DnsType::kMx);
  ASSERT_EQ(mx.records.size(), 1u) << mx.detail;
  EXPECT_EQ(mx.records[0].preference, 10);
  const auto refused = resolveOne(settings(), "refused.test", DnsType::kA);
  EXPECT_NE(refused.detail.find("rcode=REFUSED"), std::string::npos) << refused.detail;
  EXPECT_NE(refused.detail.find("127.0.0.1:" + std::to_string(port_)), std::string::npos)
      << refused.detail;
}

TEST_F(UnboundTest, TruncatedAnswerIsRetriedOverTcp) {
  DnsStats stats;
  const auto r = resolveOne(settings(), "bigtxt.test", DnsType::kTxt, &stats);
  EXPECT_EQ(r.status, DnsStatus::kOk) << r.detail;
  EXPECT_EQ(r.records.size(), 40u);
  EXPECT_EQ(stats.tcpFallbacks, 1u) << "unbound should have set TC on the UDP answer";
  EXPECT_NE(r.detail.find("tcp"), std::string::npos) << r.detail;
  for (const auto& rec : r.records) {
    EXPECT_EQ(rec.value.rfind("record ", 0), 0u) << rec.value;
  }
}

TEST_F(UnboundTest, DeniedZoneTimesOut) {
  DnsSettings s = settings();
  s.timeout = 150ms;
  s.attempts = 2;
  DnsStats stats;
  const auto start = std::chrono::steady_clock::now();
  const auto r = resolveOne(s, "drop.test", DnsType::kA, &stats);
  EXPECT_EQ(r.status, DnsStatus::kTimeout) << r.detail;
  EXPECT_GE(std::chrono::steady_clock::now() - start, 290ms);
  EXPECT_EQ(stats.timeouts, 2u);
}

TEST_F(UnboundTest, MergedLookupsAndCacheHits) {
  EventBasePtr base(event_base_new());
  EventDispatcher dispatcher(base.get());
  std::string error;
  auto resolver = DnsResolver::create(dispatcher, settings(), &error);
  ASSERT_TRUE(resolver) << error;
  int calls = 0;
  std::vector<DnsResult> results;
  auto cb = [&](const DnsResult& r) {
    results.push_back(r);
    if (++calls == 3) {
      event_base_loopbreak(base.get());
    }
  };
  auto h1 = resolver->lookup("good.test", DnsType::kA, cb);
  auto h2 = resolver->lookup("GOOD.test", DnsType::kA, cb);
  auto h3 = resolver->lookup("good.test.", DnsType::kA, cb);
  event_base_dispatch(base.get());
  ASSERT_EQ(calls, 3);
  EXPECT_EQ(resolver->stats().queries, 1u);
  EXPECT_EQ(resolver->stats().merged, 2u);

  bool cached = false;
  auto h4 = resolver->lookup("good.test", DnsType::kA, [&](const DnsResult& r) {
    cached = r.fromCache && r.ok();
    event_base_loopbreak(base.get());
  });
  event_base_dispatch(base.get());
  EXPECT_TRUE(cached);
  EXPECT_EQ(resolver->stats().queries, 1u);
}

TEST_F(UnboundTest, OverIpv6Loopback) {
  if (!v6_) {
    GTEST_SKIP() << "::1 is not usable here";
  }
  DnsSettings s = settings();
  s.servers = {"[::1]:" + std::to_string(port_)};
  const auto r = resolveOne(s, *ptrQueryName("::1"), DnsType::kPtr);
  EXPECT_EQ(r.status, DnsStatus::kOk) << r.detail;
  EXPECT_EQ(sortedValues(r), std::vector<std::string>{"ip6-client.test"});
  DnsStats stats;
  const auto big = resolveOne(s, "bigtxt.test", DnsType::kTxt, &stats);
  EXPECT_EQ(big.records.size(), 40u) << big.detail;
  EXPECT_EQ(stats.tcpFallbacks, 1u);
}

// ---------------------------------------------------------------------------------------------
// slowdns.py

class SlowDnsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    python_ = findProgram({"/usr/bin/python3", "/usr/local/bin/python3"});
    if (python_.empty()) {
      return;
    }
    port_ = freePort(false);
    char tmpl[] = "/tmp/portcullis-slowdns-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    child_ = new Child();
    const fs::path script = fixturesDir() / "slowdns.py";
    if (!child_->start(
            {python_, script.string(), "--port", std::to_string(port_), "--delay-ms", "50"},
            dir_ / "slowdns.log") ||
        !child_->waitForLine("ready", 10s)) {
      startError_ = "slowdns.py did not start: " + readFile(dir_ / "slowdns.log");
      return;
    }
    ready_ = true;
  }
  static void TearDownTestSuite() {
    delete child_;
    child_ = nullptr;
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }
  void SetUp() override {
    if (python_.empty()) {
      GTEST_SKIP() << "python3 is not installed";
    }
    ASSERT_TRUE(ready_) << startError_;
  }
  static DnsSettings settings(std::chrono::milliseconds timeout, int attempts) {
    DnsSettings s;
    s.servers = {"127.0.0.1:" + std::to_string(port_)};
    s.timeout = timeout;
    s.attempts = attempts;
    return s;
  }

  static inline std::string python_;
  static inline std::uint16_t port_ = 0;
  static inline fs::path dir_;
  static inline Child* child_ = nullptr;
  static inline bool ready_ = false;
  static inline std::string startError_;
};

TEST_F(SlowDnsTest, Behaviours) {
  struct Case {
    std::string name;
    DnsType type;
    std::chrono::milliseconds timeout;
    int attempts;
    DnsStatus want;
    std::vector<std::string> values;
    std::chrono::milliseconds minElapsed;
    std::chrono::milliseconds maxElapsed;
  };
  const Case cases[] = {
      {"a.slow.test", DnsType::kA, 1000ms, 1, DnsStatus::kOk, {"127.0.0.2"}, 45ms, 900ms},
      {"d200.slow.test", DnsType::kA, 1000ms, 1, DnsStatus::kOk, {"127.0.0.2"}, 190ms, 900ms},
      {"t.slow.test", DnsType::kTxt, 1000ms, 1, DnsStatus::kOk, {"delayed"}, 45ms, 900ms},
      {"x.slow.test", DnsType::kMx, 1000ms, 1, DnsStatus::kNoData, {}, 45ms, 900ms},
      {"nx.slow.test", DnsType::kA, 1000ms, 1, DnsStatus::kNxDomain, {}, 45ms, 900ms},
      {"servfail.slow.test", DnsType::kA, 1000ms, 1, DnsStatus::kServFail, {}, 45ms, 900ms},
      // Too slow for the per-attempt timeout: both attempts time out (~2 x 100 ms).
      {"d400.slow.test", DnsType::kA, 100ms, 2, DnsStatus::kTimeout, {}, 190ms, 390ms},
      {"drop.slow.test", DnsType::kA, 100ms, 1, DnsStatus::kTimeout, {}, 95ms, 390ms},
  };
  for (const auto& c : cases) {
    const auto start = std::chrono::steady_clock::now();
    const auto r = resolveOne(settings(c.timeout, c.attempts), c.name, c.type);
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    EXPECT_EQ(r.status, c.want) << c.name << ": got " << dnsStatusName(r.status) << " want "
                                << dnsStatusName(c.want) << " (" << r.detail << ")";
    EXPECT_EQ(sortedValues(r), c.values) << c.name;
    EXPECT_GE(elapsed, c.minElapsed) << c.name << ": answered too early";
    EXPECT_LE(elapsed, c.maxElapsed) << c.name << ": answered too late";
  }
}

}  // namespace
}  // namespace portcullis
