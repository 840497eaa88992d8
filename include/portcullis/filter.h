#pragma once
// Filter: one instance per session, one hook per stage. Every hook receives a read-only view and
// a move-only Next that must be completed exactly once, inline or later (after a DNS answer or a
// scanner reply). The chain enforces the rest: a second completion is ignored and logged, a
// completion after the session is gone is dropped, a filter that never answers is tempfailed at
// its timeout, and a Next destroyed without being called counts as a filter error.
// Owning resources: a filter owns its pending requests (e.g. DnsLookup handles); destroying the
// filter (the session going away) cancels them. Hooks are called on the event-loop thread only.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "portcullis/session_view.h"
#include "portcullis/stage.h"
#include "portcullis/verdict.h"

namespace portcullis {

// Where a completion goes: the core's, opaque to filters. Next holds it weakly so that a late
// completion after the session has gone finds nothing and is dropped.
class CompletionSink;
// The core's way to make a live Next (proxy/api/next_access.h); filters only receive them.
class NextAccess;

class Next {
 public:
  Next() = default;  // not pending: calling it does nothing
  Next(Next&& other) noexcept;
  Next& operator=(Next&& other) noexcept;
  Next(const Next&) = delete;
  Next& operator=(const Next&) = delete;
  ~Next();  // uncalled: reported to the chain as a filter error

  // Completes the call with a verdict. A second call is ignored (and logged by the chain).
  void operator()(Verdict verdict);
  // Completes the call as a failure (the lookup broke, the scanner is down...). The chain turns
  // it into a tempfail or a continue according to the filter's on_error setting.
  void fail(std::string error);

  bool pending() const { return pending_; }

 private:
  friend class NextAccess;
  Next(std::weak_ptr<CompletionSink> sink, std::uint64_t call);
  void finish(std::optional<Verdict> verdict, std::string error);

  std::weak_ptr<CompletionSink> sink_;
  std::uint64_t call_ = 0;
  bool pending_ = false;
};

class Filter {
 public:
  virtual ~Filter() = default;

  virtual void onConnect(const SessionView&, Next next) { next(Verdict::proceed()); }
  virtual void onHelo(const SessionView&, Next next) { next(Verdict::proceed()); }
  virtual void onMailFrom(const SessionView&, Next next) { next(Verdict::proceed()); }
  virtual void onRcptTo(const SessionView&, Next next) { next(Verdict::proceed()); }
  virtual void onData(const SessionView&, Next next) { next(Verdict::proceed()); }
  virtual void onEndOfHeaders(const SessionView&, Next next) { next(Verdict::proceed()); }
  virtual void onEndOfMessage(const SessionView&, Next next) { next(Verdict::proceed()); }

  // Notifications; always fire, never wait. A transaction ends at end-of-data, RSET, a new
  // EHLO, a rejected MAIL, or when the session closes mid-transaction.
  virtual void onTransactionEnd(const SessionView&) {}
  virtual void onDisconnect(const SessionView&) {}

  // The stages whose hook this filter overrides: the chain calls only those, as a hook left to
  // the defaults above only says proceed (API 1.5). Every stage unless a filter says otherwise;
  // derive from FilterWithHooks<YourFilter> below and the compiler works it out.
  virtual StageSet hooks() const { return StageSet::all(); }
};

// The stage hooks class T overrides (itself or through a base between it and Filter): a hook
// T inherits from Filter unchanged has Filter's own type.
template <class T>
constexpr StageSet overriddenHooks() {
  using Hook = void (Filter::*)(const SessionView&, Next);
  StageSet s;
  if (!std::is_same_v<decltype(&T::onConnect), Hook>) s = s.with(Stage::kConnect);
  if (!std::is_same_v<decltype(&T::onHelo), Hook>) s = s.with(Stage::kHelo);
  if (!std::is_same_v<decltype(&T::onMailFrom), Hook>) s = s.with(Stage::kMailFrom);
  if (!std::is_same_v<decltype(&T::onRcptTo), Hook>) s = s.with(Stage::kRcptTo);
  if (!std::is_same_v<decltype(&T::onData), Hook>) s = s.with(Stage::kData);
  if (!std::is_same_v<decltype(&T::onEndOfHeaders), Hook>) s = s.with(Stage::kEndOfHeaders);
  if (!std::is_same_v<decltype(&T::onEndOfMessage), Hook>) s = s.with(Stage::kEndOfMessage);
  return s;
}

// `class MyFilter final : public FilterWithHooks<MyFilter>`: hooks() is the stages MyFilter
// overrides, so the chain skips the others (a filter overriding only onRcptTo is called once
// per RCPT and nowhere else).
template <class Self>
class FilterWithHooks : public Filter {
 public:
  StageSet hooks() const override { return overriddenHooks<Self>(); }
};

}  // namespace portcullis
