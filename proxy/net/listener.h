#pragma once
// Listener: a listening TCP socket on the event loop that takes one connection per wake-up.
// libevent's evconnlistener calls accept4() until it fails with EAGAIN, which in the steady
// state (one new connection per wake-up) is one wasted system call per connection. This one
// takes a single connection and lets the level-triggered loop report the socket again while
// the backlog holds more, as nginx does with multi_accept off.

#include <event2/event.h>
#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "proxy/base/event_util.h"
#include "proxy/base/net_util.h"

namespace portcullis {

struct ListenOptions {
  bool reusePort = false;  // SO_REUSEPORT: one listener per worker on the same address
  int backlog = 1024;
};

// A socket bound and listening that no loop watches yet: a reload binds the sockets of every
// worker before it commits (all or nothing), then each worker adopts its own. Closed with it
// unless a Listener adopted it.
class ListeningSocket {
 public:
  // Binds and listens on `address` (SO_REUSEADDR; IPv6 only for an IPv6 address). Empty, with
  // `error` (strerror), when it cannot.
  static ListeningSocket bind(const SocketAddress& address, ListenOptions options,
                              std::string* error);
  ListeningSocket() = default;
  ~ListeningSocket();
  ListeningSocket(ListeningSocket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ListeningSocket& operator=(ListeningSocket&& other) noexcept;
  ListeningSocket(const ListeningSocket&) = delete;
  ListeningSocket& operator=(const ListeningSocket&) = delete;

  explicit operator bool() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  explicit ListeningSocket(int fd) : fd_(fd) {}
  int fd_ = -1;
};

class Listener {
 public:
  // A connection, non-blocking and close-on-exec; the callee owns `fd`.
  using AcceptFn = std::function<void(int fd, const sockaddr* peer, socklen_t length)>;
  // accept4() failed with what a retry would not cure at once (EMFILE, ENFILE, ENOBUFS,
  // ENOMEM): the callee backs off (disable(), then enable() later).
  using ErrorFn = std::function<void(int err)>;
  using Options = ListenOptions;

  // Binds and listens on `address` (ListeningSocket::bind) and watches it on `base`. Null, with
  // `error` (strerror), when the socket cannot be bound.
  static std::unique_ptr<Listener> open(event_base* base, const SocketAddress& address,
                                        Options options, AcceptFn onAccept, ErrorFn onError,
                                        std::string* error);
  // Watches a socket bound already (on any thread) on `base`.
  static std::unique_ptr<Listener> adopt(event_base* base, ListeningSocket socket,
                                         AcceptFn onAccept, ErrorFn onError, std::string* error);
  ~Listener();  // stops watching and closes the socket
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  int fd() const { return fd_; }
  void enable();
  void disable();

 private:
  Listener(int fd, AcceptFn onAccept, ErrorFn onError);
  static void onReadable(evutil_socket_t fd, short, void* self);

  int fd_;
  AcceptFn onAccept_;
  ErrorFn onError_;
  EventPtr event_;
  bool enabled_ = false;
};

// Whether `address` can be bound now: 0, or the errno of socket() or bind() (the socket is
// closed again at once; SO_REUSEADDR, IPv6 only for an IPv6 address, no SO_REUSEPORT).
int bindError(const SocketAddress& address);

}  // namespace portcullis
