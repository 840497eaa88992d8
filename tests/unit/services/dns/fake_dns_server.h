#pragma once
// Test helper: a scriptable DNS server on 127.0.0.1 (UDP and TCP on the same port) driven by the
// test's own event_base, so resolver and server take turns in one thread. The test's handler
// sees each query and returns what to send back: any bytes, after any delay, even from another
// port. Everything it owns is freed by its destructor; nothing outlives it.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/base/dispatcher.h"
#include "proxy/base/event_util.h"
#include "tests/unit/services/dns/dns_wire_builder.h"

namespace portcullis::dnstest {

struct FakeRequest {
  WireQuery query;
  bool tcp = false;
  std::uint16_t sourcePort = 0;
};

struct FakeSend {
  std::vector<std::uint8_t> bytes;
  std::chrono::milliseconds delay{0};
  bool fromOtherPort = false;  // UDP only: sent from a second socket (a forger's port)
};

// Returns what to send; an empty list means "never answer".
using FakeHandler = std::function<std::vector<FakeSend>(const FakeRequest&)>;

// The answer a well-behaved server gives: same id, same question (as sent), these records.
inline std::vector<std::uint8_t> answerTo(const FakeRequest& r, std::vector<WireRr> answer,
                                          std::uint8_t rcode = 0, bool tc = false) {
  WireMessage m;
  m.id = r.query.id;
  m.qname = r.query.name;
  m.qtype = r.query.type;
  m.answer = std::move(answer);
  m.rcode = rcode;
  m.tc = tc;
  return encode(m);
}

class FakeDnsServer {
 public:
  // Delayed answers wait on `dispatcher`'s clock (a ManualDispatcher in unit tests).
  explicit FakeDnsServer(Dispatcher& dispatcher, FakeHandler udp = {}, FakeHandler tcp = {})
      : dispatcher_(dispatcher),
        base_(dispatcher.base()),
        udpHandler_(std::move(udp)),
        tcpHandler_(std::move(tcp)) {
    // UDP on a kernel-chosen port, then TCP on the same number (retry if that one is taken).
    for (int tries = 0; tries < 20 && !listener_; ++tries) {
      closeUdp();
      udpFd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t len = sizeof(addr);
      if (::bind(udpFd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
          ::getsockname(udpFd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        continue;
      }
      port_ = ntohs(addr.sin_port);
      listener_.reset(evconnlistener_new_bind(base_, &FakeDnsServer::onAccept, this,
                                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                              reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
    }
    udpEvent_.reset(event_new(base_, udpFd_, EV_READ | EV_PERSIST, &FakeDnsServer::onUdp, this));
    event_add(udpEvent_.get(), nullptr);
    otherFd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  }
  ~FakeDnsServer() {
    pending_.clear();
    conns_.clear();
    listener_.reset();
    closeUdp();
    if (otherFd_ >= 0) {
      ::close(otherFd_);
    }
  }
  FakeDnsServer(const FakeDnsServer&) = delete;
  FakeDnsServer& operator=(const FakeDnsServer&) = delete;

  bool ok() const { return listener_ != nullptr && udpFd_ >= 0; }
  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void setUdpHandler(FakeHandler h) { udpHandler_ = std::move(h); }
  void setTcpHandler(FakeHandler h) { tcpHandler_ = std::move(h); }

  // When the earliest delayed answer is due; nullopt when none is waiting.
  std::optional<Dispatcher::Clock::time_point> nextSendDue() const {
    std::optional<Dispatcher::Clock::time_point> best;
    for (const auto& p : pending_) {
      if (!p->sent && (!best || p->due < *best)) best = p->due;
    }
    return best;
  }

  int udpQueries = 0;
  int tcpQueries = 0;
  std::vector<FakeRequest> requests;

 private:
  struct PendingSend {
    FakeDnsServer* server;
    FakeSend send;
    sockaddr_in to;
    Dispatcher::Clock::time_point due;
    std::unique_ptr<Timer> timer;
    bool sent = false;
  };
  struct Conn {
    FakeDnsServer* server;
    BufferEventPtr bev;
  };

  void closeUdp() {
    udpEvent_.reset();
    if (udpFd_ >= 0) {
      ::close(udpFd_);
      udpFd_ = -1;
    }
  }

  static void onUdp(evutil_socket_t fd, short, void* self) {
    auto* s = static_cast<FakeDnsServer*>(self);
    std::vector<std::uint8_t> buf(65536);
    sockaddr_in from{};
    socklen_t len = sizeof(from);
    const ssize_t n =
        ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n <= 0) {
      return;
    }
    buf.resize(static_cast<std::size_t>(n));
    auto q = decodeQuery(buf);
    if (!q) {
      return;
    }
    ++s->udpQueries;
    FakeRequest req{*q, false, ntohs(from.sin_port)};
    s->requests.push_back(req);
    if (!s->udpHandler_) {
      return;
    }
    for (auto& send : s->udpHandler_(req)) {
      const auto due = s->dispatcher_.now() + send.delay;
      auto p =
          std::make_unique<PendingSend>(PendingSend{s, std::move(send), from, due, nullptr, false});
      PendingSend* raw = p.get();
      p->timer = std::make_unique<Timer>(s->dispatcher_, [raw] { sendNow(raw); });
      p->timer->start(p->send.delay);
      s->pending_.push_back(std::move(p));
    }
  }

  static void sendNow(PendingSend* p) {
    p->sent = true;
    const int fd = p->send.fromOtherPort ? p->server->otherFd_ : p->server->udpFd_;
    (void)::sendto(fd, p->send.bytes.data(), p->send.bytes.size(), 0,
                   reinterpret_cast<const sockaddr*>(&p->to), sizeof(p->to));
  }

  static void onAccept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* self) {
    auto* s = static_cast<FakeDnsServer*>(self);
    auto c = std::make_unique<Conn>(
        Conn{s, BufferEventPtr(bufferevent_socket_new(s->base_, fd, BEV_OPT_CLOSE_ON_FREE))});
    bufferevent_setcb(c->bev.get(), &FakeDnsServer::onTcpRead, nullptr, nullptr, c.get());
    bufferevent_enable(c->bev.get(), EV_READ | EV_WRITE);
    s->conns_.push_back(std::move(c));
  }

  static void onTcpRead(bufferevent* bev, void* arg) {
    auto* c = static_cast<Conn*>(arg);
    evbuffer* in = bufferevent_get_input(bev);
    std::uint8_t len[2];
    if (evbuffer_copyout(in, len, 2) != 2) {
      return;
    }
    const std::size_t size = static_cast<std::size_t>(len[0] << 8 | len[1]);
    if (evbuffer_get_length(in) < 2 + size) {
      return;
    }
    std::vector<std::uint8_t> msg(size);
    evbuffer_drain(in, 2);
    evbuffer_remove(in, msg.data(), size);
    auto q = decodeQuery(msg);
    if (!q) {
      return;
    }
    auto* s = c->server;
    ++s->tcpQueries;
    FakeRequest req{*q, true, 0};
    s->requests.push_back(req);
    if (!s->tcpHandler_) {
      return;
    }
    for (const auto& send : s->tcpHandler_(req)) {
      std::vector<std::uint8_t> framed{static_cast<std::uint8_t>(send.bytes.size() >> 8),
                                       static_cast<std::uint8_t>(send.bytes.size() & 0xff)};
      framed.insert(framed.end(), send.bytes.begin(), send.bytes.end());
      bufferevent_write(bev, framed.data(), framed.size());
    }
  }

  Dispatcher& dispatcher_;
  event_base* base_;
  FakeHandler udpHandler_;
  FakeHandler tcpHandler_;
  int udpFd_ = -1;
  int otherFd_ = -1;
  std::uint16_t port_ = 0;
  EventPtr udpEvent_;
  ListenerPtr listener_;
  std::vector<std::unique_ptr<PendingSend>> pending_;
  std::vector<std::unique_ptr<Conn>> conns_;
};

}  // namespace portcullis::dnstest
