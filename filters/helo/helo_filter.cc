// helo filter. See helo_filter.h.
//
// Order of the checks (the first that fires decides):
//   1. address literal "[a.b.c.d]" / "[IPv6:...]": malformed -> invalid_name; equal to the
//      client's address -> accepted as true; our own address -> own_address; else
//      literal_mismatch.
//   2. a bare IP (no brackets): our own address -> own_address; else bare_ip.
//   3. hostname syntax -> invalid_name.
//   4. our own hostname -> own_name (reject_own_name).
//   5. no dot -> non_fqdn (require_fqdn).
//   6. neither A nor AAAA -> unknown_host (require_resolvable); a lookup failure -> next.fail.
// Postfix answers invalid names with 501, which the helo stage does not allow (DESIGN stage
// table: 421, 450, 550, 504), so invalid_name uses 550 5.5.2 with Postfix's text.

#include "filters/helo/helo_filter.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string_view>

#include "portcullis/domain.h"

namespace portcullis {
namespace {

// RFC 5321 4.5.3.1.2: 255 octets per name (labels: see portcullis/domain.h).
constexpr std::size_t kMaxHostname = 255;
// Longest textual IPv6 address including an embedded IPv4 tail (INET6_ADDRSTRLEN - 1).
constexpr std::size_t kMaxAddressText = 45;

enum class HeloCheck {
  kInvalidName,
  kBareIp,
  kNonFqdn,
  kOwnName,
  kOwnAddress,
  kLiteralMismatch,
  kUnknownHost,
};

struct CheckReply {
  std::string_view check;  // names the check in the log reason
  int code;
  std::string_view enhanced;
  std::string_view text;  // after "<name>: Helo command rejected: "
};

// Indexed by HeloCheck. Texts follow Postfix so that existing log tooling recognises them.
constexpr std::array<CheckReply, 7> kCheckReplies{{
    {"invalid_name", 550, "5.5.2", "Invalid name"},
    {"bare_ip", 550, "5.5.2", "Invalid name"},
    {"non_fqdn", 504, "5.5.2", "need fully-qualified hostname"},
    {"own_name", 550, "5.7.1", "you are not me"},
    {"own_address", 550, "5.7.1", "you are not me"},
    {"literal_mismatch", 550, "5.7.1", "Address literal does not match your address"},
    {"unknown_host", 450, "4.7.1", "Host not found"},
}};

Verdict rejection(HeloCheck check, const std::string& shownName, const std::string& detail) {
  const CheckReply& c = kCheckReplies[static_cast<std::size_t>(check)];
  const std::string text = "<" + shownName + ">: Helo command rejected: " + std::string(c.text);
  std::string reason = std::string(c.check);
  if (!detail.empty()) reason += ": " + detail;
  if (c.code < 500) {
    return Verdict::tempfail(Reply::transient(c.code, c.enhanced, text), std::move(reason));
  }
  return Verdict::reject(Reply::permanent(c.code, c.enhanced, text), std::move(reason));
}

char lowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lowerAscii(x) == lowerAscii(y);
         });
}

std::string_view withoutTrailingDot(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  return name;
}

// An IP address compared by value. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is folded to
// IPv4 so that "[192.0.2.1]" matches a client the socket reports as ::ffff:192.0.2.1.
struct IpAddress {
  int family = 0;
  std::array<unsigned char, 16> bytes{};
  bool operator==(const IpAddress&) const = default;
};

// family: AF_INET, AF_INET6, or AF_UNSPEC for either.
std::optional<IpAddress> parseIp(std::string_view text, int family) {
  if (text.empty() || text.size() > kMaxAddressText || text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  const std::string s(text);  // inet_pton needs a NUL-terminated string
  IpAddress ip;
  if ((family == AF_UNSPEC || family == AF_INET) &&
      ::inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) {
    ip.family = AF_INET;
    return ip;
  }
  if ((family == AF_UNSPEC || family == AF_INET6) &&
      ::inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) == 1) {
    static constexpr std::array<unsigned char, 12> kMappedPrefix{0, 0, 0, 0, 0,    0,
                                                                 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), ip.bytes.begin())) {
      IpAddress v4;
      v4.family = AF_INET;
      std::copy_n(ip.bytes.begin() + 12, 4, v4.bytes.begin());
      return v4;
    }
    ip.family = AF_INET6;
    return ip;
  }
  return std::nullopt;
}

// RFC 5321 4.1.3: address-literal = "[" ( IPv4-address-literal / "IPv6:" IPv6-addr ) "]".
// `inner` is the text between the brackets. General (tagged) literals are not accepted.
std::optional<IpAddress> parseAddressLiteral(std::string_view inner) {
  constexpr std::string_view kTag = "IPv6:";
  if (inner.size() > kTag.size() && equalsIgnoreCase(inner.substr(0, kTag.size()), kTag)) {
    return parseIp(inner.substr(kTag.size()), AF_INET6);
  }
  return parseIp(inner, AF_INET);
}

// Why `name` (trailing dot already removed) is not a valid hostname; nullopt when it is.
std::optional<std::string> hostnameError(std::string_view name) {
  constexpr DomainSyntax kHostname{.maxLength = kMaxHostname, .hostname = true};
  const DomainError e = checkDomainName(name, kHostname);
  if (e == DomainError::kNone) return std::nullopt;
  return domainErrorText(e, kHostname);
}

// The outcome of the checks that need no DNS: a verdict, or the name to resolve (empty when
// there is nothing left to check).
struct Assessment {
  std::optional<Verdict> verdict;
  std::string resolve;
};

Assessment assess(const HeloConfig& config, const SessionView& s, const std::string& shown) {
  const std::string_view helo = s.helo();
  const auto client = parseIp(s.client().address(), AF_UNSPEC);
  const auto local = parseIp(s.localAddress(), AF_UNSPEC);

  if (!helo.empty() && helo.front() == '[') {
    if (helo.size() < 2 || helo.back() != ']') {
      return {rejection(HeloCheck::kInvalidName, shown, "malformed address literal"), {}};
    }
    const auto literal = parseAddressLiteral(helo.substr(1, helo.size() - 2));
    if (!literal) {
      return {rejection(HeloCheck::kInvalidName, shown, "malformed address literal"), {}};
    }
    // A client that names its own address tells the truth, even when it connects from the
    // address we listen on (local submission, tests on loopback).
    if (client && *literal == *client) return {Verdict::proceed(), {}};
    if (config.rejectOwnName && local && *literal == *local) {
      return {rejection(HeloCheck::kOwnAddress, shown,
                        "literal is our address " + std::string(s.localAddress())),
              {}};
    }
    return {rejection(HeloCheck::kLiteralMismatch, shown,
                      "literal is not the client address " + std::string(s.client().address())),
            {}};
  }

  if (const auto bare = parseIp(helo, AF_UNSPEC)) {
    if (config.rejectOwnName && local && *bare == *local) {
      return {
          rejection(HeloCheck::kOwnAddress, shown, "our address " + std::string(s.localAddress())),
          {}};
    }
    // RFC 5321 4.1.3: an address must be sent as an address literal, in brackets.
    return {rejection(HeloCheck::kBareIp, shown, "address without brackets"), {}};
  }

  const std::string_view name = withoutTrailingDot(helo);
  if (auto error = hostnameError(name)) {
    return {rejection(HeloCheck::kInvalidName, shown, *error), {}};
  }
  if (config.rejectOwnName && equalsIgnoreCase(name, withoutTrailingDot(s.hostname()))) {
    return {rejection(HeloCheck::kOwnName, shown, "our hostname " + std::string(s.hostname())), {}};
  }
  if (config.requireFqdn && name.find('.') == std::string_view::npos) {
    return {rejection(HeloCheck::kNonFqdn, shown, "no dot in the name"), {}};
  }
  if (config.requireResolvable) return {std::nullopt, std::string(name)};
  return {Verdict::proceed(), {}};
}

std::string describe(DnsType type, const DnsResult& r) {
  std::string out = std::string(dnsTypeName(type)) + " " + std::string(dnsStatusName(r.status));
  if (!r.detail.empty()) out += " (" + r.detail + ")";
  return out;
}

}  // namespace

void HeloFilter::onHelo(const SessionView& s, Next next) {
  // A new EHLO supersedes a call the chain may have given up on (timeout): cancel its lookups
  // and let its Next go (the chain ignores that late report).
  aLookup_.reset();
  aaaaLookup_.reset();
  next_ = Next();

  const std::string shown = sanitizeText(s.helo(), kMaxHostname);
  Assessment a = assess(*config_, s, shown);
  if (a.verdict) {
    next(std::move(*a.verdict));
    return;
  }
  if (resolver_ == nullptr) {
    next.fail("unknown_host: no resolver available");
    return;
  }
  next_ = std::move(next);
  name_ = std::move(a.resolve);
  shownName_ = shown;
  aOutcome_.clear();
  aFailed_ = false;
  // Reject only when the name has neither A nor AAAA (Postfix reject_unknown_helo_hostname).
  // With an inline resolver the callback (and possibly the whole check) runs inside lookup().
  aLookup_ = resolver_->lookup(name_, DnsType::kA,
                               [this](const DnsResult& r) { onAddress(DnsType::kA, r); });
}

void HeloFilter::onAddress(DnsType type, const DnsResult& result) {
  if (result.ok()) {
    complete(Verdict::proceed());
    return;
  }
  if (type == DnsType::kA) {
    // A timeout on A is not decisive yet: an AAAA answer still proves the name exists.
    aFailed_ = result.failed();
    aOutcome_ = describe(type, result);
    aaaaLookup_ = resolver_->lookup(name_, DnsType::kAaaa,
                                    [this](const DnsResult& r) { onAddress(DnsType::kAaaa, r); });
    return;
  }
  const std::string detail = name_ + ": " + aOutcome_ + ", " + describe(type, result);
  if (aFailed_ || result.failed()) {
    completeFailure("unknown_host: lookup failed for " + detail);
    return;
  }
  complete(rejection(HeloCheck::kUnknownHost, shownName_, detail));
}

// Completing may let the chain finish the stage and destroy this filter: move the Next out
// first and touch no member afterwards.
void HeloFilter::complete(Verdict verdict) {
  Next next = std::move(next_);
  next(std::move(verdict));
}

void HeloFilter::completeFailure(std::string error) {
  Next next = std::move(next_);
  next.fail(std::move(error));
}

FilterCreator HeloFilterFactory::configure(const ConfigSection& section) const {
  auto config = std::make_shared<HeloConfig>();
  config->requireFqdn = section.getBool("require_fqdn", true);
  config->rejectOwnName = section.getBool("reject_own_name", true);
  config->requireResolvable = section.getBool("require_resolvable", false);
  std::shared_ptr<const HeloConfig> shared = std::move(config);
  return [shared](const FilterContext& context) {
    return std::make_unique<HeloFilter>(shared, context.resolver);
  };
}

}  // namespace portcullis
