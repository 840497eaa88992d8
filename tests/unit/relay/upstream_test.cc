// Upstream: a failure found at once still reaches the caller from the loop, never inside the
// call (the contract every caller relies on), and destroying the Upstream first cancels it.

#include "proxy/relay/upstream.h"

#include <gtest/gtest.h>

#include "proxy/smtp/spool.h"
#include "tests/support/manual_dispatcher.h"

namespace portcullis {
namespace {

UpstreamSettings unreachable() {
  UpstreamSettings s;
  s.address = *socketAddress("127.0.0.1", 9);
  return s;
}

TEST(Upstream, FailuresOnAConnectionNotReadyArriveFromTheLoop) {
  ManualDispatcher d;
  Upstream up(d, unreachable(), "test");
  std::vector<UpstreamFailure> got;
  auto record = [&](const UpstreamResult& r) { got.push_back(r.failure); };

  up.command("MAIL FROM:<a@example.org>", Expect::kMail, record);
  EXPECT_TRUE(got.empty()) << "command() completed inside the call";
  d.runUntilIdle();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], UpstreamFailure::kClosed);

  up.reidentify(XclientIdentity{}, record);
  EXPECT_EQ(got.size(), 1u) << "reidentify() completed inside the call";
  d.runUntilIdle();
  ASSERT_EQ(got.size(), 2u);

  Spool spool(1024, "/tmp");
  ASSERT_TRUE(spool.finish());
  up.sendMessage(spool, {}, record);
  EXPECT_EQ(got.size(), 2u) << "sendMessage() completed inside the call";
  d.runUntilIdle();
  EXPECT_EQ(got.size(), 3u);
}

TEST(Upstream, DestroyingItCancelsAPendingFailure) {
  ManualDispatcher d;
  int calls = 0;
  {
    Upstream up(d, unreachable(), "test");
    up.command("NOOP", Expect::kNoop, [&](const UpstreamResult&) { ++calls; });
  }
  d.runUntilIdle();
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace portcullis
