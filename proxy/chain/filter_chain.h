#pragma once
// FilterChain: runs one session's filters for a stage, in order, and produces one outcome.
// Owns the per-session Filter instances. The first non-continue verdict of an enforcing filter
// decides; observe-mode filters are logged and counted but change nothing; `accept` ends the
// stage early. The chain, not the filters, enforces each filter's timeout, on_error, observe
// mode and defer_to, exactly-once completion (a duplicate is logged and ignored, a late one
// dropped) and the reply class each stage allows. It loops rather than recurses, so a filter
// that completes inline is safe. The outcome callback always runs from the event loop, never
// inside run(); destroying the chain cancels everything pending. Every verdict is logged and
// counted (the spec's FilterStats) in one place, record().
// The session hands the chain its SessionRecord; filters see it through a SessionRecordView the
// chain keeps, so they never depend on the record's layout.

#include <event2/event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"
#include "proxy/api/session_record.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/recycled.h"
#include "proxy/config/config.h"

namespace portcullis {

// The code classes each stage allows (DESIGN stage table). A filter reply outside its stage's
// list keeps its text and enhanced code but gets the stage default code of its class.
Reply normalizeForStage(Stage stage, const Reply& reply);
// The code normalizeForStage() would give a reply with `code` (no copy of the reply).
int normalizedCode(Stage stage, int code);

struct VerdictRecord {
  std::string filter;
  Stage stage;
  VerdictKind kind;
  int code = 0;
  std::string reason;
  bool observed = false;  // observe mode: logged only
  bool deferred = false;  // held until RCPT (defer_to)
  bool error = false;     // a filter failure or timeout
};

struct ChainOutcome {
  VerdictKind kind = VerdictKind::kContinue;  // kContinue also after an accept
  std::optional<Reply> reply;                 // tempfail / reject / disconnect
  std::string filter;                         // who decided
  std::string reason;
  std::vector<HeaderField> headers;  // to add to the message (end_of_headers/end_of_message)
  std::vector<HeaderEdit> edits;     // to the client's header block (end_of_message)
};

class FilterChain : public Recycled<FilterChain> {
 public:
  using Done = std::function<void(ChainOutcome)>;

  FilterChain(Dispatcher& dispatcher, std::string sessionId, const std::vector<FilterSpec>& specs,
              const FilterContext& context);
  ~FilterChain();
  FilterChain(const FilterChain&) = delete;
  FilterChain& operator=(const FilterChain&) = delete;

  // Runs `stage`. `record` must stay valid until `done` runs. One run at a time.
  void run(Stage stage, const SessionRecord& record, Done done);
  bool running() const { return static_cast<bool>(done_); }
  // Abandons the current run: its outcome callback will not be called.
  void cancel();

  void notifyTransactionEnd(const SessionRecord& record);
  void notifyDisconnect(const SessionRecord& record);

  // A verdict held by defer_to, applied at the first RCPT (and every RCPT after it).
  const std::optional<ChainOutcome>& held() const { return held_; }
  const std::vector<VerdictRecord>& records() const { return records_; }
  std::size_t size() const { return filters_.size(); }

 private:
  struct Sink;
  struct Slot {
    const FilterSpec* spec;
    std::unique_ptr<Filter> filter;
    StageSet hooks;  // filter->hooks(), asked once: the stages it is called at
  };

  void advance();
  void startCurrent();
  void onComplete(std::uint64_t call, std::optional<Verdict> verdict, const std::string& error);
  void threwDuringCall(std::uint64_t call, const std::string& error);
  void onDuplicate(std::uint64_t call);
  void onTimeout();
  void apply(const Slot& slot, std::optional<Verdict> verdict, const std::string& error);
  void finish();
  void record(const Slot& slot, VerdictKind kind, const std::optional<Reply>& reply,
              const std::string& reason, bool observed, bool deferred, bool error);
  // The view the filters get of `record` (made once per record, then reused).
  const SessionView& show(const SessionRecord& record);

  std::string id_;
  std::vector<Slot> filters_;
  std::shared_ptr<Sink> sink_;
  Timer timer_;
  DeferredCall deliver_;  // the outcome of a run whose filters all answered inline

  // The current run.
  Stage stage_ = Stage::kConnect;
  const SessionView* view_ = nullptr;
  std::chrono::steady_clock::time_point callStart_;
  Done done_;
  std::size_t index_ = 0;
  std::uint64_t call_ = 0;
  bool waiting_ = false;
  bool inHook_ = false;
  bool droppedByThrow_ = false;
  bool looping_ = false;
  bool inRun_ = false;
  bool decided_ = false;
  ChainOutcome outcome_;
  std::optional<ChainOutcome> held_;
  std::vector<VerdictRecord> records_;
  std::optional<SessionRecordView> shown_;
};

}  // namespace portcullis
