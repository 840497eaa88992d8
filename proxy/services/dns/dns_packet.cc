// DNS wire helpers: see dns_packet.h. The header/question check is hand-written (it runs for
// every datagram, including forged ones, and must not allocate much); the full parse uses ldns.

#include "proxy/services/dns/dns_packet.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>

#include "portcullis/domain.h"

// ldns/common.h does `#define false 0` unless stdbool.h came first.
#include <ldns/ldns.h>
#include <stdbool.h>  // NOLINT(modernize-deprecated-headers)

namespace portcullis {
namespace {

constexpr std::size_t kHeaderSize = 12;
constexpr std::uint16_t kClassIn = 1;
constexpr int kMaxCnameChain = 16;

constexpr std::array<std::string_view, 11> kRcodeNames{
    "NOERROR",  "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",  "REFUSED",
    "YXDOMAIN", "YXRRSET", "NXRRSET",  "NOTAUTH",  "NOTZONE",
};

std::string rcodeName(unsigned rcode) {
  if (rcode < kRcodeNames.size()) {
    return std::string(kRcodeNames[rcode]);
  }
  return "RCODE" + std::to_string(rcode);
}

char lowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::uint16_t read16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

struct PktDeleter {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
struct RdfDeleter {
  void operator()(ldns_rdf* r) const { ldns_rdf_deep_free(r); }
};
struct CharDeleter {
  void operator()(char* s) const { std::free(s); }  // NOLINT(cppcoreguidelines-no-malloc)
};
using PktPtr = std::unique_ptr<ldns_pkt, PktDeleter>;
using RdfPtr = std::unique_ptr<ldns_rdf, RdfDeleter>;

// PTR/MX targets: lowercase, no trailing dot. Unusual octets stay \DDD-escaped by ldns, and the
// caller sanitises before any of it reaches a reply or header.
std::string dnameValue(const ldns_rdf* rdf) {
  std::unique_ptr<char, CharDeleter> text(ldns_rdf2str(rdf));
  if (!text) {
    return {};
  }
  std::string out(text.get());
  std::transform(out.begin(), out.end(), out.begin(), lowerAscii);
  if (!out.empty() && out.back() == '.') {
    out.pop_back();
  }
  return out;
}

std::optional<DnsRecord> recordFrom(const ldns_rr* rr, DnsType type) {
  DnsRecord rec;
  rec.type = type;
  rec.ttl = ldns_rr_ttl(rr);
  switch (type) {
    case DnsType::kA:
    case DnsType::kAaaa: {
      const ldns_rdf* rdf = ldns_rr_rdf(rr, 0);
      const std::size_t want = type == DnsType::kA ? 4 : 16;
      if (rdf == nullptr || ldns_rdf_size(rdf) != want) {
        return std::nullopt;
      }
      std::array<char, INET6_ADDRSTRLEN> text{};
      const int family = type == DnsType::kA ? AF_INET : AF_INET6;
      if (inet_ntop(family, ldns_rdf_data(rdf), text.data(), text.size()) == nullptr) {
        return std::nullopt;
      }
      rec.value = text.data();
      return rec;
    }
    case DnsType::kPtr: {
      const ldns_rdf* rdf = ldns_rr_rdf(rr, 0);
      if (rdf == nullptr) {
        return std::nullopt;
      }
      rec.value = dnameValue(rdf);
      return rec;
    }
    case DnsType::kMx: {
      const ldns_rdf* pref = ldns_rr_rdf(rr, 0);
      const ldns_rdf* host = ldns_rr_rdf(rr, 1);
      if (pref == nullptr || host == nullptr || ldns_rdf_size(pref) != 2) {
        return std::nullopt;
      }
      rec.preference = ldns_rdf2native_int16(pref);
      rec.value = dnameValue(host);
      return rec;
    }
    case DnsType::kTxt: {
      // RFC 1035 3.3.14: one or more <character-string>s; we join them without separator
      // (RFC 7208 3.3 does the same for SPF, and DNSBL TXT is usually a single string).
      for (std::size_t i = 0; i < ldns_rr_rd_count(rr); ++i) {
        const ldns_rdf* rdf = ldns_rr_rdf(rr, i);
        const std::uint8_t* d = ldns_rdf_data(rdf);
        const std::size_t n = ldns_rdf_size(rdf);
        if (n == 0 || static_cast<std::size_t>(d[0]) + 1 > n) {
          return std::nullopt;
        }
        rec.value.append(reinterpret_cast<const char*>(d + 1), d[0]);
      }
      return rec;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> normalizeQueryName(std::string_view name) {
  if (!name.empty() && name.back() == '.') {
    name.remove_suffix(1);
  }
  if (name.empty()) {
    return std::nullopt;
  }
  // Wire size: one length octet per label plus its text, plus the root label.
  if (checkDomainName(name, {.maxLength = kMaxNameWire - 2}) != DomainError::kNone) {
    return std::nullopt;
  }
  std::string out(name);
  std::transform(out.begin(), out.end(), out.begin(), lowerAscii);
  return out;
}

std::vector<std::uint8_t> nameToWire(std::string_view normalized) {
  std::vector<std::uint8_t> wire;
  wire.reserve(normalized.size() + 2);
  while (!normalized.empty()) {
    const std::size_t dot = normalized.find('.');
    const std::string_view label = normalized.substr(0, dot);
    wire.push_back(static_cast<std::uint8_t>(label.size()));
    wire.insert(wire.end(), label.begin(), label.end());
    normalized.remove_prefix(dot == std::string_view::npos ? normalized.size() : dot + 1);
  }
  wire.push_back(0);
  return wire;
}

DnsMatch matchAnswer(const std::uint8_t* data, std::size_t size, const DnsExpectation& expect,
                     bool* truncated) {
  if (size < kHeaderSize) {
    return DnsMatch::kMalformed;
  }
  const std::uint16_t flags = read16(data + 2);
  const bool qr = (flags & 0x8000) != 0;
  const unsigned opcode = (flags >> 11) & 0x0f;
  if (!qr || opcode != 0) {
    return DnsMatch::kNotAResponse;
  }
  if (read16(data) != expect.id) {
    return DnsMatch::kWrongId;
  }
  if (read16(data + 4) != 1) {
    return DnsMatch::kWrongQuestion;
  }
  // The question name: uncompressed labels (a pointer is legal but no server we know sends one in
  // the question, and accepting it would only widen what a forger can play with).
  std::size_t pos = kHeaderSize;
  const std::size_t nameStart = pos;
  while (true) {
    if (pos >= size) {
      return DnsMatch::kMalformed;
    }
    const std::uint8_t len = data[pos];
    if (len == 0) {
      ++pos;
      break;
    }
    if (len > kMaxLabel || pos + 1 + len > size || pos + 1 + len - nameStart > kMaxNameWire) {
      return DnsMatch::kMalformed;
    }
    pos += 1 + len;
  }
  if (pos + 4 > size) {
    return DnsMatch::kMalformed;
  }
  const std::size_t nameLen = pos - nameStart;
  if (nameLen != expect.qnameWire.size()) {
    return DnsMatch::kWrongQuestion;
  }
  for (std::size_t i = 0; i < nameLen; ++i) {
    // Length octets are below 64 and so unaffected by ASCII lowercasing.
    if (lowerAscii(static_cast<char>(data[nameStart + i])) !=
        static_cast<char>(expect.qnameWire[i])) {
      return DnsMatch::kWrongQuestion;
    }
  }
  if (read16(data + pos) != expect.qtype || read16(data + pos + 2) != kClassIn) {
    return DnsMatch::kWrongQuestion;
  }
  if (truncated != nullptr) {
    *truncated = (flags & 0x0200) != 0;
  }
  return DnsMatch::kMatch;
}

bool buildQuery(std::string_view normalized, DnsType type, std::uint16_t id,
                std::vector<std::uint8_t>* out) {
  const std::string absolute = std::string(normalized) + ".";
  ldns_rdf* owner = ldns_dname_new_frm_str(absolute.c_str());
  if (owner == nullptr) {
    return false;
  }
  // ldns_pkt_query_new takes ownership of owner.
  PktPtr pkt(ldns_pkt_query_new(owner, static_cast<ldns_rr_type>(type), LDNS_RR_CLASS_IN, LDNS_RD));
  if (!pkt) {
    return false;
  }
  ldns_pkt_set_id(pkt.get(), id);
  ldns_pkt_set_edns_udp_size(pkt.get(), kEdnsUdpSize);
  std::uint8_t* wire = nullptr;
  std::size_t size = 0;
  if (ldns_pkt2wire(&wire, pkt.get(), &size) != LDNS_STATUS_OK || wire == nullptr) {
    return false;
  }
  out->assign(wire, wire + size);
  std::free(wire);  // NOLINT(cppcoreguidelines-no-malloc): ldns allocates with malloc
  return true;
}

std::optional<ParsedAnswer> parseAnswer(const std::uint8_t* data, std::size_t size,
                                        std::string_view normalized, DnsType type) {
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, data, size) != LDNS_STATUS_OK || raw == nullptr) {
    return std::nullopt;
  }
  PktPtr pkt(raw);
  ParsedAnswer parsed;
  const unsigned rcode = static_cast<unsigned>(ldns_pkt_get_rcode(pkt.get()));
  parsed.result.detail = "rcode=" + rcodeName(rcode);

  if (rcode != LDNS_RCODE_NOERROR && rcode != LDNS_RCODE_NXDOMAIN) {
    parsed.result.status = DnsStatus::kServFail;
    return parsed;
  }

  const std::string absolute = std::string(normalized) + ".";
  RdfPtr start(ldns_dname_new_frm_str(absolute.c_str()));
  if (!start) {
    return std::nullopt;
  }
  const ldns_rr_list* answer = ldns_pkt_answer(pkt.get());
  const std::size_t count = answer == nullptr ? 0 : ldns_rr_list_rr_count(answer);
  std::optional<std::uint32_t> minTtl;
  auto noteTtl = [&minTtl](std::uint32_t ttl) { minTtl = minTtl ? std::min(*minTtl, ttl) : ttl; };

  // Follow CNAMEs from the question name (RFC 1034 3.6.2); the owner comparison is
  // case-insensitive (ldns_dname_compare), and the hop limit defeats loops.
  const ldns_rdf* owner = start.get();
  for (int hop = 0; hop < kMaxCnameChain; ++hop) {
    const ldns_rdf* next = nullptr;
    for (std::size_t i = 0; i < count && next == nullptr; ++i) {
      const ldns_rr* rr = ldns_rr_list_rr(answer, i);
      if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME && ldns_rr_get_class(rr) == LDNS_RR_CLASS_IN &&
          ldns_dname_compare(ldns_rr_owner(rr), owner) == 0 && ldns_rr_rd_count(rr) == 1) {
        next = ldns_rr_rdf(rr, 0);
        noteTtl(ldns_rr_ttl(rr));
      }
    }
    if (next == nullptr) {
      break;
    }
    owner = next;
  }

  std::optional<std::uint32_t> chainTtl = minTtl;
  for (std::size_t i = 0; i < count; ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(answer, i);
    if (ldns_rr_get_type(rr) != static_cast<ldns_rr_type>(type) ||
        ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN ||
        ldns_dname_compare(ldns_rr_owner(rr), owner) != 0) {
      continue;
    }
    auto rec = recordFrom(rr, type);
    if (!rec) {
      return std::nullopt;  // a record of the asked type we cannot read: the answer is malformed
    }
    noteTtl(rec->ttl);
    parsed.result.records.push_back(std::move(*rec));
  }

  if (!parsed.result.records.empty()) {
    parsed.result.status = DnsStatus::kOk;
    parsed.ttl = minTtl;
    return parsed;
  }
  // RFC 6604: with a CNAME chain the rcode describes the last name, so NXDOMAIN stays NXDOMAIN.
  parsed.result.status = rcode == LDNS_RCODE_NXDOMAIN ? DnsStatus::kNxDomain : DnsStatus::kNoData;
  // RFC 2308 5: negative answers live for min(SOA TTL, SOA MINIMUM).
  const ldns_rr_list* authority = ldns_pkt_authority(pkt.get());
  const std::size_t acount = authority == nullptr ? 0 : ldns_rr_list_rr_count(authority);
  for (std::size_t i = 0; i < acount; ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(authority, i);
    if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA && ldns_rr_rd_count(rr) == 7) {
      const ldns_rdf* minimum = ldns_rr_rdf(rr, 6);
      if (ldns_rdf_size(minimum) == 4) {
        std::uint32_t ttl = std::min(ldns_rr_ttl(rr), ldns_rdf2native_int32(minimum));
        if (chainTtl) {
          ttl = std::min(ttl, *chainTtl);
        }
        parsed.ttl = ttl;
      }
      break;
    }
  }
  return parsed;
}

}  // namespace portcullis
