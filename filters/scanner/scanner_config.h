#pragma once
// The keys every content scanner (clamd, spamd, rspamd) shares, read once at config load:
//   address          where the scanner listens: "HOST:PORT" (numeric) or "unix:/path"
//                    (rspamd reads its own `url` instead)
//   timeout          (default 30s) bounds the connect and each wait of a scan; the chain reads
//                    the same key as the filter's timeout (and its on_error and mode)
//   max_size         (default 2M) larger messages are not scanned: passed, logged scan=skipped-size
//   max_connections  (default 16) scans at a time, per configured scanner
//   max_queue        (default 64) scans waiting for a turn; beyond it a scan fails (on_error)
//   circuit_breaker  {failures: 5, window: 30s, open_for: 30s}
// Plus sanitizeScannerText(), the one way scanner text reaches a reply, header or log line.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "filters/scanner/circuit_breaker.h"
#include "portcullis/config_section.h"

namespace portcullis {

struct ScannerConfig {
  std::string address;
  std::chrono::milliseconds timeout{30'000};
  std::uint64_t maxSize = 2 * 1024 * 1024;
  std::size_t maxConnections = 16;
  std::size_t maxQueue = 64;
  CircuitBreakerConfig breaker;
};

// Reads the shared keys; `defaultAddress` is used when `address` is absent (empty: required).
// Throws ConfigError naming the key.
ScannerConfig parseScannerConfig(const ConfigSection& section, std::string_view defaultAddress);
// The same without `address`, for a scanner that names its endpoint otherwise (rspamd's url).
ScannerConfig parseScannerLimits(const ConfigSection& section);

// The longest scanner-provided text we pass on (a virus name, a symbol, a reply text).
inline constexpr std::size_t kMaxScannerText = 200;

// DESIGN invariant 6: no CR, LF, NUL or other control characters, at most `max` bytes.
std::string sanitizeScannerText(std::string_view text, std::size_t max = kMaxScannerText);

}  // namespace portcullis
