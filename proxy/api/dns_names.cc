// Pure helpers declared in include/portcullis/resolver.h: reverse-nibble names for DNSBL and PTR
// queries (RFC 1035 3.5 in-addr.arpa, RFC 3596 2.5 ip6.arpa) and names for log lines.
// Compiled into portcullis_api, which does not link ldns: only inet_pton here.

#include <arpa/inet.h>

#include <array>
#include <cstdio>

#include "portcullis/resolver.h"

namespace portcullis {
namespace {

// Longest textual IPv6 address, including an embedded IPv4 tail (INET6_ADDRSTRLEN - 1).
constexpr std::size_t kMaxAddressText = 45;

struct StatusName {
  DnsStatus status;
  std::string_view name;
};
constexpr std::array<StatusName, 6> kStatusNames{{
    {DnsStatus::kOk, "ok"},
    {DnsStatus::kNoData, "nodata"},
    {DnsStatus::kNxDomain, "nxdomain"},
    {DnsStatus::kServFail, "servfail"},
    {DnsStatus::kTimeout, "timeout"},
    {DnsStatus::kError, "error"},
}};

struct TypeName {
  DnsType type;
  std::string_view name;
};
constexpr std::array<TypeName, 5> kTypeNames{{
    {DnsType::kA, "A"},
    {DnsType::kPtr, "PTR"},
    {DnsType::kMx, "MX"},
    {DnsType::kTxt, "TXT"},
    {DnsType::kAaaa, "AAAA"},
}};

}  // namespace

std::string_view dnsStatusName(DnsStatus s) {
  for (const auto& entry : kStatusNames) {
    if (entry.status == s) {
      return entry.name;
    }
  }
  return "unknown";
}

std::string_view dnsTypeName(DnsType t) {
  for (const auto& entry : kTypeNames) {
    if (entry.type == t) {
      return entry.name;
    }
  }
  return "unknown";
}

std::optional<std::string> reverseNibbles(std::string_view address) {
  if (address.empty() || address.size() > kMaxAddressText ||
      address.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  // inet_pton needs a NUL-terminated string; the bound above keeps this on the stack.
  std::array<char, kMaxAddressText + 1> text{};
  address.copy(text.data(), address.size());

  std::array<unsigned char, 16> bytes{};
  if (inet_pton(AF_INET, text.data(), bytes.data()) == 1) {
    // RFC 1035 3.5: the four octets in reverse order, as decimal labels.
    std::array<char, 16> out{};
    std::snprintf(out.data(), out.size(), "%u.%u.%u.%u", bytes[3], bytes[2], bytes[1], bytes[0]);
    return std::string(out.data());
  }
  if (inet_pton(AF_INET6, text.data(), bytes.data()) == 1) {
    // RFC 3596 2.5: 32 hex nibbles, lowest-order nibble first, each one a label.
    static constexpr std::string_view kHex = "0123456789abcdef";
    std::string out;
    out.reserve(63);
    for (std::size_t i = bytes.size(); i-- > 0;) {
      out.push_back(kHex[bytes[i] & 0x0f]);
      out.push_back('.');
      out.push_back(kHex[bytes[i] >> 4]);
      if (i != 0) {
        out.push_back('.');
      }
    }
    return out;
  }
  return std::nullopt;
}

std::optional<std::string> ptrQueryName(std::string_view address) {
  auto reversed = reverseNibbles(address);
  if (!reversed) {
    return std::nullopt;
  }
  const bool v6 = address.find(':') != std::string_view::npos;
  return *reversed + (v6 ? ".ip6.arpa" : ".in-addr.arpa");
}

}  // namespace portcullis
