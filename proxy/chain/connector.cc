// EventConnector. See connector.h.

#include "proxy/chain/connector.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "proxy/base/event_util.h"
#include "proxy/base/net_util.h"

namespace portcullis {
namespace {

// What a connect() should reach, or why it cannot.
struct Target {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string error;
};

Target resolveTarget(std::string_view address) {
  Target t;
  if (auto problem = checkConnectAddress(address)) {
    t.error = "bad address: " + *problem;
    return t;
  }
  constexpr std::string_view kUnix = "unix:";
  if (address.starts_with(kUnix)) {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    const std::string_view path = address.substr(kUnix.size());
    std::memcpy(un.sun_path, path.data(), path.size());  // checked to fit, NUL included
    std::memcpy(&t.storage, &un, sizeof(un));
    t.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return t;
  }
  const std::optional<SocketAddress> sa = parseSocketAddress(address);
  if (!sa) {
    t.error = "bad address";
    return t;
  }
  t.storage = sa->storage;
  t.length = sa->length;
  return t;
}

std::string timeoutText(std::chrono::milliseconds d) {
  return "timeout after " + std::to_string(d.count()) + "ms";
}

class EventConnection final : public Connection {
 public:
  EventConnection(Dispatcher& dispatcher, std::chrono::milliseconds timeout,
                  ConnectionHandler& handler)
      : handler_(handler),
        writeTimeout_(timeout),
        failLater_(dispatcher, [this] { fail(); }),
        bev_(bufferevent_socket_new(dispatcher.base(), -1,
                                    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)) {}

  void start(std::string_view address) {
    if (!bev_) {
      failWith(ConnectionEnd::kError, "cannot create a socket");
      return;
    }
    bufferevent_setcb(bev_.get(), &EventConnection::onRead, &EventConnection::onWrite,
                      &EventConnection::onEvent, this);
    // The core never holds more than one delivery of input for a connection.
    bufferevent_setwatermark(bev_.get(), EV_READ, 0, kMaxConnectionRead);
    applyTimeouts();
    bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
    Target target = resolveTarget(address);
    if (!target.error.empty()) {
      failWith(ConnectionEnd::kError, target.error);
      return;
    }
    // Our own socket, so that it is close-on-exec like every other descriptor of the daemon.
    const evutil_socket_t fd =
        ::socket(target.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bufferevent_setfd(bev_.get(), fd) != 0) {
      const int err = errno;
      if (fd >= 0) ::close(fd);
      failWith(ConnectionEnd::kError, std::string("socket: ") + std::strerror(err));
      return;
    }
    // The write timeout bounds the connect too (libevent waits for writability).
    if (bufferevent_socket_connect(bev_.get(), reinterpret_cast<sockaddr*>(&target.storage),
                                   static_cast<int>(target.length)) != 0) {
      const int err = errno;
      failWith(ConnectionEnd::kError, err ? std::strerror(err) : "connect failed");
    }
  }

  void write(std::string_view bytes) override {
    if (ended_ || !bev_) return;
    bufferevent_write(bev_.get(), bytes.data(), bytes.size());
  }

  std::size_t pendingWrite() const override {
    return bev_ ? evbuffer_get_length(bufferevent_get_output(bev_.get())) : 0;
  }

  void setReadTimeout(std::chrono::milliseconds timeout) override {
    readTimeout_ = timeout;
    applyTimeouts();
  }

 private:
  void applyTimeouts() {
    if (!bev_) return;
    const timeval write = toTimeval(writeTimeout_);
    const timeval read = toTimeval(readTimeout_);
    bufferevent_set_timeouts(bev_.get(), readTimeout_.count() > 0 ? &read : nullptr, &write);
  }

  // Reports an end that was known inside a call, from the loop.
  void failWith(ConnectionEnd end, std::string detail) {
    ended_ = true;
    pendingEnd_ = end;
    pendingDetail_ = std::move(detail);
    failLater_.schedule();
  }
  void fail() { handler_.onEnd(pendingEnd_, pendingDetail_); }  // may destroy this

  static void onRead(bufferevent* bev, void* self) {
    auto* c = static_cast<EventConnection*>(self);
    evbuffer* in = bufferevent_get_input(bev);
    const std::size_t n = evbuffer_get_length(in);
    if (n == 0 || c->ended_) return;
    std::string bytes(n, '\0');
    evbuffer_remove(in, bytes.data(), n);
    c->handler_.onReceived(bytes);  // may destroy c: touch nothing afterwards
  }

  static void onWrite(bufferevent* bev, void* self) {
    auto* c = static_cast<EventConnection*>(self);
    if (c->ended_ || !c->connected_) return;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) c->handler_.onDrained();
  }

  static void onEvent(bufferevent*, short what, void* self) {
    auto* c = static_cast<EventConnection*>(self);
    if (c->ended_) return;
    if ((what & BEV_EVENT_CONNECTED) != 0) {
      c->connected_ = true;
      c->handler_.onConnected();
      return;
    }
    const bool timeout = (what & BEV_EVENT_TIMEOUT) != 0;
    const bool eof = (what & BEV_EVENT_EOF) != 0;
    c->ended_ = true;
    if (timeout) {
      const bool reading = (what & BEV_EVENT_READING) != 0;
      c->handler_.onEnd(ConnectionEnd::kTimeout,
                        std::string(reading ? "read " : (c->connected_ ? "write " : "connect ")) +
                            timeoutText(reading ? c->readTimeout_ : c->writeTimeout_));
      return;
    }
    if (eof) {
      c->handler_.onEnd(ConnectionEnd::kClosed, "closed by peer");
      return;
    }
    // A peer that answers and closes before reading everything (clamd past StreamMaxLength)
    // makes our write fail; its reply was read and delivered before this (libevent reads a
    // socket before it writes it, and the reply came before the reset).
    const int err = EVUTIL_SOCKET_ERROR();
    c->handler_.onEnd(ConnectionEnd::kError,
                      err ? evutil_socket_error_to_string(err) : "connection error");
  }

  ConnectionHandler& handler_;
  std::chrono::milliseconds writeTimeout_;
  std::chrono::milliseconds readTimeout_{0};
  bool connected_ = false;
  bool ended_ = false;
  ConnectionEnd pendingEnd_ = ConnectionEnd::kError;
  std::string pendingDetail_;
  DeferredCall failLater_;
  BufferEventPtr bev_;  // last: freed first, so no libevent callback outlives the members
};

}  // namespace

std::unique_ptr<Connection> EventConnector::connect(std::string_view address,
                                                    std::chrono::milliseconds timeout,
                                                    ConnectionHandler& handler) {
  auto connection = std::make_unique<EventConnection>(dispatcher_, timeout, handler);
  connection->start(address);
  return connection;
}

}  // namespace portcullis
