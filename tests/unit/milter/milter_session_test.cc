// MilterSession: what filters see of Postfix's macros. {auth_authen}, which Postfix sends with
// MAIL FROM, becomes SessionView::authenticatedUser() from the mail stage on, for the rest of
// the session; a session that did not authenticate shows it empty. The session runs on a
// manual dispatcher with one recording filter; the stage's answer is not the point here (the
// completions go nowhere).

#include "proxy/milter/milter_session.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "tests/support/manual_dispatcher.h"

namespace portcullis {
namespace {

// Records authenticatedUser() at each stage it is called for.
class RecordingFilter final : public Filter {
 public:
  explicit RecordingFilter(std::map<Stage, std::string>* seen) : seen_(seen) {}
  void onConnect(const SessionView& s, Next n) override { note(Stage::kConnect, s, std::move(n)); }
  void onHelo(const SessionView& s, Next n) override { note(Stage::kHelo, s, std::move(n)); }
  void onMailFrom(const SessionView& s, Next n) override {
    note(Stage::kMailFrom, s, std::move(n));
  }
  void onRcptTo(const SessionView& s, Next n) override { note(Stage::kRcptTo, s, std::move(n)); }

 private:
  void note(Stage stage, const SessionView& s, Next n) {
    (*seen_)[stage] = std::string(s.authenticatedUser());
    n(Verdict::proceed());
  }
  std::map<Stage, std::string>* seen_;
};

class MilterSessionTest : public ::testing::Test {
 protected:
  MilterSessionTest() {
    auto config = std::make_shared<Config>();
    config->hostname = "mx.test";
    FilterSpec spec;
    spec.name = "recorder";
    spec.label = "recorder";
    spec.creator = [seen = &seen_](const FilterContext&) {
      return std::make_unique<RecordingFilter>(seen);
    };
    config->filters.push_back(std::move(spec));
    config_ = std::move(config);
  }

  std::unique_ptr<MilterSession> open() {
    auto s = std::make_unique<MilterSession>(d_, config_, context_, "milter-test");
    MilterConnectInfo info;
    info.address = "127.0.0.1";
    info.port = 40000;
    info.name = "unknown";
    s->connect(info, none());
    d_.runUntilIdle();
    s->helo("client.test", MilterMacros{}, none());
    d_.runUntilIdle();
    return s;
  }

  void mail(MilterSession& s, const std::string& authAuthen) {
    MilterMacros m;
    m.queueId = "4ABCDEF";
    m.authAuthen = authAuthen;
    s.mailFrom({"<sender@mx.test>"}, m, none());
    d_.runUntilIdle();
    s.rcptTo({"<user@test.local>"}, none());
    d_.runUntilIdle();
  }

  static LoopBridge::Completion none() { return LoopBridge::Completion(nullptr); }

  ManualDispatcher d_;
  FilterContext context_;
  std::shared_ptr<const Config> config_;
  std::map<Stage, std::string> seen_;
};

TEST_F(MilterSessionTest, AuthAuthenReachesTheFiltersFromTheMailStageOn) {
  auto s = open();
  mail(*s, "alice@test.local");
  EXPECT_EQ(seen_[Stage::kConnect], "");  // AUTH comes after EHLO: not known before MAIL
  EXPECT_EQ(seen_[Stage::kHelo], "");
  EXPECT_EQ(seen_[Stage::kMailFrom], "alice@test.local");
  EXPECT_EQ(seen_[Stage::kRcptTo], "alice@test.local");
  s->close();
}

TEST_F(MilterSessionTest, NoAuthAuthenMeansAnEmptyAuthenticatedUser) {
  auto s = open();
  mail(*s, "");
  EXPECT_EQ(seen_[Stage::kMailFrom], "");
  EXPECT_EQ(seen_[Stage::kRcptTo], "");
  s->close();
}

}  // namespace
}  // namespace portcullis
