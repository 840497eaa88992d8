// UpstreamLink: connection reuse and retry, RSET before reuse, keepalive, failure -> reply.

#include "proxy/relay/upstream_link.h"

#include "proxy/base/log.h"
#include "proxy/relay/local_reply.h"

namespace portcullis {
UpstreamLink::UpstreamLink(UpstreamHost& host, UpstreamLinkSettings settings, std::string sessionId,
                           IdentitySource identity)
    : host_(host),
      settings_(std::move(settings)),
      id_(std::move(sessionId)),
      identity_(std::move(identity)),
      keepaliveTimer_(host.dispatcher(), [this] { keepalive(); }) {}

UpstreamLink::~UpstreamLink() = default;

void UpstreamLink::adopt(std::unique_ptr<UpstreamConnection> conn) {
  conn_ = std::move(conn);
  conn_->setIdleFailureHandler([this](const std::string& why) {
    spdlog::info("{} event=upstream-lost detail={}", id_, logValue(why));
    if (transactionOpen_) lost_ = true;
    retire();
  });
}

void UpstreamLink::retire() {
  // Possibly inside the connection's own callback: cut off from us (a parked connection that
  // ends later must not report its loss as the loss of whatever we opened since), then freed
  // from the loop.
  if (conn_) {
    conn_->setIdleFailureHandler([](const std::string&) {});
    host_.dispatcher().deferredDelete(std::move(conn_));
  }
  transactionOpen_ = false;
}

void UpstreamLink::release() {
  stopKeepalive();
  if (!conn_) return;
  if (!lost_ && settings_.pooling) {
    conn_->setIdleFailureHandler([](const std::string&) {});
    host_.returnUpstream(std::move(conn_));  // the pool keeps it only if it is clean
  } else {
    conn_->quit();
    retire();
  }
  transactionOpen_ = false;
}

void UpstreamLink::withConnection(std::function<void()> then, Done onFailure) {
  if (conn_ && conn_->ready()) {
    if (!transactionOpen_) {
      then();
      return;
    }
    // A transaction the client abandoned (RSET, EHLO, a rejected DATA) is still open upstream.
    conn_->command("RSET", Expect::kRset, [this, then, onFailure](const UpstreamResult& r) {
      if (r.ok() && r.reply->isPositive()) {
        transactionOpen_ = false;
        then();
        return;
      }
      retire();
      withConnection(then, onFailure);  // start over on a fresh connection
    });
    return;
  }
  retire();
  if (auto pooled = host_.takeUpstream()) {
    // A clean connection from the pool: pass our client's identity and go. If the MTA closed
    // it meanwhile, start over on a fresh connection; the client never notices.
    adopt(std::move(pooled));
    conn_->setSessionId(id_);
    conn_->reidentify(identity_(), [this, then, onFailure](const UpstreamResult& r) {
      if (!r.ok()) {
        spdlog::debug("{} event=pooled-connection-failed failure={} detail={}", id_,
                      upstreamFailureName(r.failure), logValue(r.detail));
        retire();
        open(then, onFailure);
        return;
      }
      then();
    });
    return;
  }
  open(std::move(then), std::move(onFailure));
}

void UpstreamLink::open(std::function<void()> then, Done onFailure) {
  adopt(host_.newUpstream(settings_.upstream, id_));
  conn_->open(identity_(),
              [this, then = std::move(then), onFailure = std::move(onFailure)](UpstreamResult r) {
                // A refusal (a 421 greeting, XCLIENT refused) is still an MTA that answers.
                host_.upstreamReached(r.ok() || r.failure == UpstreamFailure::kRefused ||
                                      r.failure == UpstreamFailure::kIdentity);
                if (!r.ok()) {
                  onFailure(std::move(r));
                  return;
                }
                host_.learnUpstreamCapabilities(conn_->capabilities());
                then();
              });
}

void UpstreamLink::mail(const std::string& line, const Done& done,
                        const std::function<bool()>& pipelined) {
  // Kept here, not in the callbacks below: they hold only `this`, and std::function stores
  // that without an allocation (the line's storage is reused from one MAIL to the next).
  mail_.line.assign(line);
  mail_.done = done;
  mail_.pipelined = pipelined;
  withConnection([this] { sendMail(true); },
                 [this](UpstreamResult r) { finishMail(std::move(r)); });
}

void UpstreamLink::sendMail(bool mayRetry) {
  // A pooled connection the MTA closed while it sat idle shows up only now (with identity
  // none nothing was said on it yet): one retry on a fresh connection, unseen by the client.
  const bool pooled = conn_->reused() && !conn_->usedBySession();
  conn_->markUsedBySession();
  // Only the first attempt may release the client's next commands (a retry never does).
  std::function<bool()> pipelined;
  pipelined.swap(mail_.pipelined);
  // Commands pipelined behind MAIL go down with it: then no retry. Only where a retry is
  // unlikely to be needed: not as the first word on a pooled connection, unless XCLIENT just
  // showed it alive.
  const bool mayRelease =
      pipelined && canPipeline() &&
      (!(pooled && mayRetry) || settings_.upstream.identity == IdentityMode::kXclient);
  mailReleased_ = false;
  mail_.mayRetry = pooled && mayRetry;
  conn_->command(mail_.line, Expect::kMail,
                 [this](UpstreamResult r) { mailReplied(std::move(r)); });
  if (mayRelease) mailReleased_ = pipelined();
}

void UpstreamLink::mailReplied(UpstreamResult r) {
  if (!r.ok() && mail_.mayRetry && !mailReleased_ && r.failure == UpstreamFailure::kClosed) {
    spdlog::debug("{} event=pooled-connection-failed detail={}", id_, logValue(r.detail));
    retire();
    open([this] { sendMail(false); }, [this](UpstreamResult f) { finishMail(std::move(f)); });
    return;
  }
  if (r.ok()) transactionOpen_ = r.reply->isPositive();
  finishMail(std::move(r));
}

void UpstreamLink::handOver(Done& pending, UpstreamResult r) {
  // Taken out first: the session may start its next command from inside (a MAIL after a
  // refusal, the next transaction after a message), which sets `pending` again.
  Done done;
  done.swap(pending);
  done(std::move(r));
}

void UpstreamLink::finishMail(UpstreamResult r) { handOver(mail_.done, std::move(r)); }

bool UpstreamLink::canPipeline() const {
  return conn_ && !lost_ && !conn_->broken() && conn_->pipelining() && !keepaliveInFlight_;
}

void UpstreamLink::rcpt(const std::string& line, Done done) {
  if (!conn_ || !(conn_->ready() || canPipeline())) {
    host_.dispatcher().post([done] {
      done({UpstreamFailure::kClosed, std::nullopt, "not connected"});
    });
    return;
  }
  conn_->command(line, Expect::kRcpt, std::move(done));
}

void UpstreamLink::message(std::shared_ptr<const Spool> spool, MessageHead head, Done done) {
  if (keepaliveInFlight_) {
    // The NOOP's reply comes first; then the message goes.
    afterKeepalive_ = [this, spool = std::move(spool), head = std::move(head), done]() mutable {
      message(std::move(spool), std::move(head), std::move(done));
    };
    return;
  }
  if (lost_ || !conn_ || !conn_->ready()) {
    host_.dispatcher().post([done] {
      done({UpstreamFailure::kClosed, std::nullopt, "connection lost during DATA"});
    });
    return;
  }
  // Kept here, so that the callback holds only `this` (no allocation for it).
  messageDone_ = std::move(done);
  conn_->sendMessage(std::move(spool), std::move(head), [this](UpstreamResult r) {
    if (r.ok()) {
      // Whatever the reply, the MTA's transaction is over unless DATA itself was refused;
      // resetting before the next MAIL is harmless either way.
      transactionOpen_ = !r.reply->isPositive();
      if (r.reply->closesConnection()) retire();
    }
    handOver(messageDone_, std::move(r));
  });
}

void UpstreamLink::startKeepalive() {
  if (settings_.keepalive.count() == 0 || !conn_) return;
  keepaliveOn_ = true;
  keepaliveTimer_.start(settings_.keepalive);
}

void UpstreamLink::stopKeepalive() {
  keepaliveOn_ = false;
  keepaliveTimer_.stop();
}

void UpstreamLink::keepalive() {
  // Postfix drops a client that says nothing for smtpd_timeout (300s by default); a large
  // message over a slow link can take longer than that to reach us. A NOOP now and then keeps
  // the MTA's side of the transaction alive while we spool.
  if (!conn_ || !conn_->ready() || keepaliveInFlight_) return;
  keepaliveInFlight_ = true;
  conn_->command("NOOP", Expect::kNoop, [this](const UpstreamResult& r) {
    keepaliveInFlight_ = false;
    if (!r.ok()) {
      spdlog::info("{} event=upstream-lost detail={}", id_,
                   logValue(std::string(upstreamFailureName(r.failure)) + ": " + r.detail));
      if (transactionOpen_) lost_ = true;
      retire();
    } else if (keepaliveOn_) {
      keepaliveTimer_.start(settings_.keepalive);
    }
    if (afterKeepalive_) {
      auto next = std::move(afterKeepalive_);
      afterKeepalive_ = nullptr;
      next();
    }
  });
}

Reply UpstreamLink::fail(const UpstreamResult& result, std::string_view verb, bool atEndOfData) {
  spdlog::warn("{} event=upstream-failure verb={} failure={} detail={}{}", id_, verb,
               upstreamFailureName(result.failure), logValue(result.detail),
               result.reply ? " reply=" + logValue(result.reply->summary()) : "");
  const bool midTransaction = transactionOpen_ && !atEndOfData;
  retire();
  Reply r = localReply(451, "4.4.1", "Error: mail server unavailable, try again later");
  switch (result.failure) {
    case UpstreamFailure::kProtocol:
      r = localReply(451, "4.3.0", "Error: invalid reply from mail server, try again later");
      break;
    case UpstreamFailure::kTimeout:
      r = localReply(451, "4.4.2", "Error: timeout waiting for mail server, try again later");
      break;
    case UpstreamFailure::kClosed:
      r = localReply(451, "4.4.2", "Error: lost connection to mail server, try again later");
      break;
    case UpstreamFailure::kIdentity:
      r = localReply(451, "4.3.5", "Error: mail server configuration error, try again later");
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
  return r;
}

}  // namespace portcullis
