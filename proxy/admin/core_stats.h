#pragma once
// CoreStats: the series the daemon itself counts (sessions, commands, the MTA, TLS, messages),
// every one registered once, in processStats(), the first time coreStats() is called, so that
// counting is an array index and a relaxed atomic add: no lock, no allocation, no lookup by
// name on the hot path. Every label set is fixed here, so the cardinality is bounded whatever
// clients send. Families (Prometheus names):
//   portcullis_sessions_total{end}                  sessions by how they ended (SessionEnd)
//   portcullis_commands_total{verb,class}           replies by command and reply class; an
//       unknown or invalid command counts as verb="other"
//   portcullis_upstream_failures_total{kind}        MTA failures a session met, by kind
//   portcullis_tls_handshakes_total{version}        client TLS handshakes completed
//   portcullis_tls_handshake_failures_total         client TLS handshakes that failed
//   portcullis_messages_relayed_total               messages the MTA accepted
//   portcullis_relayed_bytes_total                  their sizes as the client sent them
//   portcullis_transaction_added_latency_seconds    end of data to handing the message to the
//       MTA: what portcullis (filters included) adds to a transaction
//   portcullis_mta_reply_duration_seconds           handing the message to the MTA to its reply
// Thread-safe (relaxed atomics in per-thread cells); the handles live as long as the process.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "portcullis/stats.h"

namespace portcullis {

// How a session ended.
enum class SessionEnd {
  kQuit,          // the client said QUIT
  kClientClosed,  // the client closed the connection without QUIT
  kTimeout,       // a deadline ran out (command, data, TLS handshake, PROXY header)
  kRejected,      // refused at connect, a disconnect verdict, over a connection limit
  kShutdown,      // the drain (SIGTERM) closed it
  kError,         // a protocol error (too many errors, bad PROXY header, pipelining violation)
};
inline constexpr std::array<std::string_view, 6> kSessionEndNames = {
    "quit", "client_closed", "timeout", "rejected", "shutdown", "error"};

// The command label of a reply's verb as the session names it ("MAIL", ".", "CONNECT"...).
inline constexpr std::array<std::string_view, 17> kCommandLabels = {
    "connect", "helo", "ehlo", "mail", "rcpt",     "data", "end_of_data", "bdat", "rset",
    "noop",    "quit", "vrfy", "expn", "starttls", "auth", "help",        "other"};
inline constexpr std::array<std::string_view, 4> kReplyClasses = {"2xx", "3xx", "4xx", "5xx"};
// The failure kinds, in UpstreamFailure's order after kNone (proxy/relay/upstream.h).
inline constexpr std::array<std::string_view, 7> kUpstreamFailureKinds = {
    "connect", "timeout", "closed", "protocol", "refused", "identity", "tls"};
inline constexpr std::array<std::string_view, 5> kTlsVersions = {"TLSv1", "TLSv1.1", "TLSv1.2",
                                                                 "TLSv1.3", "other"};

// Upper bounds of the latency buckets, in microseconds (100 us .. 60 s).
inline constexpr std::array<std::uint64_t, 14> kLatencyBoundsUs = {
    100,     500,     1'000,   5'000,     10'000,    25'000,     50'000,
    100'000, 250'000, 500'000, 1'000'000, 2'500'000, 10'000'000, 60'000'000};

// The index of a verb in kCommandLabels; "other" for anything not listed.
std::size_t commandIndex(std::string_view verb);
// The index of a TLS protocol name (SSL_get_version) in kTlsVersions.
std::size_t tlsVersionIndex(std::string_view version);

class CoreStats {
 public:
  explicit CoreStats(Stats& stats);

  void sessionEnded(SessionEnd end) const { sessions_[static_cast<std::size_t>(end)].add(); }
  // A reply with `code` to `verb`; codes outside 200..599 are not counted.
  void reply(std::string_view verb, int code) const {
    if (code < 200 || code > 599) return;
    commands_[commandIndex(verb)][static_cast<std::size_t>(code / 100 - 2)].add();
  }
  // `kind`: UpstreamFailure as an int (1 = kConnect ...); 0 or out of range counts nothing.
  void upstreamFailure(int kind) const {
    if (kind >= 1 && kind <= static_cast<int>(kUpstreamFailureKinds.size())) {
      upstreamFailures_[static_cast<std::size_t>(kind - 1)].add();
    }
  }
  void tlsHandshake(std::string_view version) const { tls_[tlsVersionIndex(version)].add(); }
  void tlsHandshakeFailed() const { tlsFailures_.add(); }
  void relayed(std::uint64_t bytes) const {
    messages_.add();
    bytes_.add(bytes);
  }
  void addedLatency(std::chrono::microseconds d) const { added_.observe(micros(d)); }
  void mtaReply(std::chrono::microseconds d) const { mtaReply_.observe(micros(d)); }

 private:
  static std::uint64_t micros(std::chrono::microseconds d) {
    return d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count());
  }

  std::array<Counter, kSessionEndNames.size()> sessions_;
  std::array<std::array<Counter, kReplyClasses.size()>, kCommandLabels.size()> commands_;
  std::array<Counter, kUpstreamFailureKinds.size()> upstreamFailures_;
  std::array<Counter, kTlsVersions.size()> tls_;
  Counter tlsFailures_;
  Counter messages_;
  Counter bytes_;
  Histogram added_;
  Histogram mtaReply_;
};

// The daemon's CoreStats, over processStats(); made on first use.
const CoreStats& coreStats();

}  // namespace portcullis
