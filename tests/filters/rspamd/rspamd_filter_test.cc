// Tests for the rspamd filter (filters/rspamd/) with a scripted fake HttpClient on a manual
// clock: the request as rspamd sees it (endpoint, headers, body), each verdict arriving through
// the shared scanner machinery (time added, header edits carried), every failure a fail() and
// never a verdict, the deadline, cancellation when the session goes away, and the `url` key.
// No completion ever arrives inline.

#include "filters/rspamd/rspamd_filter.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proxy/chain/filter_services.h"
#include "tests/support/fake_log.h"
#include "tests/support/filter_harness.h"
#include "tests/support/manual_dispatcher.h"

namespace portcullis {
namespace {

using namespace std::string_literals;
using std::chrono::milliseconds;

class FakeHttp;

struct FakeCall final : public HttpCall {
  FakeCall(FakeHttp& owner, HttpRequest request, std::function<void(HttpResult)> done);
  ~FakeCall() override;
  FakeHttp& owner;
  HttpRequest request;
  std::function<void(HttpResult)> done;
};

class FakeHttp final : public HttpClient {
 public:
  std::unique_ptr<HttpCall> post(HttpRequest request,
                                 std::function<void(HttpResult)> done) override {
    ++posts;
    return std::make_unique<FakeCall>(*this, std::move(request), std::move(done));
  }
  // Answers the live call as the client would, from the loop.
  void answer(HttpResult r) const {
    ASSERT_NE(live, nullptr);
    auto done = std::move(live->done);
    done(std::move(r));
  }
  void reply(int status, std::string body) const {
    HttpResult r;
    r.kind = HttpResult::Kind::kReply;
    r.status = status;
    r.body = std::move(body);
    answer(std::move(r));
  }
  FakeCall* live = nullptr;
  int posts = 0;
  int cancelled = 0;
};

FakeCall::FakeCall(FakeHttp& o, HttpRequest r, std::function<void(HttpResult)> d)
    : owner(o), request(std::move(r)), done(std::move(d)) {
  owner.live = this;
}
FakeCall::~FakeCall() {
  if (done) ++owner.cancelled;  // destroyed before it was answered
  if (owner.live == this) owner.live = nullptr;
}

class MemoryReader final : public MessageReader {
 public:
  explicit MemoryReader(std::string data) : data_(std::move(data)) {}
  std::uint64_t size() const override { return data_.size(); }
  std::size_t read(std::uint64_t offset, char* buf, std::size_t n) const override {
    if (offset >= data_.size()) return 0;
    const std::size_t k = std::min<std::size_t>(n, data_.size() - offset);
    std::copy_n(data_.data() + offset, k, buf);
    return k;
  }
  std::optional<Bytes> bytes() const override { return Bytes{{}, data_, -1}; }

 private:
  std::string data_;
};

std::string headersOf(const HttpRequest& r) {
  std::string out;
  for (const auto& [name, value] : r.headers)
    out.append(name).append(": ").append(value).append("\n");
  return out;
}

class RspamdFilterTest : public ::testing::Test {
 public:
  RspamdFilterTest() : timers_(loop_) {
    context_.http = &http_;
    context_.timers = &timers_;
    context_.log = &log_;
    session_.helo = "client.example";
    session_.envelope.mailFrom = "alice@example.org";
    session_.envelope.recipients = {"bob@test.local", "carol@test.local"};
  }
  ~RspamdFilterTest() override {
    filter_.reset();
    loop_.runUntilIdle();
    EXPECT_EQ(http_.live, nullptr) << "a request outlived its filter";
  }

  void make(const std::string& yaml = "url: \"http://127.0.0.1:11333\"\ntimeout: 10s") {
    filter_ = testing::makeFilter("rspamd", yaml, context_);
  }
  void scan(std::string message = "Subject: hi\r\n\r\nbody\r\n") {
    reader_ = std::make_unique<MemoryReader>(std::move(message));
    session_.message.reader = reader_.get();
    session_.message.size = reader_->size();
    testing::callHook(*filter_, &Filter::onEndOfMessage, session_, sink_);
  }

  ManualDispatcher loop_;
  DispatcherTimers timers_;
  FakeHttp http_;
  testing::FakeLog log_;
  FilterContext context_;
  testing::TestSession session_ = testing::viewFor("192.0.2.1");
  std::unique_ptr<MemoryReader> reader_;
  std::shared_ptr<testing::Collector> sink_ = std::make_shared<testing::Collector>();
  std::unique_ptr<Filter> filter_;
};

TEST_F(RspamdFilterTest, SendsTheEnvelopeAsRspamdsHeadersAndTheMessageAsTheBody) {
  session_.client.reverse = ReverseStatus::kVerified;
  session_.client.name = "mail.example.org";
  session_.tls = {true, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, false};
  make("url: \"http://[::1]:11999/checkv2\"\ntimeout: 7s");
  scan();
  EXPECT_EQ(http_.posts, 0);  // the turn comes through the loop
  loop_.runUntilIdle();
  ASSERT_NE(http_.live, nullptr);
  const HttpRequest& r = http_.live->request;
  EXPECT_EQ(r.host, "::1");
  EXPECT_EQ(r.port, 11999);
  EXPECT_EQ(r.path, "/checkv2");
  EXPECT_EQ(r.timeout, milliseconds(7000));
  EXPECT_EQ(r.body, reader_.get());
  EXPECT_EQ(headersOf(r),
            "IP: 192.0.2.1\nHelo: client.example\nHostname: mail.example.org\n"
            "From: alice@example.org\nRcpt: bob@test.local\nRcpt: carol@test.local\n"
            "Queue-Id: test\nTLS-Cipher: TLS_AES_256_GCM_SHA384\nTLS-Version: TLSv1.3\n");
  http_.reply(200, R"({"action":"no action","score":1,"required_score":15})");
  EXPECT_EQ(testing::show(*sink_), "continue");
}

TEST_F(RspamdFilterTest, OnlyAVerifiedNameIsAHostnameAndTheNullSenderIsSaidSo) {
  session_.client.reverse = ReverseStatus::kMismatch;
  session_.client.ptrName = "forged.example";
  session_.envelope.nullSender = true;
  session_.envelope.mailFrom.clear();
  session_.helo = "evil\r\nX-Injected: 1";  // cannot come from the core; sanitised anyway
  make();
  scan();
  loop_.runUntilIdle();
  ASSERT_NE(http_.live, nullptr);
  EXPECT_EQ(headersOf(http_.live->request),
            "IP: 192.0.2.1\nHelo: evil X-Injected: 1\nFrom: <>\nRcpt: bob@test.local\n"
            "Rcpt: carol@test.local\nQueue-Id: test\n");
  http_.reply(200, R"({"action":"no action"})");
}

TEST_F(RspamdFilterTest, VerdictsCarryTheScanTimeAndTheHeaderEdits) {
  make();
  scan();
  loop_.runUntilIdle();
  http_.reply(
      200,
      R"({"action":"add header","score":7.5,"required_score":15,"symbols":{"A_B":{"score":7.5}},)"
      R"("milter":{"remove_headers":{"X-Spam":0}},"time_real":0.25})");
  ASSERT_TRUE(sink_->verdict);
  EXPECT_EQ(testing::show(*sink_), "continue +X-Spam: Yes +X-Spam-Score: 7.50");
  EXPECT_EQ(sink_->verdict->headerEdits(),
            (std::vector<HeaderEdit>{{HeaderEdit::Kind::kRemove, "X-Spam", "", 0},
                                     {HeaderEdit::Kind::kRemove, "X-Spam-Score", "", 0}}));
  EXPECT_NE(log_.all().find("event=scan filter=rspamd scan=add-header score=7.50 required=15.00 "
                            "symbols=\"A_B\" rspamd_time=250ms size=21 time="),
            std::string::npos)
      << log_.all();

  sink_ = std::make_shared<testing::Collector>();
  scan();
  loop_.runUntilIdle();
  http_.reply(200, R"({"action":"rewrite subject","subject":"[SPAM] hi"})");
  ASSERT_TRUE(sink_->verdict);
  EXPECT_EQ(sink_->verdict->headerEdits(),
            (std::vector<HeaderEdit>{{HeaderEdit::Kind::kRemove, "X-Spam", "", 0},
                                     {HeaderEdit::Kind::kRemove, "X-Spam-Score", "", 0},
                                     {HeaderEdit::Kind::kReplace, "Subject", "[SPAM] hi", 0}}));

  sink_ = std::make_shared<testing::Collector>();
  scan();
  loop_.runUntilIdle();
  http_.reply(200, R"({"action":"reject","score":150,"required_score":15,)"
                   R"("messages":{"smtp_message":"Gtube pattern"}})");
  EXPECT_EQ(testing::show(*sink_), "reject 554 5.7.1 Gtube pattern");
  EXPECT_TRUE(sink_->verdict->reason().starts_with(
      "action=reject score=150.00 required=15.00 symbols=\"\" time="))
      << sink_->verdict->reason();
}

TEST_F(RspamdFilterTest, EveryFailureIsAFailNeverAVerdict) {
  struct Case {
    std::string name;
    std::function<void(RspamdFilterTest&)> act;
    std::string want;
  };
  const auto kindOnly = [](HttpResult::Kind k, std::string error) {
    HttpResult r;
    r.kind = k;
    r.error = std::move(error);
    return r;
  };
  const std::vector<Case> cases = {
      {"status", [](RspamdFilterTest& t) { t.http_.reply(500, R"({"action":"reject"})"); },
       "fail(rspamd HTTP status 500)"},
      {"garbage", [](RspamdFilterTest& t) { t.http_.reply(200, "\x01garbage"); },
       "fail(rspamd bad reply: bad JSON: not a JSON object)"},
      {"no action", [](RspamdFilterTest& t) { t.http_.reply(200, R"({"score":1})"); },
       "fail(rspamd bad reply: no action)"},
      {"closed mid-reply",
       [&](RspamdFilterTest& t) {
         t.http_.answer(kindOnly(HttpResult::Kind::kError, "closed before a complete reply"));
       },
       "fail(rspamd http: closed before a complete reply)"},
      {"hostile error text",
       [&](RspamdFilterTest& t) {
         t.http_.answer(kindOnly(HttpResult::Kind::kError, "x\r\n250 OK\0"s));
       },
       "fail(rspamd http: x 250 OK)"},
      {"client timeout",
       [&](RspamdFilterTest& t) {
         t.http_.answer(kindOnly(HttpResult::Kind::kTimeout, "timeout after 10000ms"));
       },
       "fail(rspamd timeout after 10000ms)"},
      {"our deadline",
       [](RspamdFilterTest& t) {
         t.loop_.advance(milliseconds(10'000));
         EXPECT_EQ(t.http_.cancelled, 1);  // the request is cancelled, not left running
       },
       "fail(rspamd timeout after 10000ms)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    http_.cancelled = 0;
    sink_ = std::make_shared<testing::Collector>();
    make();
    scan();
    loop_.runUntilIdle();
    ASSERT_NE(http_.live, nullptr);
    c.act(*this);
    loop_.runUntilIdle();
    EXPECT_EQ(testing::show(*sink_), c.want);
    EXPECT_EQ(sink_->completions, 1);
    EXPECT_EQ(http_.live, nullptr);
  }
  EXPECT_NE(log_.all().find("event=scan filter=rspamd scan=error error=\"HTTP status 500\""),
            std::string::npos)
      << log_.all();
}

TEST_F(RspamdFilterTest, TheSessionGoingAwayCancelsTheRequest) {
  make();
  scan();
  loop_.runUntilIdle();
  ASSERT_NE(http_.live, nullptr);
  filter_->onTransactionEnd(session_);
  EXPECT_EQ(http_.live, nullptr);
  EXPECT_EQ(http_.cancelled, 1);
  loop_.runUntilIdle();
  EXPECT_EQ(sink_->completions, 0);  // the chain's Next, dropped with the transaction
}

TEST_F(RspamdFilterTest, AnOpenBreakerAsksPingBeforeItScansAgain) {
  FilterRegistry registry;
  registerBuiltinFilters(registry);
  const ConfigSection section =
      makeConfigSection(YAML::Load("circuit_breaker: {failures: 1, open_for: 10ms}"), "filters[0]");
  const FilterCreator creator = registry.find("rspamd")->configure(section);
  const auto start = [&] {
    sink_ = std::make_shared<testing::Collector>();
    filter_ = creator(context_);
    scan();
    loop_.runUntilIdle();
  };
  start();
  http_.reply(500, "");
  loop_.runUntilIdle();
  ASSERT_NE(log_.all().find("event=scanner-circuit-open filter=rspamd"), std::string::npos);
  std::this_thread::sleep_for(milliseconds(20));  // open_for passes (no assertion on it)

  // A bad answer keeps it open and sends no scan.
  start();
  ASSERT_NE(http_.live, nullptr);
  EXPECT_EQ(http_.live->request.method, HttpRequest::Method::kGet);
  EXPECT_EQ(http_.live->request.path, "/ping");
  http_.reply(503, "loading");
  loop_.runUntilIdle();
  EXPECT_EQ(testing::show(*sink_), "fail(rspamd circuit open (probe failed))");
  EXPECT_EQ(http_.live, nullptr);
  std::this_thread::sleep_for(milliseconds(20));

  // "pong" closes it, and the message that asked is scanned.
  start();
  ASSERT_NE(http_.live, nullptr);
  EXPECT_EQ(http_.live->request.path, "/ping");
  const int posts = http_.posts;
  http_.reply(200, "pong\r\n");
  loop_.runUntilIdle();
  ASSERT_NE(http_.live, nullptr);
  EXPECT_EQ(http_.posts, posts + 1);
  EXPECT_EQ(http_.live->request.method, HttpRequest::Method::kPost);
  EXPECT_EQ(http_.live->request.path, "/checkv2");
  http_.reply(200, R"({"action":"no action"})");
  loop_.runUntilIdle();
  EXPECT_EQ(testing::show(*sink_), "continue");
  EXPECT_NE(log_.all().find("event=scanner-probe filter=rspamd result=failed error="
                            "\"HTTP status 503 body 'loading'\""),
            std::string::npos)
      << log_.all();
  EXPECT_NE(log_.all().find("event=scanner-probe filter=rspamd result=ok"), std::string::npos);
  EXPECT_NE(log_.all().find("event=scanner-circuit-closed filter=rspamd"), std::string::npos);
}

TEST_F(RspamdFilterTest, OverMaxSizeIsNotSent) {
  make("max_size: 10");
  scan();
  loop_.runUntilIdle();
  EXPECT_EQ(http_.posts, 0);
  EXPECT_EQ(testing::show(*sink_), "continue");
  EXPECT_NE(log_.all().find("event=scan filter=rspamd scan=skipped-size size=21 max_size=10"),
            std::string::npos)
      << log_.all();
}

TEST_F(RspamdFilterTest, NoHttpClientFailsFromTheLoop) {
  context_.http = nullptr;
  make();
  scan();
  EXPECT_EQ(sink_->completions, 0);
  loop_.runUntilIdle();
  EXPECT_EQ(testing::show(*sink_), "fail(rspamd no HTTP client)");
}

TEST(RspamdConfig, Url) {
  struct Case {
    std::string url;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"http://127.0.0.1:11333", "127.0.0.1 11333 /checkv2"},
      {"http://127.0.0.1", "127.0.0.1 11333 /checkv2"},
      {"http://127.0.0.1:8080/", "127.0.0.1 8080 /checkv2"},
      {"http://10.0.0.1:11333/rspamd/checkv2", "10.0.0.1 11333 /rspamd/checkv2"},
      {"http://[::1]:11333", "::1 11333 /checkv2"},
      {"https://127.0.0.1:11333", "error"},
      {"http://localhost:11333", "error"},
      {"http://127.0.0.1:0", "error"},
      {"http://127.0.0.1:99999", "error"},
      {"http://127.0.0.1:11x", "error"},
      {"http://[::1:11333", "error"},
      {"http://[::1]x", "error"},
      {"http://127.0.0.1/a b", "error"},
      {"127.0.0.1:11333", "error"},
  };
  for (const Case& c : cases) {
    std::string why;
    const auto e = parseRspamdUrl(c.url, why);
    const std::string got =
        e ? e->host + " " + std::to_string(e->port) + " " + e->path : std::string("error");
    EXPECT_EQ(got, c.want) << c.url << " " << why;
  }
  const FilterContext none;
  EXPECT_THROW(testing::makeFilter("rspamd", "url: \"http://rspamd.example:11333\"", none),
               ConfigError);
  EXPECT_THROW(testing::makeFilter("rspamd", "address: \"127.0.0.1:11333\"", none), ConfigError);
  EXPECT_NO_THROW(testing::makeFilter("rspamd", "", none));
}

}  // namespace
}  // namespace portcullis
