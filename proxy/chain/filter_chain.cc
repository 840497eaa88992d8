// FilterChain. See filter_chain.h.

#include "proxy/chain/filter_chain.h"

#include <algorithm>
#include <array>
#include <exception>
#include <initializer_list>
#include <utility>

#include "proxy/api/next_access.h"
#include "proxy/base/log.h"

namespace portcullis {
namespace {

// A filter that times its own waits (FilterTraits::timesItself) reports its timeout itself; the
// chain's timer only catches one that never does, this much later.
constexpr std::chrono::milliseconds kSelfTimedGrace{2000};

std::chrono::milliseconds backstop(const FilterSpec& spec) {
  return spec.traits.timesItself ? spec.timeout + kSelfTimedGrace : spec.timeout;
}

// What a session gets in place of a filter whose creator could not make one for it (it threw,
// or made nothing: a plugin's bug, or a resource it could not get): each hook fails with that
// error, so the filter's on_error decides (tempfail by default, the first stage being connect)
// and the daemon and every other session go on.
class UnavailableFilter final : public Filter {
 public:
  explicit UnavailableFilter(std::string error) : error_(std::move(error)) {}
  void onConnect(const SessionView&, Next next) override { next.fail(error_); }
  void onHelo(const SessionView&, Next next) override { next.fail(error_); }
  void onMailFrom(const SessionView&, Next next) override { next.fail(error_); }
  void onRcptTo(const SessionView&, Next next) override { next.fail(error_); }
  void onData(const SessionView&, Next next) override { next.fail(error_); }
  void onEndOfHeaders(const SessionView&, Next next) override { next.fail(error_); }
  void onEndOfMessage(const SessionView&, Next next) override { next.fail(error_); }

 private:
  std::string error_;
};

// Inside a catch block: the text of the exception being handled (a std::exception's what(),
// after `prefix`).
std::string handledExceptionText(std::string_view prefix = {}) {
  try {
    throw;
  } catch (const std::exception& e) {
    return std::string(prefix) + e.what();
  } catch (...) {
    return "exception of unknown type";
  }
}

void warnFilterError(const std::string& sessionId, const FilterSpec& spec, std::string_view hook,
                     std::string_view error) {
  spdlog::warn("{} event=filter-error filter={} hook={} error={}", sessionId, spec.label, hook,
               logValue(error));
}

// The session's filter for `spec` and the stages it is called at; an UnavailableFilter (every
// stage) when the plugin's code threw or made nothing.
std::pair<std::unique_ptr<Filter>, StageSet> createFilter(const FilterSpec& spec,
                                                          const FilterContext& context,
                                                          const std::string& sessionId) {
  std::string error;
  try {
    if (std::unique_ptr<Filter> filter = spec.creator(context)) {
      const StageSet hooks = filter->hooks();
      return {std::move(filter), hooks};
    }
    error = "its creator made no filter";
  } catch (...) {
    error = "could not start: " + handledExceptionText();
  }
  warnFilterError(sessionId, spec, "create", error);
  return {std::make_unique<UnavailableFilter>(std::move(error)), StageSet::all()};
}

struct StageCodes {
  std::initializer_list<int> allowed;
  int transientDefault;
  int permanentDefault;
};

// DESIGN stage table (RFC 5321 4.3.2). Indexed by Stage.
const std::array<StageCodes, kStageCount> kStageCodes = {{
    {{421, 554}, 421, 554},                                     // connect
    {{421, 450, 550, 504}, 450, 550},                           // helo
    {{421, 451, 452, 455, 550, 552, 553, 555}, 451, 550},       // mail
    {{421, 450, 451, 452, 550, 551, 552, 553, 555}, 450, 550},  // rcpt
    {{421, 451, 554}, 451, 554},                                // data
    {{421, 450, 451, 452, 550, 552, 554}, 451, 550},            // end_of_headers
    {{421, 450, 451, 452, 550, 552, 554}, 451, 550},            // end_of_message
}};

}  // namespace

int normalizedCode(Stage stage, int code) {
  const StageCodes& codes = kStageCodes[static_cast<std::size_t>(stage)];
  if (code < 400) return code;
  if (std::find(codes.allowed.begin(), codes.allowed.end(), code) != codes.allowed.end()) {
    return code;
  }
  return code < 500 ? codes.transientDefault : codes.permanentDefault;
}

Reply normalizeForStage(Stage stage, const Reply& reply) {
  const int code = normalizedCode(stage, reply.code());
  return code == reply.code() ? reply : reply.withCode(code);
}

struct FilterChain::Sink final : CompletionSink {
  explicit Sink(FilterChain* c) : chain(c) {}
  void complete(std::uint64_t call, std::optional<Verdict> verdict, std::string error) override {
    if (chain) chain->onComplete(call, std::move(verdict), error);
  }
  void duplicate(std::uint64_t call) override {
    if (chain) chain->onDuplicate(call);
  }
  FilterChain* chain;
};

FilterChain::FilterChain(Dispatcher& dispatcher, std::string sessionId,
                         const std::vector<FilterSpec>& specs, const FilterContext& context)
    : id_(std::move(sessionId)),
      sink_(std::make_shared<Sink>(this)),
      timer_(dispatcher, [this] { onTimeout(); }),
      deliver_(
          dispatcher, [this] { finish(); }, DeferredCall::Flushes::kWait) {
  filters_.reserve(specs.size());
  for (const FilterSpec& spec : specs) {
    auto [filter, hooks] = createFilter(spec, context, id_);
    filters_.push_back({&spec, std::move(filter), hooks});
  }
}

FilterChain::~FilterChain() {
  // Disarm first: a filter destroyed below may drop a pending Next, which must find no chain.
  sink_->chain = nullptr;
  sink_.reset();
  filters_.clear();
}

const SessionView& FilterChain::show(const SessionRecord& record) {
  if (!shown_ || &shown_->record() != &record) shown_.emplace(record);
  return *shown_;
}

void FilterChain::run(Stage stage, const SessionRecord& record, Done done) {
  stage_ = stage;
  view_ = &show(record);
  done_ = std::move(done);
  index_ = 0;
  decided_ = false;
  inRun_ = true;
  outcome_ = ChainOutcome{};
  // defer_to: a held connect/helo verdict lands on every RCPT (postscreen "enforce").
  if (stage == Stage::kRcptTo && held_) {
    outcome_ = *held_;
    outcome_.reply = normalizeForStage(stage, *outcome_.reply);
    decided_ = true;
  }
  advance();
  inRun_ = false;
}

void FilterChain::advance() {
  looping_ = true;
  while (!decided_ && index_ < filters_.size()) {
    if (!filters_[index_].hooks.has(stage_)) {
      ++index_;  // its hook for this stage would only say proceed
      continue;
    }
    startCurrent();
    if (waiting_) {
      looping_ = false;
      return;  // completion or timeout resumes
    }
  }
  looping_ = false;
  finish();
}

void FilterChain::startCurrent() {
  Slot& slot = filters_[index_];
  waiting_ = true;
  const std::uint64_t call = ++call_;
  Next next = NextAccess::make(sink_, call);
  Filter& f = *slot.filter;
  inHook_ = true;
  if (slot.spec->stats) callStart_ = std::chrono::steady_clock::now();
  try {
    switch (stage_) {
      case Stage::kConnect:
        f.onConnect(*view_, std::move(next));
        break;
      case Stage::kHelo:
        f.onHelo(*view_, std::move(next));
        break;
      case Stage::kMailFrom:
        f.onMailFrom(*view_, std::move(next));
        break;
      case Stage::kRcptTo:
        f.onRcptTo(*view_, std::move(next));
        break;
      case Stage::kData:
        f.onData(*view_, std::move(next));
        break;
      case Stage::kEndOfHeaders:
        f.onEndOfHeaders(*view_, std::move(next));
        break;
      case Stage::kEndOfMessage:
        f.onEndOfMessage(*view_, std::move(next));
        break;
    }
  } catch (...) {
    // A throwing filter must not take the daemon down; it counts as a filter error.
    threwDuringCall(call, handledExceptionText("exception: "));
  }
  inHook_ = false;
  // Only an asynchronous call needs the timer (inline completions have already run).
  if (waiting_ && call == call_) timer_.start(backstop(*slot.spec));
}

void FilterChain::threwDuringCall(std::uint64_t call, const std::string& error) {
  inHook_ = false;
  if (call != call_) return;
  // The Next given to the hook was destroyed while the exception unwound; that reported
  // "dropped" (held back below), and the exception is the better reason.
  if (waiting_ || droppedByThrow_) {
    droppedByThrow_ = false;
    waiting_ = true;
    onComplete(call, std::nullopt, error);
  }
}

void FilterChain::onComplete(std::uint64_t call, std::optional<Verdict> verdict,
                             const std::string& error) {
  if (inHook_ && call == call_ && !verdict && std::uncaught_exceptions() > 0) {
    waiting_ = false;
    droppedByThrow_ = true;  // threwDuringCall() completes it with the exception's text
    return;
  }
  if (!waiting_ || call != call_) {
    // The chain gave up on that call (timeout) or moved on: a late completion is dropped.
    spdlog::debug("{} event=filter-late-completion call={}", id_, call);
    return;
  }
  waiting_ = false;
  timer_.stop();
  if (const FilterStats* stats = filters_[index_].spec->stats.get()) {
    stats->observeDuration(stage_, std::chrono::duration_cast<std::chrono::microseconds>(
                                       std::chrono::steady_clock::now() - callStart_));
  }
  apply(filters_[index_], std::move(verdict), error);
  ++index_;
  if (!looping_) advance();
}

void FilterChain::onDuplicate(std::uint64_t call) {
  const std::string name =
      (call == call_ && index_ < filters_.size()) ? filters_[index_].spec->label : "?";
  spdlog::warn("{} event=filter-duplicate-completion stage={} call={} filter={}", id_,
               stageName(stage_), call, name);
}

void FilterChain::onTimeout() {
  if (!waiting_) return;
  onComplete(call_, std::nullopt,
             "timeout after " + std::to_string(backstop(*filters_[index_].spec).count()) + "ms");
}

void FilterChain::record(const Slot& slot, VerdictKind kind, const std::optional<Reply>& reply,
                         const std::string& reason, bool observed, bool deferred, bool error) {
  VerdictRecord r{slot.spec->label, stage_,   kind,     reply ? reply->code() : 0,
                  reason,           observed, deferred, error};
  spdlog::info("{} event={} stage={} filter={} verdict={} code={} mode={} reason={}", id_,
               error ? "filter-error" : (observed ? "observe" : (deferred ? "defer" : "verdict")),
               stageName(stage_), slot.spec->label, verdictName(kind), r.code,
               slot.spec->mode == FilterMode::kObserve ? "observe" : "enforce",
               logValue(reason, 512));
  if (records_.size() < 64) records_.push_back(std::move(r));
  // Counted as the stage would send it: an observe-mode 550 at connect would have been a 554.
  if (const FilterStats* stats = slot.spec->stats.get()) {
    if (error) stats->countError(stage_);
    if (deferred) stats->countDeferred(stage_);
    if (kind != VerdictKind::kContinue) {
      // (A deferred one comes with the code it will have at its stage.)
      stats->countVerdict(
          stage_, kind, observed,
          !reply ? 0 : (deferred ? reply->code() : normalizedCode(stage_, reply->code())));
    }
  }
}

void FilterChain::apply(const Slot& slot, std::optional<Verdict> verdict,
                        const std::string& error) {
  const FilterSpec& spec = *slot.spec;
  if (!verdict) {
    // Filter failure or timeout: on_error decides (tempfail, or fail open).
    if (spec.onError == OnError::kContinue || spec.mode == FilterMode::kObserve) {
      record(slot, VerdictKind::kContinue, std::nullopt, error, spec.mode == FilterMode::kObserve,
             false, true);
      return;
    }
    verdict = Verdict::tempfail(spec.traits.failureReply.value_or(Reply::transient(
                                    451, "4.3.0", "Temporary failure, try again later")),
                                error);
    record(slot, VerdictKind::kTempfail, verdict->reply(), error, false, false, true);
  } else if (verdict->kind() == VerdictKind::kContinue && !verdict->reason().empty() &&
             records_.size() < 64) {
    // A filter that says why it let the message go (a scanner's "scan=clean score=1.2") is
    // named on the session line, without an event=verdict line of its own.
    records_.push_back({spec.label, stage_, VerdictKind::kContinue, 0, verdict->reason(),
                        spec.mode == FilterMode::kObserve, false, false});
  } else if (verdict->kind() != VerdictKind::kContinue) {
    const bool observed = spec.mode == FilterMode::kObserve;
    const bool holdable = verdict->kind() == VerdictKind::kReject ||
                          verdict->kind() == VerdictKind::kTempfail ||
                          verdict->kind() == VerdictKind::kDisconnect;
    const bool deferred = !observed && holdable && spec.deferTo &&
                          static_cast<int>(stage_) < static_cast<int>(*spec.deferTo);
    if (deferred) {
      // A held disconnect becomes a plain reject/tempfail at RCPT: the envelope gets logged,
      // and a 421 (which would close the connection) becomes an ordinary 450. Logged with the
      // code the client will get there, not the one this stage would have sent.
      const Reply& r = *verdict->reply();
      const Reply held =
          normalizeForStage(*spec.deferTo, r.closesConnection() ? r.withCode(450) : r);
      record(slot, verdict->kind(), held, verdict->reason(), false, true, false);
      if (!held_) {
        ChainOutcome h;
        h.kind = held.isTransient() ? VerdictKind::kTempfail : VerdictKind::kReject;
        h.reply = held;
        h.filter = spec.label;
        h.reason = verdict->reason();
        held_ = std::move(h);
      }
      return;
    }
    record(slot, verdict->kind(), verdict->reply(), verdict->reason(), observed, false, false);
    if (observed) return;
  }

  for (const auto& h : verdict->headers()) outcome_.headers.push_back(h);
  for (const auto& e : verdict->headerEdits()) outcome_.edits.push_back(e);
  switch (verdict->kind()) {
    case VerdictKind::kContinue:
      return;
    case VerdictKind::kAccept:
      decided_ = true;  // allowlisted: the rest of this stage's chain is skipped
      outcome_.kind = VerdictKind::kContinue;
      outcome_.filter = spec.label;
      outcome_.reason = verdict->reason();
      return;
    default:
      decided_ = true;
      outcome_.kind = verdict->kind();
      if (verdict->reply()) outcome_.reply = normalizeForStage(stage_, *verdict->reply());
      outcome_.filter = spec.label;
      outcome_.reason = verdict->reason();
      return;
  }
}

void FilterChain::finish() {
  if (inRun_) {
    // Every filter answered inline: the outcome still reaches the session from the loop, never
    // inside run(), and before any stream flushes: a pipelined command's write to the MTA
    // goes out with those of the commands before it in the group.
    deliver_.schedule();
    return;
  }
  Done done = std::move(done_);
  done_ = nullptr;
  view_ = nullptr;
  if (done) done(std::move(outcome_));
}

void FilterChain::cancel() {
  deliver_.cancel();
  done_ = nullptr;
  view_ = nullptr;
  waiting_ = false;
  decided_ = true;
  timer_.stop();
}

void FilterChain::notifyTransactionEnd(const SessionRecord& record) {
  const SessionView& view = show(record);
  for (auto& slot : filters_) {
    try {
      slot.filter->onTransactionEnd(view);
    } catch (...) {
      warnFilterError(id_, *slot.spec, "transaction_end", handledExceptionText());
    }
  }
}

void FilterChain::notifyDisconnect(const SessionRecord& record) {
  const SessionView& view = show(record);
  for (auto& slot : filters_) {
    try {
      slot.filter->onDisconnect(view);
    } catch (...) {
      warnFilterError(id_, *slot.spec, "disconnect", handledExceptionText());
    }
  }
}

}  // namespace portcullis
