#pragma once
// ScannerFilter: the end-of-message machinery every content scanner client shares (clamd,
// spamd, rspamd): the size limit, the circuit breaker, the connection limit and its bounded
// queue, a deadline over the whole scan, and one `event=scan` log line per scan. How a scan
// reaches its scanner is a ScanClient: a stream scanner (clamd, spamd) is a ScanProtocol on the
// stream transport of filters/scanner/stream_exchange.h; rspamd is an HTTP client of its own.
// Ownership: the session's ScannerFilter owns its slot, its exchange and its timer; destroying
// it (the session going away) cancels the scan. The hook completes exactly once, always from
// the loop (a scan never completes inline), and touches nothing afterwards.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "filters/scanner/circuit_breaker.h"
#include "filters/scanner/scan_limiter.h"
#include "filters/scanner/scanner_config.h"
#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"
#include "portcullis/stats.h"

namespace portcullis {

// What a reply parser made of the bytes so far.
struct ScanResult {
  enum class Kind {
    kIncomplete,  // wait for more (only while the connection is open)
    kDone,        // `verdict` decides (continue for a clean message)
    kError,       // the scanner failed: on_error decides
  };
  Kind kind = Kind::kIncomplete;
  std::optional<Verdict> verdict;
  std::string summary;  // for the log: "result=clean", "result=found virus=\"Eicar...\""
  std::string error;    // kError: why (sanitised)
};

// A stream scanner's wire format (clamd, spamd), run by the stream transport.
class ScanProtocol {
 public:
  virtual ~ScanProtocol() = default;
  virtual std::string_view scannerName() const = 0;  // "clamd"
  // The bytes before the message (a command, headers with the size...).
  virtual std::string request(const SessionView& session, std::uint64_t size) const = 0;
  // Appends one chunk of the message, framed, to `out`.
  virtual void frameChunk(std::string_view chunk, std::string& out) const = 0;
  // The bytes after the message (a terminator), if any.
  virtual std::string trailer() const = 0;
  // Parses the whole reply so far; `closed` when the scanner has closed its side.
  virtual ScanResult parseReply(std::string_view reply, bool closed) const = 0;
  // The most reply bytes worth keeping; a longer reply is an error.
  virtual std::size_t maxReply() const = 0;
  // A health check the circuit breaker sends before it lets messages through again (clamd's
  // PING); empty when the scanner has none (the first message then probes).
  virtual std::string probe() const { return {}; }
  // The probe's reply so far: nullopt while incomplete, else whether the scanner is healthy.
  virtual std::optional<bool> parseProbeReply(std::string_view /*reply*/, bool /*closed*/) const {
    return false;
  }
};

// One scan in flight, from the moment it holds its turn to its result. Destroying it cancels
// the scan (closes its connection); `done` will not run afterwards.
class ScanExchange {
 public:
  virtual ~ScanExchange() = default;
};

// What a scan works on. Everything in it outlives the exchange.
struct ScanRequest {
  const SessionView& session;
  const MessageReader& message;
  std::uint64_t size;
  std::chrono::milliseconds timeout;  // each wait; the filter's deadline bounds the whole
  const FilterContext& context;
};

// One configured scanner: how to run one scan. Shared by every session (immutable).
class ScanClient {
 public:
  virtual ~ScanClient() = default;
  virtual std::string_view scannerName() const = 0;  // "rspamd", for the log and the error
  // Starts a scan; `done` runs exactly once, from the loop, never inside start().
  [[nodiscard]] virtual std::unique_ptr<ScanExchange> start(
      const ScanRequest& request, std::function<void(ScanResult)> done) const = 0;
  // Whether probe() asks the scanner anything (the breaker then probes before it scans).
  virtual bool canProbe() const { return false; }
  // Asks the scanner whether it is healthy, under the same rules as start(): `done` gets the
  // answer and, when unhealthy, why (sanitised). Called only when canProbe().
  [[nodiscard]] virtual std::unique_ptr<ScanExchange> probe(
      const ScanRequest& request, std::function<void(bool, std::string)> done) const = 0;
};

// Shared by every session of one configured scanner (one event loop).
struct ScannerShared {
  explicit ScannerShared(const ScannerConfig& config)
      : breaker(config.breaker),
        limiter(std::make_shared<ScanLimiter>(config.maxConnections, config.maxQueue)) {}
  CircuitBreaker breaker;
  std::shared_ptr<ScanLimiter> limiter;
  // portcullis_scanner_results_total{scanner,result}: registered by the first filter made
  // (FilterContext::stats), then only counted.
  bool countersRegistered = false;
  Counter clean;    // the scanner passed the message (a continue verdict, tagged or not)
  Counter flagged;  // it found something that decides (reject, tempfail, discard...)
  Counter failed;   // the scan failed: on_error decides
};

class ScannerFilter final : public FilterWithHooks<ScannerFilter> {
 public:
  ScannerFilter(std::shared_ptr<const ScannerConfig> config,
                std::shared_ptr<const ScanClient> client, std::shared_ptr<ScannerShared> shared,
                const FilterContext& context);
  ~ScannerFilter() override;
  ScannerFilter(const ScannerFilter&) = delete;
  ScannerFilter& operator=(const ScannerFilter&) = delete;

  void onEndOfMessage(const SessionView& s, Next next) override;
  void onTransactionEnd(const SessionView& s) override;

 private:
  void onTurn();
  // Ends the scan: releases everything, logs, updates the breaker, completes. Touch nothing of
  // the scan afterwards.
  void finish(ScanResult result);
  // The probe answered (or failed): scan now in the same slot and deadline, or fail.
  void endProbe(bool healthy, const std::string& detail);
  void failNow(std::string error);
  void cancel();
  std::int64_t elapsedMs() const;

  std::shared_ptr<const ScannerConfig> config_;
  std::shared_ptr<const ScanClient> client_;
  std::shared_ptr<ScannerShared> shared_;
  FilterContext context_;

  // One scan at a time (end-of-message only).
  Next next_;
  const SessionView* session_ = nullptr;  // valid while our call is pending
  std::string sessionId_;
  const MessageReader* reader_ = nullptr;
  std::uint64_t size_ = 0;
  bool probing_ = false;  // this scan holds the breaker's one probe
  std::chrono::steady_clock::time_point started_{};
  std::unique_ptr<ScanSlot> slot_;
  std::unique_ptr<ScanExchange> exchange_;
  std::unique_ptr<TimerHandle> deadline_;
  std::unique_ptr<TimerHandle> failLater_;
};

// The factory side shared by the scanners: the shared state and the creator. A stream scanner
// passes its protocol (sent to config->address); rspamd passes its own client.
FilterCreator makeScannerCreator(const std::shared_ptr<const ScannerConfig>& config,
                                 const std::shared_ptr<const ScanClient>& client);
FilterCreator makeScannerCreator(const std::shared_ptr<const ScannerConfig>& config,
                                 const std::shared_ptr<const ScanProtocol>& protocol);

// The traits of a scanner filter: it times itself, and fails with 451 4.7.1.
FilterTraits scannerTraits();

}  // namespace portcullis
