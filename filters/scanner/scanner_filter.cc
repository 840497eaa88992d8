// ScannerFilter. See scanner_filter.h.

#include "filters/scanner/scanner_filter.h"

#include <algorithm>
#include <utility>

#include "filters/scanner/stream_exchange.h"
#include "portcullis/log.h"

namespace portcullis {
namespace {

// The verdict with " time=Nms" added to its reason, so the reject line shows the scan time.
Verdict withTime(const Verdict& v, std::int64_t ms) {
  return v.withReason(v.reason() + (v.reason().empty() ? "" : " ") + "time=" + std::to_string(ms) +
                      "ms");
}

}  // namespace

ScannerFilter::ScannerFilter(std::shared_ptr<const ScannerConfig> config,
                             std::shared_ptr<const ScanClient> client,
                             std::shared_ptr<ScannerShared> shared, const FilterContext& context)
    : config_(std::move(config)),
      client_(std::move(client)),
      shared_(std::move(shared)),
      context_(context) {
  if (!shared_->countersRegistered && context_.stats != nullptr) {
    const std::string_view name = client_->scannerName();
    constexpr std::string_view kFamily = "portcullis_scanner_results_total";
    shared_->clean = context_.stats->counter(kFamily, {{"scanner", name}, {"result", "clean"}});
    shared_->flagged = context_.stats->counter(kFamily, {{"scanner", name}, {"result", "flagged"}});
    shared_->failed = context_.stats->counter(kFamily, {{"scanner", name}, {"result", "error"}});
    shared_->countersRegistered = true;
  }
}

ScannerFilter::~ScannerFilter() { cancel(); }

void ScannerFilter::cancel() {
  if (probing_) {
    probing_ = false;  // the session went away mid-probe: the next message probes instead
    shared_->breaker.probeAbandoned();
  }
  // The exchange first (it may call back into us), then the turn (which may wake another).
  exchange_.reset();
  deadline_.reset();
  failLater_.reset();
  slot_.reset();
}

std::int64_t ScannerFilter::elapsedMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               started_)
      .count();
}

void ScannerFilter::onTransactionEnd(const SessionView&) {
  // The message is gone (RSET, or the session closing mid-scan): nothing is left to judge.
  cancel();
  reader_ = nullptr;
}

void ScannerFilter::onEndOfMessage(const SessionView& s, Next next) {
  cancel();
  next_ = std::move(next);
  session_ = &s;
  sessionId_ = std::string(s.id());
  started_ = std::chrono::steady_clock::now();
  reader_ = s.message().reader();
  size_ = reader_ != nullptr ? reader_->size() : 0;
  const std::string name(client_->scannerName());

  if (reader_ == nullptr || size_ > config_->maxSize) {
    if (context_.log != nullptr) {
      context_.log->info(sessionId_, "event=scan filter=" + name +
                                         " scan=skipped-size size=" + std::to_string(size_) +
                                         " max_size=" + std::to_string(config_->maxSize));
    }
    next_(Verdict::proceed());
    return;
  }
  if (context_.timers == nullptr) {
    failNow("no timers");
    return;
  }
  switch (shared_->breaker.admit(std::chrono::steady_clock::now(), client_->canProbe())) {
    case CircuitBreaker::Admission::kSkip:
      failNow("circuit open");
      return;
    case CircuitBreaker::Admission::kProbe:
      probing_ = true;
      break;
    case CircuitBreaker::Admission::kScan:
      break;
  }
  // Every wait of the scan, the turn in the queue included, ends by `timeout`.
  deadline_ = context_.timers->start(config_->timeout, [this] {
    finish({ScanResult::Kind::kError,
            std::nullopt,
            {},
            "timeout after " + std::to_string(config_->timeout.count()) + "ms"});
  });
  slot_ = shared_->limiter->acquire(*context_.timers, [this] { onTurn(); });
  if (!slot_) failNow("queue full (" + std::to_string(config_->maxQueue) + " waiting)");
}

void ScannerFilter::failNow(std::string error) {
  // Not inline: the hook's caller is still on the stack, and a scan always completes later.
  if (context_.timers == nullptr) {
    finish({ScanResult::Kind::kError, std::nullopt, {}, std::move(error)});
    return;
  }
  deadline_.reset();
  failLater_ = context_.timers->start(std::chrono::milliseconds(0), [this, error] {
    finish({ScanResult::Kind::kError, std::nullopt, {}, error});
  });
}

void ScannerFilter::onTurn() {
  const ScanRequest request{*session_, *reader_, size_, config_->timeout, context_};
  if (probing_) {
    exchange_ = client_->probe(
        request, [this](bool healthy, const std::string& detail) { endProbe(healthy, detail); });
    return;
  }
  exchange_ = client_->start(request, [this](ScanResult result) { finish(std::move(result)); });
}

void ScannerFilter::endProbe(bool healthy, const std::string& detail) {
  probing_ = false;
  exchange_.reset();
  const std::string name(client_->scannerName());
  const CircuitBreaker::Change change =
      shared_->breaker.probeResult(healthy, std::chrono::steady_clock::now());
  if (context_.log != nullptr) {
    if (healthy) {
      context_.log->info(sessionId_, "event=scanner-probe filter=" + name + " result=ok");
    } else {
      context_.log->warn(sessionId_, "event=scanner-probe filter=" + name +
                                         " result=failed error=" + logQuote(detail));
    }
    if (change == CircuitBreaker::Change::kClosed) {
      context_.log->info(sessionId_, "event=scanner-circuit-closed filter=" + name);
    }
  }
  if (!healthy) {
    finish({ScanResult::Kind::kError, std::nullopt, {}, "circuit open (probe failed)"});
    return;
  }
  onTurn();
}

void ScannerFilter::finish(ScanResult result) {
  if (probing_) {
    // The deadline passed while the probe was out: the scanner is still not healthy.
    probing_ = false;
    shared_->breaker.probeResult(false, std::chrono::steady_clock::now());
  }
  cancel();
  const std::int64_t ms = elapsedMs();
  const std::string name(client_->scannerName());
  const bool failed = result.kind != ScanResult::Kind::kDone || !result.verdict;
  const auto now = std::chrono::steady_clock::now();
  const CircuitBreaker::Change change =
      failed ? shared_->breaker.recordFailure(now) : shared_->breaker.recordSuccess();
  if (context_.log != nullptr) {
    if (failed) {
      context_.log->warn(
          sessionId_, "event=scan filter=" + name + " scan=error error=" + logQuote(result.error) +
                          " size=" + std::to_string(size_) + " time=" + std::to_string(ms) + "ms");
    } else {
      context_.log->info(sessionId_, "event=scan filter=" + name + " " + result.summary +
                                         " size=" + std::to_string(size_) +
                                         " time=" + std::to_string(ms) + "ms");
    }
    if (change == CircuitBreaker::Change::kOpened) {
      context_.log->warn(sessionId_, "event=scanner-circuit-open filter=" + name + " open_for=" +
                                         std::to_string(config_->breaker.openFor.count()) + "ms");
    } else if (change == CircuitBreaker::Change::kClosed) {
      context_.log->info(sessionId_, "event=scanner-circuit-closed filter=" + name);
    }
  }
  if (failed) {
    shared_->failed.add();
  } else if (result.verdict->isContinue()) {
    shared_->clean.add();
  } else {
    shared_->flagged.add();
  }
  Next next = std::move(next_);
  if (failed) {
    next.fail(name + " " + (result.error.empty() ? "failed" : result.error));
  } else {
    // A clean or tagged message says what the scan found too: the session line shows it.
    Verdict& v = *result.verdict;
    if (v.isContinue() && v.reason().empty()) v = v.withReason(result.summary);
    next(withTime(v, ms));
  }
}

FilterCreator makeScannerCreator(const std::shared_ptr<const ScannerConfig>& config,
                                 const std::shared_ptr<const ScanClient>& client) {
  auto shared = std::make_shared<ScannerShared>(*config);
  return [config, client, shared](const FilterContext& context) -> std::unique_ptr<Filter> {
    return std::make_unique<ScannerFilter>(config, client, shared, context);
  };
}

FilterCreator makeScannerCreator(const std::shared_ptr<const ScannerConfig>& config,
                                 const std::shared_ptr<const ScanProtocol>& protocol) {
  return makeScannerCreator(config, makeStreamScanClient(protocol, config->address));
}

FilterTraits scannerTraits() {
  FilterTraits traits;
  traits.timesItself = true;
  // The sender retries; 4.7.1 like the rest of our policy answers (the default).
  traits.failureReply =
      Reply::transient(451, "4.7.1", "Message could not be scanned, try again later");
  return traits;
}

}  // namespace portcullis
