// DnsExchange and server address parsing: see dns_transport.h.

#include "proxy/services/dns/dns_transport.h"

#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace portcullis {
namespace {

// Datagrams read per wakeup: enough to drain a burst of forgeries without starving the loop.
constexpr int kMaxDatagramsPerWakeup = 16;

bool sameEndpoint(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) {
    return false;
  }
  if (a.ss_family == AF_INET) {
    const auto& x = reinterpret_cast<const sockaddr_in&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in&>(b);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  if (a.ss_family == AF_INET6) {
    const auto& x = reinterpret_cast<const sockaddr_in6&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in6&>(b);
    return x.sin6_port == y.sin6_port &&
           std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof(x.sin6_addr)) == 0;
  }
  return false;
}

std::string errnoText(std::string_view what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

}  // namespace

std::optional<DnsServer> parseDnsServer(std::string_view spec, std::string* error) {
  auto fail = [&](std::string_view why) -> std::optional<DnsServer> {
    if (error != nullptr) {
      *error = "bad DNS server \"" + std::string(spec) + "\": " + std::string(why);
    }
    return std::nullopt;
  };
  std::string host;
  std::string port = "53";
  if (!spec.empty() && spec.front() == '[') {
    const std::size_t close = spec.find(']');
    if (close == std::string_view::npos) {
      return fail("missing ']'");
    }
    host = spec.substr(1, close - 1);
    std::string_view rest = spec.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || rest.size() == 1) {
        return fail("expected [address]:port");
      }
      port = rest.substr(1);
    }
  } else if (std::count(spec.begin(), spec.end(), ':') == 1) {
    const std::size_t colon = spec.find(':');
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
  } else {
    host = spec;  // IPv4 without port, or a bare IPv6 address
  }
  if (host.empty()) {
    return fail("empty address");
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) == 0 ||
      std::stoi(port) > 65535) {
    return fail("port must be 1..65535");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    return fail("not a numeric IPv4 or IPv6 address");
  }
  DnsServer server;
  std::memcpy(&server.addr, res->ai_addr, res->ai_addrlen);
  server.addrLen = res->ai_addrlen;
  const bool v6 = res->ai_family == AF_INET6;
  freeaddrinfo(res);
  server.text = (v6 ? "[" + host + "]" : host) + ":" + port;
  return server;
}

DnsExchange::DnsExchange(Dispatcher& dispatcher, const DnsServer& server,
                         std::vector<std::uint8_t> query, DnsExpectation expect,
                         std::chrono::milliseconds timeout, DnsStats* stats, Done done)
    : base_(dispatcher.base()),
      server_(server),
      query_(std::move(query)),
      expect_(std::move(expect)),
      timeout_(timeout),
      stats_(stats),
      done_(std::move(done)),
      timer_(dispatcher, [this] { onTimer(); }) {
  startUdp();
}

DnsExchange::~DnsExchange() { closeSockets(); }

void DnsExchange::closeSockets() {
  udpEvent_.reset();  // before close(): libevent must forget the fd first
  if (udpFd_ >= 0) {
    ::close(udpFd_);
    udpFd_ = -1;
  }
  tcp_.reset();  // BEV_OPT_CLOSE_ON_FREE closes the socket
  timer_.stop();
}

void DnsExchange::failSoon(ExchangeStatus status, std::string detail) {
  closeSockets();
  ExchangeOutcome outcome;
  outcome.status = status;
  outcome.viaTcp = viaTcp_;
  outcome.detail = std::move(detail);
  pending_ = std::move(outcome);
  timer_.start(std::chrono::milliseconds(0));
}

void DnsExchange::startUdp() {
  const int family = server_.addr.ss_family;
  udpFd_ = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (udpFd_ < 0) {
    failSoon(ExchangeStatus::kLocalError, errnoText("udp socket", errno));
    return;
  }
  // RFC 5452 9.2: an unpredictable source port. Binding port 0 lets the kernel pick one at random
  // from the ephemeral range, and the socket is new for every attempt.
  sockaddr_storage local{};
  local.ss_family = static_cast<sa_family_t>(family);
  const socklen_t localLen = family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::bind(udpFd_, reinterpret_cast<sockaddr*>(&local), localLen) != 0) {
    failSoon(ExchangeStatus::kLocalError, errnoText("udp bind", errno));
    return;
  }
  // connect(): the kernel now drops datagrams from any other address or port, and reports ICMP
  // unreachable to us as ECONNREFUSED.
  if (::connect(udpFd_, reinterpret_cast<const sockaddr*>(&server_.addr), server_.addrLen) != 0) {
    failSoon(ExchangeStatus::kUnreachable, errnoText("udp connect", errno));
    return;
  }
  if (::send(udpFd_, query_.data(), query_.size(), 0) != static_cast<ssize_t>(query_.size())) {
    failSoon(ExchangeStatus::kUnreachable, errnoText("udp send", errno));
    return;
  }
  ++stats_->udpSent;
  udpEvent_.reset(
      event_new(base_, udpFd_, EV_READ | EV_PERSIST, &DnsExchange::onUdpReadable, this));
  if (!udpEvent_ || event_add(udpEvent_.get(), nullptr) != 0) {
    failSoon(ExchangeStatus::kLocalError, "udp: cannot watch socket");
    return;
  }
  timer_.start(timeout_);
}

void DnsExchange::onUdpReadable(evutil_socket_t, short, void* self) {
  static_cast<DnsExchange*>(self)->readUdp();
}

void DnsExchange::readUdp() {
  std::array<std::uint8_t, kMaxUdpAnswer> buf{};
  for (int i = 0; i < kMaxDatagramsPerWakeup; ++i) {
    sockaddr_storage from{};
    socklen_t fromLen = sizeof(from);
    // MSG_TRUNC: the return value is the datagram's real size, so an oversized one is seen.
    const ssize_t n = ::recvfrom(udpFd_, buf.data(), buf.size(), MSG_TRUNC,
                                 reinterpret_cast<sockaddr*>(&from), &fromLen);
    if (n < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
        return;
      }
      finish(ExchangeStatus::kUnreachable, errnoText("udp", err));
      return;
    }
    const auto size = static_cast<std::size_t>(n);
    // RFC 5452 4.1 and 9.1: an answer counts only if source, id and question all match.
    // Anything else is ignored, not fatal: a forger must not be able to end our wait.
    bool truncated = false;
    if (size > buf.size() || !sameEndpoint(from, server_.addr) ||
        matchAnswer(buf.data(), size, expect_, &truncated) != DnsMatch::kMatch) {
      ++stats_->mismatches;
      continue;
    }
    if (truncated) {
      ++stats_->tcpFallbacks;
      startTcp();
      return;
    }
    finish(ExchangeStatus::kAnswer, {}, std::vector<std::uint8_t>(buf.data(), buf.data() + size));
    return;
  }
}

void DnsExchange::startTcp() {
  closeSockets();
  viaTcp_ = true;
  const int fd = ::socket(server_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    failSoon(ExchangeStatus::kLocalError, errnoText("tcp socket", errno));
    return;
  }
  tcp_.reset(bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE));
  if (!tcp_) {
    ::close(fd);
    failSoon(ExchangeStatus::kLocalError, "tcp: cannot create bufferevent");
    return;
  }
  bufferevent_setcb(tcp_.get(), &DnsExchange::onTcpRead, nullptr, &DnsExchange::onTcpEvent, this);
  // Never buffer more than one maximal framed message (RFC 7766 8).
  bufferevent_setwatermark(tcp_.get(), EV_READ, 0, 2 + kMaxTcpAnswer);
  const std::array<std::uint8_t, 2> length{static_cast<std::uint8_t>(query_.size() >> 8),
                                           static_cast<std::uint8_t>(query_.size() & 0xff)};
  bufferevent_write(tcp_.get(), length.data(), length.size());
  bufferevent_write(tcp_.get(), query_.data(), query_.size());
  bufferevent_enable(tcp_.get(), EV_READ | EV_WRITE);
  // Connection refused on loopback is reported later through onTcpEvent, never from here.
  if (bufferevent_socket_connect(tcp_.get(), reinterpret_cast<sockaddr*>(&server_.addr),
                                 static_cast<int>(server_.addrLen)) != 0) {
    failSoon(ExchangeStatus::kUnreachable, errnoText("tcp connect", errno));
    return;
  }
  // The fallback gets its own full timeout: it needs a handshake on top of the exchange.
  timer_.start(timeout_);
}

void DnsExchange::onTcpRead(bufferevent*, void* self) {
  static_cast<DnsExchange*>(self)->readTcp();
}

bool DnsExchange::readTcp() {
  evbuffer* in = bufferevent_get_input(tcp_.get());
  const std::size_t avail = evbuffer_get_length(in);
  std::array<std::uint8_t, 2> length{};
  if (avail < length.size()) {
    return false;
  }
  evbuffer_copyout(in, length.data(), length.size());
  const std::size_t size = (static_cast<std::size_t>(length[0]) << 8) | length[1];
  if (avail < length.size() + size) {
    return false;
  }
  std::vector<std::uint8_t> answer(size);
  evbuffer_drain(in, length.size());
  evbuffer_remove(in, answer.data(), size);
  // Over TCP only the server can answer, so a mismatch is a broken server, not a forgery.
  bool truncated = false;
  if (matchAnswer(answer.data(), answer.size(), expect_, &truncated) != DnsMatch::kMatch) {
    finish(ExchangeStatus::kProtocolError, "tcp: answer does not match the query");
    return true;
  }
  finish(ExchangeStatus::kAnswer, {}, std::move(answer));
  return true;
}

void DnsExchange::onTcpEvent(bufferevent*, short what, void* self) {
  auto* ex = static_cast<DnsExchange*>(self);
  if ((what & BEV_EVENT_CONNECTED) != 0) {
    return;
  }
  if ((what & BEV_EVENT_EOF) != 0) {
    if (ex->readTcp()) {
      return;  // a complete answer was already buffered
    }
    ex->finish(ExchangeStatus::kUnreachable, "tcp: connection closed before the answer");
    return;
  }
  ex->finish(ExchangeStatus::kUnreachable, errnoText("tcp", EVUTIL_SOCKET_ERROR()));
}

void DnsExchange::onTimer() {
  if (pending_) {
    ExchangeOutcome outcome = std::move(*pending_);
    pending_.reset();
    finish(outcome.status, std::move(outcome.detail));
    return;
  }
  ++stats_->timeouts;
  finish(ExchangeStatus::kTimeout, std::string(viaTcp_ ? "tcp" : "udp") + ": no answer in " +
                                       std::to_string(timeout_.count()) + "ms");
}

void DnsExchange::finish(ExchangeStatus status, std::string detail,
                         std::vector<std::uint8_t> answer) {
  closeSockets();
  ExchangeOutcome outcome;
  outcome.status = status;
  outcome.viaTcp = viaTcp_;
  outcome.detail = std::move(detail);
  outcome.answer = std::move(answer);
  // The owner may destroy us inside `done`: move it to the stack and touch no member after.
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) {
    done(std::move(outcome));
  }
}

}  // namespace portcullis
