// Socket-address helpers. See net_util.h.

#include "proxy/base/net_util.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace portcullis {
namespace {

std::optional<std::uint16_t> parsePort(std::string_view s) {
  unsigned v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0 || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

// IPv4-mapped IPv6 (::ffff:a.b.c.d) is shown as plain IPv4.
bool unmap(const sockaddr_in6* in6, in_addr* out) {
  if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return false;
  std::memcpy(out, in6->sin6_addr.s6_addr + 12, 4);
  return true;
}

// Dotted quad without inet_ntop, which formats IPv4 with sprintf (one call per connection
// mattered in the benchmark's profile).
std::string formatV4(const in_addr& a) {
  const auto* b = reinterpret_cast<const unsigned char*>(&a.s_addr);
  std::string out;
  out.reserve(15);
  for (int i = 0; i < 4; ++i) {
    if (i > 0) out.push_back('.');
    char digits[3];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, b[i]);
    out.append(digits, end);
  }
  return out;
}

}  // namespace

std::string SocketAddress::host() const {
  if (family() == AF_INET)
    return formatV4(reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr);
  if (family() != AF_INET6) return {};
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
  in_addr v4{};
  if (unmap(in6, &v4)) return formatV4(v4);
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
  return buf;
}

bool SocketAddress::isWildcard() const {
  if (family() == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr == htonl(INADDR_ANY);
  }
  if (family() == AF_INET6) {
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr);
  }
  return false;
}

std::uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  }
  return 0;
}

std::string SocketAddress::toString() const {
  const std::string h = host();
  if (h.find(':') != std::string::npos) return "[" + h + "]:" + std::to_string(port());
  return h + ":" + std::to_string(port());
}

std::optional<SocketAddress> parseSocketAddress(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // IPv6 needs brackets
  }
  const auto p = parsePort(port);
  if (!p) return std::nullopt;
  // inet_pton reads a C string: an embedded NUL would hide whatever follows it.
  if (host.find('\0') != std::string_view::npos) return std::nullopt;
  if (host.empty() || host == "*") host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  SocketAddress out;
  const std::string h(host);
  auto* in4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (inet_pton(AF_INET, h.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(*p);
    out.length = sizeof(sockaddr_in);
    return out;
  }
  if (inet_pton(AF_INET6, h.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(*p);
    out.length = sizeof(sockaddr_in6);
    return out;
  }
  return std::nullopt;
}

std::optional<SocketAddress> socketAddress(std::string_view host, std::uint16_t port) {
  const std::string h(host);
  return parseSocketAddress(h.find(':') != std::string::npos ? "[" + h + "]:" + std::to_string(port)
                                                             : h + ":" + std::to_string(port));
}

std::optional<SocketAddress> fromSockaddr(const sockaddr* sa, socklen_t len) {
  if (sa == nullptr || len > static_cast<socklen_t>(sizeof(sockaddr_storage))) return std::nullopt;
  if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) return std::nullopt;
  SocketAddress out;
  std::memcpy(&out.storage, sa, len);
  out.length = len;
  return out;
}

std::string clientCountKey(std::string_view address, int ipv6PrefixLength) {
  // IPv4 (our own canonical text, from every accept and reap) counts as it is: no parsing.
  if (address.find(':') == std::string_view::npos) return std::string(address);
  if (address.find('\0') != std::string_view::npos) return std::string(address);
  std::string text(address);  // not const, so `return text` moves
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) != 1) return text;
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    std::memcpy(&v4, v6.s6_addr + 12, 4);
    return formatV4(v4);
  }
  const int prefix = ipv6PrefixLength < 1 ? 1 : ipv6PrefixLength > 128 ? 128 : ipv6PrefixLength;
  for (int bit = prefix; bit < 128; ++bit) {
    v6.s6_addr[bit / 8] &= static_cast<unsigned char>(~(0x80u >> (bit % 8)));
  }
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, &v6, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  Cidr c;
  const auto slash = text.find('/');
  const std::string addr(text.substr(0, slash));
  if (inet_pton(AF_INET, addr.c_str(), c.bytes_) == 1) {
    c.family_ = AF_INET;
    c.prefix_ = 32;
  } else if (inet_pton(AF_INET6, addr.c_str(), c.bytes_) == 1) {
    c.family_ = AF_INET6;
    c.prefix_ = 128;
  } else {
    return std::nullopt;
  }
  if (slash != std::string_view::npos) {
    const std::string_view bits = text.substr(slash + 1);
    int n = -1;
    const auto [p, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), n);
    if (ec != std::errc() || p != bits.data() + bits.size() || n < 0 || n > c.prefix_) {
      return std::nullopt;
    }
    c.prefix_ = n;
  }
  return c;
}

bool Cidr::contains(std::string_view address) const {
  unsigned char b[16] = {};
  const std::string a(address);
  int fam = AF_INET;
  if (inet_pton(AF_INET, a.c_str(), b) != 1) {
    if (inet_pton(AF_INET6, a.c_str(), b) != 1) return false;
    fam = AF_INET6;
  }
  if (fam != family_) return false;
  const int full = prefix_ / 8;
  if (std::memcmp(b, bytes_, static_cast<std::size_t>(full)) != 0) return false;
  const int rest = prefix_ % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<unsigned char>(0xFF << (8 - rest));
  return (b[full] & mask) == (bytes_[full] & mask);
}

bool Cidr::contains(const SocketAddress& addr) const { return contains(addr.host()); }

}  // namespace portcullis
