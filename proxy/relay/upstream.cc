// Upstream connection to the MTA. See upstream.h.

#include "proxy/relay/upstream.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "proxy/base/log.h"
#include "proxy/net/proxy_protocol.h"
#include "proxy/net/stream.h"

namespace portcullis {
namespace {

constexpr std::size_t kHighWater = 256 * 1024;  // pump the message while output is below this
constexpr std::size_t kChunk = 64 * 1024;

}  // namespace

std::string_view upstreamFailureName(UpstreamFailure f) {
  switch (f) {
    case UpstreamFailure::kNone:
      return "none";
    case UpstreamFailure::kConnect:
      return "connect";
    case UpstreamFailure::kTimeout:
      return "timeout";
    case UpstreamFailure::kClosed:
      return "closed";
    case UpstreamFailure::kProtocol:
      return "protocol";
    case UpstreamFailure::kRefused:
      return "refused";
    case UpstreamFailure::kIdentity:
      return "identity";
    case UpstreamFailure::kTls:
      return "tls";
  }
  return "unknown";
}

Upstream::Upstream(Dispatcher& dispatcher, const UpstreamSettings& settings, std::string sessionId)
    : dispatcher_(dispatcher),
      settings_(settings),
      id_(std::move(sessionId)),
      timer_(dispatcher, [this] { fail(UpstreamFailure::kTimeout, "no reply in time"); }),
      soon_(dispatcher, [this] { runPending(); }) {}

void Upstream::cancelPending() {
  soon_.cancel();
  pendingReady_ = false;
  pendingFailure_.reset();
}

void Upstream::runPending() {
  if (pendingReady_) {
    enter(State::kReady);
    complete({UpstreamFailure::kNone, std::nullopt, {}});  // clears pendingReady_
    return;
  }
  if (pendingFailure_) {
    auto [failure, detail] = std::move(*pendingFailure_);
    fail(failure, detail);  // clears pendingFailure_
  }
}

Upstream::~Upstream() = default;

std::string_view Upstream::stateName(State s) {
  switch (s) {
    case State::kIdle:
      return "idle";
    case State::kConnecting:
      return "connecting";
    case State::kOpening:
      return "opening";
    case State::kReady:
      return "ready";
    case State::kBusy:
      return "busy";
    case State::kSending:
      return "sending";
    case State::kBroken:
      return "broken";
  }
  return "unknown";
}

void Upstream::enter(State to) {
  if (to == state_) return;
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("{} event=upstream-state from={} to={}", id_, stateName(state_), stateName(to));
  }
  state_ = to;
}

void Upstream::failLater(UpstreamFailure failure, std::string detail) {
  // The caller is still inside the call that asked: the failure reaches it through the loop,
  // by the Upstream's own deferred call (cancelled if the Upstream goes first).
  enter(State::kBroken);
  pendingFailure_.emplace(failure, std::move(detail));
  timer_.stop();
  soon_.schedule();
}

void Upstream::dropStream() {
  // Possibly inside the stream's own callback: detached now, freed from the loop.
  releaseStream(dispatcher_, std::move(stream_));
}

void Upstream::open(const XclientIdentity& identity, Callback done) {
  done_ = std::move(done);
  identity_ = identity;
  enter(State::kConnecting);
  std::string error;
  stream_ = Stream::connect(dispatcher_.base(), settings_.address, &error);
  if (!stream_) {
    failLater(UpstreamFailure::kConnect, std::move(error));
    return;
  }
  stream_->setCallbacks(
      {[this] { readReplies(); },
       [this] {
         if (state_ == State::kSending) pumpMessage();
       },
       [this](ByteStream::Event e, const std::string& d) { onStreamEvent(e, d); }});
  timer_.start(settings_.connectTimeout);
  stream_->start();
}

void Upstream::reidentify(const XclientIdentity& identity, Callback done) {
  done_ = std::move(done);
  identity_ = identity;
  if (state_ != State::kReady) {
    failLater(UpstreamFailure::kClosed, "pooled connection not ready");
    return;
  }
  if (settings_.identity != IdentityMode::kXclient) {
    // Nothing to pass: report success from the loop, never inline.
    enter(State::kOpening);
    step_ = OpenStep::kEhloAgain;
    pendingReady_ = true;
    timer_.stop();
    soon_.schedule();
    return;
  }
  xclientLines_ = xclientCommands(identity_, caps_);
  xclientIndex_ = 0;
  enter(State::kOpening);
  step_ = OpenStep::kXclient;
  if (xclientLines_.empty()) {
    failLater(UpstreamFailure::kIdentity, "no XCLIENT attributes to send");
    return;
  }
  send(xclientLines_[xclientIndex_++], Expect::kXclient, settings_.commandTimeout);
}

bool Upstream::reusable(std::uint32_t maxReuse) const {
  // A PROXY header names one client for the life of the connection: never reused.
  const bool perClient =
      settings_.identity == IdentityMode::kProxyV1 || settings_.identity == IdentityMode::kProxyV2;
  return state_ == State::kReady && stream_ && !transactionOpen_ && !negativeSeen_ &&
         uses() < maxReuse && !perClient;
}

void Upstream::command(const std::string& line, Expect expect, Callback done) {
  if (state_ == State::kBusy && pipelining() && groupable(expect_) && groupable(expect)) {
    // RFC 2920: MAIL and RCPT may follow one another without waiting; the replies come back
    // in the order the commands went. The timer keeps timing the oldest reply.
    pipelined_.emplace_back(expect, std::move(done));
    stream_->write(line);  // no temporary: a plain stream gathers both into one send
    stream_->write("\r\n");
    if (spdlog::should_log(spdlog::level::trace)) {
      spdlog::trace("{} event=upstream-send line={} pipelined={}", id_, logValue(line),
                    pipelined_.size());
    }
    return;
  }
  if (state_ != State::kReady) {
    done_ = std::move(done);
    failLater(UpstreamFailure::kClosed, "upstream not ready");
    return;
  }
  done_ = std::move(done);
  enter(State::kBusy);
  send(line, expect, settings_.commandTimeout);
}

void Upstream::sendMessage(std::shared_ptr<const Spool> spool, MessageHead head, Callback done) {
  if (state_ != State::kReady) {
    done_ = std::move(done);
    failLater(UpstreamFailure::kClosed, "upstream not ready");
    return;
  }
  done_ = std::move(done);
  spool_ = std::move(spool);
  prefix_ = std::move(head.bytes);
  offset_ = head.spoolOffset;
  stuffSpool_ = head.spoolNeedsStuffing;
  stuffer_ = DotStuffer();
  bdat_ = settings_.chunking && caps_.chunking;
  if (bdat_) {
    startBdat();
    return;
  }
  enter(State::kBusy);
  send("DATA", Expect::kData, settings_.commandTimeout);
  stream_->sendNow();  // nothing follows it before the 354
}

void Upstream::startBdat() {
  // RFC 3030: the chunk is the message itself, no dot-stuffing and no end-of-data line, so the
  // count must be exact: our head, the spool from its offset, and the CRLF that DATA would add
  // after a last line without one (never the case for a message the framer accepted, which
  // ends in CRLF or is empty). The chunk follows the command at once (RFC 3030 2: no 354).
  const std::uint64_t size = spool_->size();
  if (offset_ > size) {
    failLater(UpstreamFailure::kProtocol, "spool offset past the end of the message");
    return;
  }
  char last = '\n';
  if (size > offset_) {
    if (spool_->read(size - 1, &last, 1) != 1) {
      failLater(UpstreamFailure::kProtocol, "spool read failed");
      return;
    }
  } else if (!prefix_.empty()) {
    last = prefix_.back();
  }
  bdatCrlf_ = last != '\n';
  bdatSize_ = prefix_.size() + (size - offset_) + (bdatCrlf_ ? 2 : 0);
  bdatSent_ = 0;
  enter(State::kSending);
  send("BDAT " + std::to_string(bdatSize_) + " LAST", Expect::kBdat, settings_.dataTimeout);
  pumpMessage();
}

void Upstream::quit() {
  if (stream_ && state_ == State::kReady) {
    // Written straight out: the session is going away and will not wait for 221. Over TLS the
    // close_notify follows, so the MTA sees an orderly end rather than a truncated connection.
    stream_->writeFinal("QUIT\r\n");
  }
  dropStream();
  timer_.stop();
  enter(State::kBroken);
  done_ = nullptr;
  pipelined_.clear();
}

void Upstream::send(const std::string& line, Expect expect, std::chrono::milliseconds timeout) {
  expect_ = expect;
  parser_.reset();
  stream_->write(line);  // no temporary: a plain stream gathers both into one send
  stream_->write("\r\n");
  if (spdlog::should_log(spdlog::level::trace)) {
    spdlog::trace("{} event=upstream-send line={}", id_, logValue(line));
  }
  timer_.start(timeout);
}

void Upstream::onStreamEvent(ByteStream::Event event, const std::string& detail) {
  if (event == ByteStream::Event::kConnected) {
    enter(State::kOpening);
    step_ = OpenStep::kGreeting;
    expect_ = Expect::kGreeting;
    // PROXY identity: the header goes first, before the MTA says anything.
    if (settings_.identity == IdentityMode::kProxyV1 ||
        settings_.identity == IdentityMode::kProxyV2) {
      const auto src = socketAddress(identity_.addr, identity_.port);
      const auto dst = socketAddress(identity_.destAddr, identity_.destPort);
      if (!src || !dst || src->family() != dst->family()) {
        fail(UpstreamFailure::kIdentity, "cannot express the client's address in a PROXY header");
        return;
      }
      stream_->write(settings_.identity == IdentityMode::kProxyV1 ? proxyV1Header(*src, *dst)
                                                                  : proxyV2Header(*src, *dst));
    }
    return;
  }
  if (event == ByteStream::Event::kTlsReady) {
    if (step_ != OpenStep::kHandshake) return;
    const TlsInfo t = describeTls(stream_->ssl());
    spdlog::debug("{} event=upstream-tls protocol={} cipher={}", id_, t.protocol, t.cipher);
    // RFC 3207 4.2: forget what the server said before TLS; ask again.
    step_ = OpenStep::kEhloTls;
    send("EHLO " + settings_.hostname, Expect::kEhlo, settings_.commandTimeout);
    return;
  }
  if (state_ == State::kOpening && step_ == OpenStep::kHandshake) {
    fail(UpstreamFailure::kTls, "TLS handshake with the MTA failed: " + detail);
    return;
  }
  if (state_ == State::kConnecting) {
    fail(UpstreamFailure::kConnect, detail);
  } else {
    fail(UpstreamFailure::kClosed,
         event == ByteStream::Event::kEof ? "connection closed by MTA" : detail);
  }
}

void Upstream::readReplies() {
  ByteStream* const stream = stream_.get();
  InputBuffer& in = stream->input();
  while (!in.empty()) {
    // A reply to BDAT may come while we still write the chunk (handleReply decides).
    const bool waiting =
        state_ == State::kOpening || state_ == State::kBusy || (state_ == State::kSending && bdat_);
    if (!waiting) {
      fail(UpstreamFailure::kProtocol, "unsolicited data from MTA: " + logValue(in.view(), 64));
      return;
    }
    const std::string_view unread = in.view();
    const std::size_t lf = unread.substr(0, Reply::kMaxLineLength).find('\n');
    if (lf == std::string_view::npos) {
      if (unread.size() >= Reply::kMaxLineLength)
        fail(UpstreamFailure::kProtocol, "reply line too long");
      return;  // wait for the rest of the line
    }
    if (lf == 0 || unread[lf - 1] != '\r') {
      fail(UpstreamFailure::kProtocol, "reply line without CRLF");
      return;
    }
    const std::string_view line = unread.substr(0, lf - 1);
    const auto status = parser_.feed(line);
    in.drain(lf + 1);  // the parser keeps what it needs of the line
    if (status == ReplyParser::Status::kError) {
      fail(UpstreamFailure::kProtocol, "garbage reply: " + parser_.error());
      return;
    }
    if (status == ReplyParser::Status::kNeedMore) continue;
    Reply reply = parser_.take();
    // Bytes after a complete reply answer nothing we asked, unless pipelined commands await
    // theirs. After the 220 to STARTTLS they are discarded instead (ByteStream::startTls), never
    // read as replies: the mirror image of the STARTTLS command-injection attack.
    if (!in.empty() && pipelined_.empty() &&
        !(expect_ == Expect::kStartTls && reply.code() == 220)) {
      fail(UpstreamFailure::kProtocol,
           "unsolicited data after reply " + std::to_string(reply.code()));
      return;
    }
    handleReply(std::move(reply));
    // The reply may have ended the connection (a failure drops the stream, and its input
    // buffer with it): then stop reading.
    if (stream_.get() != stream) return;
  }
}

bool Upstream::legal(Expect expect, const Reply& reply) {
  if (reply.isNegative()) return true;
  const int c = reply.code();
  switch (expect) {
    case Expect::kGreeting:
    case Expect::kXclient:
      return c == 220 || c == 250;  // Postfix answers XCLIENT with a new 220 greeting
    case Expect::kStartTls:
      return c == 220;
    case Expect::kEhlo:
    case Expect::kMail:
    case Expect::kRset:
    case Expect::kDot:
    case Expect::kBdat:
    case Expect::kNoop:
      return c == 250;
    case Expect::kRcpt:
      return c == 250 || c == 251;
    case Expect::kData:
      return c == 354;
    case Expect::kQuit:
      return c == 221;
  }
  return false;
}

void Upstream::handleReply(Reply reply) {
  if (spdlog::should_log(spdlog::level::trace)) {
    spdlog::trace("{} event=upstream-reply reply={}", id_, logValue(reply.summary()));
  }
  if (reply.isNegative()) negativeSeen_ = true;
  if (!legal(expect_, reply)) {
    fail(UpstreamFailure::kProtocol, "unexpected reply " + std::to_string(reply.code()));
    return;
  }
  if (state_ == State::kOpening) {
    openStep(std::move(reply));
    return;
  }
  if (state_ == State::kSending) {
    // A reply to BDAT before we wrote all of its chunk.
    replyBeforeMessageSent(std::move(reply), "to BDAT before its chunk was sent");
    return;
  }
  if (expect_ == Expect::kData && reply.code() == 354) {
    enter(State::kSending);
    timer_.start(settings_.dataTimeout);
    pumpMessage();
    return;
  }
  if ((expect_ == Expect::kDot || expect_ == Expect::kBdat) && stream_->pendingOutput() > 0) {
    // The whole message is queued, but part of it (the final dot at least) still waits in our
    // output: the MTA answers the end of a message it has not read. Taken as the message's
    // reply, the connection would go on with those bytes still to send, and the MTA's real
    // reply to them would answer our next command.
    replyBeforeMessageSent(std::move(reply), "to the end of the message before it was sent");
    return;
  }
  // Still busy while pipelined commands await their replies.
  enter(pipelined_.empty() ? State::kReady : State::kBusy);
  spool_ = nullptr;
  // The MTA's view of the transaction, whatever the session believes: a positive MAIL opens
  // one; a positive RSET or any reply to the final dot ends it (RFC 5321 4.1.1.4, 4.1.1.5).
  // A refused DATA leaves it open. reusable() never pools a connection with one open.
  if (expect_ == Expect::kMail && reply.isPositive()) transactionOpen_ = true;
  // RFC 3030 2: after a refused BDAT the client must RSET, so only a 250 ends it.
  if ((expect_ == Expect::kRset && reply.isPositive()) || expect_ == Expect::kDot ||
      (expect_ == Expect::kBdat && reply.isPositive())) {
    transactionOpen_ = false;
  }
  if (reply.closesConnection()) {  // 421: the MTA is going away
    enter(State::kBroken);
    complete({UpstreamFailure::kNone, std::move(reply), {}});
    failPipelined(UpstreamFailure::kClosed, "the MTA closed the connection (421)");
    return;
  }
  complete({UpstreamFailure::kNone, std::move(reply), {}});
}

void Upstream::openStep(Reply reply) {
  if (reply.isNegative() && step_ == OpenStep::kStartTls &&
      settings_.tls == UpstreamTls::kOpportunistic) {
    // Opportunistic: a refused STARTTLS (e.g. 454) leaves the session usable in plaintext.
    spdlog::info("{} event=upstream-starttls-refused reply={}", id_, logValue(reply.summary()));
    sendIdentity();
    return;
  }
  if (reply.isNegative() && step_ == OpenStep::kXclient && identity_.ipv6 && reply.code() == 501) {
    // Postfix with inet_protocols = ipv4 cannot hold an IPv6 client address: "501 5.5.4 Bad
    // ADDR syntax". Not the client's fault and not transient: name the MTA setting to change.
    fail(UpstreamFailure::kIdentity, std::string(kIpv6XclientRefused) + ": " + reply.summary());
    return;
  }
  if (reply.isNegative()) {
    const std::string what = step_ == OpenStep::kGreeting   ? "greeting"
                             : step_ == OpenStep::kXclient  ? "XCLIENT"
                             : step_ == OpenStep::kStartTls ? "STARTTLS"
                                                            : "EHLO";
    UpstreamResult r{UpstreamFailure::kRefused, reply,
                     "MTA refused " + what + ": " + reply.summary()};
    enter(State::kBroken);
    timer_.stop();
    dropStream();
    complete(std::move(r));
    return;
  }
  switch (step_) {
    case OpenStep::kGreeting:
      step_ = OpenStep::kEhlo;
      send("EHLO " + settings_.hostname, Expect::kEhlo, settings_.commandTimeout);
      return;
    case OpenStep::kEhlo:
      caps_ = UpstreamCapabilities::fromEhlo(parseEhloCapabilities(reply));
      if (settings_.tls != UpstreamTls::kNone && !stream_->tls()) {
        if (caps_.starttls) {
          step_ = OpenStep::kStartTls;
          send("STARTTLS", Expect::kStartTls, settings_.commandTimeout);
          return;
        }
        if (settings_.tls == UpstreamTls::kRequire) {
          fail(UpstreamFailure::kTls, "MTA does not offer STARTTLS (upstream.tls: require)");
          return;
        }
      }
      sendIdentity();
      return;
    case OpenStep::kStartTls:
      // The plaintext 220 is all we take; whatever came with it is dropped by startTls.
      step_ = OpenStep::kHandshake;
      stream_->startTls(settings_.tlsContext->newSsl(), false);
      return;
    case OpenStep::kHandshake:
      return;
    case OpenStep::kEhloTls:
      caps_ = UpstreamCapabilities::fromEhlo(parseEhloCapabilities(reply));
      sendIdentity();
      return;
    case OpenStep::kXclient:
      if (xclientIndex_ < xclientLines_.size()) {
        send(xclientLines_[xclientIndex_++], Expect::kXclient, settings_.commandTimeout);
        return;
      }
      // XCLIENT resets the MTA's session: greet again, as the client did.
      step_ = OpenStep::kEhloAgain;
      send("EHLO " + (identity_.helo.empty() ? settings_.hostname : identity_.helo), Expect::kEhlo,
           settings_.commandTimeout);
      return;
    case OpenStep::kEhloAgain:
      caps_ = UpstreamCapabilities::fromEhlo(parseEhloCapabilities(reply));
      break;
  }
  enter(State::kReady);
  complete({UpstreamFailure::kNone, std::move(reply), {}});
}

void Upstream::sendIdentity() {
  if (settings_.identity == IdentityMode::kXclient) {
    if (!caps_.xclient) {
      fail(UpstreamFailure::kIdentity,
           "MTA does not offer XCLIENT to us (Postfix: smtpd_authorized_xclient_hosts)");
      return;
    }
    xclientLines_ = xclientCommands(identity_, caps_);
    xclientIndex_ = 0;
    if (!xclientLines_.empty()) {
      step_ = OpenStep::kXclient;
      send(xclientLines_[xclientIndex_++], Expect::kXclient, settings_.commandTimeout);
      return;
    }
  }
  enter(State::kReady);
  complete({UpstreamFailure::kNone, std::nullopt, {}});
}

void Upstream::emitMessageBytes(std::string_view bytes, const std::shared_ptr<const Spool>& spool,
                                bool stuff) {
  // The pieces of `bytes` (and the static "." of dot-stuffing) stay valid as long as `spool`.
  const auto out = [this, &spool](std::string_view s) {
    if (spool) {
      stream_->writeShared(s, spool);
    } else {
      stream_->write(s);
    }
  };
  if (bdat_) {
    bdatSent_ += bytes.size();
    out(bytes);
    return;
  }
  if (stuff) {
    stuffer_.stuff(bytes, out);
  } else {
    stuffer_.pass(bytes, out);
  }
}

void Upstream::pumpMessage() {
  if (!prefix_.empty()) {
    // Stuffed like the rest: a header name may begin with "." (RFC 5322 ftext allows it).
    emitMessageBytes(prefix_);
    prefix_.clear();
  }
  const std::uint64_t size = spool_->size();
  std::string buf;
  // Fill up to the high-water mark; the stream's onDrained calls back for the rest.
  while (offset_ < size && stream_->pendingOutput() < kHighWater) {
    std::string_view chunk;
    const bool inMemory = spool_->inMemory();
    if (inMemory) {
      chunk = spool_->memory().substr(static_cast<std::size_t>(offset_), kChunk);
    } else {
      buf.resize(kChunk);
      buf.resize(spool_->read(offset_, buf.data(), buf.size()));
      chunk = buf;
    }
    if (chunk.empty()) {
      fail(UpstreamFailure::kProtocol, "spool read failed");
      return;
    }
    // A spool in memory goes by reference (the stream keeps it alive until sent); a spool
    // file's chunk is this loop's buffer, copied.
    emitMessageBytes(chunk, inMemory ? spool_ : nullptr, stuffSpool_);
    offset_ += chunk.size();
  }
  if (offset_ < size) return;
  if (bdat_) {
    if (bdatCrlf_) emitMessageBytes("\r\n");
    if (bdatSent_ != bdatSize_) {
      // The spool changed under us: the MTA would read the difference as commands.
      fail(UpstreamFailure::kProtocol, "message size changed while it was sent");
      return;
    }
    // The reply may already be on its way (parsed from where send() left the parser).
    enter(State::kBusy);
    stream_->sendNow();  // the whole message is queued: nothing follows it
    return;
  }
  // A canonical message ends with CRLF; the final dot follows (RFC 5321 4.1.1.4).
  if (!stuffer_.atLineStart()) stream_->write("\r\n");
  stream_->write(".\r\n");
  expect_ = Expect::kDot;
  parser_.reset();
  enter(State::kBusy);  // the message is queued; now only the reply to the dot is awaited
  stream_->sendNow();
}

void Upstream::replyBeforeMessageSent(Reply reply, std::string_view what) {
  // Only a refusal can be genuine (an MTA may refuse a message it will not read to the end);
  // the rest of the message must then never reach the MTA, where it would be read as commands:
  // the connection is closed once the reply is handed on. Anything else is a broken MTA.
  if (!reply.isNegative()) {
    fail(UpstreamFailure::kProtocol,
         "reply " + std::to_string(reply.code()) + " " + std::string(what));
    return;
  }
  UpstreamResult r{UpstreamFailure::kNone, std::move(reply), {}};
  enter(State::kBroken);
  timer_.stop();
  dropStream();
  spool_ = nullptr;
  complete(std::move(r));
}

void Upstream::fail(UpstreamFailure failure, const std::string& detail) {
  const bool hadCommand = static_cast<bool>(done_) || !pipelined_.empty();
  enter(State::kBroken);
  timer_.stop();
  cancelPending();
  dropStream();  // a broken exchange is never reused: closing aborts the MTA's transaction
  spool_ = nullptr;
  if (hadCommand) {
    complete({failure, std::nullopt, detail});
    failPipelined(failure, detail);
  } else if (onIdleFailure_) {
    auto handler = onIdleFailure_;
    handler(std::string(upstreamFailureName(failure)) + ": " + detail);
  }
}

void Upstream::complete(UpstreamResult result) {
  timer_.stop();
  cancelPending();
  Callback cb = std::move(done_);
  done_ = nullptr;
  if (state_ == State::kBusy && !pipelined_.empty()) {
    // The next pipelined command's reply is awaited now, with a fresh deadline.
    expect_ = pipelined_.front().first;
    done_ = std::move(pipelined_.front().second);
    pipelined_.pop_front();
    parser_.reset();
    timer_.start(settings_.commandTimeout);
  }
  if (cb) cb(std::move(result));
}

void Upstream::failPipelined(UpstreamFailure failure, const std::string& detail) {
  // Each callback may end the owner's use of us (quit() clears the rest): one at a time.
  while (!pipelined_.empty()) {
    Callback cb = std::move(pipelined_.front().second);
    pipelined_.pop_front();
    if (cb) cb({failure, std::nullopt, detail});
  }
}

}  // namespace portcullis
