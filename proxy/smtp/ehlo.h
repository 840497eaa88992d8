#pragma once
// The EHLO offer the client sees: our own policy intersected with what the upstream offers
// (DESIGN: strip EHLO keywords we do not implement). Never CHUNKING, XCLIENT, XFORWARD, AUTH.
// UpstreamCapabilities is learned from the upstream's EHLO reply (start-up probe, refreshed,
// and every real session). Pure.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portcullis/reply.h"
#include "proxy/smtp/reply_parser.h"

namespace portcullis {

struct UpstreamCapabilities {
  bool known = false;  // false until a probe or a session has seen the upstream's EHLO
  bool pipelining = false;
  bool eightBitMime = false;
  bool smtputf8 = false;
  bool dsn = false;
  bool enhancedStatusCodes = false;
  bool starttls = false;
  bool xclient = false;
  bool chunking = false;  // RFC 3030 BDAT, used upstream only; never offered to clients
  std::vector<std::string> xclientAttributes;  // upper-case, as advertised
  std::optional<std::uint64_t> size;           // SIZE n (0 or absent: no limit announced)

  static UpstreamCapabilities fromEhlo(const std::vector<Capability>& caps);
  bool hasXclientAttribute(std::string_view name) const;
};

struct EhloPolicy {
  std::string hostname;
  std::uint64_t maxMessageSize = 0;
  bool offerStartTls = false;
};

// The multi-line 250 reply to EHLO.
Reply buildEhloReply(const EhloPolicy& policy, const UpstreamCapabilities& upstream);
// The same reply, built once for each distinct (policy, what the upstream offers) on this
// thread and kept, a few at a time: nearly every session gets the same one. The reference holds
// until the next call on this thread.
const Reply& sharedEhloReply(const EhloPolicy& policy, const UpstreamCapabilities& upstream);
// The 220 greeting, "220 HOSTNAME ESMTP", and the reply to HELO, each kept per thread for the
// last hostname asked for.
const Reply& sharedGreeting(const std::string& hostname);
const Reply& sharedHeloReply(const std::string& hostname);
// The one-line 250 reply to HELO.
Reply buildHeloReply(const EhloPolicy& policy);
// The SIZE value we announce: ours, or the upstream's when that is smaller.
std::uint64_t effectiveSizeLimit(const EhloPolicy& policy, const UpstreamCapabilities& upstream);

}  // namespace portcullis
