// Session: DATA. Receive and spool the message (DataFramer -> Spool), run the end-of-data
// stages, then hand the message to the MTA and relay its reply. The client's 250 is only ever
// the MTA's own 250 to this message (or a discard verdict's deliberate 250).

#include <event2/buffer.h>

#include <ctime>

#include "portcullis/reply.h"
#include "proxy/base/header_util.h"
#include "proxy/base/log.h"
#include "proxy/relay/session.h"
#include "proxy/smtp/header_block.h"

namespace portcullis {
namespace {

Reply make(int code, std::string_view enhanced, std::string text) {
  return *Reply::make(code, enhanced, {std::move(text)});
}

}  // namespace

void Session::onData() {
  chain_->run(Stage::kData, view_, [this](ChainOutcome o) {
    applyOutcome(o, "DATA", [this] {
      framer_ = std::make_unique<DataFramer>(config_->limits.maxMessageSize,
                                             config_->limits.maxLineLength);
      spool_ = std::make_unique<Spool>(config_->spool.memoryLimit, config_->spool.directory);
      reply(*Reply::make(354, "", {"End data with <CR><LF>.<CR><LF>"}), "DATA");
      enterState(SmtpState::kData);
      phase_ = Phase::kData;
      dataStart_ = std::chrono::steady_clock::now();
      dataTimer_.start(config_->timeouts.dataBlock);
      if (config_->upstream.keepaliveInterval.count() > 0 && upstream_) {
        keepaliveTimer_.start(config_->upstream.keepaliveInterval);
      }
      feedData();
    });
  });
}

void Session::feedData() {
  evbuffer* in = stream_->input();
  while (phase_ == Phase::kData) {
    evbuffer_iovec v{};
    if (evbuffer_peek(in, -1, nullptr, &v, 1) < 1 || v.iov_len == 0) break;
    const DataFramer::Result r =
        framer_->feed(std::string_view(static_cast<const char*>(v.iov_base), v.iov_len), *spool_);
    evbuffer_drain(in, r.consumed);
    if (r.ended) {
      endOfData();
      return;
    }
  }
  if (phase_ != Phase::kData) return;
  if (stream_->eof()) {
    // The client's input ended before the final dot: an aborted message, never delivered.
    close(ClosedBy::kClient, "client disconnected during DATA");
    return;
  }
  stream_->updateReading();
  dataTimer_.start(config_->timeouts.dataBlock);
  // A minimum data rate, after a grace period, defeats slowloris-style trickling.
  const auto elapsed = std::chrono::steady_clock::now() - dataStart_;
  if (config_->limits.minDataRate > 0 && elapsed > config_->timeouts.dataGrace) {
    const double seconds = std::chrono::duration<double>(elapsed).count();
    if (static_cast<double>(framer_->size()) / seconds <
        static_cast<double>(config_->limits.minDataRate)) {
      reply(make(421, "4.4.2", config_->hostname + " Error: data rate too low"), "DATA-RATE");
    }
  }
}

void Session::finishData(const Reply& r) {
  reply(r, ".");
  if (phase_ == Phase::kClosing) return;
  endTransaction();
  enterState(nextStateAfterData(state_, r.code()));
  commandDone();
}

void Session::keepalive() {
  // Postfix drops a client that says nothing for smtpd_timeout (300s by default); a large
  // message over a slow link can take longer than that to reach us. A NOOP now and then keeps
  // the MTA's side of the transaction alive while we spool.
  if (phase_ != Phase::kData && phase_ != Phase::kDataDone) return;
  if (!upstream_ || !upstream_->ready() || keepaliveInFlight_) return;
  keepaliveInFlight_ = true;
  upstream_->command("NOOP", Expect::kNoop, [this](UpstreamResult r) {
    keepaliveInFlight_ = false;
    if (!r.ok()) {
      upstreamLost(std::string(upstreamFailureName(r.failure)) + ": " + r.detail);
    } else if (phase_ == Phase::kData) {
      keepaliveTimer_.start(config_->upstream.keepaliveInterval);
    }
    if (pendingDelivery_) {
      auto headers = std::move(*pendingDelivery_);
      pendingDelivery_.reset();
      deliver(headers);
    }
  });
}

void Session::endOfData() {
  dataTimer_.stop();
  keepaliveTimer_.stop();
  phase_ = Phase::kDataDone;
  verb_.assign(1, '.');  // not operator=(".") : GCC 12 -Wrestrict false positive
  MessageInfo& m = view_.message;
  m.size = framer_->size();
  m.oversized = framer_->oversized();
  m.reader = spool_.get();
  if (!spool_->finish()) {
    spdlog::error("{} event=spool-error detail={}", view_.id, logValue(spool_->error()));
    finishData(make(451, "4.3.0", "Error: local error in processing, try again later"));
    return;
  }
  if (framer_->poisoned()) {
    // RFC 5321 2.3.8 and CVE-2023-51764: refused, never "repaired" into CRLF.
    spdlog::info("{} event=reject stage=end_of_message reason={} size={}", view_.id,
                 framer_->bareLf() ? "bare-lf" : "bare-cr", m.size);
    finishData(make(554, "5.5.2",
                    "Error: bare <CR> or <LF> in message data (RFC 5321 2.3.8); message refused"));
    return;
  }
  if (framer_->lineTooLong()) {
    // RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF; relayed, a longer
    // one is cut or refused somewhere downstream. 554 is the end-of-data refusal (4.3.2);
    // RFC 3463 has no code for line length, and X.6.0 (other media error) says "the content"
    // without claiming the message is too big (X.3.4).
    spdlog::info("{} event=reject stage=end_of_message reason=line-too-long limit={} size={}",
                 view_.id, config_->limits.maxLineLength, m.size);
    finishData(make(554, "5.6.0",
                    "Error: message has a line longer than " +
                        std::to_string(config_->limits.maxLineLength) +
                        " octets (RFC 5321 4.5.3.1.6); message refused"));
    return;
  }
  if (!m.oversized && !judgeHeaderBlock()) return;
  chain_->run(Stage::kEndOfHeaders, view_,
              [this](ChainOutcome o) { afterEndOfHeaders(std::move(o)); });
}

bool Session::judgeHeaderBlock() {
  // DESIGN invariant 8: filters judge the header block the MTA will see, our own trace header
  // first, and every header of it; what cannot be judged whole is refused, never skipped.
  HeaderBlock block = parseHeaderBlock(*spool_, HeaderBlockLimits{});
  MessageInfo& m = view_.message;
  if (block.status == HeaderBlock::Status::kLeadingContinuation) {
    spdlog::info("{} event=reject stage=end_of_message reason=leading-continuation size={}",
                 view_.id, m.size);
    finishData(make(554, "5.6.0",
                    "Error: message header starts with a continuation line (RFC 5322 2.2.3)"));
    return false;
  }
  if (block.status == HeaderBlock::Status::kTooLarge) {
    spdlog::info("{} event=reject stage=end_of_message reason=header-too-large size={}", view_.id,
                 m.size);
    finishData(make(552, "5.3.4", "Error: message header too large"));
    return false;
  }
  if (block.truncated > 0) {
    spdlog::info("{} event=header-truncated fields={} limit={}", view_.id, block.truncated,
                 kMaxHeaderValue);
  }
  traceHeader_.clear();
  if (view_.tls.active && config_->tls.receivedHeader) {
    // Sanitised as formatHeader does, so the filters see exactly what the MTA gets, unfolded.
    std::string value = sanitizeText(tlsReceivedValue(), 1024);
    if (auto line = formatHeader("Received", value, 1024)) {
      traceHeader_ = std::move(*line);
      block.fields.insert(block.fields.begin(), HeaderField{"Received", std::move(value)});
    }
  }
  m.headers = std::move(block.fields);
  return true;
}

void Session::afterEndOfHeaders(ChainOutcome first) {
  if (first.kind == VerdictKind::kDiscard) discard_ = true;
  if (first.reply && first.kind != VerdictKind::kDiscard) {
    if (first.kind == VerdictKind::kDisconnect) {
      reply(*first.reply, ".");
      close(ClosedBy::kServer, "disconnected by filter " + first.filter);
      return;
    }
    finishData(*first.reply);
    return;
  }
  chain_->run(Stage::kEndOfMessage, view_, [this, first](ChainOutcome o) {
    if (o.kind == VerdictKind::kDiscard) discard_ = true;
    if (o.reply && o.kind != VerdictKind::kDiscard) {
      if (o.kind == VerdictKind::kDisconnect) {
        reply(*o.reply, ".");
        close(ClosedBy::kServer, "disconnected by filter " + o.filter);
        return;
      }
      finishData(*o.reply);
      return;
    }
    std::vector<HeaderField> headers = first.headers;
    headers.insert(headers.end(), o.headers.begin(), o.headers.end());
    deliver(headers);
  });
}

std::string Session::tlsReceivedValue() const {
  // Postfix's XCLIENT takes PROTO=SMTP|ESMTP only (PROTO=ESMTPS is refused with 501) and has
  // no attribute for the cipher, so the one place the client's TLS can be recorded for
  // everyone downstream is a trace header (RFC 5321 4.4; "with ESMTPS" is RFC 3848).
  char date[64] = {};
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
  const std::string name = view_.client.name.empty() ? "unknown" : view_.client.name;
  return "from " + (view_.helo.empty() ? std::string("unknown") : view_.helo) + " (" + name + " [" +
         view_.client.address + "]) by " + config_->hostname +
         " (portcullis) with ESMTPS (version=" + view_.tls.protocol +
         " cipher=" + view_.tls.cipher + " bits=" + std::to_string(view_.tls.bits) + "); " + date;
}

void Session::deliver(const std::vector<HeaderField>& headers) {
  if (discard_) {
    // A discard verdict: the client hears 250, the MTA hears nothing (its open transaction,
    // if any, is reset before the next MAIL).
    spdlog::info("{} event=discard size={} rcpts={}", view_.id, view_.message.size,
                 view_.envelope.recipients.size());
    finishData(make(250, "2.0.0", "Ok"));
    return;
  }
  if (framer_->oversized()) {
    // Core invariant, not size policy (that is the size filter's): a truncated spool is never
    // forwarded. Unreachable while the mandatory size filter is in the chain.
    spdlog::error("{} event=invariant detail=\"oversized message reached delivery\"", view_.id);
    finishData(make(451, "4.3.0", "Error: local error in processing, try again later"));
    return;
  }
  if (keepaliveInFlight_) {
    pendingDelivery_ = headers;  // the NOOP's reply comes first; then the message goes
    return;
  }
  if (upstreamLost_ || !upstream_ || !upstream_->ready()) {
    upstreamFailed({UpstreamFailure::kClosed, std::nullopt, "connection lost during DATA"}, ".",
                   true);
    return;
  }
  std::string prefix = std::move(traceHeader_);  // the one the filters saw
  traceHeader_.clear();
  for (const auto& h : headers) {
    if (auto line = formatHeader(h.name, h.value)) {
      prefix += *line;
    } else {
      spdlog::warn("{} event=bad-header name={}", view_.id, logValue(h.name));
    }
  }
  upstream_->sendMessage(*spool_, std::move(prefix), [this](UpstreamResult r) {
    if (!r.ok()) {
      upstreamFailed(r, ".", true);
      return;
    }
    // Whatever the reply, the MTA's transaction is over unless DATA itself was refused;
    // resetting before the next MAIL is harmless either way.
    upstreamTransaction_ = !r.reply->isPositive();
    if (r.reply->isPositive()) {
      ++delivered_;
      if (spdlog::should_log(spdlog::level::info)) {
        spdlog::info("{} event=delivered size={} rcpts={} reply={}", view_.id, view_.message.size,
                     view_.envelope.recipients.size(), logValue(r.reply->summary()));
      }
    }
    if (r.reply->closesConnection()) retireUpstream();
    finishData(withEnhancedCode(*r.reply, "2.0.0"));
  });
}

}  // namespace portcullis
