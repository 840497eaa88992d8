#pragma once
// rspamd: the spam scanner at end-of-message over rspamd's HTTP protocol, POST /checkv2, as
// rspamd's own proxy and milter speak it: the message as the body, the envelope and connection
// facts as request headers (rspamdRequestHeaders). The HTTP is libevent's evhttp client behind
// FilterContext::http (no HTTP parsing here); the reply and its verdict are rspamd_reply.h's.
// The size limit, the connection limit and queue, the circuit breaker, the deadline and the
// `event=scan` log line are filters/scanner's: this file adds only the transport.
// A status other than 200, a reply we cannot read, a timeout or a closed connection is a
// failure under on_error.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "filters/scanner/scanner_filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

// Where rspamd listens, from `url`: "http://HOST[:PORT][/PATH]", HOST a numeric IPv4 address or
// a bracketed IPv6 one (no name lookups), PORT 11333 and PATH /checkv2 by default.
struct RspamdEndpoint {
  std::string host;  // without brackets
  std::uint16_t port = 11333;
  std::string path = "/checkv2";
};

// nullopt and `why` set when the URL is not one we accept.
std::optional<RspamdEndpoint> parseRspamdUrl(std::string_view url, std::string& why);

// The request headers rspamd's proxy sends (rspamd's protocol docs): IP, Helo, Hostname (only a
// FCrDNS-verified name), From, one Rcpt per recipient, Queue-Id (our session id: what the logs
// of both sides share), TLS-Cipher and TLS-Version. Every value single-line and bounded.
std::vector<std::pair<std::string, std::string>> rspamdRequestHeaders(const SessionView& s);

class RspamdFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "rspamd"; }
  FilterTraits traits() const override { return scannerTraits(); }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
