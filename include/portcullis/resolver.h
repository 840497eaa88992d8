#pragma once
// Resolver: asynchronous DNS lookups for filters and the core (A, AAAA, PTR, MX, TXT).
// Completion is always delivered later through the event loop, never inline, including cache
// hits, so there is exactly one completion path. The caller owns the returned DnsLookup handle:
// destroying it cancels the lookup and guarantees the callback will not run.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis {

enum class DnsType : std::uint16_t {
  kA = 1,
  kPtr = 12,
  kMx = 15,
  kTxt = 16,
  kAaaa = 28,
};

enum class DnsStatus {
  kOk,        // NOERROR with at least one record of the asked type
  kNoData,    // NOERROR, no record of that type
  kNxDomain,  // name does not exist
  kServFail,  // SERVFAIL, REFUSED or another server-side failure
  kTimeout,   // no usable answer within the timeout after all retries
  kError,     // local failure: bad name, no servers, malformed answer
};

std::string_view dnsStatusName(DnsStatus s);
std::string_view dnsTypeName(DnsType t);

struct DnsRecord {
  DnsType type = DnsType::kA;
  std::uint32_t ttl = 0;
  // A/AAAA: textual address. PTR/MX: lowercase domain without trailing dot.
  // TXT: the character-strings of one record concatenated, raw (sanitise before use).
  std::string value;
  std::uint16_t preference = 0;  // MX only
};

struct DnsResult {
  DnsStatus status = DnsStatus::kError;
  std::vector<DnsRecord> records;
  std::string detail;  // for logs: which server, what went wrong
  bool fromCache = false;

  bool ok() const { return status == DnsStatus::kOk; }
  // true when the name definitely has no such data (NXDOMAIN or NODATA)
  bool negative() const { return status == DnsStatus::kNxDomain || status == DnsStatus::kNoData; }
  // true when the answer is not known (timeout, SERVFAIL, local error)
  bool failed() const { return !ok() && !negative(); }
};

class DnsLookup {
 public:
  virtual ~DnsLookup() = default;  // cancels: the callback will not run afterwards
};

class Resolver {
 public:
  using Callback = std::function<void(const DnsResult&)>;
  virtual ~Resolver() = default;

  [[nodiscard]] virtual std::unique_ptr<DnsLookup> lookup(std::string_view name, DnsType type,
                                                          Callback callback) = 0;
};

// "192.0.2.1" -> "1.2.0.192"; "2001:db8::1" -> 32 nibbles reversed. nullopt if not an IP.
std::optional<std::string> reverseNibbles(std::string_view address);
// PTR query name: "1.2.0.192.in-addr.arpa" or "...ip6.arpa".
std::optional<std::string> ptrQueryName(std::string_view address);

}  // namespace portcullis
