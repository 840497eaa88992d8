// PROXY protocol v1/v2. See proxy_protocol.h and
// https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt (sections 2.1 and 2.2).

#include "proxy/net/proxy_protocol.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace portcullis {
namespace {

constexpr std::size_t kV1Max = 107;  // "PROXY TCP6 " + 2 * 39 + 2 * 5 + separators + CRLF
constexpr std::size_t kV2Max = 1024;
constexpr char kV2Signature[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                   '\n', 'Q',  'U',  'I',  'T',  '\n'};

ProxyHeader error(std::string why) {
  ProxyHeader h;
  h.status = ProxyHeader::Status::kError;
  h.error = std::move(why);
  return h;
}

// proxy-protocol.txt 2.1: a TCP4 address is a dotted quad, a TCP6 one a numeric IPv6 address,
// and a port a decimal number without leading zeros. Nothing else is taken: not the config's
// "*" or "localhost", not a NUL with junk after it (inet_pton would stop at it), not a name.
// Port 0 is refused too: it is never the end of a real TCP connection (as for v2 below).
std::optional<SocketAddress> address(std::string_view ip, std::string_view port, bool v6) {
  if (ip.empty() || ip.size() >= INET6_ADDRSTRLEN || port.empty() || port.size() > 5) {
    return std::nullopt;
  }
  if (port.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  if (port[0] == '0') return std::nullopt;  // a leading zero, or port 0
  unsigned portNumber = 0;
  std::from_chars(port.data(), port.data() + port.size(), portNumber);
  if (portNumber > 65535) return std::nullopt;
  const std::string_view allowed = v6 ? "0123456789abcdefABCDEF:." : "0123456789.";
  if (ip.find_first_not_of(allowed) != std::string_view::npos) return std::nullopt;
  const std::string text(ip);  // no NUL inside: the character check above excludes it
  SocketAddress out;
  if (v6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (inet_pton(AF_INET6, text.c_str(), &in6->sin6_addr) != 1) return std::nullopt;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<std::uint16_t>(portNumber));
    out.length = sizeof(sockaddr_in6);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&out.storage);
    if (inet_pton(AF_INET, text.c_str(), &in4->sin_addr) != 1) return std::nullopt;
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<std::uint16_t>(portNumber));
    out.length = sizeof(sockaddr_in);
  }
  return out;
}

ProxyHeader parseV1(std::string_view in) {
  const std::size_t window = in.size() < kV1Max ? in.size() : kV1Max;
  const auto eol = in.substr(0, window).find("\r\n");
  if (eol == std::string_view::npos) {
    if (in.size() >= kV1Max) return error("v1 header longer than 107 octets");
    if (in.substr(0, window).find('\n') != std::string_view::npos)
      return error("v1 header without CRLF");
    return {};
  }
  std::string_view line = in.substr(6, eol - 6);  // after "PROXY "
  ProxyHeader h;
  h.version = 1;
  h.consumed = eol + 2;
  std::string_view parts[5];
  std::size_t n = 0;
  while (!line.empty() && n < 5) {
    const auto sp = line.find(' ');
    parts[n++] = line.substr(0, sp);
    line = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
  }
  if (n >= 1 && parts[0] == "UNKNOWN") {
    h.status = ProxyHeader::Status::kOk;
    h.local = true;
    return h;
  }
  if (n != 5 || !line.empty()) return error("v1 header does not have five fields");
  const bool v6 = parts[0] == "TCP6";
  if (!v6 && parts[0] != "TCP4") return error("v1 protocol is neither TCP4 nor TCP6");
  auto src = address(parts[1], parts[3], v6);
  auto dst = address(parts[2], parts[4], v6);
  if (!src || !dst) return error("v1 header has a malformed address or port");
  h.source = *src;
  h.destination = *dst;
  h.status = ProxyHeader::Status::kOk;
  return h;
}

ProxyHeader parseV2(std::string_view in) {
  if (in.size() < 16) return {};
  const auto* b = reinterpret_cast<const unsigned char*>(in.data());
  if ((b[12] & 0xF0) != 0x20) return error("v2 header with an unknown version");
  const unsigned command = b[12] & 0x0F;
  const std::size_t len = (static_cast<std::size_t>(b[14]) << 8) | b[15];
  if (16 + len > kV2Max) return error("v2 header longer than 1 KiB");
  if (in.size() < 16 + len) return {};
  ProxyHeader h;
  h.version = 2;
  h.consumed = 16 + len;
  if (command == 0x0) {  // LOCAL: the proxy's own connection (health check)
    h.local = true;
    h.status = ProxyHeader::Status::kOk;
    return h;
  }
  if (command != 0x1) return error("v2 header with an unknown command");
  const unsigned family = b[13];
  const unsigned char* p = b + 16;
  auto* s4 = reinterpret_cast<sockaddr_in*>(&h.source.storage);
  auto* d4 = reinterpret_cast<sockaddr_in*>(&h.destination.storage);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&h.source.storage);
  auto* d6 = reinterpret_cast<sockaddr_in6*>(&h.destination.storage);
  if (family == 0x11) {  // TCP over IPv4
    if (len < 12) return error("v2 IPv4 address block too short");
    s4->sin_family = d4->sin_family = AF_INET;
    std::memcpy(&s4->sin_addr, p, 4);
    std::memcpy(&d4->sin_addr, p + 4, 4);
    std::memcpy(&s4->sin_port, p + 8, 2);
    std::memcpy(&d4->sin_port, p + 10, 2);
    h.source.length = h.destination.length = sizeof(sockaddr_in);
  } else if (family == 0x21) {  // TCP over IPv6
    if (len < 36) return error("v2 IPv6 address block too short");
    s6->sin6_family = d6->sin6_family = AF_INET6;
    std::memcpy(&s6->sin6_addr, p, 16);
    std::memcpy(&d6->sin6_addr, p + 16, 16);
    std::memcpy(&s6->sin6_port, p + 32, 2);
    std::memcpy(&d6->sin6_port, p + 34, 2);
    h.source.length = h.destination.length = sizeof(sockaddr_in6);
  } else if (family == 0x00) {  // UNSPEC: treat like LOCAL
    h.local = true;
  } else {
    return error("v2 header for a transport other than TCP");
  }
  if (!h.local && (h.source.port() == 0 || h.destination.port() == 0)) {
    return error("v2 header with port 0");  // never a real TCP connection (v1 refuses it too)
  }
  h.status = ProxyHeader::Status::kOk;
  return h;
}

}  // namespace

ProxyHeader parseProxyHeader(std::string_view in) {
  // Decide on the version as soon as the first bytes allow it.
  const std::size_t sig = in.size() < 12 ? in.size() : 12;
  if (std::memcmp(in.data(), kV2Signature, sig) == 0) {
    return in.size() < 12 ? ProxyHeader{} : parseV2(in);
  }
  constexpr std::string_view kV1 = "PROXY ";
  const std::size_t pre = in.size() < kV1.size() ? in.size() : kV1.size();
  if (in.substr(0, pre) == kV1.substr(0, pre)) {
    return in.size() < kV1.size() ? ProxyHeader{} : parseV1(in);
  }
  return error("no PROXY protocol header");
}

namespace {
// The address in its own family's notation: unlike SocketAddress::host(), a v4-mapped IPv6
// address stays IPv6, as a TCP6 line requires.
std::string addressText(const SocketAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr, buf,
              sizeof buf);
  } else {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr, buf,
              sizeof buf);
  }
  return buf;
}
}  // namespace

std::string proxyV1Header(const SocketAddress& source, const SocketAddress& destination) {
  const bool v6 = source.family() == AF_INET6;
  return std::string("PROXY ") + (v6 ? "TCP6 " : "TCP4 ") + addressText(source) + " " +
         addressText(destination) + " " + std::to_string(source.port()) + " " +
         std::to_string(destination.port()) + "\r\n";
}

std::string proxyV2Header(const SocketAddress& source, const SocketAddress& destination) {
  std::string out(kV2Signature, sizeof kV2Signature);
  out.push_back(static_cast<char>(0x21));  // version 2, PROXY
  const bool v6 = source.family() == AF_INET6;
  out.push_back(static_cast<char>(v6 ? 0x21 : 0x11));
  const std::size_t len = v6 ? 36 : 12;
  out.push_back(static_cast<char>(len >> 8));
  out.push_back(static_cast<char>(len & 0xFF));
  if (v6) {
    const auto* s = reinterpret_cast<const sockaddr_in6*>(&source.storage);
    const auto* d = reinterpret_cast<const sockaddr_in6*>(&destination.storage);
    out.append(reinterpret_cast<const char*>(&s->sin6_addr), 16);
    out.append(reinterpret_cast<const char*>(&d->sin6_addr), 16);
    out.append(reinterpret_cast<const char*>(&s->sin6_port), 2);
    out.append(reinterpret_cast<const char*>(&d->sin6_port), 2);
  } else {
    const auto* s = reinterpret_cast<const sockaddr_in*>(&source.storage);
    const auto* d = reinterpret_cast<const sockaddr_in*>(&destination.storage);
    out.append(reinterpret_cast<const char*>(&s->sin_addr), 4);
    out.append(reinterpret_cast<const char*>(&d->sin_addr), 4);
    out.append(reinterpret_cast<const char*>(&s->sin_port), 2);
    out.append(reinterpret_cast<const char*>(&d->sin_port), 2);
  }
  return out;
}

}  // namespace portcullis
