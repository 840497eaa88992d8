// Tests for ScannerFilter (filters/scanner/) through the clamd protocol, with a scripted fake
// Connector on a manual clock: the stream as the scanner sees it (request, framed chunks,
// terminator), backpressure (the spool is read a chunk at a time and only while the socket's
// output is below its mark), each ending (verdict, scanner error, close, timeout, over-long
// reply, hostile text), the size limit, the breaker skipping the scanner, the queue bound, and
// cancellation when the session goes away. No completion ever arrives inline.

#include "filters/scanner/scanner_filter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "filters/clamd/clamd_filter.h"
#include "proxy/admin/stats_registry.h"
#include "proxy/chain/filter_services.h"
#include "tests/support/fake_log.h"
#include "tests/support/filter_harness.h"
#include "tests/support/manual_dispatcher.h"

namespace portcullis {
namespace {

using namespace std::string_literals;
using std::chrono::milliseconds;

class FakeConnector;

struct FakeConnection final : public Connection {
  FakeConnection(FakeConnector& owner, std::string address, ConnectionHandler& handler);
  ~FakeConnection() override;
  void write(std::string_view bytes) override {
    written += bytes;
    pending += bytes.size();
  }
  std::size_t pendingWrite() const override { return pending; }
  void setReadTimeout(milliseconds t) override { readTimeout = t; }

  FakeConnector& owner;
  std::string address;
  ConnectionHandler& handler;
  std::string written;
  std::size_t pending = 0;
  milliseconds readTimeout{0};
};

class FakeConnector final : public Connector {
 public:
  std::unique_ptr<Connection> connect(std::string_view address, milliseconds,
                                      ConnectionHandler& handler) override {
    ++connects;
    auto c = std::make_unique<FakeConnection>(*this, std::string(address), handler);
    return c;
  }
  FakeConnection* live = nullptr;
  int connects = 0;
  int closed = 0;
};

FakeConnection::FakeConnection(FakeConnector& o, std::string a, ConnectionHandler& h)
    : owner(o), address(std::move(a)), handler(h) {
  owner.live = this;
}
FakeConnection::~FakeConnection() {
  ++owner.closed;
  if (owner.live == this) owner.live = nullptr;
}

// A spool of `size` bytes that records how much each read asked for.
class FakeReader final : public MessageReader {
 public:
  explicit FakeReader(std::string data) : data_(std::move(data)) {}
  std::uint64_t size() const override { return data_.size(); }
  std::size_t read(std::uint64_t offset, char* buf, std::size_t n) const override {
    largestRead = std::max(largestRead, n);
    if (offset >= data_.size()) return 0;
    const std::size_t k = std::min<std::size_t>(n, data_.size() - offset);
    std::copy_n(data_.data() + offset, k, buf);
    read_ += k;
    return k;
  }
  mutable std::size_t largestRead = 0;
  mutable std::size_t read_ = 0;

 private:
  std::string data_;
};

// The stream as clamd would de-frame it, or "BAD FRAMING".
std::string deframe(std::string_view wire) {
  const std::string_view command("zINSTREAM\0", 10);
  if (!wire.starts_with(command)) return "BAD FRAMING";
  wire.remove_prefix(command.size());
  std::string out;
  while (wire.size() >= 4) {
    const auto b = [&](int i) {
      return static_cast<std::uint32_t>(static_cast<unsigned char>(wire[i]));
    };
    const std::uint32_t n = (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
    wire.remove_prefix(4);
    if (n == 0) return wire.empty() ? out : "BAD FRAMING";
    if (wire.size() < n) return "BAD FRAMING";
    out += wire.substr(0, n);
    wire.remove_prefix(n);
  }
  return "BAD FRAMING";
}

// Public: the table cases below act on the fixture from lambdas.
class ScannerFilterTest : public ::testing::Test {
 public:
  ScannerFilterTest() : timers_(loop_) {
    context_.connector = &connector_;
    context_.timers = &timers_;
    context_.log = &log_;
  }
  ~ScannerFilterTest() override {
    filter_.reset();
    loop_.runUntilIdle();
    EXPECT_EQ(connector_.live, nullptr) << "a connection outlived its filter";
  }

  void make(const std::string& yaml = "address: \"127.0.0.1:3310\"\ntimeout: 10s") {
    filter_ = testing::makeFilter("clamd", yaml, context_);
  }
  void scan(std::string message) {
    reader_ = std::make_unique<FakeReader>(std::move(message));
    session_.message.reader = reader_.get();
    session_.message.size = reader_->size();
    testing::callHook(*filter_, &Filter::onEndOfMessage, session_, sink_);
  }
  // Acknowledges everything written so far, as the kernel taking it would.
  void drain() const {
    connector_.live->pending = 0;
    connector_.live->handler.onDrained();
  }
  void reply(const std::string& bytes) const { connector_.live->handler.onReceived(bytes); }

  ManualDispatcher loop_;
  DispatcherTimers timers_;
  FakeConnector connector_;
  testing::FakeLog log_;
  FilterContext context_;
  testing::TestSession session_ = testing::viewFor("192.0.2.1");
  std::unique_ptr<FakeReader> reader_;
  std::shared_ptr<testing::Collector> sink_ = std::make_shared<testing::Collector>();
  std::unique_ptr<Filter> filter_;
};

TEST_F(ScannerFilterTest, StreamsInChunksWithBackpressureAndRejectsAVirus) {
  make();
  std::string message;
  for (int i = 0; message.size() < 600'000; ++i) message += "line " + std::to_string(i) + "\r\n";
  scan(message);
  EXPECT_EQ(connector_.connects, 0);  // the turn comes through the loop
  loop_.runUntilIdle();
  ASSERT_NE(connector_.live, nullptr);
  EXPECT_EQ(connector_.live->address, "127.0.0.1:3310");
  // Nothing drained yet: the spool is read only up to the high-water mark.
  EXPECT_LT(reader_->read_, 400'000u);
  EXPECT_LE(reader_->largestRead, 64u * 1024);
  for (int i = 0; i < 100 && reader_->read_ < message.size(); ++i) drain();
  drain();
  EXPECT_EQ(reader_->read_, message.size());
  EXPECT_EQ(deframe(connector_.live->written), message);
  EXPECT_EQ(connector_.live->readTimeout, milliseconds(10'000));
  reply("stream: Eicar-Test-Signature FOUND");
  EXPECT_EQ(sink_->completions, 0);  // not a whole line yet
  reply("\0"s);
  EXPECT_EQ(show(*sink_), "reject 554 5.7.1 Message rejected: virus found");
  EXPECT_TRUE(sink_->verdict->reason().starts_with("virus=\"Eicar-Test-Signature\" time="))
      << sink_->verdict->reason();
  EXPECT_EQ(connector_.live, nullptr);  // closed once the reply is in
  EXPECT_NE(log_.all().find("event=scan filter=clamd scan=found virus=\"Eicar-Test-Signature\" "
                            "size=600"),
            std::string::npos)
      << log_.all();
}

TEST_F(ScannerFilterTest, CleanMessageContinues) {
  make();
  scan("Subject: hi\r\n\r\nbody\r\n");
  loop_.runUntilIdle();
  drain();
  reply("stream: OK\0"s);
  EXPECT_EQ(show(*sink_), "continue");
  EXPECT_NE(log_.all().find("scan=clean size=21 time="), std::string::npos) << log_.all();
}

TEST_F(ScannerFilterTest, ResultsAreCountedCleanFlaggedAndError) {
  StatsRegistry stats;
  context_.stats = &stats;
  const auto count = [&stats](std::string_view result) {
    return stats.counterValue("portcullis_scanner_results_total",
                              {{"scanner", "clamd"}, {"result", result}});
  };
  make();
  EXPECT_EQ(count("clean"), 0U);  // registered with the filter, before any scan
  scan("Subject: hi\r\n\r\nbody\r\n");
  loop_.runUntilIdle();
  drain();
  reply("stream: OK\0"s);
  scan("Subject: hi\r\n\r\nbody\r\n");
  loop_.runUntilIdle();
  drain();
  reply("stream: Eicar-Test-Signature FOUND\0"s);
  scan("Subject: hi\r\n\r\nbody\r\n");
  loop_.runUntilIdle();
  drain();
  reply("stream: something odd ERROR\0"s);
  EXPECT_EQ(count("clean"), 1U);
  EXPECT_EQ(count("flagged"), 1U);
  EXPECT_EQ(count("error"), 1U);
}

TEST_F(ScannerFilterTest, EveryFailureIsAFailNeverAVerdict) {
  struct Case {
    std::string name;
    std::function<void(ScannerFilterTest&)> act;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"size limit",
       [](ScannerFilterTest& t) { t.reply("INSTREAM size limit exceeded. ERROR\0"s); },
       "fail(clamd INSTREAM size limit exceeded)"},
      {"garbage", [](ScannerFilterTest& t) { t.reply("\x01\x02garbage\n"s); },
       "fail(clamd unexpected reply \"garbage\")"},
      {"refused",
       [](ScannerFilterTest& t) {
         t.connector_.live->handler.onEnd(ConnectionEnd::kError, "Connection refused");
       },
       "fail(clamd error: Connection refused)"},
      {"hostile error detail",
       [](ScannerFilterTest& t) {
         t.connector_.live->handler.onEnd(ConnectionEnd::kError, "bad\r\n451 x\0y"s);
       },
       "fail(clamd error: bad 451 xy)"},
      {"closed without a reply",
       [](ScannerFilterTest& t) { t.connector_.live->handler.onEnd(ConnectionEnd::kClosed, ""); },
       "fail(clamd closed without a reply)"},
      {"reply then close (no terminator)",
       [](ScannerFilterTest& t) {
         t.reply("stream: OK");
         t.connector_.live->handler.onEnd(ConnectionEnd::kClosed, "");
       },
       "continue"},
      {"reply then reset (no terminator)",
       [](ScannerFilterTest& t) {
         t.reply("INSTREAM size limit exceeded. ERROR");
         t.connector_.live->handler.onEnd(ConnectionEnd::kError, "Connection reset by peer");
       },
       "fail(clamd INSTREAM size limit exceeded)"},
      {"over-long reply", [](ScannerFilterTest& t) { t.reply(std::string(2000, 'x')); },
       "fail(clamd reply longer than 1024 bytes)"},
      {"stall",
       [](ScannerFilterTest& t) {
         t.loop_.advance(milliseconds(9'999));
         EXPECT_EQ(t.sink_->completions, 0);
         t.loop_.advance(milliseconds(1));
       },
       "fail(clamd timeout after 10000ms)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    sink_ = std::make_shared<testing::Collector>();
    make("address: \"127.0.0.1:3310\"\ntimeout: 10s\ncircuit_breaker: {failures: 0}");
    scan("Subject: x\r\n\r\ny\r\n");
    loop_.runUntilIdle();
    ASSERT_NE(connector_.live, nullptr);
    drain();
    c.act(*this);
    EXPECT_EQ(show(*sink_), c.want);
    EXPECT_EQ(sink_->completions, 1);
    EXPECT_EQ(connector_.live, nullptr);
    filter_.reset();
    loop_.runUntilIdle();
  }
  for (const auto& line : log_.lines) {
    EXPECT_EQ(line.find_first_of("\r\n\0"s), std::string::npos) << line;
  }
}

TEST_F(ScannerFilterTest, OverMaxSizeIsNotScanned) {
  make("address: \"127.0.0.1:3310\"\nmax_size: 10");
  scan("Subject: too big\r\n\r\n");
  EXPECT_EQ(show(*sink_), "continue");
  EXPECT_EQ(connector_.connects, 0);
  EXPECT_EQ(reader_->read_, 0u);
  EXPECT_NE(log_.all().find("event=scan filter=clamd scan=skipped-size size=20 max_size=10"),
            std::string::npos)
      << log_.all();
}

TEST_F(ScannerFilterTest, BreakerOpensSkipsAndCloses) {
  // One configured scanner: every session's filter comes from the same creator.
  FilterRegistry registry;
  registerBuiltinFilters(registry);
  const ConfigSection section = makeConfigSection(
      YAML::Load("address: \"127.0.0.1:3310\"\ncircuit_breaker: {failures: 2, open_for: 1s}"),
      "filters[0]");
  const FilterCreator creator = registry.find("clamd")->configure(section);
  auto fail = [&] {
    sink_ = std::make_shared<testing::Collector>();
    filter_ = creator(context_);
    scan("x\r\n");
    loop_.runUntilIdle();
    if (connector_.live) connector_.live->handler.onEnd(ConnectionEnd::kError, "refused");
    loop_.runUntilIdle();
    return show(*sink_);
  };
  EXPECT_EQ(fail(), "fail(clamd error: refused)");
  EXPECT_EQ(fail(), "fail(clamd error: refused)");
  EXPECT_NE(log_.all().find("event=scanner-circuit-open filter=clamd open_for=1000ms"),
            std::string::npos);
  const int connects = connector_.connects;
  EXPECT_EQ(fail(), "fail(clamd circuit open)");
  EXPECT_EQ(connector_.connects, connects);  // skipped without trying
}

// One configured clamd (failures: 1, open_for: 10ms) whose breaker the first, refused scan
// opens; `start` then runs a new session's scan of one short message.
class OpenBreakerTest : public ScannerFilterTest {
 public:
  OpenBreakerTest() {
    FilterRegistry registry;
    registerBuiltinFilters(registry);
    creator_ = registry.find("clamd")->configure(makeConfigSection(
        YAML::Load("address: \"127.0.0.1:3310\"\ncircuit_breaker: {failures: 1, open_for: 10ms}"),
        "filters[0]"));
    start();
    connector_.live->handler.onEnd(ConnectionEnd::kError, "refused");
    loop_.runUntilIdle();
  }
  void start() {
    sink_ = std::make_shared<testing::Collector>();
    filter_ = creator_(context_);
    scan("x\r\n");
    loop_.runUntilIdle();
  }

 private:
  FilterCreator creator_;
};

TEST_F(OpenBreakerTest, AnOpenBreakerProbesWithPingBeforeItScansAgain) {
  ASSERT_NE(log_.all().find("event=scanner-circuit-open"), std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // open_for passes (no assertion)

  // The next message is held while clamd is asked PING; its session goes away meanwhile.
  start();
  ASSERT_NE(connector_.live, nullptr);
  EXPECT_EQ(connector_.live->written, std::string("zPING\0", 6));
  filter_.reset();
  loop_.runUntilIdle();

  // The probe was abandoned, not lost: the next message probes again, PONG closes the breaker,
  // and that message is scanned on a new connection.
  start();
  ASSERT_NE(connector_.live, nullptr);
  EXPECT_EQ(connector_.live->written, std::string("zPING\0", 6));
  const int connects = connector_.connects;
  reply(std::string("PONG\0", 5));
  loop_.runUntilIdle();
  ASSERT_NE(connector_.live, nullptr);
  EXPECT_EQ(connector_.connects, connects + 1);
  EXPECT_EQ(connector_.live->written.substr(0, 10), std::string("zINSTREAM\0", 10));
  drain();
  reply(std::string("stream: OK\0", 11));
  loop_.runUntilIdle();
  EXPECT_EQ(show(*sink_), "continue");
  EXPECT_NE(log_.all().find("event=scanner-probe filter=clamd result=ok"), std::string::npos);
  EXPECT_NE(log_.all().find("event=scanner-circuit-closed filter=clamd"), std::string::npos);
}

TEST_F(OpenBreakerTest, AFailedProbeKeepsTheBreakerOpenWithoutScanning) {
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  start();
  reply(std::string("UNKNOWN COMMAND\0", 16));
  loop_.runUntilIdle();
  EXPECT_EQ(show(*sink_), "fail(clamd circuit open (probe failed))");
  EXPECT_EQ(connector_.live, nullptr) << "no scan after a failed probe";
  EXPECT_NE(log_.all().find("event=scanner-probe filter=clamd result=failed"), std::string::npos);
  // Still open: the next message is skipped without a connection.
  const int connects = connector_.connects;
  start();
  loop_.runUntilIdle();
  EXPECT_EQ(show(*sink_), "fail(clamd circuit open)");
  EXPECT_EQ(connector_.connects, connects);
}

TEST_F(ScannerFilterTest, FullQueueFailsAndTheSessionGoingAwayCancels) {
  FilterRegistry registry;
  registerBuiltinFilters(registry);
  const ConfigSection section = makeConfigSection(
      YAML::Load("address: \"127.0.0.1:3310\"\nmax_connections: 1\nmax_queue: 0"), "filters[0]");
  const FilterCreator creator = registry.find("clamd")->configure(section);
  filter_ = creator(context_);
  scan("first\r\n");
  loop_.runUntilIdle();
  ASSERT_NE(connector_.live, nullptr);
  auto second = creator(context_);
  auto sink2 = std::make_shared<testing::Collector>();
  testing::callHook(*second, &Filter::onEndOfMessage, session_, sink2);
  EXPECT_EQ(sink2->completions, 0);  // not inline, even when refused
  loop_.runUntilIdle();
  EXPECT_EQ(show(*sink2), "fail(clamd queue full (0 waiting))");
  // The first session goes away mid-scan: its connection closes and the turn is free again.
  filter_.reset();
  EXPECT_EQ(connector_.live, nullptr);
  auto sink3 = std::make_shared<testing::Collector>();
  auto third = creator(context_);
  testing::callHook(*third, &Filter::onEndOfMessage, session_, sink3);
  loop_.runUntilIdle();
  EXPECT_NE(connector_.live, nullptr);
  EXPECT_EQ(sink3->completions, 0);
  third.reset();
  second.reset();
}

}  // namespace
}  // namespace portcullis
