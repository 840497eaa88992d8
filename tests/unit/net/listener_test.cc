// Listener: one accept4() per wake-up (the loop reports the socket again while the backlog
// holds more), the peer's address with each connection, disable()/enable(), and bindError().

#include "proxy/net/listener.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace portcullis {
namespace {

struct Accepted {
  int fd;
  SocketAddress peer;
};

class ListenerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const auto& a : accepted_) ::close(a.fd);
    for (const int fd : clients_) ::close(fd);
  }

  std::unique_ptr<Listener> open(const SocketAddress& at, Listener::Options options = {}) {
    std::string error;
    auto l = Listener::open(
        base_.get(), at, options,
        [this](int fd, const sockaddr* peer, socklen_t length) {
          accepted_.push_back({fd, *fromSockaddr(peer, length)});
        },
        [this](int err) { errors_.push_back(err); }, &error);
    EXPECT_NE(l, nullptr) << error;
    return l;
  }

  // 127.0.0.1 port 0: the kernel picks a free port (the config parser refuses port 0).
  static SocketAddress anyLoopbackPort() {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return *fromSockaddr(reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  }

  static SocketAddress boundAddress(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    return *fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }

  int connectTo(const SocketAddress& to) {
    const int fd = ::socket(to.family(), SOCK_STREAM, 0);
    EXPECT_EQ(::connect(fd, to.get(), to.length), 0) << std::strerror(errno);
    clients_.push_back(fd);
    return fd;
  }

  void loopOnce() { event_base_loop(base_.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK); }

  EventBasePtr base_{event_base_new()};
  std::vector<Accepted> accepted_;
  std::vector<int> errors_;
  std::vector<int> clients_;
};

TEST_F(ListenerTest, TakesOneConnectionPerWakeUpWithItsPeer) {
  auto l = open(anyLoopbackPort());
  const SocketAddress at = boundAddress(l->fd());
  std::vector<SocketAddress> sources;
  sources.reserve(3);
  for (int i = 0; i < 3; ++i) sources.push_back(boundAddress(connectTo(at)));
  for (std::size_t i = 1; i <= 3; ++i) {
    loopOnce();
    ASSERT_EQ(accepted_.size(), i);  // one per pass, though all three wait in the backlog
    EXPECT_EQ(accepted_.back().peer.toString(), sources[i - 1].toString());
  }
  loopOnce();  // the backlog is empty: no wake-up, no accept4() that fails with EAGAIN
  EXPECT_EQ(accepted_.size(), 3u);
  EXPECT_TRUE(errors_.empty());
}

TEST_F(ListenerTest, DisabledItLeavesConnectionsInTheBacklogUntilEnabled) {
  auto l = open(anyLoopbackPort());
  const SocketAddress at = boundAddress(l->fd());
  l->disable();
  connectTo(at);  // the kernel completes the handshake: it waits in the backlog
  loopOnce();
  EXPECT_TRUE(accepted_.empty());
  l->enable();
  loopOnce();
  EXPECT_EQ(accepted_.size(), 1u);
}

TEST_F(ListenerTest, ASocketBoundAheadIsServedOnceAdoptedAndClosedIfNot) {
  // A reload binds every worker's socket first (on worker 0's thread); a worker adopts its own.
  std::string error;
  ListeningSocket ahead = ListeningSocket::bind(anyLoopbackPort(), {.reusePort = true}, &error);
  ASSERT_TRUE(ahead) << error;
  ListeningSocket moved = std::move(ahead);
  EXPECT_FALSE(ahead);  // NOLINT(bugprone-use-after-move): the moved-from one owns nothing
  ASSERT_TRUE(moved);
  auto l = Listener::adopt(
      base_.get(), std::move(moved),
      [this](int fd, const sockaddr* peer, socklen_t length) {
        accepted_.push_back({fd, *fromSockaddr(peer, length)});
      },
      nullptr, &error);
  ASSERT_NE(l, nullptr) << error;
  const SocketAddress at = boundAddress(l->fd());
  connectTo(at);
  loopOnce();
  EXPECT_EQ(accepted_.size(), 1u);
  // One that no listener adopts (the reload failed) closes with its owner.
  SocketAddress gone;
  {
    ListeningSocket dropped = ListeningSocket::bind(anyLoopbackPort(), {}, &error);
    ASSERT_TRUE(dropped) << error;
    gone = boundAddress(dropped.fd());
    EXPECT_EQ(bindError(gone), EADDRINUSE);
  }
  EXPECT_EQ(bindError(gone), 0);
}

TEST_F(ListenerTest, AnAddressInUseIsRefusedUnlessEveryListenerSharesIt) {
  auto first = open(anyLoopbackPort());
  const SocketAddress at = boundAddress(first->fd());
  EXPECT_EQ(bindError(at), EADDRINUSE);
  std::string error;
  EXPECT_EQ(Listener::open(base_.get(), at, {}, nullptr, nullptr, &error), nullptr);
  EXPECT_NE(error, "");
  // SO_REUSEPORT on both sides (the workers): the second binds.
  auto a = open(anyLoopbackPort(), {.reusePort = true});
  auto b = open(boundAddress(a->fd()), {.reusePort = true});
  EXPECT_NE(b, nullptr);
  first.reset();
  EXPECT_EQ(bindError(at), 0);  // closed with the Listener
}

}  // namespace
}  // namespace portcullis
