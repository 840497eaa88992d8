// sender_domain filter. See sender_domain_filter.h.
//
//   MX ok (a real exchange)       -> continue
//   MX ok, every exchange is "."  -> 550 5.7.27 null MX (RFC 7505 3.3)
//   MX nxdomain                   -> 550 5.1.8
//   MX nodata -> A -> AAAA        -> any address: continue; none: 550 5.1.8
//   a timeout/servfail/error on the way, and no positive answer -> 451 4.1.8
// A timeout on A still asks for AAAA: a positive AAAA answer settles it without a retry.

#include "filters/sender_domain/sender_domain_filter.h"

#include <algorithm>
#include <array>
#include <optional>
#include <string_view>

#include "portcullis/domain.h"

namespace portcullis {
namespace {

// RFC 5321 4.5.3.1.3: a path is at most 256 octets.
constexpr std::size_t kMaxShownAddress = 256;

enum class Outcome { kNotFound, kNullMx, kTempFail };

struct OutcomeReply {
  std::string_view check;  // names the outcome in the log reason
  int code;
  std::string_view enhanced;
  std::string_view text;  // after "<address>: Sender address rejected: "
};

// Indexed by Outcome. Texts follow Postfix's reject_unknown_sender_domain; 5.7.27 is RFC 7505 3.3.
constexpr std::array<OutcomeReply, 3> kOutcomeReplies{{
    {"not_found", 550, "5.1.8", "Domain not found"},
    {"null_mx", 550, "5.7.27", "Domain does not accept mail"},
    {"dns_failure", 451, "4.1.8", "Domain not found (temporary DNS failure)"},
}};

Verdict verdictFor(Outcome outcome, const std::string& shownAddress, const std::string& detail) {
  const OutcomeReply& o = kOutcomeReplies[static_cast<std::size_t>(outcome)];
  const std::string text =
      "<" + shownAddress + ">: Sender address rejected: " + std::string(o.text);
  std::string reason = std::string(o.check) + ": " + detail;
  if (o.code < 500) {
    return Verdict::tempfail(Reply::transient(o.code, o.enhanced, text), std::move(reason));
  }
  return Verdict::reject(Reply::permanent(o.code, o.enhanced, text), std::move(reason));
}

// Why `domain` (trailing dot removed, ASCII) can never exist in DNS; nullopt when it could.
std::optional<std::string> domainError(std::string_view domain) {
  const DomainError e = checkDomainName(domain);
  if (e == DomainError::kNone) return std::nullopt;
  return domainErrorText(e);
}

std::string describe(DnsType type, const DnsResult& r) {
  std::string out = std::string(dnsTypeName(type)) + " " + std::string(dnsStatusName(r.status));
  if (!r.detail.empty()) out += " (" + r.detail + ")";
  return out;
}

// RFC 7505 renders the null MX as exchange "."; our resolver strips the trailing dot, giving "".
bool isRootExchange(const std::string& exchange) { return exchange.empty() || exchange == "."; }

}  // namespace

void SenderDomainFilter::onMailFrom(const SessionView& s, Next next) {
  // A new MAIL supersedes a call the chain may have given up on (timeout): cancel its lookups
  // and let its Next go (the chain ignores that late report).
  mxLookup_.reset();
  aLookup_.reset();
  aaaaLookup_.reset();
  next_ = Next();

  // RFC 5321 4.5.5: the null reverse-path (bounces) has no domain to check.
  const std::string address(s.envelope().mailFrom());
  if (s.envelope().nullSender() || address.empty()) {
    next(Verdict::proceed());
    return;
  }
  const std::size_t at = address.rfind('@');
  if (at == std::string::npos) {
    next(Verdict::proceed());  // no domain part (the parser decides whether that is valid)
    return;
  }
  std::string_view domain = std::string_view(address).substr(at + 1);
  if (!domain.empty() && domain.front() == '[') {
    next(Verdict::proceed());  // RFC 5321 4.1.3 address literal: nothing to look up
    return;
  }
  if (std::any_of(domain.begin(), domain.end(),
                  [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
    // SMTPUTF8 U-labels (RFC 6531) would need IDNA conversion before a lookup; not checked.
    next(Verdict::proceed());
    return;
  }
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);

  const std::string shown = sanitizeText(address, kMaxShownAddress);
  if (auto error = domainError(domain)) {
    next(verdictFor(Outcome::kNotFound, shown, "invalid domain: " + *error));
    return;
  }
  if (resolver_ == nullptr) {
    next.fail("no resolver available");
    return;
  }
  next_ = std::move(next);
  domain_ = std::string(domain);
  shownAddress_ = shown;
  trail_.clear();
  failedSoFar_ = false;
  // With an inline resolver the callbacks (and possibly the whole check) run inside lookup().
  startLookup(DnsType::kMx, mxLookup_);
}

void SenderDomainFilter::startLookup(DnsType type, std::unique_ptr<DnsLookup>& handle) {
  handle = resolver_->lookup(domain_, type, [this, type](const DnsResult& r) {
    if (type == DnsType::kMx) {
      onMx(r);
    } else {
      onAddress(type, r);
    }
  });
}

void SenderDomainFilter::onMx(const DnsResult& result) {
  trail_ = describe(DnsType::kMx, result);
  const std::string detail = domain_ + " " + trail_;
  if (result.ok()) {
    const auto real = std::count_if(
        result.records.begin(), result.records.end(),
        [](const DnsRecord& r) { return r.type == DnsType::kMx && !isRootExchange(r.value); });
    if (real > 0) {
      complete(Verdict::proceed());
      return;
    }
    // RFC 7505 3: a null MX is one MX with exchange "." (and preference 0). Any answer whose
    // exchanges are all "." cannot receive mail, whatever the preference.
    if (!result.records.empty()) {
      complete(verdictFor(Outcome::kNullMx, shownAddress_, detail + " (null MX)"));
      return;
    }
    // An "ok" answer without records is treated as NODATA.
  } else if (result.status == DnsStatus::kNxDomain) {
    complete(verdictFor(Outcome::kNotFound, shownAddress_, detail));
    return;
  } else if (result.failed()) {
    complete(verdictFor(Outcome::kTempFail, shownAddress_, detail));
    return;
  }
  if (!config_->checkARecords) {
    complete(
        verdictFor(Outcome::kNotFound, shownAddress_, detail + " (no MX; check_a_records is off)"));
    return;
  }
  startLookup(DnsType::kA, aLookup_);
}

void SenderDomainFilter::onAddress(DnsType type, const DnsResult& result) {
  trail_ += ", " + describe(type, result);
  if (result.ok()) {
    complete(Verdict::proceed());
    return;
  }
  failedSoFar_ = failedSoFar_ || result.failed();
  if (type == DnsType::kA) {
    startLookup(DnsType::kAaaa, aaaaLookup_);
    return;
  }
  const std::string detail = domain_ + " " + trail_;
  complete(
      verdictFor(failedSoFar_ ? Outcome::kTempFail : Outcome::kNotFound, shownAddress_, detail));
}

// Completing may let the chain finish the stage and destroy this filter: move the Next out
// first and touch no member afterwards.
void SenderDomainFilter::complete(Verdict verdict) {
  Next next = std::move(next_);
  next(std::move(verdict));
}

FilterCreator SenderDomainFilterFactory::configure(const ConfigSection& section) const {
  auto config = std::make_shared<SenderDomainConfig>();
  config->checkARecords = section.getBool("check_a_records", true);
  std::shared_ptr<const SenderDomainConfig> shared = std::move(config);
  return [shared](const FilterContext& context) {
    return std::make_unique<SenderDomainFilter>(shared, context.resolver);
  };
}

}  // namespace portcullis
