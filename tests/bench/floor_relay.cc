// floor_relay: the least any pooled SMTP relay can do per message, for tests/bench/compare.sh
// (path `floor-relay`). Not a product and not a test: a measuring stick.
//
// It makes the system calls portcullis makes for a message from a client that does not
// pipeline (strace, 10 KiB message, smtp-sink as the MTA): accept4, one epoll add, the greeting
// and the HELO/EHLO reply from itself, MAIL and RCPT forwarded one by one on a pooled MTA
// connection and their replies relayed, 354 from itself, the message read whole, then DATA, the
// MTA's 354, the message in one send, the MTA's reply relayed, QUIT answered with the FIN
// behind it (MSG_MORE, close). It leaves out everything else portcullis does: no filter, no
// parsing beyond finding line ends, no log, no timer, no allocation once warm (client objects
// and their buffers are recycled), its own epoll loop with no EPOLL_CTL_DEL before close, and
// no libevent. What it costs per message is therefore the floor of the kernel's work (TCP,
// wake-ups) for that exchange on the machine, which no relay that forwards the transaction to
// the MTA before it answers can go below.
//
// It checks nothing and trusts its peers (loopback only, smtp-source and smtp-sink): a reply
// that does not fit its buffer, or an MTA that goes away, ends the client's session with 421.
//
//   c++ -O2 -std=c++20 -o floor_relay floor_relay.cc
//   floor_relay LISTEN_PORT MTA_PORT [--epoll-del] [--processes N]   (ports on 127.0.0.1)
//
// --epoll-del removes each client socket from the epoll set before closing it, as libevent
// does (event_del before close): what that one system call costs, measured.
// --processes N runs N relays, each with its own SO_REUSEPORT listener and pool (as
// portcullis's `workers: N` has N event loops): whether CPU per message grows with a second
// one on the machine, for a relay that shares nothing.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

namespace {

int gEpoll = -1;
bool gEpollDel = false;

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

// Replies and commands are small and the message goes to a loopback socket: a short send
// waits for room rather than keeping state (never seen in the benchmark's runs).
bool sendAll(int fd, std::string_view bytes, int flags = 0) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL | flags);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

// A reply is complete when its last line ("NNN " + text) ends with CRLF.
bool replyComplete(std::string_view in) {
  if (in.size() < 6 || !in.ends_with("\r\n")) return false;
  std::size_t start = in.rfind("\r\n", in.size() - 3);
  start = start == std::string_view::npos ? 0 : start + 2;
  return in.size() - start >= 6 && in[start + 3] == ' ';
}

struct Client;

struct Mta {
  enum class Expect { kNothing, kReply, kData354, kDot };
  int fd = -1;
  Expect expect = Expect::kNothing;
  Client* owner = nullptr;
  char in[4096];
  std::size_t inLen = 0;
};

struct Client {
  enum class State { kCommand, kWaitMta, kMessage };
  int fd = -1;
  State state = State::kCommand;
  Mta* mta = nullptr;
  char in[32768];
  std::size_t inLen = 0;
  std::vector<char> message;  // kept when the object is recycled
  std::size_t messageLen = 0;
};

// epoll data: a pointer with its low bit set for an MTA connection (both are aligned).
void* tag(Mta* m) { return reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(m) | 1); }

struct Relay {
  int listenFd = -1;
  sockaddr_in mtaAddr{};
  std::vector<Mta*> idleMtas;
  std::vector<Client*> freeClients;

  void watch(int fd, void* data) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = data;
    if (::epoll_ctl(gEpoll, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
  }

  // A new MTA connection, set up synchronously (only while the pool grows, in the warm-up).
  Mta* connectMta() {
    auto* m = new Mta;
    m->fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (m->fd < 0 || ::connect(m->fd, reinterpret_cast<sockaddr*>(&mtaAddr), sizeof mtaAddr) != 0)
      die("connect to the MTA");
    const int one = 1;
    ::setsockopt(m->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (std::string_view command : {std::string_view{}, std::string_view{"EHLO floor.test\r\n"}}) {
      if (!command.empty() && !sendAll(m->fd, command)) die("send to the MTA");
      m->inLen = 0;
      while (!replyComplete({m->in, m->inLen})) {
        const ssize_t n = ::read(m->fd, m->in + m->inLen, sizeof m->in - m->inLen);
        if (n <= 0) die("read from the MTA");
        m->inLen += static_cast<std::size_t>(n);
      }
    }
    m->inLen = 0;
    ::fcntl(m->fd, F_SETFL, ::fcntl(m->fd, F_GETFL) | O_NONBLOCK);
    watch(m->fd, tag(m));
    return m;
  }

  void dropMta(Mta* m) {
    ::close(m->fd);
    delete m;
  }

  void accept() {
    const int fd = ::accept4(listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    Client* c;
    if (freeClients.empty()) {
      c = new Client;
    } else {
      c = freeClients.back();
      freeClients.pop_back();
    }
    c->fd = fd;
    c->state = Client::State::kCommand;
    c->inLen = 0;
    c->mta = nullptr;
    watch(fd, c);
    if (!sendAll(fd, "220 floor.test ESMTP\r\n")) close(c);
  }

  // close() removes the socket from the epoll set itself: no EPOLL_CTL_DEL (unless asked).
  void close(Client* c, std::string_view last = {}) {
    if (!last.empty()) sendAll(c->fd, last, MSG_MORE);
    if (gEpollDel) ::epoll_ctl(gEpoll, EPOLL_CTL_DEL, c->fd, nullptr);
    ::close(c->fd);
    if (Mta* m = c->mta) {
      c->mta = nullptr;
      m->owner = nullptr;
      if (m->expect == Mta::Expect::kNothing && sendAll(m->fd, "RSET\r\n")) {
        m->expect = Mta::Expect::kReply;  // its 250 is read and dropped, then it is idle
      } else {
        dropMta(m);
      }
    }
    freeClients.push_back(c);
  }

  void clientReadable(Client* c) {
    char* at;
    std::size_t room;
    if (c->state == Client::State::kMessage) {
      if (c->message.size() - c->messageLen < 16384) c->message.resize(c->message.size() + 65536);
      at = c->message.data() + c->messageLen;
      room = c->message.size() - c->messageLen;
    } else {
      at = c->in + c->inLen;
      room = sizeof c->in - c->inLen;
    }
    const ssize_t n = room == 0 ? -1 : ::read(c->fd, at, room);
    if (n <= 0) {
      if (n < 0 && errno == EAGAIN) return;
      close(c);
      return;
    }
    if (c->state == Client::State::kMessage) {
      const std::size_t before = c->messageLen;
      c->messageLen += static_cast<std::size_t>(n);
      messageGrew(c, before);
    } else {
      c->inLen += static_cast<std::size_t>(n);
      commands(c);
    }
  }

  // Runs the complete commands in the buffer while no reply from the MTA is awaited.
  void commands(Client* c) {
    while (c->state == Client::State::kCommand) {
      const std::string_view in{c->in, c->inLen};
      const std::size_t eol = in.find("\r\n");
      if (eol == std::string_view::npos) return;
      const std::string_view line = in.substr(0, eol + 2);
      const std::string_view verb = line.substr(0, 4);
      bool ok = true;
      if (verb == "HELO" || verb == "helo") {
        ok = sendAll(c->fd, "250 floor.test\r\n");
      } else if (verb == "EHLO" || verb == "ehlo") {
        ok = sendAll(c->fd, "250-floor.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
      } else if (verb == "MAIL" || verb == "mail" || verb == "RCPT" || verb == "rcpt") {
        if (!c->mta) {
          if (idleMtas.empty()) {
            c->mta = connectMta();
          } else {
            c->mta = idleMtas.back();
            idleMtas.pop_back();
          }
          c->mta->owner = c;
        }
        c->mta->expect = Mta::Expect::kReply;
        c->state = Client::State::kWaitMta;
        ok = sendAll(c->mta->fd, line);
      } else if (verb == "DATA" || verb == "data") {
        c->state = Client::State::kMessage;
        c->messageLen = 0;
        ok = sendAll(c->fd, "354 End data with <CR><LF>.<CR><LF>\r\n");
      } else if (verb == "QUIT" || verb == "quit") {
        close(c, "221 2.0.0 Bye\r\n");
        return;
      } else {
        ok = sendAll(c->fd, "502 5.5.1 Not in the floor relay\r\n");
      }
      if (!ok) {
        close(c);
        return;
      }
      consume(c, line.size());
    }
  }

  void consume(Client* c, std::size_t n) {
    std::memmove(c->in, c->in + n, c->inLen - n);
    c->inLen -= n;
    if (c->state == Client::State::kMessage && c->inLen > 0) {
      // Bytes after DATA are the message's first.
      if (c->message.size() < c->inLen) c->message.resize(c->inLen + 65536);
      std::memcpy(c->message.data(), c->in, c->inLen);
      c->messageLen = c->inLen;
      c->inLen = 0;
      messageGrew(c, 0);
    }
  }

  // The message ends at CRLF "." CRLF (the DATA line's own CRLF counts as the first).
  void messageGrew(Client* c, std::size_t before) {
    const std::string_view m{c->message.data(), c->messageLen};
    std::size_t end;
    if (m.starts_with(".\r\n")) {
      end = 3;
    } else {
      const std::size_t from = before >= 4 ? before - 4 : 0;
      const std::size_t at = m.find("\r\n.\r\n", from);
      if (at == std::string_view::npos) return;
      end = at + 5;
    }
    if (end < c->messageLen) {  // pipelined commands after the dot
      std::memcpy(c->in, c->message.data() + end, c->messageLen - end);
      c->inLen = c->messageLen - end;
    }
    c->messageLen = end;
    c->state = Client::State::kWaitMta;
    if (!c->mta) {  // DATA without MAIL: the MTA refuses it, as it would
      c->state = Client::State::kCommand;
      if (!sendAll(c->fd, "503 5.5.1 Error: need RCPT command\r\n"))
        close(c);
      else
        commands(c);
      return;
    }
    c->mta->expect = Mta::Expect::kData354;
    if (!sendAll(c->mta->fd, "DATA\r\n")) mtaLost(c->mta);
  }

  void mtaLost(Mta* m) {
    if (Client* c = m->owner) {
      c->mta = nullptr;
      close(c, "421 4.4.2 MTA connection lost\r\n");
    } else {
      for (std::size_t i = 0; i < idleMtas.size(); ++i) {
        if (idleMtas[i] == m) {
          idleMtas[i] = idleMtas.back();
          idleMtas.pop_back();
          break;
        }
      }
    }
    dropMta(m);
  }

  void mtaReadable(Mta* m) {
    const ssize_t n = ::read(m->fd, m->in + m->inLen, sizeof m->in - m->inLen);
    if (n <= 0) {
      if (n < 0 && errno == EAGAIN) return;
      mtaLost(m);
      return;
    }
    m->inLen += static_cast<std::size_t>(n);
    const std::string_view reply{m->in, m->inLen};
    if (!replyComplete(reply)) {
      if (m->inLen == sizeof m->in) mtaLost(m);
      return;
    }
    m->inLen = 0;
    const Mta::Expect expect = m->expect;
    m->expect = Mta::Expect::kNothing;
    Client* c = m->owner;
    if (!c) {  // the reply to a RSET after its client left, or unasked: idle again or gone
      if (expect == Mta::Expect::kReply)
        idleMtas.push_back(m);
      else
        mtaLost(m);
      return;
    }
    if (expect == Mta::Expect::kData354 && reply.starts_with("354")) {
      m->expect = Mta::Expect::kDot;
      if (!sendAll(m->fd, {c->message.data(), c->messageLen})) mtaLost(m);
      return;
    }
    if (expect == Mta::Expect::kDot || expect == Mta::Expect::kData354) {
      c->mta = nullptr;  // the transaction is over: the connection goes back to the pool
      m->owner = nullptr;
      idleMtas.push_back(m);
    }
    c->state = Client::State::kCommand;
    if (!sendAll(c->fd, reply)) {
      close(c);
      return;
    }
    commands(c);
  }

  void run() {
    epoll_event events[64];
    for (;;) {
      const int n = ::epoll_wait(gEpoll, events, 64, -1);
      if (n < 0 && errno != EINTR) die("epoll_wait");
      for (int i = 0; i < n; ++i) {
        void* data = events[i].data.ptr;
        const auto bits = reinterpret_cast<std::uintptr_t>(data);
        if (data == nullptr) {
          accept();
        } else if (bits & 1) {
          mtaReadable(reinterpret_cast<Mta*>(bits & ~std::uintptr_t{1}));
        } else {
          clientReadable(static_cast<Client*>(data));
        }
      }
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  int processes = 1;
  bool usage = argc < 3;
  for (int i = 3; i < argc && !usage; ++i) {
    const std::string_view arg{argv[i]};
    if (arg == "--epoll-del") {
      gEpollDel = true;
    } else if (arg == "--processes" && i + 1 < argc) {
      processes = std::atoi(argv[++i]);
      usage = processes < 1;
    } else {
      usage = true;
    }
  }
  if (usage) {
    std::fprintf(stderr, "usage: floor_relay LISTEN_PORT MTA_PORT [--epoll-del] [--processes N]\n");
    return 2;
  }
  for (int i = 1; i < processes; ++i) {
    if (::fork() == 0) break;  // the children end with their parent's process group
  }
  Relay relay;
  relay.mtaAddr.sin_family = AF_INET;
  relay.mtaAddr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[2])));
  relay.mtaAddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  gEpoll = ::epoll_create1(EPOLL_CLOEXEC);
  relay.listenFd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(relay.listenFd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(relay.listenFd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  // Accepted sockets inherit TCP_NODELAY (as portcullis sets it).
  ::setsockopt(relay.listenFd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[1])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(relay.listenFd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(relay.listenFd, 4096) != 0)
    die("listen");
  relay.watch(relay.listenFd, nullptr);
  relay.run();
}
