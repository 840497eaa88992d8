#pragma once
// Domain-name syntax: the one check behind every place portcullis validates a host or domain
// name (the HELO argument, the sender domain, the configured hostname, DNSBL zones, the domain of
// an SMTP path, DNS query names). Pure and allocation-free; no DNS. Each caller states how it
// differs in DomainSyntax. An FQDN's final '.' is the caller's to strip (callers differ in
// whether they allow it); '_' is accepted everywhere, as DNS itself allows it (RFC 2181 11) and
// Postfix accepts it in HELO names.

#include <cstddef>
#include <string>
#include <string_view>

namespace portcullis {

enum class DomainError {
  kNone,
  kEmpty,         // no name at all
  kTooLong,       // more than DomainSyntax::maxLength octets
  kEmptyLabel,    // "a..b", ".a", "a."
  kLabelTooLong,  // RFC 1035 2.3.4: more than 63 octets in a label
  kBadCharacter,  // not a letter, digit, '-' or '_' (nor, with utf8, an octet >= 0x80)
  kEdgeHyphen,    // hostname: RFC 952 / RFC 1123 2.1, a label starts or ends with '-'
  kNumericTld,    // hostname: RFC 3696 2, the top-level label is all digits
};

struct DomainSyntax {
  // RFC 1035 2.3.4: 255 octets on the wire are 253 in text. RFC 5321 4.5.3.1.2 allows 255 for
  // the domain of a path; a DNSBL zone leaves room for the query prefix.
  std::size_t maxLength = 253;
  // RFC 6531: octets >= 0x80 (U-labels of an SMTPUTF8 path) count as letters.
  bool utf8 = false;
  // RFC 1123 2.1 host name: no label starts or ends with '-', the top-level label is not
  // numeric. Off: any mix of letters, digits, '-' and '_' (what DNS accepts).
  bool hostname = false;
  // Off: only the length and the character set are checked, '.' counting as a character (the
  // configured hostname has always been checked this way; empty labels pass).
  bool labels = true;
};

// The first thing wrong with `name`, or kNone. Checked in this order: empty, length, then label
// by label: empty, length, characters, hyphens, and last the numeric top-level label.
[[nodiscard]] DomainError checkDomainName(std::string_view name, const DomainSyntax& syntax = {});

// "empty label", "longer than 253 octets", ...: for log lines and error messages.
std::string domainErrorText(DomainError error, const DomainSyntax& syntax = {});

}  // namespace portcullis
