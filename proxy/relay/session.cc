// Session: lifecycle, client I/O, the command loop, replies, state changes, close and summary.
// Command handlers are in session_commands.cc; DATA and delivery in session_data.cc.

#include "proxy/relay/session.h"

#include <event2/buffer.h>

#include <algorithm>
#include <cstring>

#include "proxy/base/log.h"
#include "proxy/net/proxy_protocol.h"

namespace portcullis {
namespace {

constexpr std::size_t kInputHighWater = 64 * 1024;   // stop reading while this much is unparsed
constexpr std::size_t kOutputHighWater = 64 * 1024;  // stop answering while the client won't read
constexpr std::size_t kMaxTranscript = 64;
// A command line over kMaxCommandLine that still ends within this many octets (its LF
// included) is answered 500 5.5.2 and dropped, and the session goes on. This many octets with
// no LF at all is not an SMTP client: 500 5.5.6 and close, at once, rather than swallowing
// input until the command timeout. Well under kInputHighWater, so reading never stalls first.
constexpr std::size_t kMaxUnterminatedLine = 2 * kMaxCommandLine;
constexpr std::chrono::milliseconds kLingerTime{2000};
constexpr std::chrono::milliseconds kProxyHeaderTimeout{10'000};

std::string verbForSummary(std::string_view line) {
  std::string v;
  for (const char c : line) {
    if (c == ' ' || v.size() >= 10) break;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      v.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    } else {
      v.push_back('?');
    }
  }
  return v.empty() ? "?" : v;
}

}  // namespace

Session::Session(SessionHost& host, std::shared_ptr<const Config> config,
                 const ListenerConfig& listener, evutil_socket_t fd, const SocketAddress& peer,
                 const SocketAddress& local)
    : host_(host),
      config_(std::move(config)),
      listener_(&listener),
      peer_(peer),
      local_(local),
      stream_(std::make_unique<Stream>(host.base(), fd)),
      idleTimer_(host.base(),
                 [this] {
                   verb_ = "TIMEOUT";
                   reply(
                       *Reply::make(421, "4.4.2", {config_->hostname + " Error: timeout exceeded"}),
                       verb_);
                 }),
      dataTimer_(host.base(),
                 [this] {
                   reply(
                       *Reply::make(421, "4.4.2", {config_->hostname + " Error: timeout exceeded"}),
                       "DATA-TIMEOUT");
                 }),
      startTimer_(host.base(),
                  [this] {
                    delayDone_ = true;
                    maybeGreet();
                  }),
      closeTimer_(host.base(), [this] { finalize(); }),
      reapTimer_(host.base(), [this] { retiredUpstream_.clear(); }),
      guardTimer_(host.base(),
                  [this] {
                    // No PROXY header or TLS handshake in time: nothing to say, just close.
                    closeReason_ = phase_ == Phase::kProxyHeader ? "no PROXY header in time"
                                                                 : "TLS handshake timed out";
                    phase_ = Phase::kClosing;
                    finalize();
                  }),
      keepaliveTimer_(host.base(), [this] { keepalive(); }),
      started_(std::chrono::steady_clock::now()) {
  view_.id = newSessionId();
  view_.client.address = peer.host();
  view_.client.port = peer.port();
  view_.client.ipv6 = view_.client.address.find(':') != std::string::npos;
  view_.localAddress = local.host();
  view_.localPort = local.port();
  view_.hostname = config_->hostname;
  view_.limits = {config_->limits.maxMessageSize, config_->limits.maxRecipients};

  upstreamSettings_.address = config_->upstream.address;
  upstreamSettings_.identity = config_->upstream.identity;
  upstreamSettings_.hostname = config_->hostname;
  upstreamSettings_.connectTimeout = config_->upstream.connectTimeout;
  upstreamSettings_.commandTimeout = config_->upstream.commandTimeout;
  upstreamSettings_.dataTimeout = config_->timeouts.endOfData;
  upstreamSettings_.tls = config_->upstream.tls;
  upstreamSettings_.tlsContext = host.clientTls();

  ehloPolicy_.hostname = config_->hostname;
  ehloPolicy_.maxMessageSize = config_->limits.maxMessageSize;
  ehloPolicy_.offerStartTls = config_->tls.enabled() && listener.tls == TlsListenMode::kStartTls;

  chain_ =
      std::make_unique<FilterChain>(host.base(), view_.id, config_->filters, host.filterContext());
}

Session::~Session() = default;

bool Session::inTransaction() const {
  return state_ == SmtpState::kMail || state_ == SmtpState::kRcpt || state_ == SmtpState::kData ||
         phase_ == Phase::kDataDone;
}

void Session::start() {
  stream_->setCallbacks({[this] { onReadable(); }, [this] { onDrained(); },
                         [this](Stream::Event e, std::string d) { onStreamEvent(e, d); }});
  stream_->setReadLimit(kInputHighWater);
  stream_->start();
  if (spdlog::should_log(spdlog::level::info)) {  // arguments cost something; skip them too
    spdlog::info("{} event=connect client={} local={}{}", view_.id, peer_.toString(),
                 local_.toString(), listener_->proxyProtocol ? " proxy_protocol=expected" : "");
  }
  if (listener_->proxyProtocol) {
    // A trusted load balancer speaks first: the PROXY header, within a bounded time.
    phase_ = Phase::kProxyHeader;
    guardTimer_.start(kProxyHeaderTimeout);
    return;
  }
  startTransport();
}

void Session::readProxyHeader() {
  evbuffer* in = stream_->input();
  const std::size_t avail = std::min<std::size_t>(evbuffer_get_length(in), 1100);
  const auto* p = reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ssize_t>(avail)));
  const ProxyHeader h = parseProxyHeader(std::string_view(p, avail));
  if (h.status == ProxyHeader::Status::kNeedMore) return;
  guardTimer_.stop();
  if (h.status == ProxyHeader::Status::kError) {
    spdlog::warn("{} event=proxy-header-error proxy={} error={}", view_.id, peer_.toString(),
                 logValue(h.error));
    phase_ = Phase::kClosing;
    closeReason_ = "bad PROXY header: " + h.error;
    finalize();
    return;
  }
  evbuffer_drain(in, h.consumed);
  if (!h.local) {
    const std::string before = view_.client.address;
    peer_ = h.source;
    local_ = h.destination;
    view_.client.address = h.source.host();
    view_.client.port = h.source.port();
    view_.client.ipv6 = view_.client.address.find(':') != std::string::npos;
    view_.localAddress = h.destination.host();
    view_.localPort = h.destination.port();
    spdlog::info("{} event=proxy-header version={} client={} local={}", view_.id, h.version,
                 h.source.toString(), h.destination.toString());
    // Connection limits count the real client, not the load balancer.
    if (!host_.rekeyClient(before, view_.client.address)) {
      overPerIpLimit_ = true;
      // On an implicit-TLS listener the client speaks TLS from its first byte: a plaintext 421
      // would read as a broken handshake, so the refusal waits for the handshake.
      if (listener_->tls != TlsListenMode::kImplicit) {
        refuseOverPerIpLimit();
        return;
      }
    }
  }
  startTransport();
}

void Session::refuseOverPerIpLimit() {
  spdlog::warn(
      "{} event=connection-refused client={} reason=\"too many connections from your "
      "address\"",
      view_.id, peer_.toString());
  verb_ = "CONNECT";
  reply(*Reply::make(421, "4.7.0",
                     {"Error: too many connections from your address, try again later"}),
        verb_);
}

void Session::startTransport() {
  if (listener_->tls == TlsListenMode::kImplicit) {
    // RFC 8314: TLS from the first byte; the greeting waits for the handshake.
    phase_ = Phase::kTlsHandshake;
    guardTimer_.start(config_->timeouts.command);
    // Whatever came in the same read as a PROXY header is the client's ClientHello: it belongs
    // to the TLS session. (No STARTTLS here: pre-TLS bytes exist only after a PROXY header.)
    stream_->startTls(host_.serverTls()->newSsl(), true, Stream::PreTlsInput::kKeep);
    return;
  }
  phase_ = Phase::kStarting;
  beginSession();
}

void Session::beginSession() {
  if (config_->timeouts.greetingDelay.count() > 0) {
    startTimer_.start(config_->timeouts.greetingDelay);
  } else {
    delayDone_ = true;
  }
  if (config_->dns.reverseLookup && host_.resolver() != nullptr) {
    nameLookup_ = std::make_unique<ClientNameLookup>();
    nameLookup_->start(*host_.resolver(), view_.client.address,
                       [this](ReverseStatus status, std::string ptr, std::string name) {
                         view_.client.reverse = status;
                         view_.client.ptrName = std::move(ptr);
                         view_.client.name = std::move(name);
                         spdlog::debug("{} event=client-name status={} ptr={}", view_.id,
                                       reverseStatusName(status), logValue(view_.client.ptrName));
                         runConnectStage();
                       });
    return;
  }
  runConnectStage();
}

void Session::runConnectStage() {
  chain_->run(Stage::kConnect, view_, [this](ChainOutcome outcome) {
    connectDone_ = true;
    connectOutcome_ = std::move(outcome);
    maybeGreet();
  });
}

void Session::maybeGreet() {
  if (!connectDone_ || !delayDone_ || phase_ != Phase::kStarting) return;
  evbuffer* in = stream_->input();
  if (evbuffer_get_length(in) > 0) {
    // RFC 5321 3.1 / 4.3.1: the client must wait for the greeting (postscreen's PREGREET).
    spdlog::info("{} event=pregreet octets={}", view_.id, evbuffer_get_length(in));
    reply(*Reply::make(554, "5.5.1",
                       {"Error: SMTP protocol synchronization (command sent before greeting)"}),
          "CONNECT");
    close(ClosedBy::kServer, "command sent before greeting");
    return;
  }
  const ChainOutcome& o = connectOutcome_;
  if (o.kind == VerdictKind::kDiscard) discardSession_ = true;
  if (o.reply && o.reply->isNegative()) {
    reply(*o.reply, "CONNECT");
    if (o.kind == VerdictKind::kDisconnect || o.reply->closesConnection()) {
      close(ClosedBy::kServer, "rejected at connect by " + o.filter);
      return;
    }
    // RFC 5321 3.1: after a 554 greeting, wait for QUIT and answer 503 to anything else.
    rejectedAtConnect_ = true;
  } else {
    reply(*Reply::make(220, "", {config_->hostname + " ESMTP"}), "CONNECT");
  }
  greeted_ = true;
  enterState(SmtpState::kGreeted);
  commandDone();
}

// ---- client I/O ----

void Session::onReadable() {
  switch (phase_) {
    case Phase::kProxyHeader:
      readProxyHeader();
      break;
    case Phase::kIdle:
      processInput();
      break;
    case Phase::kData:
      feedData();
      break;
    case Phase::kSkipping:
      skipInput();
      break;
    case Phase::kClosing:
      evbuffer_drain(stream_->input(), evbuffer_get_length(stream_->input()));
      break;
    default:
      break;  // pipelined input waits (bounded by the stream's read limit)
  }
}

void Session::onDrained() {
  if (phase_ == Phase::kClosing) {
    if ((quit_ || stream_->eof()) && !finalized_ && evbuffer_get_length(stream_->input()) == 0) {
      // After QUIT, or after the client's FIN, nothing is unread: a plain close cannot turn
      // into a reset.
      finalize();
      return;
    }
    if (!lingering_ && !finalized_) {
      // Everything is written (and the FIN with it, see close()): give the client a moment to
      // read it, so that unread input does not turn our last reply into a reset.
      lingering_ = true;
      closeTimer_.start(kLingerTime);
    }
    return;
  }
  if (outputBlocked_) {
    outputBlocked_ = false;
    processInput();
  }
}

void Session::onStreamEvent(Stream::Event event, const std::string& detail) {
  if (event == Stream::Event::kTlsReady) {
    tlsReady();
    return;
  }
  if (event != Stream::Event::kEof && event != Stream::Event::kError) return;
  if (phase_ == Phase::kTlsHandshake) {
    spdlog::info("{} event=tls-handshake-failed client={} error={}", view_.id, peer_.toString(),
                 logValue(detail));
  }
  if (phase_ == Phase::kClosing) {
    // Our last replies may still be on their way to a client that only half-closed: onDrained
    // (or the linger timer, which close() started) finishes.
    if (event == Stream::Event::kEof && stream_->pendingOutput() > 0) return;
    finalize();
    return;
  }
  if (event == Stream::Event::kEof) {
    // A FIN may be a half-close after the client's last commands (shutdown(SHUT_WR) after
    // "...<CRLF>.<CRLF>QUIT<CRLF>"): what it sent in full is still carried out and answered,
    // as Postfix does, and the session ends after that (processInput). What it left unfinished
    // (a partial line, DATA without its final dot, a BDAT chunk) is an abort: nothing goes on.
    switch (phase_) {
      case Phase::kBusy:      // a command's filters or the MTA are still working on it
      case Phase::kDataDone:  // the message is with the filters or the MTA
        spdlog::debug("{} event=client-eof action=finish-pending", view_.id);
        return;
      case Phase::kIdle:
        processInput();
        return;
      default:
        break;
    }
  }
  closedBy_ = ClosedBy::kClient;
  phase_ = Phase::kClosing;
  closeReason_ =
      event == Stream::Event::kEof ? "client disconnected" : "client connection error: " + detail;
  finalize();
}

void Session::tlsReady() {
  guardTimer_.stop();
  view_.tls = describeTls(stream_->ssl());
  spdlog::info("{} event=tls protocol={} cipher={} bits={} resumed={}", view_.id,
               view_.tls.protocol, view_.tls.cipher, view_.tls.bits,
               view_.tls.resumed ? "yes" : "no");
  if (!greeted_) {  // implicit TLS: now the session begins
    if (overPerIpLimit_) {
      refuseOverPerIpLimit();
      return;
    }
    phase_ = Phase::kStarting;
    beginSession();
    return;
  }
  // STARTTLS: the client must start over with EHLO (RFC 3207 4.2).
  commandDone();
}

void Session::processInput() {
  if (processing_) return;
  processing_ = true;
  evbuffer* in = stream_->input();
  while (phase_ == Phase::kIdle) {
    if (stream_->pendingOutput() > kOutputHighWater) {
      outputBlocked_ = true;  // the client is not reading its replies; onWrite resumes
      break;
    }
    if (errors_ >= config_->limits.maxErrors) {
      verb_ = "ERRORS";
      reply(*Reply::make(421, "4.7.0", {config_->hostname + " Error: too many errors"}), verb_);
      break;
    }
    const std::size_t avail = evbuffer_get_length(in);
    if (avail == 0) break;
    const std::size_t want = std::min(avail, kMaxCommandLine);
    const auto* p = reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ssize_t>(want)));
    const LineScan scan = scanLine(std::string_view(p, want));
    if (scan.status == LineScan::Status::kNeedMore) break;
    if (scan.status == LineScan::Status::kTooLong) {
      // RFC 5321 4.5.3.1.4: at most 512 octets with the CRLF (4.5.3.1.10: "500 Line too long").
      const std::size_t window = std::min(avail, kMaxUnterminatedLine);
      const auto* w =
          reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ssize_t>(window)));
      const void* lf = std::memchr(w, '\n', window);
      if (lf == nullptr && avail < kMaxUnterminatedLine) break;  // it may still end in time
      verb_ = verbForSummary(std::string_view(w, window));
      idleTimer_.stop();
      if (lf == nullptr) {
        // X.5.6 is the enhanced code RFC 4954 registered for an over-long line (there, of an
        // AUTH exchange); RFC 3463 has none for a command line.
        spdlog::info("{} event=line-too-long octets={} action=close", view_.id, avail);
        reply(*Reply::make(500, "5.5.6", {"Error: line too long"}), verb_);
        close(ClosedBy::kServer, "command line without a line end");
        break;
      }
      evbuffer_drain(in, static_cast<std::size_t>(static_cast<const char*>(lf) - w) + 1);
      reply(*Reply::make(500, "5.5.2", {"Error: line too long"}), verb_);
      commandDone();
      continue;
    }
    const std::string line(scan.line);
    const bool bareLf = scan.status == LineScan::Status::kBareLf;
    evbuffer_drain(in, scan.consumed);
    idleTimer_.stop();
    verb_ = verbForSummary(line);
    if (bareLf) {
      // RFC 5321 2.3.8: lines end with CRLF. Refused, never reinterpreted.
      reply(*Reply::make(500, "5.5.2", {"Error: bare <LF> received; lines must end with <CR><LF>"}),
            verb_);
      commandDone();
      continue;
    }
    handleLine(line);
  }
  processing_ = false;
  if (phase_ == Phase::kIdle && !outputBlocked_ && stream_->eof()) {
    // The client half-closed and every command it sent in full is answered: the end. An
    // unfinished line left in the input is dropped unanswered.
    close(ClosedBy::kClient,
          evbuffer_get_length(in) > 0 ? "client disconnected mid-command" : "client disconnected");
    return;
  }
  if (!finalized_) stream_->updateReading();
}

void Session::skipInput() {
  evbuffer* in = stream_->input();
  const std::size_t n =
      static_cast<std::size_t>(std::min<std::uint64_t>(evbuffer_get_length(in), skipRemaining_));
  evbuffer_drain(in, n);
  skipRemaining_ -= n;
  if (skipRemaining_ > 0) return;
  phase_ = Phase::kIdle;
  processInput();
}

// ---- replies and state ----

void Session::reply(const Reply& r, std::string_view verb) {
  if (finalized_) return;
  stream_->write(r.wire());
  if (transcript_.size() < kMaxTranscript) {
    if (transcript_.empty()) transcript_.reserve(16);  // a whole ordinary session, one allocation
    std::string& t = transcript_.emplace_back(verb);
    t += ':';
    t += std::to_string(r.code());
  } else {
    ++transcriptDropped_;
  }
  lastReply_ = r.summary();
  if (r.code() >= 500 && r.code() <= 504) ++errors_;  // protocol errors, as smtpd counts them
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("{} event=reply verb={} reply={}", view_.id, verb, logValue(lastReply_));
  }
  if (r.closesConnection()) close(ClosedBy::kServer, lastReply_);
}

void Session::commandDone() {
  if (phase_ == Phase::kClosing) return;
  phase_ = Phase::kIdle;
  idleTimer_.start(config_->timeouts.command);
  processInput();
}

void Session::enterState(SmtpState to) {
  if (to == state_) return;
  spdlog::debug("{} event=state from={} to={}", view_.id, stateName(state_), stateName(to));
  state_ = to;
  if (to != SmtpState::kClosed && static_cast<int>(to) > static_cast<int>(furthest_)) {
    furthest_ = to;
  }
}

void Session::applyOutcome(const ChainOutcome& outcome, std::string_view verb,
                           const std::function<void()>& onContinue) {
  switch (outcome.kind) {
    case VerdictKind::kContinue:
    case VerdictKind::kAccept:
      onContinue();
      return;
    case VerdictKind::kDiscard:
      discard_ = true;
      onContinue();
      return;
    case VerdictKind::kDisconnect:
      reply(*outcome.reply, verb);
      close(ClosedBy::kServer, "disconnected by filter " + outcome.filter);
      return;
    case VerdictKind::kTempfail:
    case VerdictKind::kReject:
      reply(*outcome.reply, verb);
      commandDone();
      return;
  }
}

void Session::drain(bool force) {
  drainRequested_ = true;
  if (phase_ == Phase::kClosing) return;
  if (force || (phase_ == Phase::kIdle && !inTransaction()) || phase_ == Phase::kStarting) {
    verb_ = "SHUTDOWN";
    reply(*Reply::make(421, "4.3.2", {config_->hostname + " Service shutting down"}), verb_);
  }
}

// ---- closing ----

void Session::close(ClosedBy who, std::string reason) {
  if (phase_ == Phase::kClosing) return;
  phase_ = Phase::kClosing;
  closedBy_ = who;
  closeReason_ = std::move(reason);
  idleTimer_.stop();
  dataTimer_.stop();
  startTimer_.stop();
  enterState(SmtpState::kClosed);
  evbuffer_drain(stream_->input(), evbuffer_get_length(stream_->input()));
  // Half-close as soon as the last reply is out: the FIN travels with it in one segment.
  stream_->shutdownWrite();
  closeTimer_.start(kLingerTime);  // bounded: a client that never reads cannot hold us
  if (stream_->pendingOutput() == 0) onDrained();
}

void Session::finalize() {
  if (finalized_) return;
  finalized_ = true;
  phase_ = Phase::kClosing;
  idleTimer_.stop();
  dataTimer_.stop();
  startTimer_.stop();
  closeTimer_.stop();
  guardTimer_.stop();
  keepaliveTimer_.stop();
  stream_->stopReading();
  chain_->cancel();
  nameLookup_.reset();
  if (view_.envelope.nullSender || !view_.envelope.mailFrom.empty()) {
    chain_->notifyTransactionEnd(view_);
  }
  chain_->notifyDisconnect(view_);
  releaseUpstream();
  logSummary();
  host_.sessionClosed(this);
}

void Session::releaseUpstream() {
  // Every path that lets go of a live MTA connection comes here; the pool takes it only if
  // Upstream::reusable() says it is clean (no transaction open, no negative reply seen).
  if (!upstream_) return;
  if (!upstreamLost_ && config_->upstream.poolSize > 0) {
    host_.returnUpstream(std::move(upstream_));
  } else {
    upstream_->quit();
    retireUpstream();
  }
  upstreamTransaction_ = false;
}

void Session::logSummary() {
  if (!spdlog::should_log(spdlog::level::info)) return;
  std::string commands;
  for (const auto& t : transcript_) commands += (commands.empty() ? "" : ",") + t;
  if (transcriptDropped_) commands += ",+" + std::to_string(transcriptDropped_);
  std::string verdicts;
  for (const auto& v : chain_->records()) {
    verdicts += (verdicts.empty() ? "" : ";") + v.filter + "@" + std::string(stageName(v.stage)) +
                ":" + std::string(verdictName(v.kind));
    if (v.code) verdicts += ":" + std::to_string(v.code);
    if (v.observed) verdicts += "(observe)";
    if (v.deferred) verdicts += "(deferred)";
    if (v.error) verdicts += "(error)";
    // The reason too: from this line alone an admin sees what decided, where and why.
    if (!v.reason.empty()) {
      verdicts += "[" + (v.reason.size() > 160 ? v.reason.substr(0, 157) + "..." : v.reason) + "]";
    }
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started_)
                      .count();
  const std::string name = view_.client.name.empty() ? "unknown" : view_.client.name;
  spdlog::info(
      "{} event=session client={}[{}]:{} helo={} tls={}{} stage={} commands={} messages={} "
      "closed_by={} quit={} duration={}.{:03d}s{}{}{}",
      view_.id, name, view_.client.address, view_.client.port, logValue(view_.helo),
      view_.tls.active ? view_.tls.protocol : "no",
      view_.tls.active ? " tls_cipher=" + view_.tls.cipher : "", stateName(furthest_),
      logValue(commands, 2048), delivered_, closedBy_ == ClosedBy::kClient ? "client" : "server",
      quit_ ? "yes" : "no", ms / 1000, static_cast<int>(ms % 1000),
      verdicts.empty() ? "" : " verdicts=" + logValue(verdicts, 2048),
      closeReason_.empty() ? "" : " reason=" + logValue(closeReason_),
      lastReply_.empty() ? "" : " last_reply=" + logValue(lastReply_));
}

}  // namespace portcullis
