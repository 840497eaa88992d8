// Listener. See listener.h.

#include "proxy/net/listener.h"

#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace portcullis {
namespace {

// A socket for `address` with the options every listening socket here has; -1 with errno.
int listeningSocket(const SocketAddress& address, bool reusePort) {
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reusePort) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (address.family() == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, address.get(), address.length) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

}  // namespace

int bindError(const SocketAddress& address) {
  const int fd = listeningSocket(address, false);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

ListeningSocket ListeningSocket::bind(const SocketAddress& address, ListenOptions options,
                                      std::string* error) {
  const int fd = listeningSocket(address, options.reusePort);
  if (fd < 0 || ::listen(fd, options.backlog) != 0) {
    *error = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return {};
  }
  return ListeningSocket(fd);
}

ListeningSocket::~ListeningSocket() {
  if (fd_ >= 0) ::close(fd_);
}

ListeningSocket& ListeningSocket::operator=(ListeningSocket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

std::unique_ptr<Listener> Listener::open(event_base* base, const SocketAddress& address,
                                         Options options, AcceptFn onAccept, ErrorFn onError,
                                         std::string* error) {
  ListeningSocket socket = ListeningSocket::bind(address, options, error);
  if (!socket) return nullptr;
  return adopt(base, std::move(socket), std::move(onAccept), std::move(onError), error);
}

std::unique_ptr<Listener> Listener::adopt(event_base* base, ListeningSocket socket,
                                          AcceptFn onAccept, ErrorFn onError, std::string* error) {
  std::unique_ptr<Listener> l(
      new Listener(socket.release(), std::move(onAccept), std::move(onError)));
  l->event_.reset(event_new(base, l->fd_, EV_READ | EV_PERSIST, &Listener::onReadable, l.get()));
  if (!l->event_) {
    *error = "cannot create the listener's event";
    return nullptr;
  }
  l->enable();
  return l;
}

Listener::Listener(int fd, AcceptFn onAccept, ErrorFn onError)
    : fd_(fd), onAccept_(std::move(onAccept)), onError_(std::move(onError)) {}

Listener::~Listener() {
  event_.reset();  // event_free deletes it from the loop
  ::close(fd_);
}

void Listener::enable() {
  if (enabled_) return;
  enabled_ = event_add(event_.get(), nullptr) == 0;
}

void Listener::disable() {
  if (!enabled_) return;
  event_del(event_.get());
  enabled_ = false;
}

void Listener::onReadable(evutil_socket_t fd, short, void* self) {
  auto* l = static_cast<Listener*>(self);
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  const int conn =
      ::accept4(fd, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (conn >= 0) {
    l->onAccept_(conn, reinterpret_cast<const sockaddr*>(&peer), length);
    return;
  }
  // Another worker took it (SO_REUSEPORT does not share one backlog, but a wake-up can still
  // find it empty), the client gave up (ECONNABORTED), or a signal: the loop reports it again.
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return;
  l->onError_(errno);
}

}  // namespace portcullis
