// The shared scanner keys. See scanner_config.h.

#include "filters/scanner/scanner_config.h"

#include "portcullis/connector.h"
#include "portcullis/reply.h"

namespace portcullis {
namespace {

// Bounds checked at load (DESIGN invariant 5).
constexpr std::int64_t kMaxConnectionsLimit = 1024;
constexpr std::int64_t kMaxQueueLimit = 100'000;
constexpr std::int64_t kMaxBreakerFailures = 1'000'000;

}  // namespace

ScannerConfig parseScannerConfig(const ConfigSection& section, std::string_view defaultAddress) {
  ScannerConfig c = parseScannerLimits(section);
  c.address = defaultAddress.empty() ? section.getString("address")
                                     : section.getString("address", std::string(defaultAddress));
  if (auto problem = checkConnectAddress(c.address)) {
    section.fail("address", "\"" + c.address + "\": " + *problem);
  }
  return c;
}

ScannerConfig parseScannerLimits(const ConfigSection& section) {
  ScannerConfig c;
  // The chain reads `timeout` too (and validates it); the scanner bounds each of its waits by it.
  c.timeout = section.getDuration("timeout", c.timeout);
  c.maxSize = section.getSize("max_size", c.maxSize);
  if (c.maxSize == 0) section.fail("max_size", "must be greater than zero");
  c.maxConnections = static_cast<std::size_t>(section.getInt(
      "max_connections", static_cast<std::int64_t>(c.maxConnections), 1, kMaxConnectionsLimit));
  c.maxQueue = static_cast<std::size_t>(
      section.getInt("max_queue", static_cast<std::int64_t>(c.maxQueue), 0, kMaxQueueLimit));
  const ConfigSection breaker = section.section("circuit_breaker");
  c.breaker.failures = static_cast<std::size_t>(breaker.getInt(
      "failures", static_cast<std::int64_t>(c.breaker.failures), 0, kMaxBreakerFailures));
  c.breaker.window = breaker.getDuration("window", c.breaker.window);
  if (c.breaker.window.count() <= 0) breaker.fail("window", "must be greater than zero");
  c.breaker.openFor = breaker.getDuration("open_for", c.breaker.openFor);
  if (c.breaker.openFor.count() <= 0) breaker.fail("open_for", "must be greater than zero");
  return c;
}

std::string sanitizeScannerText(std::string_view text, std::size_t max) {
  return sanitizeText(text, max);
}

}  // namespace portcullis
