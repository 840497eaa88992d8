// Session: DATA. Receive and spool the message (DataFramer -> Spool), run the end-of-data
// stages, then hand the message to the MTA and relay its reply. The client's 250 is only ever
// the MTA's own 250 to this message (or a discard verdict's deliberate 250).

#include <ctime>

#include "portcullis/reply.h"
#include "proxy/base/header_util.h"
#include "proxy/base/log.h"
#include "proxy/relay/local_reply.h"
#include "proxy/relay/session.h"
#include "proxy/smtp/header_block.h"
#include "proxy/smtp/header_edit.h"

namespace portcullis {
void Session::onData(const Command&) {
  chain_->run(Stage::kData, view_, [this](const ChainOutcome& o) {
    applyOutcome(o, "DATA", [this] {
      txn_->framer = std::make_unique<DataFramer>(config_->limits.maxMessageSize,
                                                  config_->limits.maxLineLength);
      txn_->spool = std::make_shared<Spool>(config_->spool.memoryLimit, config_->spool.directory);
      static const Reply kGoAhead = *Reply::make(354, "", {"End data with <CR><LF>.<CR><LF>"});
      reply(kGoAhead, "DATA");
      enter(SmtpState::kData);
      enter(Phase::kData);
      txn_->dataStart = host_.dispatcher().now();
      timer_.start(config_->timeouts.dataBlock);
      link_.startKeepalive();
      feedData();
    });
  });
}

void Session::feedData() {
  InputBuffer& in = stream_->input();
  while (phase_ == Phase::kData && !in.empty()) {
    const DataFramer::Result r = txn_->framer->feed(in.view(), *txn_->spool);
    in.drain(r.consumed);
    if (r.ended) {
      endOfData();
      return;
    }
  }
  if (phase_ != Phase::kData) return;
  if (stream_->eof()) {
    // The client's input ended before the final dot: an aborted message, never delivered.
    close(SessionSummary::ClosedBy::kClient, "client disconnected during DATA");
    return;
  }
  stream_->updateReading();
  timer_.start(config_->timeouts.dataBlock);
  // A minimum data rate, after a grace period, defeats slowloris-style trickling.
  const auto elapsed = host_.dispatcher().now() - txn_->dataStart;
  if (config_->limits.minDataRate > 0 && elapsed > config_->timeouts.dataGrace) {
    const double seconds = std::chrono::duration<double>(elapsed).count();
    if (static_cast<double>(txn_->framer->size()) / seconds <
        static_cast<double>(config_->limits.minDataRate)) {
      reply(localReply(421, "4.4.2", config_->hostname + " Error: data rate too low"), "DATA-RATE",
            ReplySource::local("data rate below limits.min_data_rate"));
    }
  }
}

void Session::finishData(const Reply& r, const ReplySource& source) {
  reply(r, ".", source);
  if (phase_ == Phase::kClosing || phase_ == Phase::kFinished) return;
  endTransaction();
  enter(nextStateAfterData(state_, r.code()));
  commandDone();
}

void Session::endOfData() {
  link_.stopKeepalive();
  enter(Phase::kDataDone);
  txn_->endOfData = host_.dispatcher().now();
  verb_.assign(1, '.');  // not operator=(".") : GCC 12 -Wrestrict false positive
  MessageInfo& m = view_.message;
  const DataFramer& framer = *txn_->framer;
  m.size = framer.size();
  m.oversized = framer.oversized();
  txn_->message = std::make_unique<TracedMessage>(txn_->traceHeader, *txn_->spool);
  m.reader = txn_->message.get();
  if (!txn_->spool->finish()) {
    spdlog::error("{} event=spool-error detail={}", view_.id, logValue(txn_->spool->error()));
    finishData(localReply(451, "4.3.0", "Error: local error in processing, try again later"),
               ReplySource::local("spool error"));
    return;
  }
  if (framer.poisoned()) {
    // RFC 5321 2.3.8 and CVE-2023-51764: refused, never "repaired" into CRLF.
    finishData(
        localReply(554, "5.5.2",
                   "Error: bare <CR> or <LF> in message data (RFC 5321 2.3.8); message refused"),
        ReplySource::local(framer.bareLf() ? "bare LF in message data"
                                           : "bare CR in message data"));
    return;
  }
  if (framer.lineTooLong()) {
    // RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF; relayed, a longer
    // one is cut or refused somewhere downstream. 554 is the end-of-data refusal (4.3.2);
    // RFC 3463 has no code for line length, and X.6.0 (other media error) says "the content"
    // without claiming the message is too big (X.3.4).
    const std::string limit = std::to_string(config_->limits.maxLineLength);
    finishData(localReply(554, "5.6.0",
                          "Error: message has a line longer than " + limit +
                              " octets (RFC 5321 4.5.3.1.6); message refused"),
               ReplySource::local("line longer than limits.max_line_length " + limit));
    return;
  }
  if (m.oversized) {
    // Nothing to judge in a truncated header block: straight to end_of_message, where the size
    // filter refuses it (the stage its verdict is logged at is the one the client hears it at).
    afterEndOfHeaders(ChainOutcome{});
    return;
  }
  if (!judgeHeaderBlock()) return;
  chain_->run(Stage::kEndOfHeaders, view_,
              [this](ChainOutcome o) { afterEndOfHeaders(std::move(o)); });
}

bool Session::judgeHeaderBlock() {
  // DESIGN invariant 8: filters judge the header block the MTA will see, our own trace header
  // first, and every header of it; what cannot be judged whole is refused, never skipped.
  HeaderBlock block = parseHeaderBlock(*txn_->spool, HeaderBlockLimits{});
  MessageInfo& m = view_.message;
  if (block.status == HeaderBlock::Status::kLeadingContinuation) {
    finishData(localReply(554, "5.6.0",
                          "Error: message header starts with a continuation line (RFC 5322 2.2.3)"),
               ReplySource::local("header starts with a continuation line"));
    return false;
  }
  if (block.status == HeaderBlock::Status::kTooLarge) {
    finishData(localReply(552, "5.3.4", "Error: message header too large"),
               ReplySource::local("header block over its limit"));
    return false;
  }
  if (block.truncated > 0) {
    spdlog::info("{} event=header-truncated fields={} limit={}", view_.id, block.truncated,
                 kMaxHeaderValue);
  }
  txn_->traceHeader.clear();
  if (view_.tls.active && config_->tls.receivedHeader) {
    // Sanitised as formatHeader does, so the filters see exactly what the MTA gets, unfolded.
    std::string value = sanitizeText(tlsReceivedValue(), 1024);
    if (auto line = formatHeader("Received", value, 1024)) {
      txn_->traceHeader = std::move(*line);
      block.fields.insert(block.fields.begin(), HeaderField{"Received", std::move(value)});
    }
  }
  m.headers = std::move(block.fields);
  return true;
}

void Session::afterEndOfHeaders(ChainOutcome first) {
  if (first.kind == VerdictKind::kDiscard) discard(first);
  if (first.reply && first.kind != VerdictKind::kDiscard) {
    const ReplySource source = ReplySource::filterVerdict(first.filter, first.reason);
    if (first.kind == VerdictKind::kDisconnect) {
      flags_.end = SessionEnd::kRejected;
      reply(*first.reply, ".", source);
      close(SessionSummary::ClosedBy::kServer, "disconnected by filter " + first.filter);
      return;
    }
    finishData(*first.reply, source);
    return;
  }
  // Kept with the transaction, so that the callback holds only `this` (no allocation, no copy).
  txn_->addedHeaders = std::move(first.headers);
  txn_->headerEdits = std::move(first.edits);
  chain_->run(Stage::kEndOfMessage, view_, [this](const ChainOutcome& o) {
    if (o.kind == VerdictKind::kDiscard) discard(o);
    if (o.reply && o.kind != VerdictKind::kDiscard) {
      const ReplySource source = ReplySource::filterVerdict(o.filter, o.reason);
      if (o.kind == VerdictKind::kDisconnect) {
        flags_.end = SessionEnd::kRejected;
        reply(*o.reply, ".", source);
        close(SessionSummary::ClosedBy::kServer, "disconnected by filter " + o.filter);
        return;
      }
      finishData(*o.reply, source);
      return;
    }
    std::vector<HeaderField> headers = std::move(txn_->addedHeaders);
    headers.insert(headers.end(), o.headers.begin(), o.headers.end());
    std::vector<HeaderEdit> edits = std::move(txn_->headerEdits);
    edits.insert(edits.end(), o.edits.begin(), o.edits.end());
    deliver(headers, edits);
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

void Session::deliver(const std::vector<HeaderField>& headers,
                      const std::vector<HeaderEdit>& edits) {
  if (txn_->discard) {
    // A discard verdict: the client hears 250, the MTA hears nothing (its open transaction,
    // if any, is reset before the next MAIL).
    finishData(localReply(250, "2.0.0", "Ok"),
               ReplySource::filterVerdict(txn_->discardBy, "discarded"));
    return;
  }
  if (txn_->framer->oversized()) {
    // Core invariant, not size policy (that is the size filter's): a truncated spool is never
    // forwarded. Unreachable while the mandatory size filter is in the chain.
    spdlog::error("{} event=invariant detail=\"oversized message reached delivery\"", view_.id);
    finishData(localReply(451, "4.3.0", "Error: local error in processing, try again later"),
               ReplySource::local("oversized message reached delivery"));
    return;
  }
  // The trace header the filters saw; the spool is stuffed on its way only if it must be.
  MessageHead head{std::move(txn_->traceHeader), 0, txn_->framer->dotLedLine()};
  txn_->traceHeader.clear();
  for (const auto& h : headers) {
    if (auto line = formatHeader(h.name, h.value)) {
      head.bytes += *line;
    } else {
      spdlog::warn("{} event=bad-header name={}", view_.id, logValue(h.name));
    }
  }
  if (!edits.empty() && !editHeaders(edits, head)) return;
  const Dispatcher::Clock::time_point handedOver = host_.dispatcher().now();
  coreStats().addedLatency(
      std::chrono::duration_cast<std::chrono::microseconds>(handedOver - txn_->endOfData));
  link_.message(txn_->spool, std::move(head), [this, handedOver](const UpstreamResult& r) {
    if (!r.ok()) {
      upstreamFailed(r, UpstreamStep::kDot);
      return;
    }
    coreStats().mtaReply(std::chrono::duration_cast<std::chrono::microseconds>(
        host_.dispatcher().now() - handedOver));
    if (r.reply->isPositive()) {
      summary_.delivered();
      coreStats().relayed(view_.message.size);
    }
    std::optional<Reply> amended;
    finishData(withEnhancedCode(*r.reply, "2.0.0", amended), ReplySource::mta());
  });
}

bool Session::editHeaders(const std::vector<HeaderEdit>& edits, MessageHead& head) {
  // The client's header block is read back from the spool (bounded: judgeHeaderBlock refused
  // a block over its limit), rewritten, and sent after our headers; the spool then continues
  // from the separator line, so the body goes out byte for byte.
  const HeaderBlock parsed = parseHeaderBlock(*txn_->spool, HeaderBlockLimits{});
  std::string block(parsed.bytes, '\0');
  if (parsed.status != HeaderBlock::Status::kOk ||
      txn_->spool->read(0, block.data(), block.size()) != block.size()) {
    finishData(localReply(451, "4.3.0", "Error: local error in processing, try again later"),
               ReplySource::local("header block could not be read back for editing"));
    return false;
  }
  EditedHeaderBlock edited = editHeaderBlock(block, edits);
  for (const auto& name : edited.skipped) {
    spdlog::warn("{} event=bad-header name={}", view_.id, logValue(name));
  }
  spdlog::info("{} event=header-edit removed={} replaced={} added={}", view_.id, edited.removed,
               edited.replaced, edited.added);
  head.bytes += edited.bytes;
  head.spoolOffset = parsed.bytes;
  return true;
}

}  // namespace portcullis
