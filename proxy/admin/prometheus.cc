// Prometheus text format. See prometheus.h.

#include "proxy/admin/prometheus.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string_view>

namespace portcullis {
namespace {

std::string escapeLabel(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="1",b="2"} with `extra` (le=...) last; "" when there are none.
std::string labelSet(const StatLabels& labels, const std::string& extra = {}) {
  if (labels.empty() && extra.empty()) return {};
  std::string out = "{";
  for (const auto& [k, v] : labels) {
    if (out.size() > 1) out += ',';
    out += k + "=\"" + escapeLabel(v) + "\"";
  }
  if (!extra.empty()) {
    if (out.size() > 1) out += ',';
    out += extra;
  }
  return out + "}";
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// The family a sample belongs to, for the # TYPE line.
constexpr std::string_view kMicros = "_microseconds";

// Microseconds as exact decimal seconds: 1500 -> "0.0015".
std::string seconds(std::uint64_t micros) {
  std::string out = std::to_string(micros / 1'000'000);
  std::string frac = std::to_string(1'000'000 + micros % 1'000'000).substr(1);
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  if (!frac.empty()) out += "." + frac;
  return out;
}

// The # HELP of the families the daemon and its built-in filters register (the Stats API takes
// no description; a plugin's own families get a generic one).
std::string helpFor(const std::string& family) {
  static const std::map<std::string, std::string, std::less<>> kHelp = {
      {"portcullis_filter_verdicts_total",
       "Verdicts by filter, stage and action (observe mode: what it would have done)."},
      {"portcullis_filter_errors_total", "Filter failures and timeouts, by filter and stage."},
      {"portcullis_filter_deferred_total", "Verdicts held until RCPT (defer_to), by filter."},
      {"portcullis_filter_replies_total", "Replies filters caused, by filter, stage and code."},
      {"portcullis_filter_duration_seconds", "Time each filter took, by filter and stage."},
      {"portcullis_dnsbl_errors_total", "DNSBL lookups that failed (SERVFAIL, timeout), by zone."},
      {"portcullis_dnsbl_lookup_failures_total", "DNSBL lookups with no usable answer, by zone."},
      {"portcullis_sessions_total", "Client sessions by how they ended."},
      {"portcullis_scanner_results_total", "Scans by scanner and result (clean, flagged, error)."},
      {"portcullis_commands_total", "Replies to client commands, by command and reply class."},
      {"portcullis_upstream_failures_total", "MTA failures sessions met, by kind."},
      {"portcullis_tls_handshakes_total", "Client TLS handshakes completed, by protocol version."},
      {"portcullis_tls_handshake_failures_total", "Client TLS handshakes that failed."},
      {"portcullis_messages_relayed_total", "Messages the MTA accepted."},
      {"portcullis_relayed_bytes_total", "Bytes of the messages the MTA accepted."},
      {"portcullis_transaction_added_latency_seconds",
       "End of data to the message handed to the MTA: the latency portcullis adds."},
      {"portcullis_mta_reply_duration_seconds", "Message handed to the MTA to the MTA's reply."},
  };
  const auto it = kHelp.find(family);
  return it != kHelp.end() ? it->second : "portcullis metric " + family + ".";
}

struct Family {
  std::string type;
  std::string help;
  std::string body;
};

}  // namespace

std::string renderPrometheus(const std::vector<StatSample>& samples,
                             const std::vector<GaugeSample>& gauges) {
  std::map<std::string, Family> families;
  for (const StatSample& s : samples) {
    if (s.kind == StatSample::Kind::kCounter) {
      Family& f = families[s.name];
      f.type = "counter";
      f.body += s.name + labelSet(s.labels) + " " + std::to_string(s.value) + "\n";
      continue;
    }
    // Recorded in whole microseconds (integer cells, no locks); exposed in the base unit.
    std::string name = s.name;
    const bool micros = name.ends_with(kMicros);
    if (micros) name = name.substr(0, name.size() - kMicros.size()) + "_seconds";
    auto value = [micros](std::uint64_t v) { return micros ? seconds(v) : std::to_string(v); };
    Family& h = families[name];
    h.type = "histogram";
    for (std::size_t i = 0; i < s.buckets.size(); ++i) {
      const std::string le =
          i < s.bounds.size() ? "le=\"" + value(s.bounds[i]) + "\"" : "le=\"+Inf\"";
      h.body +=
          name + "_bucket" + labelSet(s.labels, le) + " " + std::to_string(s.buckets[i]) + "\n";
    }
    h.body += name + "_sum" + labelSet(s.labels) + " " + value(s.sum) + "\n";
    h.body += name + "_count" + labelSet(s.labels) + " " + std::to_string(s.value) + "\n";
  }
  for (const GaugeSample& g : gauges) {
    Family& f = families[g.name];
    f.type = g.counter ? "counter" : "gauge";
    f.help = g.help;
    f.body += g.name + labelSet(g.labels) + " " + number(g.value) + "\n";
  }
  std::string out;
  for (const auto& [name, f] : families) {
    out += "# HELP " + name + " " + (f.help.empty() ? helpFor(name) : f.help) + "\n";
    out += "# TYPE " + name + " " + f.type + "\n" + f.body;
  }
  return out;
}

}  // namespace portcullis
