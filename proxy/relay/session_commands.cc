// Session: command handlers (EHLO/HELO, MAIL, RCPT, RSET, NOOP, VRFY, HELP, QUIT, STARTTLS)
// and the upstream relationship (lazy open, failure handling).

#include <event2/buffer.h>

#include <charconv>
#include <limits>

#include "proxy/base/log.h"
#include "proxy/relay/session.h"

namespace portcullis {
namespace {

Reply make(int code, std::string_view enhanced, std::string text) {
  return *Reply::make(code, enhanced, {std::move(text)});
}

}  // namespace

void Session::handleLine(std::string_view line) {
  if (rejectedAtConnect_) {
    // RFC 5321 3.1: after a 554 greeting only QUIT gets a normal answer.
    if (verb_ == "QUIT") {
      onQuit();
    } else {
      reply(make(503, "5.5.1", "Error: access denied; send QUIT"), verb_);
      commandDone();
    }
    return;
  }
  ParseResult parsed = parseCommand(line);
  if (auto* err = std::get_if<Reply>(&parsed)) {
    reply(*err, verb_);
    commandDone();
    return;
  }
  Command c = std::move(std::get<Command>(parsed));
  if (drainRequested_ && !inTransaction() && c.verb != Verb::kQuit) {
    reply(make(421, "4.3.2", config_->hostname + " Service shutting down"), verb_);
    return;
  }
  if (upstreamLost_ && inTransaction() && (c.verb == Verb::kRcpt || c.verb == Verb::kData)) {
    // The MTA dropped the transaction under us: nothing sensible can follow but a retry.
    reply(make(421, "4.4.2", config_->hostname + " Error: lost connection to mail server"), verb_);
    return;
  }
  if (auto e = checkSequence(state_, c.verb)) {
    reply(*e, verb_);
    if (c.verb == Verb::kBdat && c.chunkSize > 0 && phase_ != Phase::kClosing) {
      // BDAT is not offered, but its chunk follows the command at once: skip it, so that the
      // chunk's bytes are never read as commands.
      phase_ = Phase::kSkipping;
      skipRemaining_ = c.chunkSize;
      idleTimer_.start(config_->timeouts.command);
      skipInput();
      return;
    }
    commandDone();
    return;
  }
  phase_ = Phase::kBusy;
  dispatch(std::move(c));
}

void Session::dispatch(Command c) {
  switch (c.verb) {
    case Verb::kEhlo:
    case Verb::kHelo:
      onHelo(std::move(c));
      return;
    case Verb::kMail:
      onMail(std::move(c));
      return;
    case Verb::kRcpt:
      onRcpt(std::move(c));
      return;
    case Verb::kData:
      onData();
      return;
    case Verb::kRset:
      onRset();
      return;
    case Verb::kQuit:
      onQuit();
      return;
    case Verb::kStartTls:
      onStartTls();
      return;
    case Verb::kNoop:
      reply(make(250, "2.0.0", "Ok"), verb_);
      break;
    case Verb::kVrfy:
      // DESIGN: answer VRFY locally, never probe the MTA (no address harvesting through us).
      reply(make(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"),
            verb_);
      break;
    case Verb::kHelp:
      reply(make(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"),
            verb_);
      break;
    default:
      reply(make(502, "5.5.1", "Error: command not implemented"), verb_);
      break;
  }
  commandDone();
}

void Session::onHelo(Command c) {
  // RFC 5321 4.1.4: EHLO in the middle of a transaction resets it, as RSET would.
  if (inTransaction()) {
    endTransaction();
    enterState(SmtpState::kReady);
  }
  const bool esmtp = c.verb == Verb::kEhlo;
  view_.helo = c.argument;
  view_.esmtp = esmtp;
  const std::string verb = verb_;
  chain_->run(Stage::kHelo, view_, [this, esmtp, verb](ChainOutcome o) {
    if (o.kind == VerdictKind::kDiscard) discardSession_ = true;  // every transaction
    applyOutcome(o, verb, [this, esmtp, verb] {
      EhloPolicy policy = ehloPolicy_;
      policy.offerStartTls = policy.offerStartTls && !view_.tls.active;  // RFC 3207 4.2
      reply(esmtp ? buildEhloReply(policy, host_.upstreamCapabilities()) : buildHeloReply(policy),
            verb);
      enterState(nextState(state_, Verb::kEhlo, 250));
      commandDone();
    });
  });
}

void Session::onMail(Command c) {
  if (config_->tls.require && !view_.tls.active) {
    reply(make(530, "5.7.0", "Must issue a STARTTLS command first"), verb_);
    commandDone();
    return;
  }
  if (c.nonAscii && !c.param("SMTPUTF8")) {
    reply(make(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8"), verb_);
    commandDone();
    return;
  }
  if (c.param("SMTPUTF8") && !host_.upstreamCapabilities().smtputf8) {
    reply(make(555, "5.5.4", "Error: SMTPUTF8 is not supported"), verb_);
    commandDone();
    return;
  }
  Envelope& env = view_.envelope;
  env = Envelope{};
  env.nullSender = c.nullPath;
  env.mailFrom = c.address;
  for (const auto& p : c.params) env.mailParams.push_back(p.wire());
  if (const EsmtpParam* size = c.param("SIZE")) {
    // Up to 20 digits (RFC 1870): anything past 2^64-1 is simply "too big".
    std::uint64_t n = 0;
    const auto [p, ec] =
        std::from_chars(size->value.data(), size->value.data() + size->value.size(), n);
    env.declaredSize = ec == std::errc() ? n : std::numeric_limits<std::uint64_t>::max();
  }
  env.smtputf8 = c.param("SMTPUTF8") != nullptr;
  discard_ = discardSession_;

  chain_->run(Stage::kMailFrom, view_, [this, line = mailCommandLine(c)](ChainOutcome o) {
    if (o.kind == VerdictKind::kReject || o.kind == VerdictKind::kTempfail) endTransaction();
    applyOutcome(o, "MAIL", [this, line] {
      if (discard_) {
        reply(make(250, "2.1.0", "Ok"), "MAIL");
        enterState(SmtpState::kMail);
        commandDone();
        return;
      }
      withUpstream([this, line] { sendMail(line, true); }, "MAIL");
    });
  });
}

void Session::sendMail(const std::string& line, bool mayRetry) {
  // A pooled connection the MTA closed while it sat idle shows up only now (with identity
  // none nothing was said on it yet): one retry on a fresh connection, unseen by the client.
  const bool pooled = upstream_->reused() && !upstream_->usedBySession();
  upstream_->markUsedBySession();
  upstream_->command(line, Expect::kMail, [this, line, mayRetry, pooled](UpstreamResult r) {
    if (!r.ok()) {
      if (pooled && mayRetry && r.failure == UpstreamFailure::kClosed) {
        spdlog::debug("{} event=pooled-connection-failed detail={}", view_.id, logValue(r.detail));
        retireUpstream();
        openUpstream([this, line] { sendMail(line, false); }, "MAIL");
        return;
      }
      upstreamFailed(r, "MAIL", false);
      return;
    }
    if (r.reply->isPositive()) {
      upstreamTransaction_ = true;
    } else {
      endTransaction();
    }
    reply(withEnhancedCode(*r.reply, "2.1.0"), "MAIL");
    enterState(nextState(state_, Verb::kMail, r.reply->code()));
    commandDone();
  });
}

void Session::onRcpt(Command c) {
  if (c.nonAscii && !view_.envelope.smtputf8) {
    reply(make(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8"), verb_);
    commandDone();
    return;
  }
  view_.envelope.currentRecipient = c.address;
  view_.envelope.currentRecipientParams.clear();
  for (const auto& p : c.params) view_.envelope.currentRecipientParams.push_back(p.wire());

  chain_->run(Stage::kRcptTo, view_,
              [this, line = rcptCommandLine(c), address = c.address](ChainOutcome o) {
                applyOutcome(o, "RCPT", [this, line, address] {
                  if (discard_) {
                    view_.envelope.recipients.push_back(address);
                    view_.envelope.currentRecipient.clear();
                    reply(make(250, "2.1.5", "Ok"), "RCPT");
                    enterState(SmtpState::kRcpt);
                    commandDone();
                    return;
                  }
                  if (!upstream_ || !upstream_->ready()) {
                    upstreamFailed({UpstreamFailure::kClosed, std::nullopt, "not connected"},
                                   "RCPT", false);
                    return;
                  }
                  upstream_->command(line, Expect::kRcpt, [this, address](UpstreamResult r) {
                    if (!r.ok()) {
                      upstreamFailed(r, "RCPT", false);
                      return;
                    }
                    if (r.reply->isPositive()) view_.envelope.recipients.push_back(address);
                    view_.envelope.currentRecipient.clear();
                    reply(withEnhancedCode(*r.reply, "2.1.5"), "RCPT");
                    enterState(nextState(state_, Verb::kRcpt, r.reply->code()));
                    commandDone();
                  });
                });
              });
}

void Session::onRset() {
  // The MTA's open transaction, if any, is reset lazily before the next MAIL (withUpstream).
  endTransaction();
  reply(make(250, "2.0.0", "Ok"), verb_);
  enterState(nextState(state_, Verb::kRset, 250));
  commandDone();
}

void Session::onQuit() {
  quit_ = true;
  reply(make(221, "2.0.0", "Bye"), "QUIT");
  close(ClosedBy::kClient, "");
}

void Session::onStartTls() {
  if (view_.tls.active) {
    reply(make(503, "5.5.1", "Error: TLS already active"), verb_);
    commandDone();
    return;
  }
  if (!ehloPolicy_.offerStartTls || !host_.serverTls()) {  // not offered on this listener
    reply(make(502, "5.5.1", "Error: command not implemented"), verb_);
    commandDone();
    return;
  }
  if (inTransaction()) {
    reply(make(503, "5.5.1", "Error: MAIL transaction in progress"), verb_);
    commandDone();
    return;
  }
  reply(make(220, "2.0.0", "Ready to start TLS"), verb_);
  // RFC 3207 4.2: forget everything learned in the clear; the client must send EHLO again.
  // Bytes it pipelined after STARTTLS are thrown away by the stream (CVE-2011-0411), never
  // read as commands.
  view_.helo.clear();
  view_.esmtp = false;
  enterState(SmtpState::kGreeted);
  // The MTA heard our client's pre-TLS identity; the next MAIL passes it anew.
  releaseUpstream();
  guardTimer_.start(config_->timeouts.command);
  stream_->startTls(host_.serverTls()->newSsl(), true);
  // phase_ stays kBusy until tlsReady()
}

// ---- the upstream ----

XclientIdentity Session::identity() const {
  XclientIdentity id;
  switch (view_.client.reverse) {
    case ReverseStatus::kVerified:
      id.name = view_.client.name;
      break;
    case ReverseStatus::kTempFail:
      id.name = "[TEMPUNAVAIL]";
      break;
    default:
      id.name = "[UNAVAILABLE]";
      break;
  }
  id.addr = view_.client.address;
  id.ipv6 = view_.client.ipv6;
  id.port = view_.client.port;
  id.proto = view_.esmtp ? "ESMTP" : "SMTP";
  id.helo = view_.helo;
  id.destAddr = view_.localAddress;
  id.destPort = view_.localPort;
  return id;
}

void Session::withUpstream(std::function<void()> then, std::string_view verb) {
  if (upstream_ && upstream_->ready()) {
    if (!upstreamTransaction_) {
      then();
      return;
    }
    // A transaction the client abandoned (RSET, EHLO, a rejected DATA) is still open upstream.
    upstream_->command("RSET", Expect::kRset,
                       [this, then, v = std::string(verb)](UpstreamResult r) {
                         if (r.ok() && r.reply->isPositive()) {
                           upstreamTransaction_ = false;
                           then();
                           return;
                         }
                         retireUpstream();
                         withUpstream(then, v);  // start over on a fresh connection
                       });
    return;
  }
  retireUpstream();
  if (auto pooled = host_.takeUpstream()) {
    // A clean connection from the pool: pass our client's identity and go. If the MTA closed
    // it meanwhile, start over on a fresh connection; the client never notices.
    upstream_ = std::move(pooled);
    upstream_->setSessionId(view_.id);
    upstream_->setIdleFailureHandler([this](const std::string& why) { upstreamLost(why); });
    upstream_->reidentify(identity(), [this, then, v = std::string(verb)](UpstreamResult r) {
      if (!r.ok()) {
        spdlog::debug("{} event=pooled-connection-failed failure={} detail={}", view_.id,
                      upstreamFailureName(r.failure), logValue(r.detail));
        retireUpstream();
        openUpstream(then, v);
        return;
      }
      then();
    });
    return;
  }
  openUpstream(std::move(then), verb);
}

void Session::openUpstream(std::function<void()> then, std::string_view verb) {
  upstream_ = std::make_unique<Upstream>(host_.base(), upstreamSettings_, view_.id);
  upstream_->setIdleFailureHandler([this](const std::string& why) { upstreamLost(why); });
  upstream_->open(identity(), [this, then, v = std::string(verb)](UpstreamResult r) {
    if (!r.ok()) {
      upstreamFailed(r, v, false);
      return;
    }
    host_.learnUpstreamCapabilities(upstream_->capabilities());
    then();
  });
}

void Session::retireUpstream() {
  // Never destroyed inside its own callback: parked, and freed from the loop. Cut off from the
  // session first: a parked connection that ends before the reap must not report its loss as
  // the loss of whatever connection the session has opened since.
  if (upstream_) {
    upstream_->setIdleFailureHandler([](const std::string&) {});
    retiredUpstream_.push_back(std::move(upstream_));
    reapTimer_.start(std::chrono::milliseconds(0));
  }
  upstreamTransaction_ = false;
}

void Session::upstreamFailed(const UpstreamResult& result, std::string_view verb,
                             bool atEndOfData) {
  spdlog::warn("{} event=upstream-failure verb={} failure={} detail={}{}", view_.id, verb,
               upstreamFailureName(result.failure), logValue(result.detail),
               result.reply ? " reply=" + logValue(result.reply->summary()) : "");
  const bool midTransaction = upstreamTransaction_ && !atEndOfData;
  retireUpstream();
  Reply r = make(451, "4.4.1", "Error: mail server unavailable, try again later");
  switch (result.failure) {
    case UpstreamFailure::kProtocol:
      r = make(451, "4.3.0", "Error: invalid reply from mail server, try again later");
      break;
    case UpstreamFailure::kTimeout:
      r = make(451, "4.4.2", "Error: timeout waiting for mail server, try again later");
      break;
    case UpstreamFailure::kClosed:
      r = make(451, "4.4.2", "Error: lost connection to mail server, try again later");
      break;
    case UpstreamFailure::kIdentity:
      r = make(451, "4.3.5", "Error: mail server configuration error, try again later");
      break;
    case UpstreamFailure::kRefused:
      if (result.reply && result.reply->code() == 421) r = r.withCode(421);
      break;
    default:
      break;
  }
  // Mid-transaction the MTA has forgotten our MAIL and RCPTs: a 4xx to this command and a
  // clean close make the client retry the whole message (never a 5xx, never a bounce).
  if (midTransaction) r = r.withCode(421);
  reply(r, verb);
  if (phase_ == Phase::kClosing) return;
  if (atEndOfData || verb == "MAIL") endTransaction();
  if (atEndOfData) {
    enterState(nextStateAfterData(state_, r.code()));
  } else if (verb == "MAIL") {
    enterState(SmtpState::kReady);
  }
  commandDone();
}

void Session::upstreamLost(const std::string& why) {
  spdlog::info("{} event=upstream-lost detail={}", view_.id, logValue(why));
  if (upstreamTransaction_) upstreamLost_ = true;
  retireUpstream();
}

void Session::endTransaction() {
  const bool had = view_.envelope.nullSender || !view_.envelope.mailFrom.empty();
  if (had) {
    chain_->notifyTransactionEnd(view_);
    ++view_.transactions;
  }
  view_.envelope = Envelope{};
  view_.message = MessageInfo{};
  framer_.reset();
  spool_.reset();  // removes the spool file, however the transaction ended
  discard_ = discardSession_;
  upstreamLost_ = false;
}

}  // namespace portcullis
