// Upstream connection to the MTA. See upstream.h.

#include "proxy/upstream.h"

#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "proxy/log.h"

namespace portcullis {
namespace {

constexpr std::size_t kHighWater = 256 * 1024;  // pump the message while output is below this
constexpr std::size_t kLowWater = 64 * 1024;    // resume pumping when output drains to this
constexpr std::size_t kChunk = 64 * 1024;

void setNoDelay(bufferevent* bev) {
  const evutil_socket_t fd = bufferevent_getfd(bev);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

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
  }
  return "unknown";
}

Upstream::Upstream(event_base* base, const UpstreamSettings& settings, std::string sessionId)
    : base_(base),
      settings_(settings),
      id_(std::move(sessionId)),
      timer_(base,
             [this] {
               if (state_ == State::kConnecting && !bev_) {
                 fail(UpstreamFailure::kConnect, "connect failed");
               } else {
                 fail(UpstreamFailure::kTimeout, "no reply in time");
               }
             }),
      alive_(std::make_shared<bool>(true)) {}

Upstream::~Upstream() { *alive_ = false; }

void Upstream::open(const XclientIdentity& identity, Callback done) {
  done_ = std::move(done);
  identity_ = identity;
  state_ = State::kConnecting;
  bev_.reset(bufferevent_socket_new(base_, -1, BEV_OPT_CLOSE_ON_FREE));
  bufferevent_setcb(bev_.get(), &Upstream::onRead, &Upstream::onWrite, &Upstream::onEvent, this);
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  timer_.start(settings_.connectTimeout);
  if (bufferevent_socket_connect(bev_.get(), settings_.address.get(),
                                 static_cast<int>(settings_.address.length)) < 0) {
    // Report through the loop, never inline: the caller is still inside open().
    bev_.reset();
    timer_.start(std::chrono::milliseconds(0));
  }
}

void Upstream::command(const std::string& line, Expect expect, Callback done) {
  if (state_ != State::kReady) {
    done_ = std::move(done);
    fail(UpstreamFailure::kClosed, "upstream not ready");
    return;
  }
  done_ = std::move(done);
  state_ = State::kBusy;
  send(line, expect, settings_.commandTimeout);
}

void Upstream::sendMessage(const Spool& spool, std::string prefix, Callback done) {
  if (state_ != State::kReady) {
    done_ = std::move(done);
    fail(UpstreamFailure::kClosed, "upstream not ready");
    return;
  }
  done_ = std::move(done);
  spool_ = &spool;
  prefix_ = std::move(prefix);
  offset_ = 0;
  stuffer_ = DotStuffer();
  state_ = State::kBusy;
  send("DATA", Expect::kData, settings_.commandTimeout);
}

void Upstream::quit() {
  if (bev_ && state_ == State::kReady) {
    // Written straight to the socket: the session is going away and will not wait for 221.
    const evutil_socket_t fd = bufferevent_getfd(bev_.get());
    if (fd >= 0) ::send(fd, "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  bev_.reset();
  timer_.stop();
  state_ = State::kBroken;
  done_ = nullptr;
}

void Upstream::send(const std::string& line, Expect expect, std::chrono::milliseconds timeout) {
  expect_ = expect;
  parser_.reset();
  evbuffer* out = bufferevent_get_output(bev_.get());
  evbuffer_add(out, line.data(), line.size());
  evbuffer_add(out, "\r\n", 2);
  spdlog::trace("{} event=upstream-send line={}", id_, logValue(line));
  timer_.start(timeout);
}

void Upstream::onRead(bufferevent*, void* self) { static_cast<Upstream*>(self)->readReplies(); }

void Upstream::onWrite(bufferevent*, void* self) {
  auto* u = static_cast<Upstream*>(self);
  if (u->state_ == State::kSending) u->pumpMessage();
}

void Upstream::onEvent(bufferevent*, short what, void* self) {
  auto* u = static_cast<Upstream*>(self);
  if (what & BEV_EVENT_CONNECTED) {
    setNoDelay(u->bev_.get());
    u->state_ = State::kOpening;
    u->step_ = OpenStep::kGreeting;
    u->expect_ = Expect::kGreeting;
    return;
  }
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    const int err = EVUTIL_SOCKET_ERROR();
    if (u->state_ == State::kConnecting) {
      u->fail(UpstreamFailure::kConnect, std::strerror(err));
    } else {
      u->fail(UpstreamFailure::kClosed,
              (what & BEV_EVENT_EOF) ? "connection closed by MTA" : std::strerror(err));
    }
  }
}

void Upstream::readReplies() {
  auto guard = alive_;
  evbuffer* in = bufferevent_get_input(bev_.get());
  char line[Reply::kMaxLineLength];
  while (evbuffer_get_length(in) > 0) {
    const bool waiting = state_ == State::kOpening || state_ == State::kBusy;
    if (!waiting) {
      char peek[64];
      const auto n = evbuffer_copyout(in, peek, sizeof peek);
      fail(UpstreamFailure::kProtocol,
           "unsolicited data from MTA: " +
               logValue(std::string_view(peek, n > 0 ? static_cast<std::size_t>(n) : 0), 64));
      return;
    }
    std::size_t eolLen = 0;
    const evbuffer_ptr eol = evbuffer_search_eol(in, nullptr, &eolLen, EVBUFFER_EOL_LF);
    if (eol.pos < 0) {
      if (evbuffer_get_length(in) >= sizeof line)
        fail(UpstreamFailure::kProtocol, "reply line too long");
      return;  // wait for the rest of the line
    }
    const auto len = static_cast<std::size_t>(eol.pos);
    if (len + 1 > sizeof line) {
      fail(UpstreamFailure::kProtocol, "reply line too long");
      return;
    }
    evbuffer_remove(in, line, len + 1);
    if (len == 0 || line[len - 1] != '\r') {
      fail(UpstreamFailure::kProtocol, "reply line without CRLF");
      return;
    }
    const auto status = parser_.feed(std::string_view(line, len - 1));
    if (status == ReplyParser::Status::kError) {
      fail(UpstreamFailure::kProtocol, "garbage reply: " + parser_.error());
      return;
    }
    if (status == ReplyParser::Status::kNeedMore) continue;
    Reply reply = parser_.take();
    // We never pipeline upstream: bytes after a complete reply answer nothing we asked.
    if (evbuffer_get_length(in) > 0) {
      fail(UpstreamFailure::kProtocol,
           "unsolicited data after reply " + std::to_string(reply.code()));
      return;
    }
    handleReply(std::move(reply));
    if (!*guard) return;
  }
}

bool Upstream::legal(Expect expect, const Reply& reply) const {
  if (reply.isNegative()) return true;
  const int c = reply.code();
  switch (expect) {
    case Expect::kGreeting:
    case Expect::kXclient:
      return c == 220 || c == 250;  // Postfix answers XCLIENT with a new 220 greeting
    case Expect::kEhlo:
    case Expect::kMail:
    case Expect::kRset:
    case Expect::kDot:
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
  spdlog::trace("{} event=upstream-reply reply={}", id_, logValue(reply.summary()));
  if (!legal(expect_, reply)) {
    fail(UpstreamFailure::kProtocol, "unexpected reply " + std::to_string(reply.code()));
    return;
  }
  if (state_ == State::kOpening) {
    openStep(std::move(reply));
    return;
  }
  if (expect_ == Expect::kData && reply.code() == 354) {
    state_ = State::kSending;
    timer_.start(settings_.dataTimeout);
    bufferevent_setwatermark(bev_.get(), EV_WRITE, kLowWater, 0);
    pumpMessage();
    return;
  }
  state_ = State::kReady;
  spool_ = nullptr;
  if (reply.closesConnection()) state_ = State::kBroken;  // 421: the MTA is going away
  complete({UpstreamFailure::kNone, std::move(reply), {}});
}

void Upstream::openStep(Reply reply) {
  if (reply.isNegative()) {
    const std::string what = step_ == OpenStep::kGreeting  ? "greeting"
                             : step_ == OpenStep::kXclient ? "XCLIENT"
                                                           : "EHLO";
    UpstreamResult r{UpstreamFailure::kRefused, reply,
                     "MTA refused " + what + ": " + reply.summary()};
    state_ = State::kBroken;
    timer_.stop();
    bev_.reset();
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
      break;
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
  state_ = State::kReady;
  complete({UpstreamFailure::kNone, std::move(reply), {}});
}

void Upstream::pumpMessage() {
  evbuffer* out = bufferevent_get_output(bev_.get());
  if (!prefix_.empty()) {
    evbuffer_add(out, prefix_.data(), prefix_.size());
    prefix_.clear();
  }
  const std::uint64_t size = spool_->size();
  std::string buf;
  while (offset_ < size && evbuffer_get_length(out) < kHighWater) {
    std::string_view chunk;
    if (spool_->inMemory()) {
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
    stuffer_.stuff(chunk, [out](std::string_view s) { evbuffer_add(out, s.data(), s.size()); });
    offset_ += chunk.size();
  }
  if (offset_ < size) return;  // onWrite resumes below the low watermark
  // A canonical message ends with CRLF; the final dot follows (RFC 5321 4.1.1.4).
  if (!stuffer_.atLineStart()) evbuffer_add(out, "\r\n", 2);
  evbuffer_add(out, ".\r\n", 3);
  bufferevent_setwatermark(bev_.get(), EV_WRITE, 0, 0);
  expect_ = Expect::kDot;
  parser_.reset();
  state_ = State::kBusy;  // the message is queued; now only the reply to the dot is awaited
}

void Upstream::fail(UpstreamFailure failure, std::string detail) {
  const bool hadCommand = static_cast<bool>(done_);
  state_ = State::kBroken;
  timer_.stop();
  bev_.reset();  // a broken exchange is never reused: closing aborts the MTA's transaction
  spool_ = nullptr;
  if (hadCommand) {
    complete({failure, std::nullopt, std::move(detail)});
  } else if (onIdleFailure_) {
    auto handler = onIdleFailure_;
    handler(std::string(upstreamFailureName(failure)) + ": " + detail);
  }
}

void Upstream::complete(UpstreamResult result) {
  timer_.stop();
  Callback cb = std::move(done_);
  done_ = nullptr;
  if (cb) cb(std::move(result));  // may destroy this
}

}  // namespace portcullis
