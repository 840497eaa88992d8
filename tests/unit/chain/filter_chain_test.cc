// FilterChain: inline and deferred completion, exactly-once (duplicates ignored, late ones
// dropped, completions after the chain is gone dropped), timeouts, dropped and failed Nexts
// with on_error, observe mode, accept, defer_to, throwing filters, the reply class each stage
// allows (normalizeForStage) and header accumulation. The filters are small test-local classes
// driven by a per-filter script, on a manual clock (timeouts pass in virtual time).

#include "proxy/chain/filter_chain.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "proxy/admin/stats_registry.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/event_util.h"
#include "tests/support/manual_dispatcher.h"

namespace portcullis {
namespace {

using std::chrono::milliseconds;

constexpr std::array<Stage, kStageCount> kAllStages = {
    Stage::kConnect, Stage::kHelo,         Stage::kMailFrom,    Stage::kRcptTo,
    Stage::kData,    Stage::kEndOfHeaders, Stage::kEndOfMessage};

// What a test filter does when a hook is called: anything with the Next, inline or not.
using Action = std::function<void(Stage, Next)>;
using Calls = std::array<int, kStageCount>;

class ScriptFilter final : public Filter {
 public:
  // `hooks`: what hooks() says (every stage by default, like any plain Filter subclass),
  // whatever it overrides.
  ScriptFilter(Action action, Calls* calls, int* transactionEnds, bool throwOnNotify,
               StageSet hooks = StageSet::all())
      : action_(std::move(action)),
        calls_(calls),
        transactionEnds_(transactionEnds),
        throwOnNotify_(throwOnNotify),
        hooks_(hooks) {}
  StageSet hooks() const override { return hooks_; }
  void onConnect(const SessionView&, Next n) override { hit(Stage::kConnect, std::move(n)); }
  void onHelo(const SessionView&, Next n) override { hit(Stage::kHelo, std::move(n)); }
  void onMailFrom(const SessionView&, Next n) override { hit(Stage::kMailFrom, std::move(n)); }
  void onRcptTo(const SessionView&, Next n) override { hit(Stage::kRcptTo, std::move(n)); }
  void onData(const SessionView&, Next n) override { hit(Stage::kData, std::move(n)); }
  void onEndOfHeaders(const SessionView&, Next n) override {
    hit(Stage::kEndOfHeaders, std::move(n));
  }
  void onEndOfMessage(const SessionView&, Next n) override {
    hit(Stage::kEndOfMessage, std::move(n));
  }
  void onTransactionEnd(const SessionView&) override {
    ++*transactionEnds_;
    if (throwOnNotify_) throw std::runtime_error("notify");
  }
  void onDisconnect(const SessionView&) override {
    if (throwOnNotify_) throw std::runtime_error("notify");
  }

 private:
  void hit(Stage s, Next n) {
    ++(*calls_)[static_cast<std::size_t>(s)];
    action_(s, std::move(n));
  }
  Action action_;
  Calls* calls_;
  int* transactionEnds_;
  bool throwOnNotify_;
  StageSet hooks_;
};

// ---- actions ----

Action proceed() {
  return [](Stage, Next n) { n(Verdict::proceed()); };
}
Action verdict(const Verdict& v) {
  return [v](Stage, Next n) { n(v); };
}
Action verdictAt(Stage at, const Verdict& v) {
  return [at, v](Stage s, Next n) { n(s == at ? v : Verdict::proceed()); };
}
Action reject(int code, const char* enhanced = "5.7.1", const char* text = "Rejected by test") {
  return verdict(Verdict::reject(Reply::permanent(code, enhanced, text), "test reject"));
}
Action tempfail(int code, const char* enhanced = "4.7.1", const char* text = "Try later") {
  return verdict(Verdict::tempfail(Reply::transient(code, enhanced, text), "test tempfail"));
}
// Keeps the Next in `slot` (owned by the test) without completing it.
Action hold(const std::shared_ptr<std::optional<Next>>& slot) {
  return [slot](Stage, Next n) { *slot = std::move(n); };
}
// Lets the Next go out of scope uncalled.
Action drop() {
  return [](Stage, Next) {};
}

const char* kindName(VerdictKind k) { return verdictName(k).data(); }

std::string show(const ChainOutcome& o) {
  std::string out = std::string(verdictName(o.kind));
  if (o.reply) out += " " + o.reply->summary();
  if (!o.filter.empty()) out += " by " + o.filter;
  if (!o.reason.empty()) out += " (" + o.reason + ")";
  return out;
}

class FilterChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spdlog::set_level(spdlog::level::off);  // the chain logs every verdict; keep output short
    view_.id = "chain-test";
  }

  void TearDown() override {
    if (chain_ && !allowRunningAtEnd_) {
      EXPECT_FALSE(chain_->running()) << "a run was left pending at the end of the test";
    }
    for (const auto& slot : slots_) {
      if (!allowPendingNextAtEnd_) {
        EXPECT_FALSE(*slot && (*slot)->pending()) << "a held Next was never completed";
      }
    }
    chain_.reset();
    timers_.clear();
    slots_.clear();
    spdlog::set_level(spdlog::level::info);
  }

  // Adds a filter; call build() once all are added (the chain keeps pointers to the specs).
  void add(const std::string& label, const Action& action, FilterMode mode = FilterMode::kEnforce,
           OnError onError = OnError::kTempfail, milliseconds timeout = milliseconds(5000),
           std::optional<Stage> deferTo = std::nullopt) {
    FilterSpec spec;
    spec.name = label;
    spec.label = label;
    spec.mode = mode;
    spec.timeout = timeout;
    spec.onError = onError;
    spec.deferTo = deferTo;
    if (withStats_) spec.stats = std::make_shared<FilterStats>(stats_, label);
    Calls* calls = &calls_[label];
    int* ends = &transactionEnds_[label];
    const bool throws = throwOnNotify_.contains(label);
    spec.creator = [action, calls, ends, throws](const FilterContext&) {
      return std::make_unique<ScriptFilter>(action, calls, ends, throws);
    };
    specs_.push_back(std::move(spec));
  }

  // Starts over with no filters (the old chain goes first: it points into specs_).
  void fresh() {
    chain_.reset();
    specs_.clear();
    calls_.clear();
    transactionEnds_.clear();
    outcome_.reset();
  }

  void build() {
    chain_ = std::make_unique<FilterChain>(d_, "chain-test", specs_, FilterContext{});
  }

  std::shared_ptr<std::optional<Next>> slot() {
    slots_.push_back(std::make_shared<std::optional<Next>>());
    return slots_.back();
  }

  // Completes the Next `after` from an event-loop timer (a DNS answer arriving later).
  Action completeFromTimer(const Verdict& v, milliseconds after) {
    return [this, v, after](Stage, Next n) {
      auto next = std::make_shared<Next>(std::move(n));
      timers_.push_back(std::make_unique<Timer>(d_, [next, v] { (*next)(v); }));
      timers_.back()->start(after);
    };
  }

  // Starts a run; the outcome lands in outcome_ (inline or later).
  void start(Stage s) {
    outcome_.reset();
    chain_->run(s, view_, [this](ChainOutcome o) {
      ++doneCalls_;
      outcome_ = std::move(o);
    });
  }

  // Runs `s` whose filters all complete inline. The outcome never arrives inside run(); it
  // arrives from the loop's very next pass, with no timer involved.
  ChainOutcome runInline(Stage s) {
    start(s);
    EXPECT_FALSE(outcome_) << "stage " << stageName(s) << ": the outcome arrived inside run()";
    d_.runUntilIdle();
    EXPECT_TRUE(outcome_) << "stage " << stageName(s) << ": no outcome after one loop pass";
    return outcome_.value_or(ChainOutcome{});
  }

  // Runs the loop, moving the manual clock from timer to timer, until the outcome arrives or
  // `limit` of virtual time has passed.
  bool loopUntilDone(milliseconds limit = milliseconds(3000)) {
    const auto deadline = d_.now() + limit;
    d_.runUntilIdle();
    while (!outcome_) {
      if (d_.now() > deadline || !d_.advanceToNextTimer()) return false;
    }
    return true;
  }

  int calls(const std::string& label, Stage s) {
    return calls_[label][static_cast<std::size_t>(s)];
  }

  // The counter `family` of filter `label` with the given extra labels (0 when never registered).
  std::uint64_t count(std::string_view family, const std::string& label,
                      std::initializer_list<StatLabel> labels) {
    // Labels are matched in registration order: filter first, then the family's own.
    for (const StatSample& s : stats_.snapshot()) {
      if (s.name != family || s.labels.empty() || s.labels[0].second != label) continue;
      if (s.labels.size() != labels.size() + 1) continue;
      bool same = true;
      std::size_t i = 1;
      for (const StatLabel& l : labels) {
        same = same && s.labels[i].first == l.name && s.labels[i].second == l.value;
        ++i;
      }
      if (same) return s.value;
    }
    return 0;
  }
  std::uint64_t verdicts(const std::string& label, Stage s, const char* verdict,
                         const char* mode = "enforce") {
    return count("portcullis_filter_verdicts_total", label,
                 {{"stage", stageName(s)}, {"verdict", verdict}, {"mode", mode}});
  }
  // Every verdict-family count of every filter, summed: to prove nothing else was counted.
  std::uint64_t allVerdicts() {
    std::uint64_t total = 0;
    for (const StatSample& s : stats_.snapshot()) {
      if (s.name == "portcullis_filter_verdicts_total") total += s.value;
    }
    return total;
  }

  StatsRegistry stats_;
  ManualDispatcher d_;
  SessionRecord view_;
  std::vector<FilterSpec> specs_;
  std::unique_ptr<FilterChain> chain_;
  std::map<std::string, Calls> calls_;
  std::map<std::string, int> transactionEnds_;
  std::set<std::string> throwOnNotify_;
  std::vector<std::unique_ptr<Timer>> timers_;
  std::vector<std::shared_ptr<std::optional<Next>>> slots_;
  std::optional<ChainOutcome> outcome_;
  int doneCalls_ = 0;
  bool withStats_ = true;  // every filter counted into stats_ unless a test turns it off
  bool allowRunningAtEnd_ = false;
  bool allowPendingNextAtEnd_ = false;
};

// ---- completion paths ----

TEST_F(FilterChainTest, InlineCompletionRunsEveryFilterInOrder) {
  std::vector<std::string> order;
  for (const char* name : {"a", "b", "c"}) {
    add(name, [&order, name](Stage, Next n) {
      order.emplace_back(name);
      n(Verdict::proceed());
    });
  }
  build();
  EXPECT_EQ(chain_->size(), 3u);
  const ChainOutcome o = runInline(Stage::kHelo);
  EXPECT_EQ(o.kind, VerdictKind::kContinue) << "got " << show(o);
  EXPECT_FALSE(o.reply);
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(doneCalls_, 1);
  EXPECT_FALSE(chain_->running());
}

TEST_F(FilterChainTest, ManyInlineFiltersDoNotRecurse) {
  // The chain loops: 20000 inline completions must not grow the stack per filter.
  withStats_ = false;  // 20000 filters' worth of series would only slow the test down
  for (int i = 0; i < 20000; ++i) add("f" + std::to_string(i), proceed());
  build();
  const ChainOutcome o = runInline(Stage::kRcptTo);
  EXPECT_EQ(o.kind, VerdictKind::kContinue);
  EXPECT_EQ(calls("f19999", Stage::kRcptTo), 1);
}

TEST_F(FilterChainTest, DeferredCompletionFromTheEventLoop) {
  add("first", proceed());
  add("dns",
      completeFromTimer(Verdict::reject(Reply::permanent(550, "5.7.1", "listed"), "zone=test"),
                        milliseconds(20)));
  add("last", proceed());
  build();
  start(Stage::kRcptTo);
  EXPECT_FALSE(outcome_) << "the outcome must wait for the deferred filter";
  EXPECT_TRUE(chain_->running());
  EXPECT_EQ(calls("last", Stage::kRcptTo), 0) << "a later filter runs only after the earlier one";
  ASSERT_TRUE(loopUntilDone());
  EXPECT_EQ(outcome_->kind, VerdictKind::kReject) << "got " << show(*outcome_);
  ASSERT_TRUE(outcome_->reply);
  EXPECT_EQ(outcome_->reply->code(), 550);
  EXPECT_EQ(outcome_->filter, "dns");
  EXPECT_EQ(outcome_->reason, "zone=test");
  EXPECT_EQ(calls("last", Stage::kRcptTo), 0) << "the first enforcing non-continue verdict wins";
  EXPECT_FALSE(chain_->running());
}

TEST_F(FilterChainTest, DeferredCompletionByKeepingTheNext) {
  auto held = slot();
  add("async", hold(held));
  add("after", proceed());
  build();
  start(Stage::kMailFrom);
  EXPECT_FALSE(outcome_);
  ASSERT_TRUE(*held);
  EXPECT_TRUE((*held)->pending());
  (**held)(Verdict::proceed());  // called after run() returned, from "elsewhere"
  ASSERT_TRUE(outcome_) << "completing the Next resumes the chain";
  EXPECT_EQ(outcome_->kind, VerdictKind::kContinue);
  EXPECT_EQ(calls("after", Stage::kMailFrom), 1);
  EXPECT_FALSE((*held)->pending());
}

TEST_F(FilterChainTest, SecondCompletionIsIgnored) {
  // Inline: reject, then a stray proceed from the same Next.
  add("twice", [](Stage, Next n) {
    n(Verdict::reject(Reply::permanent(554, "5.7.1", "no"), "first"));
    n(Verdict::proceed());
    n.fail("and a failure");
  });
  build();
  const ChainOutcome o = runInline(Stage::kConnect);
  EXPECT_EQ(o.kind, VerdictKind::kReject) << "got " << show(o);
  EXPECT_EQ(o.reason, "first");
  EXPECT_EQ(doneCalls_, 1);
}

TEST_F(FilterChainTest, SecondDeferredCompletionIsIgnored) {
  auto held = slot();
  add("async", hold(held));
  add("after", proceed());
  build();
  start(Stage::kRcptTo);
  (**held)(Verdict::tempfail(Reply::transient(451, "4.7.1", "later"), "first"));
  ASSERT_TRUE(outcome_);
  const std::string first = show(*outcome_);
  EXPECT_EQ(outcome_->kind, VerdictKind::kTempfail);
  (**held)(Verdict::proceed());
  (**held)(Verdict::reject(Reply::permanent(550, "5.7.1", "x"), "third"));
  EXPECT_EQ(doneCalls_, 1) << "a duplicate must not produce a second outcome";
  EXPECT_EQ(show(*outcome_), first) << "a duplicate must not change the outcome";
  EXPECT_EQ(calls("after", Stage::kRcptTo), 0);
  // The chain is still usable, and a duplicate of an old call does not disturb the new run.
  start(Stage::kRcptTo);
  EXPECT_FALSE(outcome_);
  auto current = std::move(*held);  // the Next of the new call
  held->reset();
  (*current)(Verdict::proceed());
  ASSERT_TRUE(outcome_);
  EXPECT_EQ(outcome_->kind, VerdictKind::kContinue);
}

TEST_F(FilterChainTest, CompletionAfterTheChainIsDestroyedIsDropped) {
  auto held = slot();
  add("async", hold(held));
  build();
  start(Stage::kConnect);
  ASSERT_TRUE(*held);
  chain_.reset();  // the session went away with a lookup in flight
  (**held)(Verdict::reject(Reply::permanent(554, "5.7.1", "late"), "late"));
  EXPECT_EQ(doneCalls_, 0) << "a completion after the chain is gone must be dropped";
  EXPECT_FALSE(outcome_);
  // And a Next destroyed uncalled after the chain is gone reports to nobody.
  auto held2 = slot();
  fresh();
  add("async2", hold(held2));
  build();
  start(Stage::kConnect);
  chain_.reset();
  held2->reset();
  EXPECT_EQ(doneCalls_, 0);
}

TEST_F(FilterChainTest, AFilterThatNeverCompletesIsTempfailedAtItsTimeout) {
  auto held = slot();
  add("stuck", hold(held), FilterMode::kEnforce, OnError::kTempfail, milliseconds(50));
  add("after", proceed());
  build();
  const auto t0 = d_.now();
  start(Stage::kMailFrom);
  EXPECT_FALSE(outcome_);
  ASSERT_TRUE(loopUntilDone()) << "the timeout never fired";
  EXPECT_EQ(d_.now() - t0, milliseconds(50)) << "tempfailed exactly at its timeout";
  EXPECT_EQ(outcome_->kind, VerdictKind::kTempfail) << "got " << show(*outcome_);
  ASSERT_TRUE(outcome_->reply);
  EXPECT_EQ(outcome_->reply->code(), 451);
  EXPECT_EQ(outcome_->reply->enhanced(), "4.3.0");
  EXPECT_EQ(outcome_->filter, "stuck");
  EXPECT_NE(outcome_->reason.find("timeout"), std::string::npos) << outcome_->reason;
  EXPECT_EQ(calls("after", Stage::kMailFrom), 0);
  ASSERT_FALSE(chain_->records().empty());
  EXPECT_TRUE(chain_->records().back().error);
  // The late completion is dropped.
  (**held)(Verdict::proceed());
  EXPECT_EQ(doneCalls_, 1);
  EXPECT_EQ(outcome_->kind, VerdictKind::kTempfail);
}

// A filter that times itself (a scanner, FilterTraits::timesItself) gets a grace period from the
// chain's own timer, so that its own failure is the one reported; and its failureReply replaces
// the chain's 451 4.3.0 under on_error: tempfail, for a failure and a backstop timeout alike.
TEST_F(FilterChainTest, SelfTimedFilterGetsAGraceAndItsOwnFailureReply) {
  auto held = slot();
  add("scanner", hold(held), FilterMode::kEnforce, OnError::kTempfail, milliseconds(50));
  specs_.back().traits.timesItself = true;
  specs_.back().traits.failureReply = Reply::transient(451, "4.7.1", "Could not scan");
  build();
  const auto t0 = d_.now();
  start(Stage::kEndOfMessage);
  d_.advance(milliseconds(50));
  EXPECT_FALSE(outcome_) << "the chain's timer fired at the filter's own timeout";
  ASSERT_TRUE(loopUntilDone()) << "the backstop never fired";
  EXPECT_GT(d_.now() - t0, milliseconds(50));
  ASSERT_TRUE(outcome_->reply);
  EXPECT_EQ(outcome_->reply->summary(), "451 4.7.1 Could not scan");
  (**held)(Verdict::proceed());  // late: dropped

  fresh();
  auto held2 = slot();
  add("scanner", hold(held2), FilterMode::kEnforce, OnError::kTempfail, milliseconds(50));
  specs_.back().traits.timesItself = true;
  specs_.back().traits.failureReply = Reply::transient(451, "4.7.1", "Could not scan");
  build();
  start(Stage::kEndOfMessage);
  d_.advance(milliseconds(50));
  (*held2)->fail("scanner timeout after 50ms");
  ASSERT_TRUE(loopUntilDone());
  EXPECT_EQ(outcome_->reply->summary(), "451 4.7.1 Could not scan");
  EXPECT_EQ(outcome_->reason, "scanner timeout after 50ms");
}

TEST_F(FilterChainTest, TimeoutWithOnErrorContinue) {
  auto held = slot();
  add("stuck", hold(held), FilterMode::kEnforce, OnError::kContinue, milliseconds(30));
  add("after", reject(550));
  build();
  start(Stage::kRcptTo);
  ASSERT_TRUE(loopUntilDone());
  EXPECT_EQ(outcome_->kind, VerdictKind::kReject) << "the chain went on to the next filter";
  EXPECT_EQ(outcome_->filter, "after");
  allowPendingNextAtEnd_ = true;  // the stuck filter never answers, by design
}

TEST_F(FilterChainTest, ADroppedNextIsAFilterError) {
  const struct {
    OnError onError;
    VerdictKind want;
    int code;
    int afterCalls;
  } cases[] = {
      {OnError::kTempfail, VerdictKind::kTempfail, 451, 0},
      {OnError::kContinue, VerdictKind::kContinue, 0, 1},
  };
  for (const auto& tc : cases) {
    fresh();
    add("dropper", drop(), FilterMode::kEnforce, tc.onError);
    add("after", proceed());
    build();
    const ChainOutcome o = runInline(Stage::kMailFrom);
    EXPECT_EQ(o.kind, tc.want) << "on_error "
                               << (tc.onError == OnError::kTempfail ? "tempfail" : "continue")
                               << ": got " << show(o) << ", want " << kindName(tc.want);
    EXPECT_EQ(o.reply ? o.reply->code() : 0, tc.code) << show(o);
    EXPECT_EQ(calls("after", Stage::kMailFrom), tc.afterCalls);
    ASSERT_FALSE(chain_->records().empty());
    EXPECT_TRUE(chain_->records().front().error);
    EXPECT_EQ(chain_->records().front().filter, "dropper");
  }
}

TEST_F(FilterChainTest, NextFailUsesOnError) {
  for (const OnError onError : {OnError::kTempfail, OnError::kContinue}) {
    fresh();
    add(
        "failing", [](Stage, Next n) { n.fail("scanner down"); }, FilterMode::kEnforce, onError);
    build();
    const ChainOutcome o = runInline(Stage::kEndOfMessage);
    if (onError == OnError::kTempfail) {
      EXPECT_EQ(o.kind, VerdictKind::kTempfail) << show(o);
      ASSERT_TRUE(o.reply);
      EXPECT_EQ(o.reply->code(), 451);
      EXPECT_EQ(o.reason, "scanner down");
    } else {
      EXPECT_EQ(o.kind, VerdictKind::kContinue) << show(o);
    }
    EXPECT_EQ(chain_->records().back().reason, "scanner down");
  }
}

TEST_F(FilterChainTest, AThrowingFilterIsAnErrorNotACrash) {
  add("thrower", [](Stage, Next) { throw std::runtime_error("boom"); });
  add("after", proceed());
  build();
  const ChainOutcome o = runInline(Stage::kRcptTo);
  EXPECT_EQ(o.kind, VerdictKind::kTempfail) << show(o);
  ASSERT_TRUE(o.reply);
  EXPECT_EQ(o.reply->code(), 451);
  EXPECT_EQ(o.filter, "thrower");
  EXPECT_EQ(calls("after", Stage::kRcptTo), 0);
  EXPECT_TRUE(chain_->records().back().error);

  // on_error continue: the chain goes on.
  fresh();
  add(
      "thrower", [](Stage, Next) { throw std::runtime_error("boom"); }, FilterMode::kEnforce,
      OnError::kContinue);
  add("after", reject(550));
  build();
  const ChainOutcome o2 = runInline(Stage::kRcptTo);
  EXPECT_EQ(o2.kind, VerdictKind::kReject) << show(o2);
  EXPECT_EQ(o2.filter, "after");

  // Completed, then threw: the completion stands, the exception is ignored.
  fresh();
  add("late-thrower", [](Stage, Next n) {
    n(Verdict::reject(Reply::permanent(550, "5.7.1", "no"), "decided"));
    throw std::runtime_error("after the fact");
  });
  build();
  const ChainOutcome o3 = runInline(Stage::kRcptTo);
  EXPECT_EQ(o3.kind, VerdictKind::kReject) << show(o3);
  EXPECT_EQ(o3.reason, "decided");
}

TEST_F(FilterChainTest, AThrowingFilterIsLoggedWithItsException) {
  add("thrower", [](Stage, Next) { throw std::runtime_error("boom"); });
  build();
  const ChainOutcome o = runInline(Stage::kRcptTo);
  EXPECT_NE(o.reason.find("boom"), std::string::npos)
      << "got reason \"" << o.reason << "\", want the exception text";
}

TEST_F(FilterChainTest, AFilterThrowingANonStdExceptionDoesNotEscape) {
  // DESIGN: a crashing filter must not take the daemon down.
  add("thrower", [](Stage, Next) { throw 42; });
  build();
  EXPECT_NO_THROW(start(Stage::kRcptTo));
  ASSERT_TRUE(loopUntilDone());
  EXPECT_EQ(outcome_->kind, VerdictKind::kTempfail);
}

// A filter its creator could not make for this session (a plugin's bug, a resource it could
// not get): the session gets that filter's on_error at each stage, the daemon goes on.
TEST_F(FilterChainTest, AFilterItsCreatorCouldNotMakeIsAnErrorForThatSession) {
  add("broken", proceed());
  specs_.back().creator = [](const FilterContext&) -> std::unique_ptr<Filter> {
    throw std::runtime_error("backend unreachable");
  };
  add("after", proceed());
  ASSERT_NO_THROW(build());
  const ChainOutcome o = runInline(Stage::kMailFrom);
  EXPECT_EQ(o.kind, VerdictKind::kTempfail) << show(o);
  ASSERT_TRUE(o.reply);
  EXPECT_EQ(o.reply->code(), 451);
  EXPECT_EQ(o.filter, "broken");
  EXPECT_NE(o.reason.find("backend unreachable"), std::string::npos) << o.reason;
  EXPECT_EQ(calls("after", Stage::kMailFrom), 0);
  EXPECT_TRUE(chain_->records().back().error);
  EXPECT_NO_THROW(chain_->notifyTransactionEnd(view_));
  EXPECT_NO_THROW(chain_->notifyDisconnect(view_));

  // on_error continue: the others run; an exception of any type, or no filter at all.
  for (const bool makesNothing : {false, true}) {
    fresh();
    add("broken", proceed(), FilterMode::kEnforce, OnError::kContinue);
    specs_.back().creator = [makesNothing](const FilterContext&) -> std::unique_ptr<Filter> {
      if (makesNothing) return nullptr;
      throw 42;
    };
    add("after", reject(550));
    ASSERT_NO_THROW(build());
    const ChainOutcome o2 = runInline(Stage::kRcptTo);
    EXPECT_EQ(o2.kind, VerdictKind::kReject) << show(o2);
    EXPECT_EQ(o2.filter, "after");
    EXPECT_TRUE(chain_->records().front().error);
    EXPECT_NE(chain_->records().front().reason.find(makesNothing ? "no filter" : "unknown type"),
              std::string::npos)
        << chain_->records().front().reason;
  }
}

// ---- the stages a filter is called at (Filter::hooks) ----

// Overrides onRcptTo only; a second class overrides onMailFrom and, for some addresses, leaves
// the answer to the base class (still an override: it is called).
class RcptOnlyFilter final : public FilterWithHooks<RcptOnlyFilter> {
 public:
  explicit RcptOnlyFilter(Calls* calls) : calls_(calls) {}
  void onRcptTo(const SessionView&, Next n) override {
    ++(*calls_)[static_cast<std::size_t>(Stage::kRcptTo)];
    n(Verdict::reject(Reply::permanent(550, "5.1.1", "No such user"), "rcpt only"));
  }

 private:
  Calls* calls_;
};

class MailDelegatingFilter final : public FilterWithHooks<MailDelegatingFilter> {
 public:
  explicit MailDelegatingFilter(Calls* calls) : calls_(calls) {}
  void onMailFrom(const SessionView& s, Next n) override {
    ++(*calls_)[static_cast<std::size_t>(Stage::kMailFrom)];
    Filter::onMailFrom(s, std::move(n));
  }

 private:
  Calls* calls_;
};

static_assert(overriddenHooks<Filter>() == StageSet());
static_assert(overriddenHooks<RcptOnlyFilter>() == StageSet().with(Stage::kRcptTo));
static_assert(overriddenHooks<MailDelegatingFilter>() == StageSet().with(Stage::kMailFrom));
static_assert(overriddenHooks<ScriptFilter>() == StageSet::all());  // hooks() says otherwise

TEST_F(FilterChainTest, AFilterIsCalledOnlyAtTheStagesItsClassOverrides) {
  add("rcpt-only", proceed());
  specs_.back().creator = [calls = &calls_["rcpt-only"]](const FilterContext&) {
    return std::make_unique<RcptOnlyFilter>(calls);
  };
  add("mail", proceed());
  specs_.back().creator = [calls = &calls_["mail"]](const FilterContext&) {
    return std::make_unique<MailDelegatingFilter>(calls);
  };
  add("every-stage", proceed());  // a plain Filter subclass: hooks() is every stage
  add("declared", proceed());     // overrides every hook, says it is called at two stages
  specs_.back().creator = [calls = &calls_["declared"],
                           ends = &transactionEnds_["declared"]](const FilterContext&) {
    return std::make_unique<ScriptFilter>(proceed(), calls, ends, false,
                                          StageSet().with(Stage::kHelo).with(Stage::kEndOfHeaders));
  };
  build();
  for (const Stage s : kAllStages) {
    const ChainOutcome o = runInline(s);
    EXPECT_EQ(o.kind, s == Stage::kRcptTo ? VerdictKind::kReject : VerdictKind::kContinue)
        << stageName(s) << ": " << show(o);
    EXPECT_EQ(calls("every-stage", s), s == Stage::kRcptTo ? 0 : 1) << stageName(s);
  }
  const Calls rcptOnly = calls_["rcpt-only"];
  const Calls mail = calls_["mail"];
  const Calls declared = calls_["declared"];
  for (const Stage s : kAllStages) {
    const auto i = static_cast<std::size_t>(s);
    EXPECT_EQ(rcptOnly[i], s == Stage::kRcptTo ? 1 : 0) << stageName(s);
    EXPECT_EQ(mail[i], s == Stage::kMailFrom ? 1 : 0) << stageName(s);
    EXPECT_EQ(declared[i], s == Stage::kHelo || s == Stage::kEndOfHeaders ? 1 : 0) << stageName(s);
  }
  // A filter its creator could not make stays an error at every stage, its class unknown.
  fresh();
  add("broken", proceed());
  specs_.back().creator = [](const FilterContext&) -> std::unique_ptr<Filter> { return nullptr; };
  build();
  EXPECT_EQ(runInline(Stage::kConnect).kind, VerdictKind::kTempfail);
  EXPECT_EQ(runInline(Stage::kData).kind, VerdictKind::kTempfail);
}

// ---- observe, accept ----

TEST_F(FilterChainTest, ObserveModeChangesNothingButIsRecorded) {
  add(
      "watcher",
      [](Stage, Next n) {
        n(Verdict::reject(Reply::permanent(550, "5.7.1", "would reject"), "dry run")
              .addHeader("X-Observed", "1"));
      },
      FilterMode::kObserve);
  auto held = slot();
  add("stuck-observer", hold(held), FilterMode::kObserve, OnError::kTempfail, milliseconds(30));
  add("enforcer", verdict(Verdict::proceed().addHeader("X-Enforced", "1")));
  build();
  start(Stage::kEndOfMessage);
  ASSERT_TRUE(loopUntilDone());
  EXPECT_EQ(outcome_->kind, VerdictKind::kContinue) << "got " << show(*outcome_);
  EXPECT_FALSE(outcome_->reply);
  EXPECT_EQ(calls("enforcer", Stage::kEndOfMessage), 1) << "observe mode must not stop the chain";
  EXPECT_EQ(outcome_->headers, (std::vector<HeaderField>{{"X-Enforced", "1"}}))
      << "an observed verdict adds no header";
  const auto& rec = chain_->records();
  ASSERT_GE(rec.size(), 2u);
  EXPECT_EQ(rec[0].filter, "watcher");
  EXPECT_EQ(rec[0].kind, VerdictKind::kReject);
  EXPECT_EQ(rec[0].code, 550);
  EXPECT_EQ(rec[0].stage, Stage::kEndOfMessage);
  EXPECT_EQ(rec[0].reason, "dry run");
  EXPECT_TRUE(rec[0].observed);
  EXPECT_FALSE(rec[0].error);
  EXPECT_EQ(rec[1].filter, "stuck-observer");
  EXPECT_TRUE(rec[1].observed);
  EXPECT_TRUE(rec[1].error) << "an observed timeout is recorded as an error, and ignored";
  allowPendingNextAtEnd_ = true;
}

TEST_F(FilterChainTest, AcceptSkipsLaterFiltersOfThatStageOnly) {
  add("allowlist", verdictAt(Stage::kHelo, Verdict::accept("allowlisted")));
  add("blocker", reject(550));
  build();
  const ChainOutcome helo = runInline(Stage::kHelo);
  EXPECT_EQ(helo.kind, VerdictKind::kContinue) << "got " << show(helo);
  EXPECT_EQ(helo.filter, "allowlist");
  EXPECT_EQ(helo.reason, "allowlisted");
  EXPECT_EQ(calls("blocker", Stage::kHelo), 0) << "accept skips the rest of the stage";
  const ChainOutcome mail = runInline(Stage::kMailFrom);
  EXPECT_EQ(mail.kind, VerdictKind::kReject)
      << "accept holds for its stage only: got " << show(mail);
  EXPECT_EQ(calls("blocker", Stage::kMailFrom), 1);
}

// ---- defer_to ----

TEST_F(FilterChainTest, DeferToRcptHoldsAConnectReject) {
  add("dnsbl",
      verdictAt(Stage::kConnect,
                Verdict::reject(Reply::permanent(554, "5.7.1", "Service unavailable; listed"),
                                "zone=zen")),
      FilterMode::kEnforce, OnError::kTempfail, milliseconds(5000), Stage::kRcptTo);
  add("other", proceed());
  build();
  const ChainOutcome connect = runInline(Stage::kConnect);
  EXPECT_EQ(connect.kind, VerdictKind::kContinue) << "held, not applied: got " << show(connect);
  EXPECT_EQ(calls("other", Stage::kConnect), 1);
  ASSERT_TRUE(chain_->held());
  // Held with the code the client will get at RCPT (554 is not an RCPT code), and logged so.
  EXPECT_EQ(chain_->held()->reply->code(), 550);
  ASSERT_FALSE(chain_->records().empty());
  EXPECT_TRUE(chain_->records().front().deferred);
  EXPECT_EQ(chain_->records().front().code, 550);
  EXPECT_EQ(chain_->records().front().kind, VerdictKind::kReject);

  EXPECT_EQ(runInline(Stage::kHelo).kind, VerdictKind::kContinue);
  EXPECT_EQ(runInline(Stage::kMailFrom).kind, VerdictKind::kContinue);
  for (int rcpt = 0; rcpt < 2; ++rcpt) {
    const ChainOutcome o = runInline(Stage::kRcptTo);
    EXPECT_EQ(o.kind, VerdictKind::kReject) << "RCPT " << rcpt << ": got " << show(o);
    ASSERT_TRUE(o.reply);
    EXPECT_EQ(o.reply->code(), 550) << "554 is not an RCPT code: normalizeForStage gives 550";
    EXPECT_EQ(o.reply->enhanced(), "5.7.1");
    EXPECT_EQ(o.reply->text(), "Service unavailable; listed");
    EXPECT_EQ(o.filter, "dnsbl");
    EXPECT_EQ(o.reason, "zone=zen");
  }
  EXPECT_EQ(calls("dnsbl", Stage::kRcptTo), 0) << "a held verdict decides RCPT without filters";
}

TEST_F(FilterChainTest, DeferToKeepsTheFirstHeldVerdictAndAppliesAtItsOwnStage) {
  add("helo-check",
      verdictAt(Stage::kHelo,
                Verdict::tempfail(Reply::transient(450, "4.7.1", "helo later"), "first")),
      FilterMode::kEnforce, OnError::kTempfail, milliseconds(5000), Stage::kRcptTo);
  add("second",
      verdictAt(Stage::kHelo, Verdict::reject(Reply::permanent(550, "5.7.1", "x"), "second")),
      FilterMode::kEnforce, OnError::kTempfail, milliseconds(5000), Stage::kRcptTo);
  build();
  EXPECT_EQ(runInline(Stage::kHelo).kind, VerdictKind::kContinue);
  const ChainOutcome o = runInline(Stage::kRcptTo);
  EXPECT_EQ(o.kind, VerdictKind::kTempfail) << show(o);
  EXPECT_EQ(o.reason, "first");
  EXPECT_EQ(o.reply->code(), 450) << "450 is an RCPT code and stays";

  // A verdict at the defer_to stage itself is applied at once.
  fresh();
  add("at-rcpt",
      verdictAt(Stage::kRcptTo, Verdict::reject(Reply::permanent(553, "5.1.3", "bad"), "now")),
      FilterMode::kEnforce, OnError::kTempfail, milliseconds(5000), Stage::kRcptTo);
  build();
  const ChainOutcome r = runInline(Stage::kRcptTo);
  EXPECT_EQ(r.kind, VerdictKind::kReject);
  EXPECT_EQ(r.reply->code(), 553);
  EXPECT_FALSE(chain_->held());
}

TEST_F(FilterChainTest, DeferredDisconnectBecomesAPlainReject) {
  add("dnsbl",
      verdictAt(Stage::kConnect,
                Verdict::disconnect(Reply::permanent(554, "5.7.1", "go away"), "listed")),
      FilterMode::kEnforce, OnError::kTempfail, milliseconds(5000), Stage::kRcptTo);
  build();
  EXPECT_EQ(runInline(Stage::kConnect).kind, VerdictKind::kContinue);
  const ChainOutcome o = runInline(Stage::kRcptTo);
  EXPECT_EQ(o.kind, VerdictKind::kReject) << show(o);
  EXPECT_EQ(o.reply->code(), 550);
}

TEST_F(FilterChainTest, DeferredTransientDisconnectDoesNotCloseAtRcpt) {
  // filter_chain.cc: "A held disconnect becomes a plain reject/tempfail at RCPT: the envelope
  // gets logged" (postscreen's enforce: every RCPT is rejected and logged). A 421 closes.
  add("dnsbl",
      verdictAt(Stage::kConnect,
                Verdict::disconnect(Reply::transient(421, "4.7.1", "try later"), "listed")),
      FilterMode::kEnforce, OnError::kTempfail, milliseconds(5000), Stage::kRcptTo);
  build();
  EXPECT_EQ(runInline(Stage::kConnect).kind, VerdictKind::kContinue);
  const ChainOutcome o = runInline(Stage::kRcptTo);
  EXPECT_EQ(o.kind, VerdictKind::kTempfail) << show(o);
  ASSERT_TRUE(o.reply);
  EXPECT_FALSE(o.reply->closesConnection()) << "got " << o.reply->summary() << ", want 450";
}

// ---- reply classes per stage ----

TEST(NormalizeForStage, Table) {
  const struct {
    Stage stage;
    int code;
    int want;
  } cases[] = {
      // connect: 421, 554
      {Stage::kConnect, 421, 421},
      {Stage::kConnect, 554, 554},
      {Stage::kConnect, 550, 554},
      {Stage::kConnect, 450, 421},
      {Stage::kConnect, 451, 421},
      // helo: 421, 450, 550, 504
      {Stage::kHelo, 450, 450},
      {Stage::kHelo, 504, 504},
      {Stage::kHelo, 550, 550},
      {Stage::kHelo, 553, 550},
      {Stage::kHelo, 554, 550},
      {Stage::kHelo, 451, 450},
      // mail: 421, 451, 452, 455, 550, 552, 553, 555
      {Stage::kMailFrom, 451, 451},
      {Stage::kMailFrom, 452, 452},
      {Stage::kMailFrom, 455, 455},
      {Stage::kMailFrom, 552, 552},
      {Stage::kMailFrom, 553, 553},
      {Stage::kMailFrom, 555, 555},
      {Stage::kMailFrom, 450, 451},
      {Stage::kMailFrom, 554, 550},
      {Stage::kMailFrom, 551, 550},
      // rcpt: 421, 450, 451, 452, 550, 551, 552, 553, 555
      {Stage::kRcptTo, 421, 421},
      {Stage::kRcptTo, 450, 450},
      {Stage::kRcptTo, 452, 452},
      {Stage::kRcptTo, 551, 551},
      {Stage::kRcptTo, 553, 553},
      {Stage::kRcptTo, 554, 550},
      {Stage::kRcptTo, 454, 450},
      // data: 421, 451, 554
      {Stage::kData, 451, 451},
      {Stage::kData, 554, 554},
      {Stage::kData, 550, 554},
      {Stage::kData, 450, 451},
      // end of headers / message: 421, 450, 451, 452, 550, 552, 554
      {Stage::kEndOfHeaders, 552, 552},
      {Stage::kEndOfHeaders, 553, 550},
      {Stage::kEndOfMessage, 554, 554},
      {Stage::kEndOfMessage, 551, 550},
      {Stage::kEndOfMessage, 455, 451},
      {Stage::kEndOfMessage, 452, 452},
      // Positive replies are never touched.
      {Stage::kRcptTo, 250, 250},
      {Stage::kData, 354, 354},
  };
  for (const auto& tc : cases) {
    const Reply in = *Reply::make(tc.code, "", {"text kept"});
    const Reply got = normalizeForStage(tc.stage, in);
    EXPECT_EQ(got.code(), tc.want)
        << stageName(tc.stage) << " " << tc.code << ": got " << got.code() << ", want " << tc.want;
    EXPECT_EQ(got.text(), "text kept");
  }
}

TEST_F(FilterChainTest, ARejectWithACodeNotAllowedAtTheStageGetsTheStageDefault) {
  const struct {
    Stage stage;
    Action action;
    int want;
  } cases[] = {
      {Stage::kConnect, reject(550), 554},       {Stage::kConnect, tempfail(450), 421},
      {Stage::kHelo, reject(553, "5.1.8"), 550}, {Stage::kMailFrom, tempfail(450), 451},
      {Stage::kRcptTo, reject(554), 550},        {Stage::kData, reject(550), 554},
      {Stage::kEndOfMessage, reject(551), 550},  {Stage::kRcptTo, reject(553, "5.1.3"), 553},
  };
  for (const auto& tc : cases) {
    fresh();
    add("f", tc.action);
    build();
    const ChainOutcome o = runInline(tc.stage);
    ASSERT_TRUE(o.reply) << stageName(tc.stage) << ": " << show(o);
    EXPECT_EQ(o.reply->code(), tc.want)
        << stageName(tc.stage) << ": got " << show(o) << ", want " << tc.want;
  }
}

// ---- verdict kinds, headers, stages ----

TEST_F(FilterChainTest, VerdictKinds) {
  const struct {
    Verdict v;
    VerdictKind want;
    int code;
  } cases[] = {
      {Verdict::discard("spam trap"), VerdictKind::kDiscard, 0},
      {Verdict::disconnect(Reply::transient(451, "4.7.0", "bye"), "r"), VerdictKind::kDisconnect,
       421},
      {Verdict::disconnect(Reply::permanent(550, "5.7.0", "bye"), "r"), VerdictKind::kDisconnect,
       550},  // 554 is not an RCPT code
      {Verdict::tempfail(Reply::transient(452, "4.5.3", "too many"), "r"), VerdictKind::kTempfail,
       452},
  };
  for (const auto& tc : cases) {
    fresh();
    add("f", verdict(tc.v));
    build();
    const ChainOutcome o = runInline(Stage::kRcptTo);
    EXPECT_EQ(o.kind, tc.want) << "got " << show(o) << ", want " << kindName(tc.want);
    EXPECT_EQ(o.reply ? o.reply->code() : 0, tc.code) << show(o);
  }
}

TEST_F(FilterChainTest, HeadersFromVerdictsAreAccumulated) {
  add("spam", verdict(Verdict::proceed().addHeader("X-Spam-Score", "1.5")));
  add("virus", verdict(Verdict::proceed()
                           .addHeader("X-Virus-Scanned", "clean")
                           .addHeader("X-Virus-Engine", "test")));
  add("allow", verdict(Verdict::accept("trusted").addHeader("X-Allowed", "yes")));
  add("skipped", verdict(Verdict::proceed().addHeader("X-Never", "1")));
  build();
  const ChainOutcome o = runInline(Stage::kEndOfMessage);
  EXPECT_EQ(o.kind, VerdictKind::kContinue);
  const std::vector<HeaderField> want = {{"X-Spam-Score", "1.5"},
                                         {"X-Virus-Scanned", "clean"},
                                         {"X-Virus-Engine", "test"},
                                         {"X-Allowed", "yes"}};
  EXPECT_EQ(o.headers, want);
  EXPECT_EQ(calls("skipped", Stage::kEndOfMessage), 0);
  // A new run starts with no headers: the same script gives the same four, not eight.
  EXPECT_EQ(runInline(Stage::kRcptTo).headers.size(), 4u);
  fresh();
  add("quiet", proceed());
  build();
  EXPECT_TRUE(runInline(Stage::kEndOfMessage).headers.empty());
}

TEST_F(FilterChainTest, AContinueWithAReasonIsNamedOnTheSessionLine) {
  add("scanner", verdict(Verdict::proceed().withReason("scan=clean score=0.1 time=3ms")));
  add("quiet", proceed());
  build();
  EXPECT_EQ(runInline(Stage::kEndOfMessage).kind, VerdictKind::kContinue);
  ASSERT_EQ(chain_->records().size(), 1u) << "a plain proceed() is not recorded";
  const VerdictRecord& r = chain_->records().front();
  EXPECT_EQ(r.filter, "scanner");
  EXPECT_EQ(r.kind, VerdictKind::kContinue);
  EXPECT_EQ(r.reason, "scan=clean score=0.1 time=3ms");
  EXPECT_FALSE(r.error);
}

TEST_F(FilterChainTest, EveryStageCallsItsOwnHook) {
  add("f", proceed());
  build();
  for (const Stage s : kAllStages) {
    const ChainOutcome o = runInline(s);
    EXPECT_EQ(o.kind, VerdictKind::kContinue);
    for (const Stage other : kAllStages) {
      EXPECT_EQ(calls("f", other), other <= s ? 1 : 0)
          << "after running " << stageName(s) << ": hook " << stageName(other);
    }
  }
}

// ---- cancel, destruction inside done, notifications ----

TEST_F(FilterChainTest, CancelAbandonsTheRun) {
  auto held = slot();
  add("async", hold(held));
  build();
  start(Stage::kMailFrom);
  EXPECT_TRUE(chain_->running());
  chain_->cancel();
  EXPECT_FALSE(chain_->running());
  (**held)(Verdict::reject(Reply::permanent(550, "5.7.1", "late"), "late"));
  EXPECT_EQ(doneCalls_, 0) << "a cancelled run never calls its outcome callback";
  // The chain is usable afterwards.
  start(Stage::kRcptTo);
  (**held)(Verdict::proceed());
  ASSERT_TRUE(outcome_);
  EXPECT_EQ(outcome_->kind, VerdictKind::kContinue);
}

TEST_F(FilterChainTest, TheOutcomeCallbackMayDestroyTheChain) {
  add("a", proceed());
  add("b", completeFromTimer(Verdict::proceed(), milliseconds(5)));
  build();
  chain_->run(Stage::kHelo, view_, [this](ChainOutcome o) {
    outcome_ = std::move(o);
    chain_.reset();  // the session closes from inside the callback
  });
  ASSERT_TRUE(loopUntilDone());
  EXPECT_EQ(chain_, nullptr);

  fresh();
  add("inline", proceed());
  build();
  outcome_.reset();
  chain_->run(Stage::kHelo, view_, [this](ChainOutcome o) {
    outcome_ = std::move(o);
    chain_.reset();
  });
  EXPECT_FALSE(outcome_) << "the outcome arrived inside run()";
  ASSERT_TRUE(loopUntilDone());
  EXPECT_EQ(chain_, nullptr);
}

TEST_F(FilterChainTest, NotificationsGoOnPastAnExceptionOfAnyType) {
  struct ThrowsNonStd final : Filter {
    void onTransactionEnd(const SessionView&) override { throw 42; }
    void onDisconnect(const SessionView&) override { throw 42; }
  };
  add("odd", proceed());
  specs_.back().creator = [](const FilterContext&) { return std::make_unique<ThrowsNonStd>(); };
  add("b", proceed());
  build();
  EXPECT_NO_THROW(chain_->notifyTransactionEnd(view_));
  EXPECT_EQ(transactionEnds_["b"], 1);
  EXPECT_NO_THROW(chain_->notifyDisconnect(view_));
}

TEST_F(FilterChainTest, NotificationsReachEveryFilterEvenIfOneThrows) {
  throwOnNotify_.insert("a");
  add("a", proceed());
  add("b", proceed());
  build();
  EXPECT_NO_THROW(chain_->notifyTransactionEnd(view_));
  EXPECT_EQ(transactionEnds_["a"], 1);
  EXPECT_EQ(transactionEnds_["b"], 1);
  EXPECT_NO_THROW(chain_->notifyDisconnect(view_));
}

// ---- stats: every verdict is counted once, in the chain, by filter, stage, kind and mode ----

TEST_F(FilterChainTest, CountsEveryVerdictByFilterStageKindAndMode) {
  struct Case {
    std::string name;
    Action action;
    FilterMode mode;
    OnError onError;
    Stage stage;
    const char* wantVerdict;  // nullptr: no verdict counted
    const char* wantMode;
    std::uint64_t wantErrors;
    const char* wantCode;  // the reply code as the stage sends it, nullptr: none
  };
  const std::vector<Case> cases = {
      {"proceed counts nothing", proceed(), FilterMode::kEnforce, OnError::kTempfail, Stage::kHelo,
       nullptr, nullptr, 0, nullptr},
      {"reject", reject(550), FilterMode::kEnforce, OnError::kTempfail, Stage::kRcptTo, "reject",
       "enforce", 0, "550"},
      {"reject normalised for the stage", reject(550), FilterMode::kEnforce, OnError::kTempfail,
       Stage::kConnect, "reject", "enforce", 0, "554"},
      {"observe: what it would have done", reject(550), FilterMode::kObserve, OnError::kTempfail,
       Stage::kMailFrom, "reject", "observe", 0, "550"},
      {"observe tempfail", tempfail(451), FilterMode::kObserve, OnError::kTempfail, Stage::kData,
       "tempfail", "observe", 0, "451"},
      {"accept", verdict(Verdict::accept("allowlisted")), FilterMode::kEnforce, OnError::kTempfail,
       Stage::kConnect, "accept", "enforce", 0, nullptr},
      {"discard", verdict(Verdict::discard("spam")), FilterMode::kEnforce, OnError::kTempfail,
       Stage::kEndOfMessage, "discard", "enforce", 0, nullptr},
      {"dropped Next: error, then the tempfail it causes", drop(), FilterMode::kEnforce,
       OnError::kTempfail, Stage::kRcptTo, "tempfail", "enforce", 1, "451"},
      {"dropped Next, on_error continue: an error only", drop(), FilterMode::kEnforce,
       OnError::kContinue, Stage::kRcptTo, nullptr, nullptr, 1, nullptr},
      {"dropped Next in observe mode: an error only", drop(), FilterMode::kObserve,
       OnError::kTempfail, Stage::kHelo, nullptr, nullptr, 1, nullptr},
  };
  int n = 0;
  for (const Case& c : cases) {
    // A label of its own per case: the registry keeps every series, so counts start at zero.
    const std::string f = "f" + std::to_string(++n);
    fresh();
    const std::uint64_t before = allVerdicts();
    add(f, c.action, c.mode, c.onError);
    build();
    runInline(c.stage);
    ASSERT_TRUE(outcome_) << c.name;
    const std::uint64_t want = c.wantVerdict != nullptr ? 1 : 0;
    if (c.wantVerdict != nullptr) {
      EXPECT_EQ(verdicts(f, c.stage, c.wantVerdict, c.wantMode), 1u)
          << c.name << ": got X, want one " << c.wantVerdict << "/" << c.wantMode;
    }
    EXPECT_EQ(allVerdicts() - before, want) << c.name << ": got X verdicts counted, want Y";
    EXPECT_EQ(count("portcullis_filter_errors_total", f, {{"stage", stageName(c.stage)}}),
              c.wantErrors)
        << c.name << ": got X errors, want Y";
    if (c.wantCode != nullptr) {
      EXPECT_EQ(
          count("portcullis_filter_replies_total", f, {{"code", c.wantCode}, {"mode", c.wantMode}}),
          1u)
          << c.name << ": got X replies with code " << c.wantCode << ", want 1";
    }
    // One call, one duration observation (whatever the outcome).
    std::uint64_t observations = 0;
    for (const StatSample& s : stats_.snapshot()) {
      if (s.name == "portcullis_filter_duration_microseconds" && s.labels[0].second == f) {
        observations += s.value;
      }
    }
    EXPECT_EQ(observations, 1u) << c.name << ": got X duration observations, want 1";
  }
}

TEST_F(FilterChainTest, CountsPerFilterAndDeferredVerdicts) {
  add("first",
      verdictAt(Stage::kConnect,
                Verdict::reject(Reply::permanent(554, "5.7.1", "listed"), "listed")),
      FilterMode::kEnforce, OnError::kTempfail, milliseconds(5000), Stage::kRcptTo);
  add("second", reject(550), FilterMode::kObserve);
  build();
  runInline(Stage::kConnect);
  ASSERT_TRUE(outcome_);
  EXPECT_EQ(verdicts("first", Stage::kConnect, "reject"), 1u);
  EXPECT_EQ(count("portcullis_filter_deferred_total", "first", {{"stage", "connect"}}), 1u);
  EXPECT_EQ(verdicts("second", Stage::kConnect, "reject", "observe"), 1u)
      << "the observer still runs after a held verdict";
  EXPECT_EQ(verdicts("second", Stage::kConnect, "reject", "enforce"), 0u);
  EXPECT_EQ(allVerdicts(), 2u);
}

TEST_F(FilterChainTest, ALateCompletionIsNotCounted) {
  auto held = slot();
  add("slow", hold(held), FilterMode::kEnforce, OnError::kTempfail, milliseconds(20));
  build();
  start(Stage::kMailFrom);
  ASSERT_TRUE(loopUntilDone());
  EXPECT_EQ(count("portcullis_filter_errors_total", "slow", {{"stage", "mail"}}), 1u);
  EXPECT_EQ(verdicts("slow", Stage::kMailFrom, "tempfail"), 1u) << "the timeout's tempfail";
  (**held)(Verdict::reject(Reply::permanent(550, "5.7.1", "late"), "late"));
  EXPECT_EQ(verdicts("slow", Stage::kMailFrom, "reject"), 0u) << "a late verdict is dropped";
  EXPECT_EQ(allVerdicts(), 1u);
}

}  // namespace
}  // namespace portcullis
