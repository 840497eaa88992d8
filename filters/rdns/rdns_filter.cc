// rdns filter. See rdns_filter.h.

#include "filters/rdns/rdns_filter.h"

#include <string>

namespace portcullis {
namespace {

// RFC 1035 2.3.4: a domain name is at most 253 octets in text form.
constexpr std::size_t kMaxNameText = 253;

// Postfix's wording for reject_unknown_reverse_client_hostname.
std::string rejectText(const SessionView& s) {
  return "Client host rejected: cannot find your reverse hostname, [" +
         std::string(s.client().address()) + "]";
}

// "reverse=mismatch ptr=mail.example.com require=fcrdns"; the PTR name is outside text.
std::string describe(const SessionView& s, const RdnsConfig& config) {
  const std::string ptr = sanitizeText(s.client().ptrName(), kMaxNameText);
  return "reverse=" + std::string(reverseStatusName(s.client().reverse())) +
         " ptr=" + (ptr.empty() ? "none" : ptr) +
         " require=" + (config.requireFcrdns ? "fcrdns" : "ptr");
}

}  // namespace

void RdnsFilter::onConnect(const SessionView& s, Next next) {
  const RdnsConfig& c = *config_;
  bool passes = false;
  switch (s.client().reverse()) {
    case ReverseStatus::kNotLooked:
      next.fail("reverse lookups are disabled (dns.reverse_lookup: false)");
      return;
    case ReverseStatus::kTempFail:
      // We do not know the answer, so the client must be able to retry, whatever `permanent`.
      next(Verdict::tempfail(
          Reply::transient(450, "4.7.25", rejectText(s)),
          "temporary DNS failure looking up the client's reverse hostname: " + describe(s, c)));
      return;
    case ReverseStatus::kVerified:
      passes = true;
      break;
    case ReverseStatus::kMismatch:
      passes = !c.requireFcrdns;
      break;
    case ReverseStatus::kNoPtr:
      passes = false;
      break;
  }
  if (passes) {
    next(Verdict::proceed());
    return;
  }
  if (c.permanent) {
    next(Verdict::reject(Reply::permanent(550, "5.7.25", rejectText(s)), describe(s, c)));
  } else {
    next(Verdict::tempfail(Reply::transient(450, "4.7.25", rejectText(s)), describe(s, c)));
  }
}

FilterCreator RdnsFilterFactory::configure(const ConfigSection& section) const {
  auto config = std::make_shared<RdnsConfig>();
  config->requireFcrdns = section.getChoice("require", {"fcrdns", "ptr"}, "fcrdns") == "fcrdns";
  config->permanent = section.getBool("permanent", false);
  std::shared_ptr<const RdnsConfig> shared = std::move(config);
  return [shared](const FilterContext&) { return std::make_unique<RdnsFilter>(shared); };
}

}  // namespace portcullis
