#pragma once
// Upstream: one SMTP client connection from portcullis to the MTA, owned by one session.
// It connects, reads the greeting, sends EHLO, passes the client identity (XCLIENT, then EHLO
// again), and then carries one command at a time, matching each reply to its command; when the
// MTA offers PIPELINING (and settings allow it), MAIL and RCPT may follow one another before
// their replies, which are then matched in order (RFC 2920).
// A message goes as DATA (354, our dot-stuffing, the final dot) or, when the MTA offers
// CHUNKING and settings allow it, as one `BDAT <n> LAST` followed by exactly n message bytes,
// unstuffed (RFC 3030): the same canonical bytes, one round trip fewer.
// Every reply is validated (ReplyParser) and checked against what that command may get; a
// garbage, unexpected or unsolicited reply is a protocol failure, never relayed (DESIGN 4).
// Every wait has a timer. Callbacks run from the event loop, never inside the call that asked
// for them (a failure found at once is reported through the loop too). Owners never destroy an
// Upstream inside its callback: they hand it to Dispatcher::deferredDelete.

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "portcullis/reply.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/fifo.h"
#include "proxy/base/recycled.h"
#include "proxy/config/config.h"
#include "proxy/net/byte_stream.h"
#include "proxy/net/tls.h"
#include "proxy/smtp/data_framer.h"
#include "proxy/smtp/ehlo.h"
#include "proxy/smtp/reply_parser.h"
#include "proxy/smtp/spool.h"
#include "proxy/smtp/xtext.h"

namespace portcullis {

struct UpstreamSettings {
  SocketAddress address;
  IdentityMode identity = IdentityMode::kXclient;
  std::string hostname;  // our EHLO name
  std::chrono::milliseconds connectTimeout{10'000};
  std::chrono::milliseconds commandTimeout{120'000};
  std::chrono::milliseconds dataTimeout{300'000};
  UpstreamTls tls = UpstreamTls::kNone;
  std::shared_ptr<const TlsContext> tlsContext;  // set when tls != kNone
  bool chunking = true;    // BDAT when this connection's EHLO offers CHUNKING (upstream.chunking)
  bool pipelining = true;  // MAIL/RCPT groups when its EHLO offers PIPELINING (upstream.pipelining)
};

// What a command may legally get back (RFC 5321 4.3.2). Negative replies are always legal.
enum class Expect {
  kGreeting,
  kEhlo,
  kStartTls,
  kXclient,
  kMail,
  kRcpt,
  kRset,
  kData,
  kDot,
  kBdat,  // BDAT <n> LAST: the final reply to the message (RFC 3030 2)
  kQuit,
  kNoop
};

enum class UpstreamFailure {
  kNone,
  kConnect,   // could not connect
  kTimeout,   // no (complete) reply in time
  kClosed,    // the MTA closed the connection
  kProtocol,  // garbage, unexpected or unsolicited reply
  kRefused,   // the MTA refused the session set-up (greeting, EHLO or XCLIENT)
  kIdentity,  // identity could not be passed (no XCLIENT offered)
  kTls,       // STARTTLS required but not offered, or the handshake failed
};
std::string_view upstreamFailureName(UpstreamFailure f);

// Why an IPv6 client cannot be passed on (kIdentity), and what to change in the MTA.
inline constexpr std::string_view kIpv6XclientRefused =
    "MTA refuses IPv6 client addresses in XCLIENT; every IPv6 client is tempfailed until it "
    "accepts them (Postfix: inet_protocols = all, or ipv4, ipv6)";

struct UpstreamResult {
  UpstreamFailure failure = UpstreamFailure::kNone;
  std::optional<Reply> reply;  // the MTA's validated reply, when there was one
  std::string detail;          // for logs

  bool ok() const { return failure == UpstreamFailure::kNone; }
};

// What goes to the MTA ahead of the spooled bytes: our headers (our trace header, filters'
// additions and, when filters edited it, the client's rewritten header block), and the spool
// offset the rest is sent from (0, or the start of the separator line after an edited block).
struct MessageHead {
  std::string bytes;
  std::uint64_t spoolOffset = 0;
  // False when no line of the spool begins with a dot (DataFramer::dotLedLine): DATA then sends
  // the spool without looking for lines to stuff. `bytes` is always stuffed.
  bool spoolNeedsStuffing = true;
};

// One SMTP connection to the MTA, as the session's UpstreamLink and the server's pool see it.
// Upstream is the real one; tests use a scripted fake (tests/unit/relay/fakes.h).
class UpstreamConnection {
 public:
  using Callback = std::function<void(UpstreamResult)>;

  virtual ~UpstreamConnection() = default;

  // Connect, greeting, EHLO, identity. On success the connection is ready for MAIL.
  virtual void open(const XclientIdentity& identity, Callback done) = 0;
  // One command line (no CRLF), one reply. While a MAIL or RCPT awaits its reply, another MAIL
  // or RCPT may be given when pipelining() holds: it is sent at once and its `done` runs after
  // the earlier ones', in order. When the connection fails, every command still waiting gets
  // the failure, in order.
  virtual void command(const std::string& line, Expect expect, Callback done) = 0;
  // The MTA offers PIPELINING and settings allow grouping commands (RFC 2920).
  virtual bool pipelining() const = 0;
  // DATA, then (after 354) `head.bytes` and the spooled message from `head.spoolOffset`, all
  // with our own dot-stuffing, then the final dot; `done` gets the reply to the dot (or to DATA
  // if negative). When the connection offers CHUNKING (and settings allow it): `BDAT <n> LAST`
  // and the same bytes unstuffed, n of them exactly; `done` gets the reply to BDAT. A finished
  // spool: it must not change. Shared, because a spool in memory goes to the connection's
  // output by reference, and that output may outlive the session (a connection let go while
  // the message was still being written is freed from the loop).
  virtual void sendMessage(std::shared_ptr<const Spool> spool, MessageHead head, Callback done) = 0;
  // Polite close: QUIT without waiting for the reply.
  virtual void quit() = 0;

  // Connection reuse (the server's pool). A reused connection is handed to a new session,
  // which passes its own client identity with XCLIENT (the MTA resets its session state on
  // XCLIENT) before the first MAIL. Only clean connections are reused: ready, no transaction
  // open, no negative reply ever seen (so the MTA's error counters cannot build up across
  // clients), and under the reuse limit.
  virtual void reidentify(const XclientIdentity& identity, Callback done) = 0;
  virtual bool reusable(std::uint32_t maxReuse) const = 0;
  virtual void setSessionId(std::string id) = 0;

  virtual bool ready() const = 0;
  virtual bool broken() const = 0;
  virtual bool tls() const = 0;
  virtual const UpstreamCapabilities& capabilities() const = 0;
  // The upstream failed while no command was outstanding (closed, unsolicited bytes).
  virtual void setIdleFailureHandler(std::function<void(std::string)> handler) = 0;

  std::uint32_t uses() const { return uses_; }
  bool reused() const { return uses_ > 0; }
  void markReused() {
    ++uses_;
    sessionUsed_ = false;
  }
  // Whether the current session has sent a command on it yet (a stale pooled connection is
  // only discovered by its first command).
  bool usedBySession() const { return sessionUsed_; }
  void markUsedBySession() { sessionUsed_ = true; }

 private:
  std::uint32_t uses_ = 0;
  bool sessionUsed_ = false;
};

class Upstream final : public UpstreamConnection, public Recycled<Upstream> {
 public:
  Upstream(Dispatcher& dispatcher, const UpstreamSettings& settings, std::string sessionId);
  ~Upstream() override;
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  void open(const XclientIdentity& identity, Callback done) override;
  void command(const std::string& line, Expect expect, Callback done) override;
  void sendMessage(std::shared_ptr<const Spool> spool, MessageHead head, Callback done) override;
  void quit() override;
  void reidentify(const XclientIdentity& identity, Callback done) override;
  bool reusable(std::uint32_t maxReuse) const override;
  void setSessionId(std::string id) override { id_ = std::move(id); }
  bool pipelining() const override { return settings_.pipelining && caps_.pipelining; }
  bool ready() const override { return state_ == State::kReady; }
  bool broken() const override { return state_ == State::kBroken; }
  bool tls() const override { return stream_ && stream_->tls(); }
  const UpstreamCapabilities& capabilities() const override { return caps_; }
  void setIdleFailureHandler(std::function<void(std::string)> handler) override {
    onIdleFailure_ = std::move(handler);
  }

 private:
  enum class State { kIdle, kConnecting, kOpening, kReady, kBusy, kSending, kBroken };
  enum class OpenStep { kGreeting, kEhlo, kStartTls, kHandshake, kEhloTls, kXclient, kEhloAgain };

  // The only place state_ changes; logs "from -> to" at debug.
  void enter(State to);
  static std::string_view stateName(State s);
  void onStreamEvent(ByteStream::Event event, const std::string& detail);
  void failLater(UpstreamFailure failure, std::string detail);  // through the loop
  void dropStream();

  void readReplies();
  void send(const std::string& line, Expect expect, std::chrono::milliseconds timeout);
  void handleReply(Reply reply);
  void openStep(Reply reply);
  void sendIdentity();
  void pumpMessage();
  void startBdat();
  // Stuffed for DATA, raw (and counted) for BDAT; by reference when `spool` owns the bytes.
  // `stuff`: false for spool bytes with no dot-led line (MessageHead::spoolNeedsStuffing).
  void emitMessageBytes(std::string_view bytes, const std::shared_ptr<const Spool>& spool = {},
                        bool stuff = true);
  // A reply to the message that came before all of it was written: `what` says to what.
  void replyBeforeMessageSent(Reply reply, std::string_view what);
  void fail(UpstreamFailure failure, const std::string& detail);
  void complete(UpstreamResult result);
  void runPending();     // soon_: the ready or failure reported from the loop
  void cancelPending();  // a real outcome came first: nothing pending is reported
  // The commands sent after the current one: each gets `failure`, in order.
  void failPipelined(UpstreamFailure failure, const std::string& detail);
  static bool groupable(Expect e) { return e == Expect::kMail || e == Expect::kRcpt; }
  static bool legal(Expect expect, const Reply& reply);

  Dispatcher& dispatcher_;
  UpstreamSettings settings_;  // a copy: a pooled connection outlives the session that made it
  std::string id_;
  std::unique_ptr<ByteStream> stream_;
  Timer timer_;
  // Reports a result the Upstream already has (pendingReady_, pendingFailure_) from the loop,
  // in the loop's current pass: no zero timer, so no extra epoll_wait.
  DeferredCall soon_;
  State state_ = State::kIdle;
  ReplyParser parser_;
  Expect expect_ = Expect::kGreeting;
  Callback done_;
  // Sent after the command in expect_/done_, replies awaited in this order (RFC 2920).
  Fifo<std::pair<Expect, Callback>> pipelined_;
  std::function<void(std::string)> onIdleFailure_;
  std::optional<std::pair<UpstreamFailure, std::string>> pendingFailure_;  // for failLater
  bool negativeSeen_ = false;
  bool transactionOpen_ = false;  // MAIL accepted, not yet ended by the dot or RSET
  bool pendingReady_ = false;

  // Opening.
  OpenStep step_ = OpenStep::kGreeting;
  XclientIdentity identity_;
  std::vector<std::string> xclientLines_;
  std::size_t xclientIndex_ = 0;
  UpstreamCapabilities caps_;

  // Sending a message.
  std::shared_ptr<const Spool> spool_;
  std::string prefix_;
  std::uint64_t offset_ = 0;
  DotStuffer stuffer_;
  bool stuffSpool_ = true;      // MessageHead::spoolNeedsStuffing
  bool bdat_ = false;           // this message goes as BDAT LAST, not DATA
  bool bdatCrlf_ = false;       // ... and its count includes a CRLF we add at the end
  std::uint64_t bdatSize_ = 0;  // the n of BDAT n LAST
  std::uint64_t bdatSent_ = 0;  // message bytes written so far (checked against n)
};

}  // namespace portcullis
