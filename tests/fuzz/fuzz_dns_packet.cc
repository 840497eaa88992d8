// Fuzz target: the DNS wire code in proxy/dns/dns_packet.cc (matchAnswer, parseAnswer,
// normalizeQueryName, nameToWire, buildQuery) and the name helpers of proxy/dns/dns_names.cc.
// Input: one selector octet (the asked type), then a DNS message as it would come off the wire.
// The query name is taken from the message's own question when it is a name we could have asked
// for (so CNAME chains and owner matching are reachable), else "example.com".
// Invariants: never crash; matchAnswer agrees with the question it was built from; a parsed
// answer keeps the promises of dns_packet.h and resolver.h (records of the asked type only,
// status kOk iff records, ttl = the smallest record TTL, A/AAAA values are addresses, PTR/MX
// values are lowercase, ldns-escaped printable ASCII without a trailing dot, bounded by the
// packet); the name helpers produce names that normalise to themselves. ldns stays out of here.

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portcullis/resolver.h"
#include "proxy/services/dns/dns_packet.h"

namespace {

using portcullis::DnsMatch;
using portcullis::DnsStatus;
using portcullis::DnsType;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

constexpr std::array<DnsType, 5> kTypes{DnsType::kA, DnsType::kPtr, DnsType::kMx, DnsType::kTxt,
                                        DnsType::kAaaa};

// The question name of a message, dotted, if it is made of plain labels (no compression).
std::optional<std::string> questionName(const std::uint8_t* data, std::size_t size) {
  std::size_t pos = 12;
  std::string name;
  while (pos < size) {
    const std::uint8_t len = data[pos];
    if (len == 0) return name;
    if (len > 63 || pos + 1 + len > size) return std::nullopt;
    if (!name.empty()) name.push_back('.');
    name.append(reinterpret_cast<const char*>(data + pos + 1), len);
    pos += 1 + len;
  }
  return std::nullopt;
}

// What normalizeQueryName promises: lowercase letters, digits, '-', '_' in non-empty labels of
// at most 63 octets, at most 253 octets in all, no trailing dot; idempotent.
void checkNormalized(const std::string& n) {
  require(!n.empty() && n.size() + 2 <= portcullis::kMaxNameWire, "normalized name size");
  require(n.front() != '.' && n.back() != '.', "normalized name has an edge dot");
  require(n.find("..") == std::string::npos, "normalized name has an empty label");
  std::size_t label = 0;
  for (const char c : n) {
    if (c == '.') {
      label = 0;
      continue;
    }
    require((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_',
            "normalized name character");
    require(++label <= portcullis::kMaxLabel, "normalized label over 63");
  }
  const auto again = portcullis::normalizeQueryName(n);
  require(again && *again == n, "normalizeQueryName not idempotent");
  const auto wire = portcullis::nameToWire(n);
  require(wire.size() == n.size() + 2 && wire.size() <= portcullis::kMaxNameWire, "wire size");
  require(wire.back() == 0, "wire name not terminated");
  // nameToWire -> dotted again.
  std::string back;
  for (std::size_t pos = 0; wire[pos] != 0; pos += 1 + wire[pos]) {
    require(wire[pos] >= 1 && wire[pos] <= portcullis::kMaxLabel, "wire label length");
    if (!back.empty()) back.push_back('.');
    back.append(reinterpret_cast<const char*>(wire.data() + pos + 1), wire[pos]);
  }
  require(back == n, "nameToWire does not round-trip");
}

// A query we build must match itself as an answer once QR is set (same id, question, type).
void checkOwnQuery(const std::string& name, DnsType type, std::uint16_t id) {
  std::vector<std::uint8_t> q;
  require(portcullis::buildQuery(name, type, id, &q), "buildQuery failed on a normalized name");
  require(q.size() >= 12 + name.size() + 2 + 4, "query too short");
  q[2] |= 0x80;  // QR
  portcullis::DnsExpectation e{id, portcullis::nameToWire(name), static_cast<std::uint16_t>(type)};
  bool tc = true;
  require(portcullis::matchAnswer(q.data(), q.size(), e, &tc) == DnsMatch::kMatch,
          "own query does not match itself");
  require(!tc, "own query has TC");
}

bool printableNoSpace(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;
  });
}

void checkParsed(const portcullis::ParsedAnswer& p, DnsType type, std::size_t size) {
  const auto& r = p.result;
  require(r.detail.rfind("rcode=", 0) == 0, "detail without rcode=");
  switch (r.status) {
    case DnsStatus::kOk:
      require(!r.records.empty(), "kOk without records");
      require(p.ttl.has_value(), "kOk without ttl");
      break;
    case DnsStatus::kNoData:
    case DnsStatus::kNxDomain:
    case DnsStatus::kServFail:
      require(r.records.empty(), "records with a negative status");
      break;
    default:
      require(false, "parseAnswer status is timeout/error");
  }
  if (r.status == DnsStatus::kServFail) require(!p.ttl, "servfail with a ttl");
  // Each record costs at least 11 octets of wire (root owner, type, class, ttl, rdlength).
  require(r.records.size() * 11 <= size, "more records than the packet can hold");
  for (const auto& rec : r.records) {
    require(rec.type == type, "record of another type");
    require(!p.ttl || *p.ttl <= rec.ttl, "ttl above a record's ttl");
    switch (type) {
      case DnsType::kA:
      case DnsType::kAaaa: {
        std::array<unsigned char, 16> buf{};
        require(
            inet_pton(type == DnsType::kA ? AF_INET : AF_INET6, rec.value.c_str(), buf.data()) == 1,
            "A/AAAA value is not an address");
        break;
      }
      case DnsType::kPtr:
      case DnsType::kMx:
        // ldns escapes every octet outside isgraph() as \DDD (4 octets per wire octet at most).
        require(printableNoSpace(rec.value), "PTR/MX value has a control character or space");
        require(rec.value.size() <= 4 * portcullis::kMaxNameWire, "PTR/MX value too long");
        require(std::none_of(rec.value.begin(), rec.value.end(),
                             [](char c) { return c >= 'A' && c <= 'Z'; }),
                "PTR/MX value not lowercase");
        require(rec.value.empty() || rec.value.back() != '.' ||
                    (rec.value.size() >= 2 && rec.value[rec.value.size() - 2] == '\\'),
                "PTR/MX value has a trailing dot");
        break;
      case DnsType::kTxt:
        // Raw (resolver.h: sanitise before use), but never more than the packet carried.
        require(rec.value.size() <= size, "TXT value longer than the packet");
        break;
    }
    if (type != DnsType::kMx) require(rec.preference == 0, "preference outside MX");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const DnsType type = kTypes[data[0] % kTypes.size()];
  const std::uint8_t* pkt = data + 1;
  const std::size_t n = size - 1;

  // The name helpers, on the raw bytes as text.
  const std::string_view text(reinterpret_cast<const char*>(pkt), std::min<std::size_t>(n, 300));
  if (const auto norm = portcullis::normalizeQueryName(text)) checkNormalized(*norm);
  if (const auto rev = portcullis::reverseNibbles(text)) {
    const auto ptr = portcullis::ptrQueryName(text);
    require(ptr && ptr->rfind(*rev, 0) == 0, "ptrQueryName disagrees with reverseNibbles");
    const auto norm = portcullis::normalizeQueryName(*ptr);
    require(norm && *norm == *ptr, "ptrQueryName is not a normalized name");
  }
  require(!portcullis::dnsStatusName(static_cast<DnsStatus>(data[0] % 8)).empty(), "status name");
  require(!portcullis::dnsTypeName(type).empty(), "type name");

  std::string name = "example.com";
  if (const auto q = questionName(pkt, n)) {
    if (auto norm = portcullis::normalizeQueryName(*q)) name = std::move(*norm);
  }
  checkNormalized(name);
  const std::uint16_t id = n >= 2 ? static_cast<std::uint16_t>((pkt[0] << 8) | pkt[1]) : 0;
  checkOwnQuery(name, type, id);

  portcullis::DnsExpectation expect{id, portcullis::nameToWire(name),
                                    static_cast<std::uint16_t>(type)};
  bool tc = false;
  const DnsMatch m = portcullis::matchAnswer(pkt, n, expect, &tc);
  if (m == DnsMatch::kMatch) {
    require(n >= 12 + expect.qnameWire.size() + 4, "match on a short packet");
    require((pkt[2] & 0x80) != 0, "match without QR");
    require(tc == ((pkt[2] & 0x02) != 0), "TC misreported");
  }
  // A different id never matches.
  expect.id = static_cast<std::uint16_t>(id ^ 1);
  require(portcullis::matchAnswer(pkt, n, expect, nullptr) != DnsMatch::kMatch,
          "match with the wrong id");

  if (const auto parsed = portcullis::parseAnswer(pkt, n, name, type)) {
    checkParsed(*parsed, type, n);
  }
  return 0;
}
