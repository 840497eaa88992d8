#pragma once
// Test helper: builds DNS messages byte by byte (RFC 1035 4.1), so tests can hand the resolver
// exactly the answers a misbehaving or forging server would send: wrong ids, wrong questions,
// truncation, garbage. Uncompressed names; no ldns, so it cannot share the code under test.

#include <arpa/inet.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::dnstest {

inline void put16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v & 0xff));
}
inline void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  put16(out, static_cast<std::uint16_t>(v >> 16));
  put16(out, static_cast<std::uint16_t>(v & 0xffff));
}

// "a.b.c" (case kept) -> length-prefixed labels plus the root label.
inline std::vector<std::uint8_t> wireName(std::string_view name) {
  std::vector<std::uint8_t> out;
  if (!name.empty() && name.back() == '.') {
    name.remove_suffix(1);
  }
  while (!name.empty()) {
    const std::size_t dot = name.find('.');
    const std::string_view label = name.substr(0, dot);
    out.push_back(static_cast<std::uint8_t>(label.size()));
    out.insert(out.end(), label.begin(), label.end());
    name.remove_prefix(dot == std::string_view::npos ? name.size() : dot + 1);
  }
  out.push_back(0);
  return out;
}

struct WireRr {
  std::string owner;
  std::uint16_t type = 1;
  std::uint32_t ttl = 60;
  std::vector<std::uint8_t> rdata;
  std::uint16_t rclass = 1;
};

inline WireRr rrA(std::string owner, std::string_view addr, std::uint32_t ttl = 60) {
  WireRr rr{std::move(owner), 1, ttl, std::vector<std::uint8_t>(4)};
  inet_pton(AF_INET, std::string(addr).c_str(), rr.rdata.data());
  return rr;
}
inline WireRr rrAaaa(std::string owner, std::string_view addr, std::uint32_t ttl = 60) {
  WireRr rr{std::move(owner), 28, ttl, std::vector<std::uint8_t>(16)};
  inet_pton(AF_INET6, std::string(addr).c_str(), rr.rdata.data());
  return rr;
}
inline WireRr rrName(std::string owner, std::uint16_t type, std::string_view target,
                     std::uint32_t ttl = 60) {
  return WireRr{std::move(owner), type, ttl, wireName(target)};
}
inline WireRr rrCname(std::string owner, std::string_view target, std::uint32_t ttl = 60) {
  return rrName(std::move(owner), 5, target, ttl);
}
inline WireRr rrPtr(std::string owner, std::string_view target, std::uint32_t ttl = 60) {
  return rrName(std::move(owner), 12, target, ttl);
}
inline WireRr rrMx(std::string owner, std::uint16_t pref, std::string_view host,
                   std::uint32_t ttl = 60) {
  WireRr rr{std::move(owner), 15, ttl, {}};
  put16(rr.rdata, pref);
  const auto name = wireName(host);
  rr.rdata.insert(rr.rdata.end(), name.begin(), name.end());
  return rr;
}
inline WireRr rrTxt(std::string owner, const std::vector<std::string>& strings,
                    std::uint32_t ttl = 60) {
  WireRr rr{std::move(owner), 16, ttl, {}};
  for (const auto& s : strings) {
    rr.rdata.push_back(static_cast<std::uint8_t>(s.size()));
    rr.rdata.insert(rr.rdata.end(), s.begin(), s.end());
  }
  return rr;
}
inline WireRr rrSoa(std::string owner, std::uint32_t ttl, std::uint32_t minimum) {
  WireRr rr{std::move(owner), 6, ttl, {}};
  const auto mname = wireName("ns.test");
  const auto rname = wireName("hostmaster.test");
  rr.rdata.insert(rr.rdata.end(), mname.begin(), mname.end());
  rr.rdata.insert(rr.rdata.end(), rname.begin(), rname.end());
  for (std::uint32_t v : {1u, 3600u, 600u, 86400u}) {
    put32(rr.rdata, v);
  }
  put32(rr.rdata, minimum);
  return rr;
}

struct WireMessage {
  std::uint16_t id = 0;
  bool qr = true;
  bool tc = false;
  std::uint8_t rcode = 0;
  std::uint16_t qdcount = 1;  // what the header claims
  std::string qname;
  std::uint16_t qtype = 1;
  std::uint16_t qclass = 1;
  std::vector<WireRr> answer;
  std::vector<WireRr> authority;
};

inline std::vector<std::uint8_t> encode(const WireMessage& m) {
  std::vector<std::uint8_t> out;
  put16(out, m.id);
  std::uint16_t flags = 0x0100 | 0x0080;  // RD, RA
  if (m.qr) {
    flags |= 0x8000;
  }
  if (m.tc) {
    flags |= 0x0200;
  }
  flags |= m.rcode & 0x0f;
  put16(out, flags);
  put16(out, m.qdcount);
  put16(out, static_cast<std::uint16_t>(m.answer.size()));
  put16(out, static_cast<std::uint16_t>(m.authority.size()));
  put16(out, 0);
  const auto q = wireName(m.qname);
  out.insert(out.end(), q.begin(), q.end());
  put16(out, m.qtype);
  put16(out, m.qclass);
  for (const auto* section : {&m.answer, &m.authority}) {
    for (const auto& rr : *section) {
      const auto owner = wireName(rr.owner);
      out.insert(out.end(), owner.begin(), owner.end());
      put16(out, rr.type);
      put16(out, rr.rclass);
      put32(out, rr.ttl);
      put16(out, static_cast<std::uint16_t>(rr.rdata.size()));
      out.insert(out.end(), rr.rdata.begin(), rr.rdata.end());
    }
  }
  return out;
}

// The parts of a query a fake server needs. nullopt if it is not a plain one-question query.
struct WireQuery {
  std::uint16_t id = 0;
  std::string name;  // as sent, no trailing dot
  std::uint16_t type = 0;
  bool hasOpt = false;  // an additional record is present (EDNS0)
};

inline std::optional<WireQuery> decodeQuery(const std::vector<std::uint8_t>& b) {
  if (b.size() < 12) {
    return std::nullopt;
  }
  WireQuery q;
  q.id = static_cast<std::uint16_t>((b[0] << 8) | b[1]);
  if ((b[4] << 8 | b[5]) != 1) {
    return std::nullopt;
  }
  q.hasOpt = (b[10] << 8 | b[11]) > 0;
  std::size_t pos = 12;
  while (pos < b.size() && b[pos] != 0) {
    const std::size_t len = b[pos];
    if (pos + 1 + len > b.size()) {
      return std::nullopt;
    }
    if (!q.name.empty()) {
      q.name.push_back('.');
    }
    q.name.append(reinterpret_cast<const char*>(&b[pos + 1]), len);
    pos += 1 + len;
  }
  if (pos + 5 > b.size()) {
    return std::nullopt;
  }
  q.type = static_cast<std::uint16_t>((b[pos + 1] << 8) | b[pos + 2]);
  return q;
}

}  // namespace portcullis::dnstest
