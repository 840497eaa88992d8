// The pure parts of include/portcullis/connector.h: names and the address check. The
// connections themselves are the core's (proxy/chain/connector.cc).

#include "portcullis/connector.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include <charconv>

namespace portcullis {

std::string_view connectionEndName(ConnectionEnd end) {
  switch (end) {
    case ConnectionEnd::kClosed:
      return "closed";
    case ConnectionEnd::kTimeout:
      return "timeout";
    case ConnectionEnd::kError:
      break;
  }
  return "error";
}

std::optional<std::string> checkConnectAddress(std::string_view address) {
  constexpr std::string_view kUnix = "unix:";
  if (address.starts_with(kUnix)) {
    const std::string_view path = address.substr(kUnix.size());
    if (path.empty() || path.front() != '/') return "a unix socket path must be absolute";
    // sun_path holds the path and its terminating NUL.
    if (path.size() >= sizeof(sockaddr_un{}.sun_path)) return "the unix socket path is too long";
    if (path.find('\0') != std::string_view::npos) return "the unix socket path contains a NUL";
    return std::nullopt;
  }
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return "expected HOST:PORT or unix:/path";
  std::string host(address.substr(0, colon));
  const std::string_view port = address.substr(colon + 1);
  unsigned value = 0;
  const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return "the port must be 1..65535";
  }
  // Numeric addresses only: the system resolver is never consulted.
  unsigned char buf[sizeof(in6_addr)];
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (inet_pton(AF_INET6, host.c_str(), buf) == 1) return std::nullopt;
  } else if (inet_pton(AF_INET, host.c_str(), buf) == 1) {
    return std::nullopt;
  }
  return "the host must be a numeric IPv4 address or a bracketed IPv6 address";
}

}  // namespace portcullis
