#pragma once
// The HAProxy PROXY protocol, versions 1 (text) and 2 (binary): parsing the header a trusted
// load balancer puts in front of a client connection, and writing one in front of ours to the
// MTA (Postfix: smtpd_upstream_proxy_protocol = haproxy). Pure and bounded (a v1 header is at
// most 107 octets; we take v2 headers up to 1 KiB); fuzzed by tests/fuzz/fuzz_proxy_header.cc.
// Whether a source may send a header at all (trusted_proxies) is the caller's decision.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/base/net_util.h"

namespace portcullis {

struct ProxyHeader {
  enum class Status { kNeedMore, kOk, kError };
  Status status = Status::kNeedMore;
  std::size_t consumed = 0;  // octets of the header (kOk)
  bool local = false;        // v1 UNKNOWN / v2 LOCAL: no client address (health checks)
  SocketAddress source;      // the real client (kOk and !local)
  SocketAddress destination;
  int version = 0;
  std::string error;  // kError: what was wrong, for the log
};

// Looks at the first bytes of a connection.
ProxyHeader parseProxyHeader(std::string_view input);

std::string proxyV1Header(const SocketAddress& source, const SocketAddress& destination);
std::string proxyV2Header(const SocketAddress& source, const SocketAddress& destination);

}  // namespace portcullis
