// CoreStats: the daemon's own series, all registered up front with bounded labels.

#include "proxy/admin/core_stats.h"

#include <gtest/gtest.h>

#include <chrono>

#include "proxy/admin/prometheus.h"
#include "proxy/admin/stats_registry.h"

namespace portcullis {
namespace {

TEST(CoreStats, EverySeriesExistsBeforeAnythingIsCounted) {
  StatsRegistry r;
  const CoreStats stats(r);
  const std::size_t before = r.snapshot().size();
  EXPECT_EQ(before, kSessionEndNames.size() + kCommandLabels.size() * kReplyClasses.size() +
                        kUpstreamFailureKinds.size() + kTlsVersions.size() + 3 + 2);
  stats.reply("MAIL", 250);
  stats.reply("XYZZY", 502);                // an unknown verb: "other", no new series
  stats.reply(std::string(500, 'A'), 500);  // nor for a long one
  stats.sessionEnded(SessionEnd::kQuit);
  stats.tlsHandshake("TLSv1.3");
  stats.tlsHandshake("SSLv3");
  stats.upstreamFailure(1);
  stats.upstreamFailure(0);   // kNone: nothing
  stats.upstreamFailure(99);  // out of range: nothing
  stats.relayed(1234);
  stats.addedLatency(std::chrono::microseconds(700));
  EXPECT_EQ(r.snapshot().size(), before);
  EXPECT_EQ(r.counterValue("portcullis_commands_total", {{"verb", "mail"}, {"class", "2xx"}}), 1U);
  EXPECT_EQ(r.counterValue("portcullis_commands_total", {{"verb", "other"}, {"class", "5xx"}}), 2U);
  EXPECT_EQ(r.counterValue("portcullis_sessions_total", {{"end", "quit"}}), 1U);
  EXPECT_EQ(r.counterValue("portcullis_tls_handshakes_total", {{"version", "TLSv1.3"}}), 1U);
  EXPECT_EQ(r.counterValue("portcullis_tls_handshakes_total", {{"version", "other"}}), 1U);
  EXPECT_EQ(r.counterValue("portcullis_upstream_failures_total", {{"kind", "connect"}}), 1U);
  EXPECT_EQ(r.counterValue("portcullis_messages_relayed_total", {}), 1U);
  EXPECT_EQ(r.counterValue("portcullis_relayed_bytes_total", {}), 1234U);
  const std::string text = renderPrometheus(r.snapshot(), {});
  EXPECT_NE(text.find("# TYPE portcullis_transaction_added_latency_seconds histogram\n"),
            std::string::npos);
  EXPECT_NE(text.find("portcullis_transaction_added_latency_seconds_bucket{le=\"0.001\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("portcullis_transaction_added_latency_seconds_sum 0.0007\n"),
            std::string::npos);
}

TEST(CoreStats, RepliesOutsideTheClassesCountNothing) {
  StatsRegistry r;
  const CoreStats stats(r);
  stats.reply("MAIL", 199);
  stats.reply("MAIL", 600);
  stats.reply("MAIL", 0);
  for (const StatSample& s : r.snapshot()) EXPECT_EQ(s.value, 0U) << s.name;
}

TEST(CoreStats, ScrapeTimeCountersAreTypedCounter) {
  const std::string text =
      renderPrometheus({}, {{"portcullis_dns_queries_total", "q.", {}, 5, true},
                            {"portcullis_spool_bytes", "s.", {{"where", "disk"}}, 0}});
  EXPECT_NE(
      text.find("# TYPE portcullis_dns_queries_total counter\nportcullis_dns_queries_total 5\n"),
      std::string::npos);
  EXPECT_NE(text.find("# TYPE portcullis_spool_bytes gauge\n"), std::string::npos);
}

}  // namespace
}  // namespace portcullis
