// CoreStats. See core_stats.h.

#include "proxy/admin/core_stats.h"

#include "proxy/admin/stats_registry.h"

namespace portcullis {
namespace {

// The verbs as the session names them, in kCommandLabels' order ("other" has none).
constexpr std::array<std::string_view, kCommandLabels.size() - 1> kCommandVerbs = {
    "CONNECT", "HELO", "EHLO", "MAIL", "RCPT", "DATA",     ".",    "BDAT",
    "RSET",    "NOOP", "QUIT", "VRFY", "EXPN", "STARTTLS", "AUTH", "HELP"};

}  // namespace

std::size_t commandIndex(std::string_view verb) {
  for (std::size_t i = 0; i < kCommandVerbs.size(); ++i) {
    if (kCommandVerbs[i] == verb) return i;
  }
  return kCommandLabels.size() - 1;
}

std::size_t tlsVersionIndex(std::string_view version) {
  for (std::size_t i = 0; i + 1 < kTlsVersions.size(); ++i) {
    if (kTlsVersions[i] == version) return i;
  }
  return kTlsVersions.size() - 1;
}

CoreStats::CoreStats(Stats& stats) {
  for (std::size_t i = 0; i < kSessionEndNames.size(); ++i) {
    sessions_[i] = stats.counter("portcullis_sessions_total", {{"end", kSessionEndNames[i]}});
  }
  for (std::size_t v = 0; v < kCommandLabels.size(); ++v) {
    for (std::size_t c = 0; c < kReplyClasses.size(); ++c) {
      commands_[v][c] = stats.counter("portcullis_commands_total",
                                      {{"verb", kCommandLabels[v]}, {"class", kReplyClasses[c]}});
    }
  }
  for (std::size_t i = 0; i < kUpstreamFailureKinds.size(); ++i) {
    upstreamFailures_[i] =
        stats.counter("portcullis_upstream_failures_total", {{"kind", kUpstreamFailureKinds[i]}});
  }
  for (std::size_t i = 0; i < kTlsVersions.size(); ++i) {
    tls_[i] = stats.counter("portcullis_tls_handshakes_total", {{"version", kTlsVersions[i]}});
  }
  tlsFailures_ = stats.counter("portcullis_tls_handshake_failures_total", {});
  messages_ = stats.counter("portcullis_messages_relayed_total", {});
  bytes_ = stats.counter("portcullis_relayed_bytes_total", {});
  added_ =
      stats.histogram("portcullis_transaction_added_latency_microseconds", {}, kLatencyBoundsUs);
  mtaReply_ = stats.histogram("portcullis_mta_reply_duration_microseconds", {}, kLatencyBoundsUs);
}

const CoreStats& coreStats() {
  static const CoreStats stats(processStats());
  return stats;
}

}  // namespace portcullis
