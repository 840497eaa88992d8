// Upstream: a failure found at once still reaches the caller from the loop, never inside the
// call (the contract every caller relies on), and destroying the Upstream first cancels it.
// The message against a scripted MTA on loopback: BDAT LAST with the exact count when CHUNKING
// is offered (head, leading dots, spool offset, spool file, no final CRLF, empty), DATA with
// our dot-stuffing otherwise or when turned off, and every kind of reply to BDAT. MAIL and
// RCPTs pipelined as a group: replies in order, and every command still waiting failed in
// order when the MTA hangs up, answers garbage or 421, or answers more than it was asked.
// A reply to the end of the message while part of it still waits in our output: a refusal is
// relayed and the connection closed, anything else is a protocol failure.

#include "proxy/relay/upstream.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "proxy/base/event_util.h"
#include "proxy/smtp/spool.h"
#include "tests/support/manual_dispatcher.h"

namespace portcullis {
namespace {

UpstreamSettings unreachable() {
  UpstreamSettings s;
  s.address = *socketAddress("127.0.0.1", 9);
  return s;
}

TEST(Upstream, FailuresOnAConnectionNotReadyArriveFromTheLoop) {
  ManualDispatcher d;
  Upstream up(d, unreachable(), "test");
  std::vector<UpstreamFailure> got;
  auto record = [&](const UpstreamResult& r) { got.push_back(r.failure); };

  up.command("MAIL FROM:<a@example.org>", Expect::kMail, record);
  EXPECT_TRUE(got.empty()) << "command() completed inside the call";
  d.runUntilIdle();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], UpstreamFailure::kClosed);

  up.reidentify(XclientIdentity{}, record);
  EXPECT_EQ(got.size(), 1u) << "reidentify() completed inside the call";
  d.runUntilIdle();
  ASSERT_EQ(got.size(), 2u);

  auto spool = std::make_shared<Spool>(1024, "/tmp");
  ASSERT_TRUE(spool->finish());
  up.sendMessage(spool, {}, record);
  EXPECT_EQ(got.size(), 2u) << "sendMessage() completed inside the call";
  d.runUntilIdle();
  EXPECT_EQ(got.size(), 3u);
}

TEST(Upstream, DestroyingItCancelsAPendingFailure) {
  ManualDispatcher d;
  int calls = 0;
  {
    Upstream up(d, unreachable(), "test");
    up.command("NOOP", Expect::kNoop, [&](const UpstreamResult&) { ++calls; });
  }
  d.runUntilIdle();
  EXPECT_EQ(calls, 0);
}

// A scripted MTA on a loopback socket, served from the test's own event loop: it greets,
// offers `ehlo` to EHLO, and records what it gets. A message arrives as DATA (354, the
// stuffed body up to the final dot, as on the wire) or as BDAT (the chunk, exactly as many
// bytes as the command said). Replies can be scripted per verb ("DATA", ".", "BDAT").
class ScriptedMta {
 public:
  ScriptedMta(event_base* base, std::vector<std::string> ehlo)
      : base_(base), ehlo_(std::move(ehlo)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    EXPECT_EQ(::listen(listener_, 4), 0);
    socklen_t len = sizeof(sa);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    accept_.reset(event_new(base_, listener_, EV_READ | EV_PERSIST, &ScriptedMta::onAccept, this));
    event_add(accept_.get(), nullptr);
  }
  ~ScriptedMta() {
    read_.reset();
    accept_.reset();
    if (peer_ >= 0) ::close(peer_);
    ::close(listener_);
  }
  ScriptedMta(const ScriptedMta&) = delete;
  ScriptedMta& operator=(const ScriptedMta&) = delete;

  SocketAddress address() const { return *socketAddress("127.0.0.1", port_); }
  // verb or "verb#n" (its n-th time); an empty reply hangs up instead of answering.
  void script(const std::string& verb, std::string reply) { replies_[verb] = std::move(reply); }
  // Stop reading once a BDAT command line has been read (and answer it at once): an MTA that
  // refuses before it has taken the chunk.
  void answerBdatEarly() { early_ = true; }
  // After its 354 (or a BDAT line), read nothing more and, 100 ms later, answer the message with
  // `reply`. Both ends' socket buffers are shrunk at accept (ours through the Upstream's own
  // socket, found in this process by its address), so a message of a few hundred KiB is still
  // mostly in the Upstream's output when the reply comes.
  void answerDataEarly(std::string reply) { earlyDot_ = std::move(reply); }

  std::vector<std::string> commands;  // command lines, in order
  std::string message;                // the last message as on the wire (DATA: with the dot)

 private:
  enum class Mode { kCommands, kData, kChunk, kDeaf };

  static void onAccept(evutil_socket_t, short, void* self) {
    auto* m = static_cast<ScriptedMta*>(self);
    m->peer_ = ::accept4(m->listener_, nullptr, nullptr, SOCK_NONBLOCK);
    if (m->peer_ < 0) return;
    m->accept_.reset();
    if (!m->earlyDot_.empty()) m->shrinkBuffers();
    m->read_.reset(event_new(m->base_, m->peer_, EV_READ | EV_PERSIST, &ScriptedMta::onRead, m));
    event_add(m->read_.get(), nullptr);
    m->say("220 mta.test ESMTP");
  }
  static void onRead(evutil_socket_t fd, short, void* self) {
    auto* m = static_cast<ScriptedMta*>(self);
    char buf[65536];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) {
      m->read_.reset();
      return;
    }
    m->in_.append(buf, static_cast<std::size_t>(n));
    m->process();
  }
  // SO_RCVBUF here, SO_SNDBUF on the Upstream's end: a fixed size turns the kernel's
  // autotuning off, so the two buffers hold a few KiB, not megabytes.
  void shrinkBuffers() const {
    const int small = 4096;
    ::setsockopt(peer_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in theirs{};
    socklen_t len = sizeof theirs;
    ASSERT_EQ(::getpeername(peer_, reinterpret_cast<sockaddr*>(&theirs), &len), 0);
    for (int fd = 0; fd < 4096; ++fd) {
      sockaddr_in local{};
      len = sizeof local;
      if (fd == peer_ || ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0 ||
          local.sin_family != AF_INET || local.sin_port != theirs.sin_port ||
          local.sin_addr.s_addr != theirs.sin_addr.s_addr) {
        continue;
      }
      ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
      return;
    }
    FAIL() << "the Upstream's socket was not found";
  }
  void goDeafAndAnswerLater() {
    mode_ = Mode::kDeaf;
    read_.reset();
    timer_.reset(evtimer_new(base_, &ScriptedMta::onEarlyDot, this));
    const timeval later{0, 100'000};
    evtimer_add(timer_.get(), &later);
  }
  static void onEarlyDot(evutil_socket_t, short, void* self) {
    auto* m = static_cast<ScriptedMta*>(self);
    m->say(m->earlyDot_);
  }
  void say(const std::string& reply) const {
    const std::string line = reply + "\r\n";
    ASSERT_EQ(::write(peer_, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  }
  // "RCPT#2" (the 2nd RCPT) wins over "RCPT".
  std::string replyFor(const std::string& verb, const std::string& positive) {
    auto it = replies_.find(verb + "#" + std::to_string(++seen_[verb]));
    if (it == replies_.end()) it = replies_.find(verb);
    return it == replies_.end() ? positive : it->second;
  }
  void process() {
    while (true) {
      if (mode_ == Mode::kDeaf) return;
      if (mode_ == Mode::kChunk) {
        const std::size_t take = std::min<std::size_t>(chunkLeft_, in_.size());
        message.append(in_, 0, take);
        in_.erase(0, take);
        chunkLeft_ -= take;
        if (chunkLeft_ > 0) return;
        mode_ = Mode::kCommands;
        say(replyFor("BDAT", "250 2.0.0 Ok: queued as BDAT"));
        continue;
      }
      if (mode_ == Mode::kData) {
        message += in_;
        in_.clear();
        if (message == ".\r\n" ||
            (message.size() >= 5 && message.compare(message.size() - 5, 5, "\r\n.\r\n") == 0)) {
          mode_ = Mode::kCommands;
          say(replyFor(".", "250 2.0.0 Ok: queued as DATA"));
        }
        return;
      }
      const auto eol = in_.find("\r\n");
      if (eol == std::string::npos) return;
      const std::string line = in_.substr(0, eol);
      in_.erase(0, eol + 2);
      commands.push_back(line);
      const std::string verb = line.substr(0, line.find(' '));
      if (verb == "EHLO") {
        std::string r = "250-mta.test";
        for (const auto& e : ehlo_) r += "\r\n250-" + e;
        r += "\r\n250 ENHANCEDSTATUSCODES";
        say(r);
      } else if (verb == "DATA") {
        const std::string r = replyFor("DATA", "354 End data with <CR><LF>.<CR><LF>");
        say(r);
        if (r.starts_with("354")) {
          mode_ = Mode::kData;
          message.clear();
          if (!earlyDot_.empty()) {
            goDeafAndAnswerLater();
            return;
          }
        }
      } else if (verb == "BDAT") {
        chunkLeft_ = std::stoull(line.substr(5));
        message.clear();
        mode_ = Mode::kChunk;
        if (!earlyDot_.empty()) {
          goDeafAndAnswerLater();
          return;
        }
        if (early_) {
          mode_ = Mode::kDeaf;
          read_.reset();
          say(replyFor("BDAT", "250 2.0.0 Ok"));
          return;
        }
      } else if (verb == "MAIL" || verb == "RCPT" || verb == "RSET" || verb == "NOOP") {
        const std::string r = replyFor(verb, "250 2.0.0 Ok");
        if (r.empty()) {  // scripted: hang up instead of answering
          read_.reset();
          ::close(peer_);
          peer_ = -1;
          mode_ = Mode::kDeaf;
          return;
        }
        say(r);
      } else {
        say("502 5.5.1 Error: command not implemented");
      }
    }
  }

  event_base* base_;
  std::vector<std::string> ehlo_;
  int listener_ = -1;
  int peer_ = -1;
  std::uint16_t port_ = 0;
  EventPtr accept_;
  EventPtr read_;
  EventPtr timer_;
  std::map<std::string, std::string> replies_;
  std::map<std::string, int> seen_;
  std::string in_;
  Mode mode_ = Mode::kCommands;
  std::uint64_t chunkLeft_ = 0;
  bool early_ = false;
  std::string earlyDot_;
};

// The real Upstream against the scripted MTA, on a real loop (bounded: every wait ends after a
// number of loop passes or at the Upstream's own timers).
class UpstreamMessageTest : public ::testing::Test {
 public:
  UpstreamMessageTest() : base_(event_base_new()), dispatcher_(base_.get()) {}

 protected:
  static UpstreamSettings settings(const ScriptedMta& mta) {
    UpstreamSettings s;
    s.address = mta.address();
    s.identity = IdentityMode::kNone;
    s.hostname = "portcullis.test";
    s.connectTimeout = std::chrono::milliseconds(5000);
    s.commandTimeout = std::chrono::milliseconds(5000);
    s.dataTimeout = std::chrono::milliseconds(5000);
    return s;
  }
  UpstreamResult wait(const std::function<void(UpstreamConnection::Callback)>& call) {
    std::optional<UpstreamResult> got;
    call([&](UpstreamResult r) { got = std::move(r); });
    for (int i = 0; i < 100000 && !got; ++i) event_base_loop(base_.get(), EVLOOP_ONCE);
    EXPECT_TRUE(got.has_value()) << "no completion";
    return got.value_or(UpstreamResult{UpstreamFailure::kTimeout, std::nullopt, "test gave up"});
  }
  // Opens `up` and runs MAIL and RCPT: ready for the message.
  void openTransaction(Upstream& up) {
    ASSERT_TRUE(wait([&](auto cb) { up.open(XclientIdentity{}, cb); }).ok());
    ASSERT_TRUE(wait([&](auto cb) { up.command("MAIL FROM:<a@test>", Expect::kMail, cb); }).ok());
    ASSERT_TRUE(wait([&](auto cb) { up.command("RCPT TO:<b@test>", Expect::kRcpt, cb); }).ok());
  }
  UpstreamResult send(Upstream& up, std::shared_ptr<const Spool> spool, MessageHead head) {
    return wait([&](auto cb) { up.sendMessage(std::move(spool), std::move(head), cb); });
  }
  // A finished spool holding `bytes` (in memory up to `memoryLimit`, else a file), shared as
  // the session shares its transaction's.
  static std::shared_ptr<Spool> spooled(std::string_view bytes, std::size_t memoryLimit) {
    auto spool = std::make_shared<Spool>(memoryLimit, "/tmp");
    spool->append(bytes.data(), bytes.size());
    EXPECT_TRUE(spool->finish());
    return spool;
  }
  // What a reply that came before the whole message was sent must give: a refusal ("552 ...")
  // is relayed, anything else is a protocol failure.
  static void expectEarlyReplyOutcome(const UpstreamResult& r, const std::string& reply) {
    if (reply.starts_with("552")) {
      ASSERT_TRUE(r.ok()) << r.detail;
      EXPECT_EQ(r.reply->code(), 552);
    } else {
      EXPECT_EQ(r.failure, UpstreamFailure::kProtocol) << r.detail;
    }
  }

  EventBasePtr base_;
  EventDispatcher dispatcher_;
};

const std::vector<std::string> kChunking = {"PIPELINING", "8BITMIME", "CHUNKING"};
const std::vector<std::string> kNoChunking = {"PIPELINING", "8BITMIME"};

struct MessageCase {
  std::string name;
  std::string head;         // MessageHead::bytes
  std::string spooled;      // what the framer stored (unstuffed, canonical)
  std::uint64_t offset;     // MessageHead::spoolOffset
  std::size_t memoryLimit;  // below the spool's size: the spool is a file
  std::string bdat;         // the chunk the MTA must get: head + spool from offset (+ CRLF)
  std::string data;         // the DATA body the MTA must get: stuffed, with the final dot
};

std::vector<MessageCase> messageCases() {
  return {
      {"head, a leading-dot line, an offset", "X-Added: 1\r\n",
       "X-Old: 2\r\n\r\n.leading dot\r\n..two dots\r\nend\r\n", 10, 1 << 20,
       "X-Added: 1\r\n\r\n.leading dot\r\n..two dots\r\nend\r\n",
       "X-Added: 1\r\n\r\n..leading dot\r\n...two dots\r\nend\r\n.\r\n"},
      {"from a spool file", ".Dotted-Head: x\r\n", "Subject: s\r\n\r\nbody\r\n.\r\n", 0, 4,
       ".Dotted-Head: x\r\nSubject: s\r\n\r\nbody\r\n.\r\n",
       "..Dotted-Head: x\r\nSubject: s\r\n\r\nbody\r\n..\r\n.\r\n"},
      {"no CRLF at the end: added, and counted", "", "Subject: s\r\n\r\nno end", 0, 1 << 20,
       "Subject: s\r\n\r\nno end\r\n", "Subject: s\r\n\r\nno end\r\n.\r\n"},
      {"empty", "", "", 0, 1 << 20, "", ".\r\n"},
      {"only the head", "X-A: 1\r\n", "X-Old: 2\r\n", 10, 1 << 20, "X-A: 1\r\n", "X-A: 1\r\n.\r\n"},
  };
}

TEST_F(UpstreamMessageTest, ChunkingMtaGetsBdatLastWithTheExactCount) {
  for (const MessageCase& c : messageCases()) {
    SCOPED_TRACE(c.name);
    ScriptedMta mta(base_.get(), kChunking);
    Upstream up(dispatcher_, settings(mta), "test");
    openTransaction(up);
    const auto spool = spooled(c.spooled, c.memoryLimit);
    const UpstreamResult r = send(up, spool, MessageHead{c.head, c.offset});
    ASSERT_TRUE(r.ok()) << r.detail;
    EXPECT_EQ(r.reply->code(), 250);
    ASSERT_FALSE(mta.commands.empty());
    EXPECT_EQ(mta.commands.back(), "BDAT " + std::to_string(c.bdat.size()) + " LAST");
    EXPECT_EQ(mta.message, c.bdat);
    EXPECT_TRUE(up.ready());
    EXPECT_TRUE(up.reusable(100)) << "a delivered BDAT message ends the transaction";
  }
}

TEST_F(UpstreamMessageTest, MtaWithoutChunkingOrChunkingOffGetsData) {
  for (const bool offered : {false, true}) {
    for (const MessageCase& c : messageCases()) {
      SCOPED_TRACE(c.name + (offered ? " (chunking off)" : " (not offered)"));
      ScriptedMta mta(base_.get(), offered ? kChunking : kNoChunking);
      UpstreamSettings s = settings(mta);
      s.chunking = !offered;  // offered: turned off in our settings
      Upstream up(dispatcher_, s, "test");
      openTransaction(up);
      const auto spool = spooled(c.spooled, c.memoryLimit);
      const UpstreamResult r = send(up, spool, MessageHead{c.head, c.offset});
      ASSERT_TRUE(r.ok()) << r.detail;
      EXPECT_EQ(r.reply->code(), 250);
      EXPECT_EQ(mta.commands.back(), "DATA");
      EXPECT_EQ(mta.message, c.data);
    }
  }
}

TEST_F(UpstreamMessageTest, RepliesToBdat) {
  const struct {
    std::string reply;
    UpstreamFailure failure;
    int code;
  } cases[] = {
      {"554 5.7.1 Rejected by policy", UpstreamFailure::kNone, 554},
      {"452 4.3.1 Insufficient system storage", UpstreamFailure::kNone, 452},
      {"354 go on", UpstreamFailure::kProtocol, 0},  // only 250 is positive here
      {"251 2.1.5 forwarded", UpstreamFailure::kProtocol, 0},
      {"hello there", UpstreamFailure::kProtocol, 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.reply);
    ScriptedMta mta(base_.get(), kChunking);
    mta.script("BDAT", c.reply);
    Upstream up(dispatcher_, settings(mta), "test");
    openTransaction(up);
    const auto spool = spooled("Subject: s\r\n\r\nx\r\n", 1 << 20);
    const UpstreamResult r = send(up, spool, MessageHead{});
    EXPECT_EQ(r.failure, c.failure) << r.detail;
    if (c.code != 0) {
      ASSERT_TRUE(r.reply.has_value());
      EXPECT_EQ(r.reply->code(), c.code);
      EXPECT_TRUE(up.ready());
      // RFC 3030 2: after a refused BDAT the transaction needs RSET; never pooled as it is.
      EXPECT_FALSE(up.reusable(100));
    } else {
      EXPECT_TRUE(up.broken());
    }
  }
}

TEST_F(UpstreamMessageTest, ReplyBeforeTheChunkIsSent) {
  // 16 MB: more than the loopback socket and our output bound hold, so the reply comes while
  // the Upstream is still writing the chunk. A refusal is relayed and the connection closed
  // (the rest of the chunk must never be read as commands); a 250 then is a protocol failure.
  const std::string body(16 << 20, 'a');
  for (const std::string reply : {"552 5.3.4 Message too big", "250 2.0.0 Ok"}) {
    SCOPED_TRACE(reply);
    ScriptedMta mta(base_.get(), kChunking);
    mta.script("BDAT", reply);
    mta.answerBdatEarly();
    Upstream up(dispatcher_, settings(mta), "test");
    openTransaction(up);
    const auto spool = spooled(body, 32 << 20);
    expectEarlyReplyOutcome(send(up, spool, MessageHead{}), reply);
    EXPECT_TRUE(up.broken());
  }
}

TEST_F(UpstreamMessageTest, ReplyToTheEndOfAMessageStillInOurOutput) {
  // 256 KiB, the output bound: the whole message is queued at once and the Upstream waits for
  // the reply, but the shrunk socket buffers took only a few KiB of it. A 250 then answers a
  // message the MTA has not read: taken as the message's reply, the connection would send the
  // rest (and the dot) afterwards, and the MTA's real reply to the dot would answer our next
  // command. Both ends with DATA and with BDAT.
  const std::string line = std::string(78, 'x') + "\r\n";
  std::string body;
  while (body.size() + line.size() <= (256 << 10) - 1024) body += line;
  for (const bool chunking : {false, true}) {
    for (const std::string reply : {"250 2.0.0 Ok: early", "552 5.3.4 Message too big"}) {
      SCOPED_TRACE(reply + (chunking ? " (BDAT)" : " (DATA)"));
      ScriptedMta mta(base_.get(), chunking ? kChunking : kNoChunking);
      mta.answerDataEarly(reply);
      Upstream up(dispatcher_, settings(mta), "test");
      openTransaction(up);
      const auto spool = spooled(body, 1 << 20);
      expectEarlyReplyOutcome(send(up, spool, MessageHead{}), reply);
      EXPECT_TRUE(up.broken()) << "never reused with part of a message still to send";
    }
  }
}

TEST_F(UpstreamMessageTest, ASpoolInMemoryGoesByReferenceAndIsLetGoOnceSent) {
  // 1 MiB, more than the output bound: the spool's bytes go to the stream's output by
  // reference, 64 KiB at a time, the dots that stuffing adds and the line ends around them
  // copied. The Upstream and its stream are the spool's only owners here (the session may be
  // gone while its message is still being written); once the message is delivered, neither
  // holds it (a pooled connection must not keep a message alive).
  std::string body;
  for (int i = 0; body.size() < (1 << 20); ++i) {
    body += (i % 97 == 0 ? "." : "") + std::string(70, static_cast<char>('a' + i % 26)) + "\r\n";
  }
  std::string stuffed;
  for (std::size_t at = 0; at < body.size();) {
    const std::size_t end = body.find('\n', at) + 1;
    if (body[at] == '.') stuffed += '.';
    stuffed.append(body, at, end - at);
    at = end;
  }
  for (const bool chunking : {false, true}) {
    SCOPED_TRACE(chunking ? "BDAT" : "DATA");
    ScriptedMta mta(base_.get(), chunking ? kChunking : kNoChunking);
    Upstream up(dispatcher_, settings(mta), "test");
    openTransaction(up);
    auto spool = spooled(body, 2 << 20);
    ASSERT_TRUE(spool->inMemory());
    const std::weak_ptr<Spool> watched = spool;
    const UpstreamResult r = send(up, std::move(spool), MessageHead{"X-Added: 1\r\n", 0});
    ASSERT_TRUE(r.ok()) << r.detail;
    EXPECT_EQ(r.reply->code(), 250);
    EXPECT_EQ(mta.message,
              chunking ? "X-Added: 1\r\n" + body : "X-Added: 1\r\n" + stuffed + ".\r\n");
    EXPECT_TRUE(watched.expired()) << "the delivered message is still held";
    EXPECT_TRUE(up.reusable(100));
  }
}

// ---- pipelining (RFC 2920) ----

// MAIL and two RCPTs given one after the other without waiting; what each callback got, in
// the order they ran.
struct GroupOutcome {
  std::vector<std::string> order;  // "MAIL 250", "RCPT closed", ...
  bool readyAfter = false;
};

class UpstreamPipeliningTest : public UpstreamMessageTest {
 protected:
  GroupOutcome sendGroup(Upstream& up) {
    GroupOutcome out;
    auto record = [&out](const std::string& verb) {
      return [&out, verb](const UpstreamResult& r) {
        out.order.push_back(verb + " " +
                            (r.ok() ? std::to_string(r.reply->code())
                                    : std::string(upstreamFailureName(r.failure))));
      };
    };
    up.command("MAIL FROM:<a@test>", Expect::kMail, record("MAIL"));
    up.command("RCPT TO:<b@test>", Expect::kRcpt, record("RCPT"));
    up.command("RCPT TO:<c@test>", Expect::kRcpt, record("RCPT"));
    for (int i = 0; i < 100000 && out.order.size() < 3; ++i) {
      event_base_loop(base_.get(), EVLOOP_ONCE);
    }
    out.readyAfter = up.ready();
    return out;
  }
  // Opens `up` against its MTA, then sends the group.
  GroupOutcome openAndSendGroup(Upstream& up) {
    EXPECT_TRUE(wait([&](auto cb) { up.open(XclientIdentity{}, cb); }).ok());
    return sendGroup(up);
  }
};

TEST_F(UpstreamPipeliningTest, AGroupGetsItsRepliesInOrder) {
  ScriptedMta mta(base_.get(), kNoChunking);
  mta.script("RCPT#1", "550 5.1.1 <b@test>: no such user");
  Upstream up(dispatcher_, settings(mta), "test");
  ASSERT_TRUE(wait([&](auto cb) { up.open(XclientIdentity{}, cb); }).ok());
  ASSERT_TRUE(up.pipelining());
  const GroupOutcome g = sendGroup(up);
  EXPECT_EQ(g.order, (std::vector<std::string>{"MAIL 250", "RCPT 550", "RCPT 250"}));
  EXPECT_TRUE(g.readyAfter);
  EXPECT_EQ(mta.commands, (std::vector<std::string>{"EHLO portcullis.test", "MAIL FROM:<a@test>",
                                                    "RCPT TO:<b@test>", "RCPT TO:<c@test>"}));
  EXPECT_FALSE(up.reusable(100)) << "a transaction is open";
  // The transaction goes on as usual after the group.
  ASSERT_TRUE(wait([&](auto cb) { up.command("RSET", Expect::kRset, cb); }).ok());
}

TEST_F(UpstreamPipeliningTest, OnlyWhenTheMtaOffersItAndSettingsAllowIt) {
  ScriptedMta plain(base_.get(), {"8BITMIME"});
  Upstream a(dispatcher_, settings(plain), "test");
  ASSERT_TRUE(wait([&](auto cb) { a.open(XclientIdentity{}, cb); }).ok());
  EXPECT_FALSE(a.pipelining());

  ScriptedMta offers(base_.get(), kNoChunking);
  UpstreamSettings off = settings(offers);
  off.pipelining = false;
  Upstream b(dispatcher_, off, "test");
  ASSERT_TRUE(wait([&](auto cb) { b.open(XclientIdentity{}, cb); }).ok());
  EXPECT_FALSE(b.pipelining());
}

TEST_F(UpstreamPipeliningTest, TheMtaHangingUpMidGroupFailsEveryCommandStillWaiting) {
  ScriptedMta mta(base_.get(), kNoChunking);
  mta.script("RCPT#1", "");  // hangs up instead of answering the first RCPT
  Upstream up(dispatcher_, settings(mta), "test");
  const GroupOutcome g = openAndSendGroup(up);
  EXPECT_EQ(g.order, (std::vector<std::string>{"MAIL 250", "RCPT closed", "RCPT closed"}));
  EXPECT_TRUE(up.broken());
}

TEST_F(UpstreamPipeliningTest, GarbageMidGroupFailsEveryCommandStillWaiting) {
  ScriptedMta mta(base_.get(), kNoChunking);
  mta.script("RCPT#1", "hello there");
  Upstream up(dispatcher_, settings(mta), "test");
  const GroupOutcome g = openAndSendGroup(up);
  EXPECT_EQ(g.order, (std::vector<std::string>{"MAIL 250", "RCPT protocol", "RCPT protocol"}));
  EXPECT_TRUE(up.broken());
}

TEST_F(UpstreamPipeliningTest, A421MidGroupEndsTheRestAsClosed) {
  ScriptedMta mta(base_.get(), kNoChunking);
  mta.script("MAIL", "421 4.3.2 shutting down");
  Upstream up(dispatcher_, settings(mta), "test");
  const GroupOutcome g = openAndSendGroup(up);
  EXPECT_EQ(g.order, (std::vector<std::string>{"MAIL 421", "RCPT closed", "RCPT closed"}));
}

TEST_F(UpstreamPipeliningTest, AnExtraReplyAfterTheGroupIsAProtocolFailure) {
  ScriptedMta mta(base_.get(), kNoChunking);
  mta.script("RCPT#2", "250 2.1.5 Ok\r\n250 2.1.5 surprise");
  Upstream up(dispatcher_, settings(mta), "test");
  const GroupOutcome g = openAndSendGroup(up);
  EXPECT_EQ(g.order, (std::vector<std::string>{"MAIL 250", "RCPT 250", "RCPT protocol"}));
  EXPECT_TRUE(up.broken());
}

}  // namespace
}  // namespace portcullis
