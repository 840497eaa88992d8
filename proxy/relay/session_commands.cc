// Session: the command table and its handlers (EHLO/HELO, MAIL, RCPT, RSET, NOOP, VRFY, HELP,
// QUIT, STARTTLS), and what the session does when the MTA fails.

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>

#include "proxy/base/log.h"
#include "proxy/relay/local_reply.h"
#include "proxy/relay/session.h"

namespace portcullis {
// The client side of the command table, after OpenSMTPD's {verb, states, check, proceed}. The
// states column is smtp/'s table (commandRule, checkSequence: RFC 5321 4.3.2, pure and
// table-tested); here, for each verb, what must hold before it is carried out (check: a reply
// when it does not) and what carries it out (proceed). One row per Verb, in Verb order.
struct Session::CommandEntry {
  Verb verb;
  std::optional<Reply> (Session::*check)(const Command&) const;
  void (Session::*proceed)(const Command&);
};

void Session::handleLine(std::string_view line) {
  ParseResult parsed = parseCommand(line);
  if (opening_.rejected) {
    // RFC 5321 3.1: after a 554 greeting only QUIT gets a normal answer.
    const auto* c = std::get_if<Command>(&parsed);
    if (c != nullptr && c->verb == Verb::kQuit) {
      onQuit(*c);
    } else {
      reply(localReply(503, "5.5.1", "Error: access denied; send QUIT"), verb_,
            ReplySource::local("command after a refused connection (RFC 5321 3.1)"));
      commandDone();
    }
    return;
  }
  if (auto* err = std::get_if<Reply>(&parsed)) {
    reply(*err, verb_);
    commandDone();
    return;
  }
  Command c = std::move(std::get<Command>(parsed));
  if (pipe_.awaiting > 0 && c.verb != Verb::kRcpt) {
    // Only RCPT joins a group the MTA is still answering; anything else (DATA above all) is
    // decided on the replies, so it waits for them (settle resumes it).
    pipe_.held = std::string(line);
    enter(Phase::kBusy);
    return;
  }
  if (flags_.drainRequested && !inTransaction() && c.verb != Verb::kQuit) {
    reply(localReply(421, "4.3.2", config_->hostname + " Service shutting down"), verb_,
          ReplySource::local("shutting down"));
    return;
  }
  if (link_.lost() && inTransaction() && (c.verb == Verb::kRcpt || c.verb == Verb::kData)) {
    // The MTA dropped the transaction under us: nothing sensible can follow but a retry.
    reply(localReply(421, "4.4.2", config_->hostname + " Error: lost connection to mail server"),
          verb_, ReplySource::local("the mail server dropped the open transaction"));
    return;
  }
  const std::string_view recipient = c.verb == Verb::kRcpt ? std::string_view(c.address) : "";
  if (auto e = checkSequence(state_, c.verb)) {
    reply(*e, verb_, ReplySource::local({}, recipient));
    if (c.verb == Verb::kBdat && c.chunkSize > 0 && phase_ != Phase::kClosing) {
      // BDAT is not offered, but its chunk follows the command at once: skip it, so that the
      // chunk's bytes are never read as commands.
      enter(Phase::kSkipping);
      input_.skipRemaining = c.chunkSize;
      timer_.start(config_->timeouts.command);
      skipInput();
      return;
    }
    commandDone();
    return;
  }
  const CommandEntry& entry = commandEntry(c.verb);
  if (entry.check != nullptr) {
    if (auto refusal = (this->*entry.check)(c)) {
      reply(*refusal, verb_, ReplySource::local({}, recipient));
      commandDone();
      return;
    }
  }
  enter(Phase::kBusy);
  (this->*entry.proceed)(c);
}

const Session::CommandEntry& Session::commandEntry(Verb verb) {
  using E = Session;
  // One row per Verb, in Verb order (the static_assert keeps them there): dispatch is an
  // index, never a string comparison.
  static constexpr std::array<CommandEntry, static_cast<std::size_t>(Verb::kUnknown) + 1> kTable = {
      {
          {Verb::kEhlo, nullptr, &E::onHelo},
          {Verb::kHelo, nullptr, &E::onHelo},
          {Verb::kMail, &E::checkMail, &E::onMail},
          {Verb::kRcpt, &E::checkRcpt, &E::onRcpt},
          {Verb::kData, nullptr, &E::onData},
          {Verb::kRset, nullptr, &E::onRset},
          {Verb::kNoop, nullptr, &E::onNoop},
          {Verb::kQuit, nullptr, &E::onQuit},
          {Verb::kVrfy, nullptr, &E::onVrfy},
          {Verb::kExpn, nullptr, &E::onNotImplemented},
          {Verb::kHelp, nullptr, &E::onHelp},
          {Verb::kStartTls, &E::checkStartTls, &E::onStartTls},
          // Not implemented: never advertised, never forwarded (DESIGN: strip what we don't do).
          {Verb::kAuth, nullptr, &E::onNotImplemented},
          {Verb::kBdat, nullptr, &E::onNotImplemented},
          {Verb::kEtrn, nullptr, &E::onNotImplemented},
          {Verb::kTurn, nullptr, &E::onNotImplemented},
          {Verb::kXclient, nullptr, &E::onNotImplemented},
          {Verb::kXforward, nullptr, &E::onNotImplemented},
          {Verb::kUnknown, nullptr, &E::onNotImplemented},
      }};
  static_assert([] {
    for (std::size_t i = 0; i < kTable.size(); ++i) {
      if (static_cast<std::size_t>(kTable[i].verb) != i) return false;
    }
    return true;
  }());
  return kTable[static_cast<std::size_t>(verb)];
}

// ---- checks: a reply when the command cannot be carried out as it stands ----

std::optional<Reply> Session::checkMail(const Command& c) const {
  if (config_->tls.require && !view_.tls.active) {
    return localReply(530, "5.7.0", "Must issue a STARTTLS command first");
  }
  if (c.nonAscii && !c.param("SMTPUTF8")) {
    return localReply(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8");
  }
  if (c.param("SMTPUTF8") && !host_.upstreamCapabilities().smtputf8) {
    return localReply(555, "5.5.4", "Error: SMTPUTF8 is not supported");
  }
  return std::nullopt;
}

std::optional<Reply> Session::checkRcpt(const Command& c) const {
  if (c.nonAscii && !view_.envelope.smtputf8) {
    return localReply(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8");
  }
  return std::nullopt;
}

std::optional<Reply> Session::checkStartTls(const Command&) const {
  if (view_.tls.active) return localReply(503, "5.5.1", "Error: TLS already active");
  if (!ehloPolicy_.offerStartTls || !serverTls_) {  // not offered on this listener
    return localReply(502, "5.5.1", "Error: command not implemented");
  }
  if (inTransaction()) return localReply(503, "5.5.1", "Error: MAIL transaction in progress");
  return std::nullopt;
}

// ---- proceed ----

void Session::onHelo(const Command& c) {
  // RFC 5321 4.1.4: EHLO in the middle of a transaction resets it, as RSET would.
  if (inTransaction()) {
    endTransaction();
    enter(SmtpState::kReady);
  }
  view_.helo = c.argument;
  view_.esmtp = c.verb == Verb::kEhlo;
  // The callback holds only `this` (std::function keeps that without an allocation): the verb
  // comes back from view_.esmtp, which only the next HELO or EHLO changes.
  chain_->run(Stage::kHelo, view_, [this](const ChainOutcome& o) {
    const std::string_view verb = view_.esmtp ? "EHLO" : "HELO";
    applyOutcome(o, verb, [this, verb] {
      if (!view_.esmtp) {
        reply(sharedHeloReply(ehloPolicy_.hostname), verb);
        enter(nextState(state_, Verb::kEhlo, 250));
        commandDone();
      } else if (host_.upstreamPending()) {
        host_.whenUpstreamKnown(this, [this, verb] { answerEhlo(verb); });
      } else {
        answerEhlo(verb);
      }
    });
  });
}

void Session::answerEhlo(std::string_view verb) {
  // Waiting for the start-up probe, the session may have been closed meanwhile (the drain's
  // 421, a client gone): nothing is said after that.
  if (phase_ == Phase::kClosing || phase_ == Phase::kFinished) return;
  if (view_.tls.active && ehloPolicy_.offerStartTls) {  // RFC 3207 4.2: not offered again
    EhloPolicy policy = ehloPolicy_;
    policy.offerStartTls = false;
    reply(sharedEhloReply(policy, host_.upstreamCapabilities()), verb);
  } else {
    reply(sharedEhloReply(ehloPolicy_, host_.upstreamCapabilities()), verb);
  }
  enter(nextState(state_, Verb::kEhlo, 250));
  commandDone();
}

void Session::onMail(const Command& c) {
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
  txn_ = std::make_unique<Transaction>();
  txn_->discard = flags_.discardSession;
  txn_->discardBy = flags_.discardBy;

  writeEnvelopeCommandLine(c, envelopeLine_);
  chain_->run(Stage::kMailFrom, view_, [this](const ChainOutcome& o) {
    if (o.kind == VerdictKind::kReject || o.kind == VerdictKind::kTempfail) {
      reply(*o.reply, "MAIL", ReplySource::filterVerdict(o.filter, o.reason));  // logs from=
      endTransaction();
      commandDone();
      return;
    }
    applyOutcome(o, "MAIL", [this] {
      if (txn_->discard) {
        reply(localReply(250, "2.1.0", "Ok"), "MAIL");
        enter(SmtpState::kMail);
        commandDone();
        return;
      }
      link_.mail(
          envelopeLine_,
          [this](const UpstreamResult& r) {
            if (!pipe_.mailSlot) {
              mailReplied(r, false);
              return;
            }
            const std::uint64_t slot = *pipe_.mailSlot;
            pipe_.mailSlot.reset();
            settle(slot, [this, &r] { mailReplied(r, true); });
          },
          [this] {
            // MAIL is on its way and the MTA pipelines: on to the client's next command, as
            // if MAIL were accepted (mailReplied corrects that).
            if (!mayPipeline()) return false;
            pipe_.mailSlot = owe();
            enter(SmtpState::kMail);
            commandDone();
            return true;
          });
    });
  });
}

void Session::mailReplied(const UpstreamResult& r, bool released) {
  if (!r.ok()) {
    upstreamFailed(r, UpstreamStep::kMail, {}, released);
    return;
  }
  std::optional<Reply> amended;
  reply(withEnhancedCode(*r.reply, "2.1.0", amended), "MAIL", ReplySource::mta());
  if (!r.reply->isPositive()) {
    endTransaction();
    if (released) enter(SmtpState::kReady);
  }
  if (released) return;
  enter(nextState(state_, Verb::kMail, r.reply->code()));
  commandDone();
}

void Session::rcptReplied(const UpstreamResult& r, const std::string& address, bool released,
                          const Transaction* txn) {
  // Is this still the transaction the RCPT was sent for? (Its MAIL may have been refused.)
  const bool current = txn_ && txn_.get() == txn;
  auto& recipients = view_.envelope.recipients;
  if (released && current) {
    // A released RCPT was counted as it went (max_recipients): uncount it unless accepted.
    const bool accepted = r.ok() && r.reply->isPositive();
    const auto it = std::find(recipients.rbegin(), recipients.rend(), address);
    if (!accepted && it != recipients.rend()) recipients.erase(std::next(it).base());
  }
  if (!r.ok()) {
    upstreamFailed(r, UpstreamStep::kRcpt, address, released);
    return;
  }
  if (!current) {
    // The MTA's answer to a RCPT whose MAIL it refused: a refusal is relayed, an acceptance
    // (which no MTA should give) is not: our 503 in its place is ours, with its reference.
    if (r.reply->isPositive()) {
      refuseOrphanRcpt(address);
    } else {
      std::optional<Reply> amended;
      reply(withEnhancedCode(*r.reply, "2.1.5", amended), "RCPT", ReplySource::mta(address));
    }
    if (!released) commandDone();
    return;
  }
  if (!released) {
    if (r.reply->isPositive()) recipients.push_back(address);
    view_.envelope.currentRecipient.clear();
  }
  std::optional<Reply> amended;
  reply(withEnhancedCode(*r.reply, "2.1.5", amended), "RCPT", ReplySource::mta(address));
  enter(nextState(state_, Verb::kRcpt, r.reply->code()));
  if (!released) commandDone();
}

void Session::refuseOrphanRcpt(const std::string& address) {
  reply(localReply(503, "5.5.1", "Error: need MAIL command"), "RCPT",
        ReplySource::local("the mail server refused MAIL", address));
}

void Session::onRcpt(const Command& c) {
  view_.envelope.currentRecipient = c.address;
  view_.envelope.currentRecipientParams.clear();
  for (const auto& p : c.params) view_.envelope.currentRecipientParams.push_back(p.wire());

  writeEnvelopeCommandLine(c, envelopeLine_);
  chain_->run(Stage::kRcptTo, view_, [this, address = c.address](const ChainOutcome& o) {
    if (!txn_) {
      // A pipelined MAIL was refused while this RCPT's filters ran: whatever they
      // said (a discard would otherwise fall on the whole session), no transaction.
      refuseOrphanRcpt(address);
      commandDone();
      return;
    }
    applyOutcome(
        o, "RCPT",
        [this, &address] {
          if (txn_->discard) {
            view_.envelope.recipients.push_back(address);
            view_.envelope.currentRecipient.clear();
            reply(localReply(250, "2.1.5", "Ok"), "RCPT",
                  ReplySource::local("transaction discarded", address));
            enter(SmtpState::kRcpt);
            commandDone();
            return;
          }
          const Transaction* const txn = txn_.get();
          if (!(mayPipeline() && link_.canPipeline())) {
            link_.rcpt(envelopeLine_, [this, address, txn](const UpstreamResult& r) {
              rcptReplied(r, address, false, txn);
            });
            return;
          }
          // Released: counted now (max_recipients sees it), answered in its turn.
          const std::uint64_t slot = owe();
          view_.envelope.recipients.push_back(address);
          view_.envelope.currentRecipient.clear();
          link_.rcpt(envelopeLine_, [this, address, txn, slot](const UpstreamResult& r) {
            settle(slot, [&] { rcptReplied(r, address, true, txn); });
          });
          commandDone();
        },
        address);
  });
}

void Session::onRset(const Command&) {
  // The MTA's open transaction, if any, is reset lazily before the next MAIL (UpstreamLink).
  endTransaction();
  reply(localReply(250, "2.0.0", "Ok"), verb_);
  enter(nextState(state_, Verb::kRset, 250));
  commandDone();
}

void Session::onQuit(const Command&) {
  summary_.quit();
  static thread_local const Reply kBye = localReply(221, "2.0.0", "Bye");
  reply(kBye, "QUIT");
  close(SessionSummary::ClosedBy::kClient, "");
}

void Session::onNoop(const Command&) {
  reply(localReply(250, "2.0.0", "Ok"), verb_);
  commandDone();
}

void Session::onVrfy(const Command&) {
  // DESIGN: answer VRFY locally, never probe the MTA (no address harvesting through us).
  reply(localReply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"),
        verb_);
  commandDone();
}

void Session::onHelp(const Command&) {
  reply(localReply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"),
        verb_);
  commandDone();
}

void Session::onNotImplemented(const Command&) {
  reply(localReply(502, "5.5.1", "Error: command not implemented"), verb_);
  commandDone();
}

void Session::onStartTls(const Command&) {
  reply(localReply(220, "2.0.0", "Ready to start TLS"), verb_);
  // RFC 3207 4.2: forget everything learned in the clear; the client must send EHLO again.
  // Bytes it pipelined after STARTTLS are thrown away by the stream (CVE-2011-0411), never
  // read as commands.
  view_.helo.clear();
  view_.esmtp = false;
  enter(SmtpState::kGreeted);
  // The MTA heard our client's pre-TLS identity; the next MAIL passes it anew.
  link_.release();
  enter(Phase::kTlsHandshake);
  timer_.start(config_->timeouts.command);
  stream_->startTls(serverTls_->newSsl(), true);
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

void Session::upstreamFailed(const UpstreamResult& result, UpstreamStep step,
                             std::string_view recipient, bool released) {
  const bool atEndOfData = step == UpstreamStep::kDot;
  const std::string_view verb = step == UpstreamStep::kMail   ? "MAIL"
                                : step == UpstreamStep::kRcpt ? "RCPT"
                                                              : ".";
  static_assert(static_cast<std::size_t>(UpstreamFailure::kTls) == kUpstreamFailureKinds.size(),
                "kUpstreamFailureKinds follows UpstreamFailure");
  coreStats().upstreamFailure(static_cast<int>(result.failure));
  const Reply r = link_.fail(result, verb, atEndOfData);
  const std::string why = "mail server " + std::string(upstreamFailureName(result.failure)) +
                          (result.detail.empty() ? "" : ": " + result.detail);
  reply(r, verb, ReplySource::local(why, recipient));
  if (phase_ == Phase::kClosing || phase_ == Phase::kFinished) return;
  switch (step) {
    case UpstreamStep::kMail:  // no transaction was opened
      endTransaction();
      enter(SmtpState::kReady);
      break;
    case UpstreamStep::kRcpt:  // the transaction goes on; this recipient is not in it
      break;
    case UpstreamStep::kDot:  // the message is over, whatever happened to it
      endTransaction();
      enter(nextStateAfterData(state_, r.code()));
      break;
  }
  if (!released) commandDone();
}

void Session::discard(const ChainOutcome& o) {
  if (txn_) {
    txn_->discard = true;
    txn_->discardBy = o.filter;
  } else {  // connect or HELO: every transaction of the session
    flags_.discardSession = true;
    flags_.discardBy = o.filter;
  }
}

void Session::logTransactionEnd() {
  if (!txn_ || !txn_->log.mailAccepted) return;
  const std::string sender = senderForLog(view_.envelope);
  logTransaction(view_, sender, txn_->log);
  std::size_t accepted = 0;
  for (const auto& r : txn_->log.recipients) accepted += r.code >= 200 && r.code < 300 ? 1 : 0;
  summary_.transaction(sender, accepted, txn_->log.recipients.size(), txn_->log.queuedAs);
  txn_->log.mailAccepted = false;  // once
}

void Session::endTransaction() {
  logTransactionEnd();
  const bool had = view_.envelope.nullSender || !view_.envelope.mailFrom.empty();
  if (had) {
    chain_->notifyTransactionEnd(view_);
    ++view_.transactions;
  }
  view_.envelope = Envelope{};
  view_.message = MessageInfo{};
  txn_.reset();  // the framer and the spool (its file removed), however the transaction ended
  link_.endTransaction();
}

}  // namespace portcullis
