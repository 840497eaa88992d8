// EventConnector (proxy/chain/connector.h) on a real event loop with loopback sockets: TCP and
// unix-socket round trips, every ending (refused, bad address, missing socket path, the peer
// closing, a read timeout), every handler call from the loop (never inside connect() or
// write()), and a handler that destroys its connection inside a callback.

#include "proxy/chain/connector.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>

namespace portcullis {
namespace {

using std::chrono::milliseconds;

class Recorder final : public ConnectionHandler {
 public:
  void onConnected() override {
    events += "connected;";
    if (connected) connected();
  }
  void onReceived(std::string_view bytes) override {
    data += bytes;
    if (gotData) gotData();
  }
  void onDrained() override { ++drained; }
  void onEnd(ConnectionEnd end, std::string_view detail) override {
    events += std::string(connectionEndName(end)) + ";";
    this->detail = detail;
    ended = true;
  }
  std::string events;
  std::string data;
  std::string detail;
  int drained = 0;
  bool ended = false;
  std::function<void()> connected;
  std::function<void()> gotData;
};

class ConnectorTest : public ::testing::Test {
 public:
  ConnectorTest() : base_(event_base_new()), dispatcher_(base_.get()), connector_(dispatcher_) {}
  ~ConnectorTest() override {
    if (listener_ >= 0) ::close(listener_);
    if (peer_ >= 0) ::close(peer_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  ConnectorTest(const ConnectorTest&) = delete;
  ConnectorTest& operator=(const ConnectorTest&) = delete;

 protected:
  // A TCP listener on 127.0.0.1; returns "127.0.0.1:PORT".
  std::string listenTcp() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    EXPECT_EQ(::listen(listener_, 8), 0);
    socklen_t len = sizeof(sa);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&sa), &len);
    return "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  }
  std::string listenUnix() {
    path_ = "/tmp/portcullis-connector-test-" + std::to_string(::getpid()) + ".sock";
    ::unlink(path_.c_str());
    listener_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::strncpy(un.sun_path, path_.c_str(), sizeof(un.sun_path) - 1);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&un), sizeof(un)), 0);
    EXPECT_EQ(::listen(listener_, 8), 0);
    return "unix:" + path_;
  }
  // A port where nothing listens.
  static std::string closedPort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
    ::close(fd);
    return "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  }

  void loopUntil(const std::function<bool()>& done) {
    for (int i = 0; i < 2000 && !done(); ++i) event_base_loop(base_.get(), EVLOOP_ONCE);
  }

  EventBasePtr base_;
  EventDispatcher dispatcher_;
  EventConnector connector_;
  int listener_ = -1;
  int peer_ = -1;
  std::string path_;
};

TEST_F(ConnectorTest, TcpRoundTripThenPeerCloses) {
  const std::string address = listenTcp();
  Recorder r;
  auto c = connector_.connect(address, milliseconds(5000), r);
  c->write("zINSTREAM");  // queued before the connect completes
  EXPECT_EQ(r.events, "");
  r.connected = [&] {
    peer_ = ::accept(listener_, nullptr, nullptr);
    ASSERT_GE(peer_, 0);
    ASSERT_EQ(::write(peer_, "stream: OK", 10), 10);
  };
  loopUntil([&] { return r.data == "stream: OK" && r.drained > 0; });
  EXPECT_EQ(r.data, "stream: OK");
  char buf[16] = {};
  ASSERT_EQ(::read(peer_, buf, sizeof(buf)), 9);
  EXPECT_EQ(std::string(buf, 9), "zINSTREAM");
  EXPECT_EQ(c->pendingWrite(), 0u);
  ::close(peer_);
  peer_ = -1;
  loopUntil([&] { return r.ended; });
  EXPECT_EQ(r.events, "connected;closed;");
}

TEST_F(ConnectorTest, UnixSocketRoundTrip) {
  const std::string address = listenUnix();
  Recorder r;
  auto c = connector_.connect(address, milliseconds(5000), r);
  r.connected = [&] {
    peer_ = ::accept(listener_, nullptr, nullptr);
    ASSERT_EQ(::write(peer_, "hi", 2), 2);
  };
  loopUntil([&] { return r.data == "hi"; });
  EXPECT_EQ(r.events, "connected;");
  EXPECT_EQ(r.data, "hi");
}

TEST_F(ConnectorTest, FailuresArriveFromTheLoop) {
  struct Case {
    std::string address;
    std::string detail;  // a part of it
  };
  const Case cases[] = {
      {closedPort(), "refused"},
      {"unix:/nonexistent/portcullis.sock", "No such file"},
      {"clamd.example:3310", "bad address"},
      {"unix:relative", "bad address"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.address);
    Recorder r;
    auto c = connector_.connect(k.address, milliseconds(5000), r);
    c->write("x");
    EXPECT_FALSE(r.ended) << "an end reported inside connect()";
    loopUntil([&] { return r.ended; });
    EXPECT_EQ(r.events, "error;");
    EXPECT_NE(r.detail.find(k.detail), std::string::npos) << r.detail;
  }
}

TEST_F(ConnectorTest, ReadTimeoutEndsAWaitForAReply) {
  const std::string address = listenTcp();
  Recorder r;
  auto c = connector_.connect(address, milliseconds(5000), r);
  r.connected = [&] { peer_ = ::accept(listener_, nullptr, nullptr); };
  c->setReadTimeout(milliseconds(50));
  loopUntil([&] { return r.ended; });
  EXPECT_EQ(r.events, "connected;timeout;");
  EXPECT_EQ(r.detail, "read timeout after 50ms");
}

TEST_F(ConnectorTest, HandlerMayDestroyTheConnectionInACallback) {
  const std::string address = listenTcp();
  Recorder r;
  std::unique_ptr<Connection> c = connector_.connect(address, milliseconds(5000), r);
  r.connected = [&] {
    peer_ = ::accept(listener_, nullptr, nullptr);
    ASSERT_EQ(::write(peer_, "bye", 3), 3);
    ::shutdown(peer_, SHUT_WR);  // data and the close in one go
  };
  r.gotData = [&] { c.reset(); };
  loopUntil([&] { return !c; });
  // Let anything still queued for it run: nothing may reach the handler any more.
  for (int i = 0; i < 5; ++i) event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  EXPECT_EQ(r.events, "connected;");
  EXPECT_EQ(r.data, "bye");
}

}  // namespace
}  // namespace portcullis
