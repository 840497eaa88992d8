// Table tests for checkDomainName() (include/portcullis/domain.h), one block per caller with the
// DomainSyntax that caller passes: what each accepted before the validators were merged.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "portcullis/domain.h"

namespace portcullis {
namespace {

// The syntax each caller passes.
constexpr DomainSyntax kHelo{.maxLength = 255, .hostname = true};  // filters/helo
constexpr DomainSyntax kSender{};                                  // filters/sender_domain
constexpr DomainSyntax kZone{.maxLength = 253 - 64};               // filters/dnsbl
constexpr DomainSyntax kConfigHostname{.labels = false};           // proxy/config hostname
constexpr DomainSyntax kSmtpPath{.maxLength = 255, .utf8 = true};  // proxy/smtp path domain
constexpr DomainSyntax kDnsQuery{.maxLength = 253};                // proxy/services/dns

struct Case {
  const char* caller;
  DomainSyntax syntax;
  std::string name;
  DomainError want;
};

std::string label(std::size_t n) { return std::string(n, 'a'); }

// `count` labels of `size` octets joined by dots.
std::string labels(int count, std::size_t size) {
  std::string out;
  for (int i = 0; i < count; ++i) out += (i == 0 ? "" : ".") + label(size);
  return out;
}

TEST(Domain, EachCallersCases) {
  using E = DomainError;
  const std::vector<Case> cases = {
      // HELO: RFC 1123 host names; '_' accepted as Postfix does.
      {"helo", kHelo, "mail.example.com", E::kNone},
      {"helo", kHelo, "localhost", E::kNone},
      {"helo", kHelo, "MX_1.Example.COM", E::kNone},
      {"helo", kHelo, "a-b.c-d.e", E::kNone},
      {"helo", kHelo, "1.example.com", E::kNone},
      {"helo", kHelo, "example.c0m", E::kNone},
      {"helo", kHelo, "", E::kEmpty},
      {"helo", kHelo, labels(4, 63), E::kNone},           // 255 octets
      {"helo", kHelo, labels(4, 63) + "a", E::kTooLong},  // 256
      {"helo", kHelo, "a..b", E::kEmptyLabel},
      {"helo", kHelo, ".a", E::kEmptyLabel},
      {"helo", kHelo, "a.", E::kEmptyLabel},  // the filter strips one dot first
      {"helo", kHelo, label(63) + ".com", E::kNone},
      {"helo", kHelo, label(64) + ".com", E::kLabelTooLong},
      {"helo", kHelo, "ex ample.com", E::kBadCharacter},
      {"helo", kHelo, "exa!mple.com", E::kBadCharacter},
      {"helo", kHelo,
       "b\xc3\xbc"
       "cher.de",
       E::kBadCharacter},
      {"helo", kHelo, "-mail.example.com", E::kEdgeHyphen},
      {"helo", kHelo, "mail-.example.com", E::kEdgeHyphen},
      {"helo", kHelo, "example.-com", E::kEdgeHyphen},
      {"helo", kHelo, "192.0.2.300", E::kNumericTld},
      {"helo", kHelo, "12345", E::kNumericTld},
      {"helo", kHelo, label(64) + ".-x", E::kLabelTooLong},  // first fault decides
      // Sender domain: anything DNS could hold; hyphens anywhere, numeric TLD allowed.
      {"sender", kSender, "example.com", E::kNone},
      {"sender", kSender, "-x-.example", E::kNone},
      {"sender", kSender, "_dmarc.example.com", E::kNone},
      {"sender", kSender, "192.0.2.1", E::kNone},
      {"sender", kSender, "", E::kEmpty},
      {"sender", kSender, labels(3, 63) + "." + label(61), E::kNone},     // 253 octets
      {"sender", kSender, labels(3, 63) + "." + label(62), E::kTooLong},  // 254
      {"sender", kSender, "a..b", E::kEmptyLabel},
      {"sender", kSender, label(64), E::kLabelTooLong},
      {"sender", kSender, "exa$mple.com", E::kBadCharacter},
      // DNSBL zones: lowercased by the filter; '_' for access keys (Spamhaus DQS); room for
      // the 64-octet IPv6 query prefix.
      {"dnsbl", kZone, "zen.spamhaus.org", E::kNone},
      {"dnsbl", kZone, "abc123_key.zen.dq.spamhaus.net", E::kNone},
      {"dnsbl", kZone, "127.0.0.1", E::kNone},
      {"dnsbl", kZone, labels(2, 63) + "." + label(61), E::kNone},     // 189 octets
      {"dnsbl", kZone, labels(2, 63) + "." + label(62), E::kTooLong},  // 190
      {"dnsbl", kZone, "a!b.test", E::kBadCharacter},
      {"dnsbl", kZone, "a..test", E::kEmptyLabel},
      {"dnsbl", kZone, label(64) + ".test", E::kLabelTooLong},
      // The configured hostname: characters and length only (labels are not checked).
      {"config", kConfigHostname, "mx.example.com", E::kNone},
      {"config", kConfigHostname, "mx_1.example.com", E::kNone},
      {"config", kConfigHostname, "a..b", E::kNone},
      {"config", kConfigHostname, ".", E::kNone},
      {"config", kConfigHostname, label(70), E::kNone},
      {"config", kConfigHostname, "", E::kEmpty},
      {"config", kConfigHostname, label(253), E::kNone},
      {"config", kConfigHostname, label(254), E::kTooLong},
      {"config", kConfigHostname, "mx example", E::kBadCharacter},
      {"config", kConfigHostname, "mx\r\n250 x", E::kBadCharacter},
      // The domain of a MAIL/RCPT path: 255 octets (RFC 5321 4.5.3.1.2), U-labels allowed.
      {"smtp", kSmtpPath, "example.com", E::kNone},
      {"smtp", kSmtpPath,
       "b\xc3\xbc"
       "cher.de",
       E::kNone},
      {"smtp", kSmtpPath, "-x.example", E::kNone},
      {"smtp", kSmtpPath, labels(4, 63), E::kNone},
      {"smtp", kSmtpPath, labels(4, 63) + "a", E::kTooLong},
      {"smtp", kSmtpPath, "example.com.", E::kEmptyLabel},
      {"smtp", kSmtpPath, "a..b", E::kEmptyLabel},
      {"smtp", kSmtpPath, label(64) + ".com", E::kLabelTooLong},
      {"smtp", kSmtpPath, "ex>ample.com", E::kBadCharacter},
      // DNS query names (trailing dot stripped by the resolver): 255 octets on the wire.
      {"dns", kDnsQuery, "Example.COM", E::kNone},
      {"dns", kDnsQuery, "2.0.0.127.zen.spamhaus.org", E::kNone},
      {"dns", kDnsQuery, labels(3, 63) + "." + label(61), E::kNone},
      {"dns", kDnsQuery, labels(3, 63) + "." + label(62), E::kTooLong},
      {"dns", kDnsQuery, "a..b", E::kEmptyLabel},
      {"dns", kDnsQuery, "a b", E::kBadCharacter},
      {"dns", kDnsQuery, std::string("a\0b", 3), E::kBadCharacter},
  };
  for (const Case& c : cases) {
    const DomainError got = checkDomainName(c.name, c.syntax);
    EXPECT_EQ(got, c.want) << c.caller << " \"" << c.name << "\": got "
                           << domainErrorText(got, c.syntax) << ", want "
                           << domainErrorText(c.want, c.syntax);
  }
}

TEST(Domain, ErrorTexts) {
  const struct {
    DomainError error;
    DomainSyntax syntax;
    std::string want;
  } cases[] = {
      {DomainError::kEmpty, {}, "empty name"},
      {DomainError::kTooLong, kHelo, "longer than 255 octets"},
      {DomainError::kTooLong, kSender, "longer than 253 octets"},
      {DomainError::kEmptyLabel, {}, "empty label"},
      {DomainError::kLabelTooLong, {}, "label longer than 63 octets"},
      {DomainError::kBadCharacter, kHelo, "character not allowed in a hostname"},
      {DomainError::kBadCharacter, kSender, "character not allowed in a domain"},
      {DomainError::kEdgeHyphen, kHelo, "label starts or ends with a hyphen"},
      {DomainError::kNumericTld, kHelo, "numeric top-level label"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(domainErrorText(c.error, c.syntax), c.want);
  }
}

}  // namespace
}  // namespace portcullis
