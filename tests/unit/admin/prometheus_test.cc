// renderPrometheus: the text exposition format 0.0.4 of a registry snapshot and gauges.

#include "proxy/admin/prometheus.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>

namespace portcullis {
namespace {

TEST(Prometheus, CountersHistogramsAndGaugesInFamilies) {
  StatsRegistry r;
  r.counter("portcullis_filter_verdicts_total", {{"filter", "dnsbl"}, {"action", "reject"}}).add(3);
  r.counter("portcullis_filter_verdicts_total", {{"filter", "a\"b\\c\nd"}, {"action", "x"}});
  const std::array<std::uint64_t, 2> bounds = {1000, 2'500'000};
  const Histogram h =
      r.histogram("portcullis_filter_duration_microseconds", {{"filter", "f"}}, bounds);
  h.observe(500);
  h.observe(1500);
  h.observe(3'000'000);
  const std::string text = renderPrometheus(
      r.snapshot(), {{"portcullis_sessions_active", "Client sessions open now.", {}, 7}});
  EXPECT_EQ(text,
            "# HELP portcullis_filter_duration_seconds Time each filter took, by filter and "
            "stage.\n"
            "# TYPE portcullis_filter_duration_seconds histogram\n"
            "portcullis_filter_duration_seconds_bucket{filter=\"f\",le=\"0.001\"} 1\n"
            "portcullis_filter_duration_seconds_bucket{filter=\"f\",le=\"2.5\"} 2\n"
            "portcullis_filter_duration_seconds_bucket{filter=\"f\",le=\"+Inf\"} 3\n"
            "portcullis_filter_duration_seconds_sum{filter=\"f\"} 3.002\n"
            "portcullis_filter_duration_seconds_count{filter=\"f\"} 3\n"
            "# HELP portcullis_filter_verdicts_total Verdicts by filter, stage and action "
            "(observe mode: what it would have done).\n"
            "# TYPE portcullis_filter_verdicts_total counter\n"
            "portcullis_filter_verdicts_total{filter=\"a\\\"b\\\\c\\nd\",action=\"x\"} 0\n"
            "portcullis_filter_verdicts_total{filter=\"dnsbl\",action=\"reject\"} 3\n"
            "# HELP portcullis_sessions_active Client sessions open now.\n"
            "# TYPE portcullis_sessions_active gauge\n"
            "portcullis_sessions_active 7\n");
}

TEST(Prometheus, AFamilyWithoutRegisteredHelpStillHasOne) {
  StatsRegistry r;
  r.counter("myplugin_hits_total", {});
  EXPECT_EQ(renderPrometheus(r.snapshot(), {}),
            "# HELP myplugin_hits_total portcullis metric myplugin_hits_total.\n"
            "# TYPE myplugin_hits_total counter\n"
            "myplugin_hits_total 0\n");
}

}  // namespace
}  // namespace portcullis
