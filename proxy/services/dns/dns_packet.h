#pragma once
// DNS wire format for the resolver: name validation, query construction, answer matching and
// answer parsing (RFC 1035 4.1). Pure functions with no I/O and no state; ldns is used inside
// dns_packet.cc only, so this header can be included anywhere. Nothing here calls back.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portcullis/resolver.h"

namespace portcullis {

// RFC 1035 2.3.4: a name is at most 255 octets in wire form, a label at most 63.
constexpr std::size_t kMaxNameWire = 255;
constexpr std::size_t kMaxLabel = 63;
// The UDP payload size we advertise with EDNS0 (RFC 6891 6.2.5; 1232 is the DNS Flag Day 2020
// value that avoids IP fragmentation). Larger answers come back truncated and go to TCP.
constexpr std::uint16_t kEdnsUdpSize = 1232;
// Our receive buffer: a server that ignores the advertised size still cannot make us read more.
constexpr std::size_t kMaxUdpAnswer = 4096;
// RFC 7766 8: a TCP message is prefixed by a two-octet length, so it is at most 65535 octets.
constexpr std::size_t kMaxTcpAnswer = 65535;

// Lowercases and validates a query name; strips one trailing dot. Accepts letters, digits, '-'
// and '_' (SRV/DMARC-style labels). nullopt for an empty, over-long or otherwise odd name: we
// only ever query names we built ourselves or took from configuration.
std::optional<std::string> normalizeQueryName(std::string_view name);

// Wire form (length-prefixed labels, terminating zero) of a name from normalizeQueryName().
std::vector<std::uint8_t> nameToWire(std::string_view normalized);

// What an answer must echo to be ours (RFC 5452 4.1: id, question and source; the source is
// checked by the transport).
struct DnsExpectation {
  std::uint16_t id = 0;
  std::vector<std::uint8_t> qnameWire;  // lowercase
  std::uint16_t qtype = 0;
};

enum class DnsMatch {
  kMatch,
  kMalformed,     // shorter than a header plus one question, or a bad question name
  kNotAResponse,  // QR clear, or an opcode other than QUERY
  kWrongId,
  kWrongQuestion,  // QDCOUNT != 1, or a different name (case-insensitive), type or class
};

// Checks header and question only (no ldns). *truncated receives the TC bit on a match.
DnsMatch matchAnswer(const std::uint8_t* data, std::size_t size, const DnsExpectation& expect,
                     bool* truncated);

// Builds a recursive query for IN/type with the given id and an EDNS0 OPT record. false if
// ldns cannot encode the name (normalizeQueryName() should have caught that already).
[[nodiscard]] bool buildQuery(std::string_view normalized, DnsType type, std::uint16_t id,
                              std::vector<std::uint8_t>* out);

struct ParsedAnswer {
  DnsResult result;  // status and records; detail holds "rcode=NAME" for the caller to extend
  // Positive: the smallest TTL among the records used (CNAME chain included). Negative: from the
  // SOA in the authority section, min(SOA TTL, SOA MINIMUM) as RFC 2308 5 says. nullopt if the
  // answer did not say (negative without SOA) or for failures.
  std::optional<std::uint32_t> ttl;
};

// Parses a matched answer with ldns. Follows a CNAME chain inside the answer (at most 16 links)
// and keeps the records of the asked type owned by the end of the chain. nullopt if the packet
// does not parse.
std::optional<ParsedAnswer> parseAnswer(const std::uint8_t* data, std::size_t size,
                                        std::string_view normalized, DnsType type);

}  // namespace portcullis
