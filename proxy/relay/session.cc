// Session: lifecycle, client I/O, the command loop, replies, state changes, close and summary.
// Command handlers are in session_commands.cc; DATA and delivery in session_data.cc.

#include "proxy/relay/session.h"

#include <algorithm>
#include <charconv>

#include "proxy/admin/refusal_ring.h"
#include "proxy/base/log.h"
#include "proxy/base/reference.h"
#include "proxy/net/proxy_protocol.h"

namespace portcullis {
namespace {

constexpr std::size_t kInputHighWater = 64 * 1024;   // stop reading while this much is unparsed
constexpr std::size_t kOutputHighWater = 64 * 1024;  // stop answering while the client won't read
// At most this many replies wait behind one the MTA still owes (RFC 2920 pipelining); then
// no more commands are read until it comes, so a fast client cannot queue work without bound.
constexpr std::size_t kMaxOwedReplies = 64;
// A command line over kMaxCommandLine that still ends within this many octets (its LF
// included) is answered 500 5.5.2 and dropped, and the session goes on. This many octets with
// no LF at all is not an SMTP client: 500 5.5.6 and close, at once, rather than swallowing
// input until the command timeout. Well under kInputHighWater, so reading never stalls first.
constexpr std::size_t kMaxUnterminatedLine = 2 * kMaxCommandLine;
constexpr std::chrono::milliseconds kLingerTime{2000};
constexpr std::size_t kMaxLogged = 1000;  // RCPT outcomes one transaction line records
constexpr std::chrono::milliseconds kProxyHeaderTimeout{10'000};

SessionRecord freshView() {
  SessionRecord v;
  v.id = newSessionId();
  return v;
}

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

// Reply::wire(), written piece by piece into the stream's output buffer: the same bytes
// without a temporary string for every reply longer than the small-string buffer.
void writeWire(ByteStream& out, const Reply& r) {
  char code[4];
  std::to_chars(code, code + 3, r.code());  // always three digits: Reply holds a valid code
  const std::vector<std::string>& lines = r.lines();
  for (std::size_t i = 0; i < lines.size(); ++i) {
    code[3] = i + 1 < lines.size() ? '-' : ' ';
    out.write(std::string_view(code, sizeof code));
    if (!r.enhanced().empty()) {
      out.write(r.enhanced());
      if (!lines[i].empty()) out.write(" ");
    }
    out.write(lines[i]);
    out.write("\r\n");
  }
}

}  // namespace

namespace {

UpstreamLinkSettings linkSettings(const Config& config, std::shared_ptr<const TlsContext> tls) {
  UpstreamLinkSettings s;
  s.upstream.address = config.upstream.address;
  s.upstream.identity = config.upstream.identity;
  s.upstream.hostname = config.hostname;
  s.upstream.connectTimeout = config.upstream.connectTimeout;
  s.upstream.commandTimeout = config.upstream.commandTimeout;
  s.upstream.dataTimeout = config.timeouts.endOfData;
  s.upstream.tls = config.upstream.tls;
  s.upstream.tlsContext = std::move(tls);
  s.upstream.chunking = config.upstream.chunking;
  s.upstream.pipelining = config.upstream.pipelining;
  s.pooling = poolLimit(config) > 0;
  s.keepalive = config.upstream.keepaliveInterval;
  return s;
}

}  // namespace

Session::Session(SessionHost& host, std::shared_ptr<const Config> config,
                 const ListenerConfig& listener, std::unique_ptr<ByteStream> stream,
                 const SocketAddress& peer, const SocketAddress& local)
    : host_(host),
      config_(std::move(config)),
      listener_(&listener),
      serverTls_(host.serverTls()),
      view_(freshView()),
      peer_(peer),
      stream_(std::move(stream)),
      timer_(host.dispatcher(), [this] { onDeadline(); }),
      link_(host, linkSettings(*config_, host.clientTls()), view_.id,
            [this] { return identity(); }),
      started_(host.dispatcher().now()),
      summary_(started_) {
  view_.client.address = peer.host();
  view_.client.port = peer.port();
  view_.client.ipv6 = view_.client.address.find(':') != std::string::npos;
  view_.localAddress = local.host();
  view_.localPort = local.port();
  view_.hostname = config_->hostname;
  view_.limits = {config_->limits.maxMessageSize, config_->limits.maxRecipients};

  ehloPolicy_.hostname = config_->hostname;
  ehloPolicy_.maxMessageSize = config_->limits.maxMessageSize;
  ehloPolicy_.offerStartTls = config_->tls.enabled() && listener.tls == TlsListenMode::kStartTls;

  chain_ = std::make_unique<FilterChain>(host.dispatcher(), view_.id, config_->filters,
                                         host.filterContext());
  if (spdlog::should_log(spdlog::level::info)) {  // arguments cost something; skip them too
    spdlog::info("{} event=connect client={} local={}{}{}", view_.id, peer.toString(),
                 local.toString(), listener.proxyProtocol ? " proxy_protocol=expected" : "",
                 host.logTag());
  }
}

Session::~Session() = default;

std::string_view Session::phaseName(Phase p) {
  switch (p) {
    case Phase::kProxyHeader:
      return "proxy-header";
    case Phase::kTlsHandshake:
      return "tls-handshake";
    case Phase::kStarting:
      return "starting";
    case Phase::kIdle:
      return "idle";
    case Phase::kBusy:
      return "busy";
    case Phase::kData:
      return "data";
    case Phase::kDataDone:
      return "data-done";
    case Phase::kSkipping:
      return "skipping";
    case Phase::kClosing:
      return "closing";
    case Phase::kFinished:
      return "finished";
  }
  return "unknown";
}

bool Session::inTransaction() const {
  return state_ == SmtpState::kMail || state_ == SmtpState::kRcpt || state_ == SmtpState::kData ||
         phase_ == Phase::kDataDone;
}

void Session::start() {
  stream_->setCallbacks(
      {[this] { onReadable(); }, [this] { onDrained(); },
       [this](ByteStream::Event e, const std::string& d) { onStreamEvent(e, d); }});
  stream_->setReadLimit(kInputHighWater);
  stream_->start();
  if (listener_->proxyProtocol) {
    // A trusted load balancer speaks first: the PROXY header, within a bounded time.
    enter(Phase::kProxyHeader);
    timer_.start(kProxyHeaderTimeout);
    return;
  }
  startTransport();
}

void Session::readProxyHeader() {
  InputBuffer& in = stream_->input();
  const ProxyHeader h = parseProxyHeader(in.view().substr(0, 1100));
  if (h.status == ProxyHeader::Status::kNeedMore) return;
  timer_.stop();
  if (h.status == ProxyHeader::Status::kError) {
    spdlog::warn("{} event=proxy-header-error proxy={} error={}", view_.id, peer_.toString(),
                 logValue(h.error));
    summary_.reason("bad PROXY header: " + h.error);
    finalize();
    return;
  }
  in.drain(h.consumed);
  if (!h.local) {
    const std::string before = view_.client.address;
    peer_ = h.source;
    view_.client.address = h.source.host();
    view_.client.port = h.source.port();
    view_.client.ipv6 = view_.client.address.find(':') != std::string::npos;
    view_.localAddress = h.destination.host();
    view_.localPort = h.destination.port();
    spdlog::info("{} event=proxy-header version={} client={} local={}", view_.id, h.version,
                 h.source.toString(), h.destination.toString());
    // Connection limits count the real client, not the load balancer.
    if (!host_.rekeyClient(before, view_.client.address)) {
      opening_.overPerIpLimit = true;
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
  flags_.end = SessionEnd::kRejected;
  reply(*Reply::make(421, "4.7.0",
                     {"Error: too many connections from your address, try again later"}),
        verb_, ReplySource::local("too many connections from this address"));
}

void Session::startTransport() {
  if (listener_->tls == TlsListenMode::kImplicit) {
    // RFC 8314: TLS from the first byte; the greeting waits for the handshake.
    enter(Phase::kTlsHandshake);
    timer_.start(config_->timeouts.command);
    // Whatever came in the same read as a PROXY header is the client's ClientHello: it belongs
    // to the TLS session. (No STARTTLS here: pre-TLS bytes exist only after a PROXY header.)
    stream_->startTls(serverTls_->newSsl(), true, ByteStream::PreTlsInput::kKeep);
    return;
  }
  enter(Phase::kStarting);
  beginSession();
}

void Session::beginSession() {
  if (config_->timeouts.greetingDelay.count() > 0) {
    timer_.start(config_->timeouts.greetingDelay);
  } else {
    opening_.delayDone = true;
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
    opening_.connectDone = true;
    opening_.connectOutcome = std::move(outcome);
    maybeGreet();
  });
}

void Session::maybeGreet() {
  if (!opening_.connectDone || !opening_.delayDone || phase_ != Phase::kStarting) return;
  if (const std::size_t early = stream_->input().size(); early > 0) {
    // RFC 5321 3.1 / 4.3.1: the client must wait for the greeting (postscreen's PREGREET).
    spdlog::info("{} event=pregreet octets={}", view_.id, early);
    reply(*Reply::make(554, "5.5.1",
                       {"Error: SMTP protocol synchronization (command sent before greeting)"}),
          "CONNECT", ReplySource::local("pregreet: command sent before the greeting"));
    close(SessionSummary::ClosedBy::kServer, "command sent before greeting");
    return;
  }
  const ChainOutcome& o = opening_.connectOutcome;
  if (o.kind == VerdictKind::kDiscard) discard(o);
  if (o.reply && o.reply->isNegative()) {
    reply(*o.reply, "CONNECT", ReplySource::filterVerdict(o.filter, o.reason));
    if (o.kind == VerdictKind::kDisconnect || o.reply->closesConnection()) {
      flags_.end = SessionEnd::kRejected;
      close(SessionSummary::ClosedBy::kServer, "rejected at connect by " + o.filter);
      return;
    }
    // RFC 5321 3.1: after a 554 greeting, wait for QUIT and answer 503 to anything else.
    opening_.rejected = true;
  } else {
    reply(sharedGreeting(config_->hostname), "CONNECT");
  }
  opening_.greeted = true;
  enter(SmtpState::kGreeted);
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
      stream_->input().clear();
      break;
    default:
      break;  // pipelined input waits (bounded by the stream's read limit)
  }
}

void Session::onDrained() {
  if (phase_ == Phase::kClosing) {
    if (pipe_.closeWaiting) return;  // owed replies are still to come
    if ((summary_.quitSeen() || stream_->eof()) && stream_->input().empty()) {
      // After QUIT, or after the client's FIN, nothing is unread: a plain close cannot turn
      // into a reset.
      finalize();
      return;
    }
    if (!input_.lingering) {
      // Everything is written (and the FIN with it, see close()): give the client a moment to
      // read it, so that unread input does not turn our last reply into a reset.
      input_.lingering = true;
      timer_.start(kLingerTime);
    }
    return;
  }
  if (input_.outputBlocked) {
    input_.outputBlocked = false;
    processInput();
  }
}

void Session::onDeadline() {
  // One timer, and what running out of time means depends on what the session is doing.
  switch (phase_) {
    case Phase::kProxyHeader:
    case Phase::kTlsHandshake:
      // No PROXY header or TLS handshake in time: nothing to say, just close.
      summary_.reason(phase_ == Phase::kProxyHeader ? "no PROXY header in time"
                                                    : "TLS handshake timed out");
      if (phase_ == Phase::kTlsHandshake) coreStats().tlsHandshakeFailed();
      flags_.end = SessionEnd::kTimeout;
      finalize();
      return;
    case Phase::kStarting:
      opening_.delayDone = true;
      maybeGreet();
      return;
    case Phase::kIdle:
    case Phase::kSkipping:
      verb_ = "TIMEOUT";
      reply(*Reply::make(421, "4.4.2", {config_->hostname + " Error: timeout exceeded"}), verb_,
            ReplySource::local("timeout waiting for a command after " +
                               std::string(summary_.lastVerb())));
      return;
    case Phase::kData:
      reply(*Reply::make(421, "4.4.2", {config_->hostname + " Error: timeout exceeded"}),
            "DATA-TIMEOUT", ReplySource::local("timeout waiting for message data"));
      return;
    case Phase::kClosing:
      finalize();  // the client did not read our last words in time
      return;
    case Phase::kBusy:
    case Phase::kDataDone:
    case Phase::kFinished:
      return;
  }
}

void Session::onStreamEvent(ByteStream::Event event, const std::string& detail) {
  if (event == ByteStream::Event::kTlsReady) {
    tlsReady();
    return;
  }
  if (event != ByteStream::Event::kEof && event != ByteStream::Event::kError) return;
  if (phase_ == Phase::kTlsHandshake) {
    coreStats().tlsHandshakeFailed();
    spdlog::info("{} event=tls-handshake-failed client={} error={}", view_.id, peer_.toString(),
                 logValue(detail));
  }
  if (phase_ == Phase::kClosing) {
    // Our last replies may still be on their way to a client that only half-closed: onDrained
    // (or the linger timer, which close() started) finishes.
    if (event == ByteStream::Event::kEof && (stream_->pendingOutput() > 0 || pipe_.closeWaiting)) {
      return;
    }
    finalize();
    return;
  }
  if (event == ByteStream::Event::kEof) {
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
  summary_.closed(SessionSummary::ClosedBy::kClient, event == ByteStream::Event::kEof
                                                         ? "client disconnected"
                                                         : "client connection error: " + detail);
  finalize();
}

void Session::tlsReady() {
  timer_.stop();
  view_.tls = describeTls(stream_->ssl());
  coreStats().tlsHandshake(view_.tls.protocol);
  spdlog::info("{} event=tls protocol={} cipher={} bits={} resumed={}", view_.id,
               view_.tls.protocol, view_.tls.cipher, view_.tls.bits,
               view_.tls.resumed ? "yes" : "no");
  if (!opening_.greeted) {  // implicit TLS: now the session begins
    if (opening_.overPerIpLimit) {
      refuseOverPerIpLimit();
      return;
    }
    enter(Phase::kStarting);
    beginSession();
    return;
  }
  // STARTTLS: the client must start over with EHLO (RFC 3207 4.2).
  commandDone();
}

void Session::processInput() {
  if (input_.processing) return;
  input_.processing = true;
  InputBuffer& in = stream_->input();
  while (phase_ == Phase::kIdle) {
    if (stream_->pendingOutput() > kOutputHighWater) {
      input_.outputBlocked = true;  // the client is not reading its replies; onDrained resumes
      break;
    }
    if (pipe_.owed.size() >= kMaxOwedReplies) {
      input_.owedBlocked = true;  // replies queue behind one the MTA owes; settle resumes
      break;
    }
    if (input_.errors >= config_->limits.maxErrors) {
      verb_ = "ERRORS";
      reply(*Reply::make(421, "4.7.0", {config_->hostname + " Error: too many errors"}), verb_,
            ReplySource::local("too many errors (limits.max_errors)"));
      break;
    }
    const std::string_view unread = in.view();
    const std::size_t avail = unread.size();
    if (avail == 0) break;
    const LineScan scan = scanLine(unread.substr(0, kMaxCommandLine));
    if (scan.status == LineScan::Status::kNeedMore) break;
    if (scan.status == LineScan::Status::kTooLong) {
      // RFC 5321 4.5.3.1.4: at most 512 octets with the CRLF (4.5.3.1.10: "500 Line too long").
      const std::string_view window = unread.substr(0, kMaxUnterminatedLine);
      const std::size_t lf = window.find('\n');
      if (lf == std::string_view::npos && avail < kMaxUnterminatedLine) break;  // may still end
      verb_ = verbForSummary(window);
      timer_.stop();
      if (lf == std::string_view::npos) {
        // X.5.6 is the enhanced code RFC 4954 registered for an over-long line (there, of an
        // AUTH exchange); RFC 3463 has none for a command line.
        spdlog::info("{} event=line-too-long octets={} action=close", view_.id, avail);
        reply(*Reply::make(500, "5.5.6", {"Error: line too long"}), verb_,
              ReplySource::local("command line without a line end"));
        close(SessionSummary::ClosedBy::kServer, "command line without a line end");
        break;
      }
      in.drain(lf + 1);
      reply(*Reply::make(500, "5.5.2", {"Error: line too long"}), verb_,
            ReplySource::local("command line over 512 octets"));
      commandDone();
      continue;
    }
    input_.line.assign(scan.line);
    const std::string_view line = input_.line;
    const bool bareLf = scan.status == LineScan::Status::kBareLf;
    in.drain(scan.consumed);
    timer_.stop();
    verb_ = verbForSummary(line);
    if (bareLf) {
      // RFC 5321 2.3.8: lines end with CRLF. Refused, never reinterpreted.
      reply(*Reply::make(500, "5.5.2", {"Error: bare <LF> received; lines must end with <CR><LF>"}),
            verb_, ReplySource::local("bare LF in a command line"));
      commandDone();
      continue;
    }
    handleLine(line);
  }
  input_.processing = false;
  if (phase_ == Phase::kIdle && !input_.outputBlocked && stream_->eof()) {
    // The client half-closed and every command it sent in full is answered: the end. An
    // unfinished line left in the input is dropped unanswered.
    close(SessionSummary::ClosedBy::kClient,
          in.empty() ? "client disconnected" : "client disconnected mid-command");
    return;
  }
  if (phase_ != Phase::kFinished) stream_->updateReading();
}

void Session::skipInput() {
  InputBuffer& in = stream_->input();
  const std::size_t n =
      static_cast<std::size_t>(std::min<std::uint64_t>(in.size(), input_.skipRemaining));
  in.drain(n);
  input_.skipRemaining -= n;
  if (input_.skipRemaining > 0) return;
  commandDone();
}

// ---- replies and state ----

void Session::reply(const Reply& r, std::string_view verb, const ReplySource& source) {
  if (phase_ == Phase::kFinished) return;
  coreStats().reply(verb, r.code());
  if (r.isNegative()) {
    processRefusals().record(RefusalRing::stageOf(verb),
                             std::chrono::duration_cast<std::chrono::minutes>(
                                 host_.dispatcher().now().time_since_epoch())
                                 .count());
    // Our own refusals carry a reference the admin can look up; the MTA's are relayed as they
    // are. Either way the refusal gets its event=reject line.
    std::string ref;
    if (source.who != ReplySource::Who::kMta && config_->reply.reference) ref = newReference();
    const Reply sent = ref.empty() ? r : withReference(r, ref);
    logReject(view_, sent, verb, source, ref);
    emit(sent);
    summary_.reply(verb, sent);
    noteInTransaction(sent, verb, source);
  } else {
    // A discard verdict's 250: the message is dropped, and this is its record.
    if (verb == "." && source.who == ReplySource::Who::kFilter) {
      logReject(view_, r, verb, source, "", "discard");
    }
    emit(r);
    summary_.reply(verb, r);
    noteInTransaction(r, verb, source);
  }
  if (r.code() >= 500 && r.code() <= 504) ++input_.errors;  // protocol errors, as smtpd counts
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("{} event=reply verb={} reply={}", view_.id, verb,
                  logValue(summary_.lastReply()));
  }
  if (r.closesConnection()) close(SessionSummary::ClosedBy::kServer, summary_.lastReply());
}

void Session::emit(const Reply& r) {
  if (pipe_.filling) {  // the reply the MTA owed for this entry
    Owed& o = pipe_.owed[*pipe_.filling - pipe_.front];
    o.reply = r;
    o.ready = true;
    pipe_.filling.reset();
    return;
  }
  if (!pipe_.owed.empty()) {  // its turn comes after the replies still owed
    pipe_.owed.push_back({true, r});
    return;
  }
  writeWire(*stream_, r);
  // A reply to the command just read, with nothing pipelined behind it: out now, ahead of the
  // bookkeeping after it. A 221 or 421 waits, to leave with the FIN in one segment (close).
  if (stream_->input().empty() && WritesToCome::queued == 0 && !r.closesConnection() &&
      !summary_.quitSeen()) {
    stream_->sendNow();
  }
}

bool Session::mayPipeline() const {
  return config_->upstream.pipelining && !stream_->input().empty() && phase_ == Phase::kBusy;
}

std::uint64_t Session::owe() {
  pipe_.owed.emplace_back();
  ++pipe_.awaiting;
  return pipe_.front + pipe_.owed.size() - 1;
}

void Session::settle(std::uint64_t slot, FunctionRef<void()> handle) {
  pipe_.filling = slot;
  handle();
  if (pipe_.filling) {  // nothing was said (the session is over): nothing to write either
    pipe_.owed[slot - pipe_.front].ready = true;
    pipe_.filling.reset();
  }
  --pipe_.awaiting;
  while (!pipe_.owed.empty() && pipe_.owed.front().ready) {
    if (pipe_.owed.front().reply && phase_ != Phase::kFinished) {
      writeWire(*stream_, *pipe_.owed.front().reply);
    }
    pipe_.owed.pop_front();
    ++pipe_.front;
  }
  if (input_.owedBlocked && pipe_.owed.size() < kMaxOwedReplies && phase_ == Phase::kIdle) {
    input_.owedBlocked = false;
    processInput();
  }
  if (pipe_.awaiting > 0 || phase_ == Phase::kFinished) return;
  if (pipe_.closeWaiting) {
    pipe_.closeWaiting = false;
    finishClose();
    return;
  }
  if (pipe_.held && phase_ == Phase::kBusy) {
    const std::string line = std::move(*pipe_.held);
    pipe_.held.reset();
    verb_ = verbForSummary(line);
    handleLine(line);
  }
}

void Session::noteInTransaction(const Reply& r, std::string_view verb, const ReplySource& source) {
  if (!txn_) return;
  TransactionLog& t = txn_->log;
  if (verb == "MAIL") {
    t.mailAccepted = r.isPositive();
  } else if (verb == "RCPT" && !source.recipient.empty() && t.recipients.size() < kMaxLogged) {
    t.recipients.push_back({std::string(source.recipient), r.code(), std::string(source.by())});
  } else if (verb == ".") {
    t.endCode = r.code();
    t.endBy = source.by();
    t.endReply = r.summary();
    t.discarded = txn_->discard;
    if (source.who == ReplySource::Who::kMta && r.isPositive()) t.queuedAs = queueIdFromReply(r);
  }
}

void Session::commandDone() {
  if (phase_ == Phase::kClosing || phase_ == Phase::kFinished) return;
  enter(Phase::kIdle);
  timer_.start(config_->timeouts.command);
  processInput();
}

void Session::enter(SmtpState to) {
  if (to == state_) return;
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("{} event=state from={} to={}", view_.id, stateName(state_), stateName(to));
  }
  state_ = to;
  summary_.reached(to);
}

void Session::enter(Phase to) {
  if (to == phase_) return;
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("{} event=phase from={} to={}", view_.id, phaseName(phase_), phaseName(to));
  }
  phase_ = to;
  timer_.stop();  // a deadline belongs to one phase; the caller arms the next one's
}

void Session::applyOutcome(const ChainOutcome& outcome, std::string_view verb,
                           FunctionRef<void()> onContinue, std::string_view recipient) {
  const ReplySource source = ReplySource::filterVerdict(outcome.filter, outcome.reason, recipient);
  switch (outcome.kind) {
    case VerdictKind::kContinue:
    case VerdictKind::kAccept:
      onContinue();
      return;
    case VerdictKind::kDiscard:
      discard(outcome);
      onContinue();
      return;
    case VerdictKind::kDisconnect:
      flags_.end = SessionEnd::kRejected;
      reply(*outcome.reply, verb, source);
      close(SessionSummary::ClosedBy::kServer, "disconnected by filter " + outcome.filter);
      return;
    case VerdictKind::kTempfail:
    case VerdictKind::kReject:
      reply(*outcome.reply, verb, source);
      commandDone();
      return;
  }
}

void Session::drain(bool force) {
  flags_.drainRequested = true;
  if (phase_ == Phase::kClosing || phase_ == Phase::kFinished) return;
  if (force || (phase_ == Phase::kIdle && !inTransaction()) || phase_ == Phase::kStarting) {
    verb_ = "SHUTDOWN";
    reply(*Reply::make(421, "4.3.2", {config_->hostname + " Service shutting down"}), verb_,
          ReplySource::local("shutting down"));
  }
}

// ---- closing ----

void Session::close(SessionSummary::ClosedBy who, std::string reason) {
  if (phase_ == Phase::kClosing || phase_ == Phase::kFinished) return;
  enter(Phase::kClosing);
  summary_.closed(who, std::move(reason));
  enter(SmtpState::kClosed);
  stream_->input().clear();
  pipe_.held.reset();
  timer_.start(kLingerTime);  // bounded: a client that never reads cannot hold us
  if (pipe_.awaiting > 0) {
    // Replies owed for pipelined commands go first: the wait is the MTA's command timeout
    // (its connection fails then, and so each owed reply is settled), plus the linger time.
    pipe_.closeWaiting = true;
    timer_.start(config_->upstream.commandTimeout + kLingerTime);
    return;
  }
  finishClose();
}

void Session::finishClose() {
  // Half-close as soon as the last reply is out: the FIN travels with it in one segment.
  stream_->shutdownWrite();
  timer_.start(kLingerTime);
  if (stream_->pendingOutput() == 0) onDrained();
}

void Session::finalize() {
  if (phase_ == Phase::kFinished) return;
  enter(Phase::kFinished);
  stream_->stopReading();
  chain_->cancel();
  nameLookup_.reset();
  if (view_.envelope.nullSender || !view_.envelope.mailFrom.empty()) {
    chain_->notifyTransactionEnd(view_);
  }
  chain_->notifyDisconnect(view_);
  logTransactionEnd();
  link_.release();
  summary_.log(view_, chain_->records(), host_.dispatcher().now());
  coreStats().sessionEnded(howEnded());
  host_.sessionClosed(this);
}

SessionEnd Session::howEnded() const {
  if (summary_.quitSeen()) return SessionEnd::kQuit;
  if (flags_.end) return *flags_.end;
  const std::string_view last = summary_.lastVerb();
  if (last == "TIMEOUT" || last == "DATA-TIMEOUT") return SessionEnd::kTimeout;
  const bool byClient = summary_.closedBy() == SessionSummary::ClosedBy::kClient;
  // The drain's 421: at once when idle (SHUTDOWN), or to the next command (session_commands).
  if (last == "SHUTDOWN" || (flags_.drainRequested && !byClient)) return SessionEnd::kShutdown;
  if (byClient) return SessionEnd::kClientClosed;
  return SessionEnd::kError;
}

}  // namespace portcullis
