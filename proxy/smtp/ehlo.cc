// EHLO offer. See ehlo.h.

#include "proxy/smtp/ehlo.h"

#include <algorithm>
#include <array>
#include <charconv>

namespace portcullis {

UpstreamCapabilities UpstreamCapabilities::fromEhlo(const std::vector<Capability>& caps) {
  UpstreamCapabilities u;
  u.known = true;
  for (const auto& c : caps) {
    if (c.keyword == "PIPELINING") {
      u.pipelining = true;
    } else if (c.keyword == "8BITMIME") {
      u.eightBitMime = true;
    } else if (c.keyword == "SMTPUTF8") {
      u.smtputf8 = true;
    } else if (c.keyword == "DSN") {
      u.dsn = true;
    } else if (c.keyword == "ENHANCEDSTATUSCODES") {
      u.enhancedStatusCodes = true;
    } else if (c.keyword == "STARTTLS") {
      u.starttls = true;
    } else if (c.keyword == "CHUNKING") {
      u.chunking = true;
    } else if (c.keyword == "XCLIENT") {
      u.xclient = true;
      for (const auto& p : c.params) {
        std::string a = p;
        std::transform(a.begin(), a.end(), a.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
        u.xclientAttributes.push_back(std::move(a));
      }
    } else if (c.keyword == "SIZE" && !c.params.empty()) {
      std::uint64_t n = 0;
      const auto& v = c.params.front();
      if (std::from_chars(v.data(), v.data() + v.size(), n).ec == std::errc() && n > 0) u.size = n;
    }
  }
  return u;
}

bool UpstreamCapabilities::hasXclientAttribute(std::string_view name) const {
  return std::find(xclientAttributes.begin(), xclientAttributes.end(), name) !=
         xclientAttributes.end();
}

std::uint64_t effectiveSizeLimit(const EhloPolicy& policy, const UpstreamCapabilities& upstream) {
  if (upstream.size && *upstream.size < policy.maxMessageSize) return *upstream.size;
  return policy.maxMessageSize;
}

Reply buildEhloReply(const EhloPolicy& policy, const UpstreamCapabilities& upstream) {
  std::vector<std::string> lines;
  lines.push_back(policy.hostname);
  lines.emplace_back("PIPELINING");  // RFC 2920: we answer every command in order ourselves
  lines.push_back("SIZE " + std::to_string(effectiveSizeLimit(policy, upstream)));
  if (policy.offerStartTls) lines.emplace_back("STARTTLS");
  lines.emplace_back("ENHANCEDSTATUSCODES");  // every reply we write carries one
  // Pass-through extensions: offered only when the upstream implements them (or, for 8BITMIME,
  // when the upstream is not known yet: every MTA of this century has it).
  if (upstream.eightBitMime || !upstream.known) lines.emplace_back("8BITMIME");
  if (upstream.dsn) lines.emplace_back("DSN");
  if (upstream.smtputf8) lines.emplace_back("SMTPUTF8");
  return *Reply::make(250, "", std::move(lines));
}

const Reply& sharedEhloReply(const EhloPolicy& policy, const UpstreamCapabilities& upstream) {
  // The inputs buildEhloReply reads, and its reply for them.
  struct Entry {
    EhloPolicy policy;
    bool known = false, eightBitMime = false, dsn = false, smtputf8 = false;
    std::optional<std::uint64_t> size;
    std::optional<Reply> reply;

    bool matches(const EhloPolicy& p, const UpstreamCapabilities& u) const {
      return reply && policy.hostname == p.hostname && policy.maxMessageSize == p.maxMessageSize &&
             policy.offerStartTls == p.offerStartTls && known == u.known &&
             eightBitMime == u.eightBitMime && dsn == u.dsn && smtputf8 == u.smtputf8 &&
             size == u.size;
    }
  };
  // A listener with STARTTLS and one without, before and after TLS, an MTA that changed: four.
  constexpr std::size_t kEntries = 4;
  thread_local std::array<Entry, kEntries> cache;
  thread_local std::size_t next = 0;
  for (const Entry& e : cache) {
    if (e.matches(policy, upstream)) return *e.reply;
  }
  Entry& e = cache[next];
  next = (next + 1) % kEntries;
  e = Entry{policy,
            upstream.known,
            upstream.eightBitMime,
            upstream.dsn,
            upstream.smtputf8,
            upstream.size,
            buildEhloReply(policy, upstream)};
  return *e.reply;
}

namespace {

// A reply that depends on the hostname alone, kept for the last hostname asked for.
struct KeptForHostname {
  std::string hostname;
  std::optional<Reply> reply;

  template <class Build>
  const Reply& get(const std::string& name, Build build) {
    if (!reply || hostname != name) {
      reply = build();
      hostname = name;
    }
    return *reply;
  }
};

}  // namespace

const Reply& sharedGreeting(const std::string& hostname) {
  thread_local KeptForHostname kept;
  return kept.get(hostname, [&] { return *Reply::make(220, "", {hostname + " ESMTP"}); });
}

const Reply& sharedHeloReply(const std::string& hostname) {
  thread_local KeptForHostname kept;
  return kept.get(hostname, [&] { return buildHeloReply({hostname, 0, false}); });
}

Reply buildHeloReply(const EhloPolicy& policy) { return *Reply::make(250, "", {policy.hostname}); }

}  // namespace portcullis
