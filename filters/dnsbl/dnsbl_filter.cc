// dnsbl filter. See dnsbl_filter.h.

#include "filters/dnsbl/dnsbl_filter.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <functional>
#include <mutex>
#include <utility>

#include "portcullis/domain.h"

namespace portcullis {
namespace {

// Bounds checked at load (DESIGN invariant 5: every buffer has a bound).
constexpr std::size_t kMaxZones = 32;  // distinct zones, i.e. parallel queries per connection
constexpr std::size_t kMaxRules = 64;
constexpr std::int64_t kMaxWeight = 1'000'000;
constexpr std::int64_t kMaxThreshold = 1'000'000'000;
// RFC 1035 2.3.4: a name is at most 253 octets in text form; an IPv6 query prefix (32 nibbles
// and their dots, RFC 5782 2.4) takes 64 of them.
constexpr std::size_t kMaxZoneLength = 253 - 64;
// What checkDomainName() accepts, for naming the character it did not.
constexpr std::string_view kZoneChars = "abcdefghijklmnopqrstuvwxyz0123456789-_.";
// The TXT explanation shown in the reply; the reply line itself is bounded by Reply.
constexpr std::size_t kMaxTxtText = 200;

// RFC 5782 2.3: DNSBL answers are in 127.0.0.0/8. Spamhaus returns these for queries it will
// not answer (typo in the zone, public resolver, too many queries): errors, never listings.
constexpr std::array<std::uint32_t, 3> kErrorCodes = {0x7ffffffc, 0x7ffffffe, 0x7fffffff};

using Pattern = std::array<std::bitset<256>, 4>;

// --- Config parsing (load time only; errors are messages for ConfigSection::fail) ---

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

// One octet: 1-3 decimal digits, 0..255.
std::optional<unsigned> parseOctet(std::string_view s, std::string* error) {
  unsigned n = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || s.size() > 3 || ec != std::errc() || p != s.data() + s.size() || n > 255) {
    *error = quote(s) + " is not an octet (0..255)";
    return std::nullopt;
  }
  return n;
}

// postscreen filter syntax: four dot-separated terms, each a number or a bracketed
// ';'-separated list of numbers and a..b ranges: 127.0.0.[2..11], 127.0.[0..255].[1;3..5].
std::optional<Pattern> parsePattern(std::string_view text, std::string* error) {
  Pattern pattern;
  std::size_t pos = 0;
  for (std::size_t octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (pos >= text.size() || text[pos] != '.') {
        *error = "expected four dot-separated octets";
        return std::nullopt;
      }
      ++pos;
    }
    if (pos < text.size() && text[pos] == '[') {
      const std::size_t close = text.find(']', pos);
      if (close == std::string_view::npos) {
        *error = "missing ']'";
        return std::nullopt;
      }
      std::string_view list = text.substr(pos + 1, close - pos - 1);
      pos = close + 1;
      while (true) {
        const std::size_t semi = list.find(';');
        const std::string_view item = list.substr(0, semi);
        if (item.empty()) {
          *error = "empty item inside [...]";
          return std::nullopt;
        }
        const std::size_t dots = item.find("..");
        if (dots == std::string_view::npos) {
          const auto n = parseOctet(item, error);
          if (!n) return std::nullopt;
          pattern[octet].set(*n);
        } else {
          const auto lo = parseOctet(item.substr(0, dots), error);
          if (!lo) return std::nullopt;
          const auto hi = parseOctet(item.substr(dots + 2), error);
          if (!hi) return std::nullopt;
          if (*lo > *hi) {
            *error = "range [" + std::string(item) + "] is empty";
            return std::nullopt;
          }
          for (unsigned n = *lo; n <= *hi; ++n) pattern[octet].set(n);
        }
        if (semi == std::string_view::npos) break;
        list.remove_prefix(semi + 1);
      }
    } else {
      const std::size_t start = pos;
      while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) ++pos;
      const auto n = parseOctet(text.substr(start, pos - start), error);
      if (!n) return std::nullopt;
      pattern[octet].set(*n);
    }
  }
  if (pos != text.size()) {
    *error = "unexpected " + quote(text.substr(pos)) + " after the fourth octet";
    return std::nullopt;
  }
  if (!pattern[0].test(127)) {
    *error = "can never match: DNSBL answers are in 127.0.0.0/8 (RFC 5782 2.3)";
    return std::nullopt;
  }
  return pattern;
}

std::optional<std::int64_t> parseWeight(std::string_view s, std::string* error) {
  std::string_view digits = s;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  std::int64_t n = 0;
  const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size()) {
    *error = "weight " + quote(s) + " is not an integer";
    return std::nullopt;
  }
  if (n < -kMaxWeight || n > kMaxWeight) {
    *error = "weight " + std::string(s) + " out of range [" + std::to_string(-kMaxWeight) + ", " +
             std::to_string(kMaxWeight) + "]";
    return std::nullopt;
  }
  return n;
}

// Lowercase, without a trailing dot; labels of letters, digits, '-' and '_' (DNSBL zones with
// access keys, e.g. Spamhaus DQS, are ordinary labels).
std::optional<std::string> parseZone(std::string_view s, std::string* error) {
  std::string zone(s);
  std::transform(zone.begin(), zone.end(), zone.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (!zone.empty() && zone.back() == '.') zone.pop_back();
  if (zone.empty()) {
    *error = "missing zone name";
    return std::nullopt;
  }
  if (zone.size() > kMaxZoneLength) {
    *error = "zone name longer than " + std::to_string(kMaxZoneLength) +
             " octets (an IPv6 query would exceed 253)";
    return std::nullopt;
  }
  switch (checkDomainName(zone, {.maxLength = kMaxZoneLength})) {
    case DomainError::kNone:
      break;
    case DomainError::kBadCharacter:
      *error = "zone name " + quote(zone) + " has an invalid character " +
               quote(std::string(1, zone[zone.find_first_not_of(kZoneChars)]));
      return std::nullopt;
    default:
      *error = "zone name " + quote(zone) + " has an empty or over-long label";
      return std::nullopt;
  }
  return zone;
}

struct ParsedEntry {
  std::string zone;
  std::optional<Pattern> pattern;
  std::int64_t weight = 1;
};

// zone[=pattern][*weight]. Neither zone names nor patterns contain '=' or '*'.
std::optional<ParsedEntry> parseEntry(std::string_view entry, std::string* error) {
  ParsedEntry out;
  std::string_view head = entry;
  if (const std::size_t star = entry.find('*'); star != std::string_view::npos) {
    head = entry.substr(0, star);
    const auto w = parseWeight(entry.substr(star + 1), error);
    if (!w) return std::nullopt;
    out.weight = *w;
  }
  std::string_view zoneText = head;
  if (const std::size_t eq = head.find('='); eq != std::string_view::npos) {
    zoneText = head.substr(0, eq);
    const std::string_view patternText = head.substr(eq + 1);
    if (patternText.empty()) {
      *error = "empty pattern after '='";
      return std::nullopt;
    }
    out.pattern = parsePattern(patternText, error);
    if (!out.pattern) {
      *error = "pattern " + quote(patternText) + ": " + *error;
      return std::nullopt;
    }
  }
  auto zone = parseZone(zoneText, error);
  if (!zone) return std::nullopt;
  out.zone = std::move(*zone);
  return out;
}

// A list item may hold several entries separated by whitespace or commas, as in postscreen's
// postscreen_dnsbl_sites (patterns use ';', never ',').
std::vector<std::string_view> splitEntries(std::string_view item) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < item.size()) {
    while (i < item.size() && (std::isspace(static_cast<unsigned char>(item[i])) || item[i] == ','))
      ++i;
    const std::size_t start = i;
    while (i < item.size() && !std::isspace(static_cast<unsigned char>(item[i])) && item[i] != ',')
      ++i;
    if (i > start) out.push_back(item.substr(start, i - start));
  }
  return out;
}

// --- Lookup helpers ---

// "::ffff:192.0.2.1" is an IPv4 client: query its IPv4 form (DNSBLs list it under in-addr).
std::string_view queryAddress(std::string_view address) {
  constexpr std::string_view kMapped = "::ffff:";
  if (address.size() > kMapped.size() && address.find('.') != std::string_view::npos) {
    std::string prefix(address.substr(0, kMapped.size()));
    std::transform(prefix.begin(), prefix.end(), prefix.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (prefix == kMapped) return address.substr(kMapped.size());
  }
  return address;
}

std::optional<std::uint32_t> parseIpv4(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) return std::nullopt;
  return ntohl(a.s_addr);
}

std::string ipv4Text(std::uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
         std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255);
}

// Why an A answer is an error rather than a listing, or nullptr if it is a usable answer.
const char* answerError(std::optional<std::uint32_t> a) {
  if (!a) return "not-ipv4";
  if ((*a >> 24) != 127) return "outside-127.0.0.0/8";
  if (std::find(kErrorCodes.begin(), kErrorCodes.end(), *a) != kErrorCodes.end()) {
    return "dnsbl-error-code";
  }
  return nullptr;
}

bool matches(const DnsblRule& rule, std::uint32_t a) {
  if (!rule.pattern) return true;
  const Pattern& p = *rule.pattern;
  return p[0].test(a >> 24) && p[1].test((a >> 16) & 255) && p[2].test((a >> 8) & 255) &&
         p[3].test(a & 255);
}

// A log value that stays one key=value token however odd the text from outside is.
std::string logQuoted(std::string_view s) { return logQuote(s, 200); }

// The zone counters, registered on the first session of a configured filter (the stats
// service arrives with the context, after configure()), then shared by every later session.
class ZoneStatsOnce {
 public:
  std::shared_ptr<const DnsblZoneStats> get(Stats* stats, const std::vector<std::string>& zones) {
    if (stats == nullptr) return nullptr;
    std::call_once(once_, [&] {
      auto s = std::make_shared<DnsblZoneStats>();
      for (const std::string& zone : zones) {
        s->errors.push_back(stats->counter("portcullis_dnsbl_errors_total", {{"zone", zone}}));
        s->failures.push_back(
            stats->counter("portcullis_dnsbl_lookup_failures_total", {{"zone", zone}}));
      }
      stats_ = std::move(s);
    });
    return stats_;
  }

 private:
  std::once_flag once_;
  std::shared_ptr<const DnsblZoneStats> stats_;
};

}  // namespace

void DnsblFilter::log(LogLevel level, const std::string& fields) const {
  if (log_ != nullptr) log_->write(level, sessionId_, fields);
}

// --- The filter ---

DnsblFilter::~DnsblFilter() { cancel(); }

void DnsblFilter::cancel() {
  lookups_.clear();
  txtLookup_.reset();
  outstanding_ = 0;
}

void DnsblFilter::onDisconnect(const SessionView&) {
  // The session is going: stop the lookups. A pending Next is left to the chain, which has
  // already given up on it (timeout) or disarms it before destroying the filters.
  cancel();
}

void DnsblFilter::onConnect(const SessionView& s, Next next) {
  cancel();
  sessionId_ = s.id();
  address_ = s.client().address();
  const auto reversed = reverseNibbles(queryAddress(s.client().address()));
  if (!reversed) {
    next.fail("client address " + logQuoted(s.client().address()) + " is not an IP address");
    return;
  }
  if (resolver_ == nullptr) {
    next.fail("no resolver");
    return;
  }
  reversed_ = *reversed;
  next_ = std::move(next);
  failures_.clear();
  txtDone_ = false;
  txt_.clear();
  reason_.clear();

  const std::vector<std::string>& zones = config_->zones;
  answers_.assign(zones.size(), ZoneAnswer{});
  lookups_.resize(zones.size());
  outstanding_ = zones.size();
  // Every zone in parallel. An answer that arrives inline only records itself; the decision
  // waits until every lookup has been issued, so nothing completes inside lookup().
  issuing_ = true;
  for (std::size_t i = 0; i < zones.size(); ++i) {
    lookups_[i] = resolver_->lookup(reversed_ + "." + zones[i], DnsType::kA,
                                    [this, i](const DnsResult& r) { onAnswer(i, r); });
  }
  issuing_ = false;
  maybeDecide();
}

void DnsblFilter::onAnswer(std::size_t zone, const DnsResult& result) {
  ZoneAnswer& za = answers_[zone];
  if (za.done) return;
  za.done = true;
  --outstanding_;
  const std::string& name = config_->zones[zone];
  if (result.ok()) {
    for (const DnsRecord& rec : result.records) {
      if (rec.type != DnsType::kA) continue;
      const auto a = parseIpv4(rec.value);
      if (const char* why = answerError(a)) {
        std::string line = "event=dnsbl-error zone=" + name;
        line += " query=" + reversed_ + "." + name;
        line += " answer=" + logQuoted(rec.value);
        line += " why=";
        line += why;
        log(LogLevel::kWarn, line);
        if (stats_) stats_->errors[zone].add();
        continue;
      }
      za.answers.push_back(*a);
    }
  } else if (result.failed()) {
    // Fail open: an unknown answer adds no score (postscreen does the same).
    log(LogLevel::kWarn, "event=dnsbl-lookup-failed zone=" + name +
                             " status=" + std::string(dnsStatusName(result.status)) +
                             " detail=" + logQuoted(result.detail));
    if (stats_) stats_->failures[zone].add();
    failures_.push_back(name + ":" + std::string(dnsStatusName(result.status)));
  }
  if (!issuing_) maybeDecide();
}

void DnsblFilter::maybeDecide() {
  if (outstanding_ != 0 || !next_.pending()) return;
  const DnsblConfig& c = *config_;

  std::int64_t score = 0;
  std::vector<std::int64_t> zoneWeight(c.zones.size(), 0);
  std::string hits;  // " zone=answer[,answer]*weight" per matching entry, postscreen style
  for (const DnsblRule& rule : c.rules) {
    std::string matched;
    for (const std::uint32_t a : answers_[rule.zone].answers) {
      if (matches(rule, a)) matched += (matched.empty() ? "" : ",") + ipv4Text(a);
    }
    if (matched.empty()) continue;
    score += rule.weight;
    zoneWeight[rule.zone] += rule.weight;
    hits += " " + c.zones[rule.zone] + "=" + matched + "*" + std::to_string(rule.weight);
  }
  std::string failed;
  for (const std::string& f : failures_) failed += (failed.empty() ? " failed=" : ",") + f;

  if (score >= c.threshold) {
    reason_ = "score=" + std::to_string(score) + " threshold=" + std::to_string(c.threshold) +
              hits + failed;
    // The zone that contributed most (first in config order on a tie) names the listing.
    txtZone_ = static_cast<std::size_t>(std::max_element(zoneWeight.begin(), zoneWeight.end()) -
                                        zoneWeight.begin());
    if (c.reply) {
      complete(c.tempfail ? Verdict::tempfail(*c.reply, reason_)
                          : Verdict::reject(*c.reply, reason_));
      return;
    }
    startTxt(txtZone_);
    return;
  }
  if (score <= c.allowlistThreshold) {
    complete(Verdict::accept("score=" + std::to_string(score) + " allowlist_threshold=" +
                             std::to_string(c.allowlistThreshold) + hits + failed));
    return;
  }
  if (log_ != nullptr && log_->enabled(LogLevel::kDebug)) {
    log(LogLevel::kDebug, "event=dnsbl-pass score=" + std::to_string(score) + hits + failed);
  }
  complete(Verdict::proceed());
}

void DnsblFilter::startTxt(std::size_t zone) {
  txtDone_ = false;
  issuing_ = true;
  txtLookup_ = resolver_->lookup(reversed_ + "." + config_->zones[zone], DnsType::kTxt,
                                 [this](const DnsResult& r) { onTxt(r); });
  issuing_ = false;
  if (txtDone_) {
    const Reply reply = listedReply(txt_);
    complete(config_->tempfail ? Verdict::tempfail(reply, reason_)
                               : Verdict::reject(reply, reason_));
  }
}

void DnsblFilter::onTxt(const DnsResult& result) {
  if (txtDone_) return;
  txtDone_ = true;
  if (result.ok()) {
    for (const DnsRecord& rec : result.records) {
      if (rec.type != DnsType::kTxt) continue;
      // DESIGN invariant 6: TXT is outside text; no control characters reach the reply.
      txt_ = sanitizeText(rec.value, kMaxTxtText);
      if (!txt_.empty()) break;
    }
  } else if (result.failed()) {
    if (log_ != nullptr && log_->enabled(LogLevel::kDebug)) {
      log(LogLevel::kDebug, "event=dnsbl-txt-failed zone=" + config_->zones[txtZone_] +
                                " status=" + std::string(dnsStatusName(result.status)));
    }
  }
  if (issuing_) return;  // startTxt() completes once lookup() returns
  const Reply reply = listedReply(txt_);
  complete(config_->tempfail ? Verdict::tempfail(reply, reason_) : Verdict::reject(reply, reason_));
}

Reply DnsblFilter::listedReply(const std::string& txt) const {
  // postscreen's wording: "Service unavailable; client [%s] blocked using %s[; %s]".
  std::string text =
      "Service unavailable; client [" + address_ + "] blocked using " + config_->zones[txtZone_];
  if (!txt.empty()) text += "; " + txt;
  return config_->tempfail ? Reply::transient(451, "4.7.1", text)
                           : Reply::permanent(554, "5.7.1", text);
}

void DnsblFilter::complete(Verdict verdict) {
  Next next = std::move(next_);
  cancel();
  next(std::move(verdict));  // may destroy this filter: nothing after this line
}

// --- Config ---

FilterCreator DnsblFilterFactory::configure(const ConfigSection& section) const {
  auto config = std::make_shared<DnsblConfig>();

  const std::vector<std::string> items = section.getStringList("zones");
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string key = "zones[" + std::to_string(i) + "]";
    const auto entries = splitEntries(items[i]);
    if (entries.empty()) section.fail(key, "empty entry; expected zone[=pattern][*weight]");
    for (const std::string_view entry : entries) {
      std::string error;
      auto parsed = parseEntry(entry, &error);
      if (!parsed) section.fail(key, quote(entry) + ": " + error);
      const auto it = std::find(config->zones.begin(), config->zones.end(), parsed->zone);
      const auto zone = static_cast<std::size_t>(it - config->zones.begin());
      if (it == config->zones.end()) config->zones.push_back(parsed->zone);
      config->rules.push_back({zone, parsed->pattern, parsed->weight});
    }
  }
  if (config->rules.empty()) section.fail("zones", "at least one zone is required");
  if (config->zones.size() > kMaxZones) {
    section.fail("zones", "at most " + std::to_string(kMaxZones) + " distinct zones");
  }
  if (config->rules.size() > kMaxRules) {
    section.fail("zones", "at most " + std::to_string(kMaxRules) + " entries");
  }

  // A score of 0 (no listing at all) must neither block nor allowlist.
  config->threshold = section.getInt("threshold", 1, 1, kMaxThreshold);
  config->allowlistThreshold = section.getInt("allowlist_threshold", -1, -kMaxThreshold, -1);
  config->tempfail = section.getChoice("action", {"reject", "tempfail"}, "reject") == "tempfail";

  if (section.has("reply")) {
    const std::string line = section.getString("reply");
    auto reply = Reply::parseNegative(line);
    if (!reply || reply->text().empty()) {
      section.fail("reply", "expected a reply line like \"554 5.7.1 text\", got " + quote(line));
    }
    if (config->tempfail != reply->isTransient()) {
      section.fail("reply", std::string("action ") + (config->tempfail ? "tempfail" : "reject") +
                                " needs a " + (config->tempfail ? "4xx" : "5xx") + " reply, got " +
                                std::to_string(reply->code()));
    }
    config->reply = std::move(reply);
  } else {
    section.markUsed("reply");
  }

  std::shared_ptr<const DnsblConfig> shared = std::move(config);
  return [shared, zoneStats = std::make_shared<ZoneStatsOnce>()](const FilterContext& context) {
    return std::make_unique<DnsblFilter>(shared, context,
                                         zoneStats->get(context.stats, shared->zones));
  };
}

}  // namespace portcullis
