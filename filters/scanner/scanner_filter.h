#pragma once
// ScannerFilter: the end-of-message machinery every stream scanner client shares (clamd, spamd):
// the size limit, the circuit breaker, the connection limit and its bounded queue, an
// asynchronous connect through FilterContext::connector, streaming the spooled message in
// chunks with backpressure (never reading a spooled file whole), a bounded reply buffer, a
// deadline on every wait, and one log line per scan. What is specific to a scanner is a
// ScanProtocol: the request bytes, the framing of each chunk, and the reply parser.
// Ownership: the session's ScannerFilter owns its slot, connection and timer; destroying it
// (the session going away) cancels the scan. The hook completes exactly once, always from the
// loop (a scan never completes inline), and touches nothing afterwards.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "filters/scanner/circuit_breaker.h"
#include "filters/scanner/scan_limiter.h"
#include "filters/scanner/scanner_config.h"
#include "portcullis/connector.h"
#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"

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

// Shared by every session of one configured scanner (one event loop).
struct ScannerShared {
  explicit ScannerShared(const ScannerConfig& config)
      : breaker(config.breaker),
        limiter(std::make_shared<ScanLimiter>(config.maxConnections, config.maxQueue)) {}
  CircuitBreaker breaker;
  std::shared_ptr<ScanLimiter> limiter;
};

class ScannerFilter final : public Filter, private ConnectionHandler {
 public:
  ScannerFilter(std::shared_ptr<const ScannerConfig> config,
                std::shared_ptr<const ScanProtocol> protocol, std::shared_ptr<ScannerShared> shared,
                const FilterContext& context);
  ~ScannerFilter() override;
  ScannerFilter(const ScannerFilter&) = delete;
  ScannerFilter& operator=(const ScannerFilter&) = delete;

  void onEndOfMessage(const SessionView& s, Next next) override;
  void onTransactionEnd(const SessionView& s) override;

 private:
  void onTurn();
  void pump();
  void onConnected() override;
  void onReceived(std::string_view bytes) override;
  void onDrained() override;
  void onEnd(ConnectionEnd end, std::string_view detail) override;
  // Ends the scan: releases everything, logs, updates the breaker, completes. Touch nothing of
  // the scan afterwards.
  void finish(ScanResult result);
  // The probe answered (or failed): scan now in the same slot and deadline, or fail.
  void endProbe(bool healthy, const std::string& detail);
  void failNow(std::string error);
  void cancel();
  std::int64_t elapsedMs() const;

  std::shared_ptr<const ScannerConfig> config_;
  std::shared_ptr<const ScanProtocol> protocol_;
  std::shared_ptr<ScannerShared> shared_;
  FilterContext context_;

  // One scan at a time (end-of-message only).
  Next next_;
  const SessionView* session_ = nullptr;  // valid while our call is pending
  std::string sessionId_;
  const MessageReader* reader_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t offset_ = 0;
  bool trailerSent_ = false;
  bool probing_ = false;  // this scan holds the breaker's one probe
  std::string reply_;
  std::chrono::steady_clock::time_point started_{};
  std::unique_ptr<ScanSlot> slot_;
  std::unique_ptr<Connection> connection_;
  std::unique_ptr<TimerHandle> deadline_;
  std::unique_ptr<TimerHandle> failLater_;
};

// The factory side shared by the scanners: builds the config, the shared state, the creator.
FilterCreator makeScannerCreator(const std::shared_ptr<const ScannerConfig>& config,
                                 const std::shared_ptr<const ScanProtocol>& protocol);

// The traits of a scanner filter: it times itself, and fails with 451 4.7.1.
FilterTraits scannerTraits();

}  // namespace portcullis
