#pragma once
// Socket-address helpers: "ADDR:PORT" parsing, sockaddr <-> text, CIDR matching. Pure except
// for the sockaddr structs; no name resolution (every address in config is numeric, so the
// system resolver is never consulted).

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace portcullis {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  std::string host() const;  // "192.0.2.1" / "2001:db8::1"
  std::uint16_t port() const;
  std::string toString() const;  // "192.0.2.1:25" / "[2001:db8::1]:25"
  bool isWildcard() const;       // 0.0.0.0 or :: (a listener on every address)
};

// "127.0.0.1:2525", "[::1]:25", "localhost:25" (loopback only), ":25" / "*:25" (any IPv4).
std::optional<SocketAddress> parseSocketAddress(std::string_view text);
std::optional<SocketAddress> fromSockaddr(const sockaddr* sa, socklen_t len);
// A textual IP (v4 or v6, no brackets) and a port.
std::optional<SocketAddress> socketAddress(std::string_view host, std::uint16_t port);

// The key per-IP connection limits count a client under: an IPv4 address as it is, an IPv6
// address masked to its first `ipv6PrefixLength` bits (1..128, clamped) in canonical RFC 5952
// text with the prefix, "2001:db8:1:2::/64"; an IPv4-mapped IPv6 address counts as its IPv4
// address. Text that is not a numeric address comes back unchanged.
std::string clientCountKey(std::string_view address, int ipv6PrefixLength);

// A CIDR block: "10.0.0.0/8", "::1/128", or a bare address (a /32 or /128).
class Cidr {
 public:
  static std::optional<Cidr> parse(std::string_view text);
  bool contains(const SocketAddress& addr) const;
  bool contains(std::string_view address) const;

 private:
  int family_ = AF_INET;
  unsigned char bytes_[16]{};
  int prefix_ = 0;
};

}  // namespace portcullis
