// tls_load: the load generator for tests/bench/bench.sh --tls and --pipelining (not a test, not
// installed).
//
// One client tool for both sides of the comparison, so the ratio measures the server:
//   tls_load mail --port P [--starttls] [--pipelining] [--connections 20] [--messages 20000]
//                 [--size 10240] [--per-connection 1]
//       N threads, each a blocking SMTP client: connect, read 220, EHLO, (STARTTLS, handshake,
//       EHLO), then MAIL/RCPT/DATA/message/. for --per-connection messages, QUIT; until
//       --messages messages were sent in all. Commands are not pipelined (like smtp-source)
//       unless --pipelining: then MAIL, RCPT and DATA go in one write, as real MTAs send them
//       (RFC 2920; Postfix's smtp client does), and their three replies are read after it.
//       --rcpt chooses the recipient (default sink@test.local).
//   tls_load handshake --port P [--resume] [--connections 20] [--count 5000]
//       Against an implicit-TLS (RFC 8314) listener: connect, TLS handshake, read the 220 (which
//       also takes in TLS 1.3 session tickets), QUIT, read 221, close. --resume offers each
//       thread's last session (ticket) on its next connection; resumed= counts how many the
//       server accepted.
// Certificates are not verified (the handshake cost is the server's key exchange and
// signature, plus the client's own part, the same for every run).
//
// Prints one key=value line, e.g.
//   mode=mail starttls=yes connections=20 done=20000 errors=0 seconds=4.21 rate=4750.6
//   mode=handshake resume=yes connections=20 done=5000 resumed=4980 errors=0 seconds=1.2
//   rate=4166.7
// Build: c++ -O2 -std=c++20 tls_load.cc -lssl -lcrypto -pthread -o tls_load

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <csignal>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string mode;
  std::string host = "127.0.0.1";
  std::string rcpt = "sink@test.local";
  int port = 0;
  bool starttls = false;
  bool pipelining = false;
  bool resume = false;
  int connections = 20;
  long messages = 20000;
  long count = 5000;
  long size = 10240;
  int perConnection = 1;
  bool verbose = false;
};

std::atomic<long> g_next{0};
std::atomic<long> g_done{0};
std::atomic<long> g_errors{0};
std::atomic<long> g_resumed{0};
std::atomic<bool> g_reported{false};

class Conn {
 public:
  explicit Conn(const Options& o) : opt_(o) {}
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    if (ssl_) {
      // A session freed without a shutdown is marked not resumable (OpenSSL): say goodbye.
      if (clean_) SSL_shutdown(ssl_);
      SSL_free(ssl_);
    }
    if (fd_ >= 0) ::close(fd_);
  }

  bool connect() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return fail("socket");
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(opt_.port));
    if (inet_pton(AF_INET, opt_.host.c_str(), &sa.sin_addr) != 1) return fail("address");
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return fail("connect");
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{30, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return true;
  }

  bool handshake(SSL_CTX* ctx, SSL_SESSION* session) {
    ssl_ = SSL_new(ctx);
    if (!ssl_) return fail("SSL_new");
    SSL_set_fd(ssl_, fd_);
    if (session) SSL_set_session(ssl_, session);
    if (SSL_connect(ssl_) != 1) return fail("SSL_connect");
    return true;
  }

  bool reused() const { return ssl_ && SSL_session_reused(ssl_); }
  SSL_SESSION* takeSession() const { return ssl_ ? SSL_get1_session(ssl_) : nullptr; }

  bool send(const char* data, std::size_t len) {
    while (len > 0) {
      long n;
      if (ssl_) {
        n = SSL_write(ssl_, data, static_cast<int>(len));
      } else {
        n = ::send(fd_, data, len, MSG_NOSIGNAL);
      }
      if (n <= 0) return fail("write");
      data += n;
      len -= static_cast<std::size_t>(n);
    }
    return true;
  }
  bool send(const std::string& s) { return send(s.data(), s.size()); }

  // Reads one (multi-line) reply; true when its code is `want`.
  bool expect(int want) {
    for (;;) {
      const auto eol = buf_.find("\r\n");
      if (eol == std::string::npos) {
        if (buf_.size() > 65536) return fail("reply too long");
        char tmp[16384];
        long n = ssl_ ? SSL_read(ssl_, tmp, sizeof tmp) : ::recv(fd_, tmp, sizeof tmp, 0);
        if (n <= 0) return fail("read");
        buf_.append(tmp, static_cast<std::size_t>(n));
        continue;
      }
      std::string line = buf_.substr(0, eol);
      buf_.erase(0, eol + 2);
      if (line.size() < 3) return fail("short reply");
      if (line.size() > 3 && line[3] == '-') continue;
      const int code = std::atoi(line.substr(0, 3).c_str());
      if (code != want) {
        if (opt_.verbose || !g_reported.exchange(true)) {
          std::fprintf(stderr, "tls_load: expected %d, got \"%s\"\n", want, line.c_str());
        }
        return false;
      }
      return true;
    }
  }

  bool cmd(const std::string& line, int want) { return send(line + "\r\n") && expect(want); }
  void setClean() { clean_ = true; }

  // Pre-TLS bytes must not be carried over (nothing is pipelined, so there are none).
  bool bufferEmpty() const { return buf_.empty(); }

 private:
  bool fail(const char* what) {
    if (opt_.verbose || !g_reported.exchange(true)) {
      unsigned long e = ERR_get_error();
      char err[256] = "";
      if (e) ERR_error_string_n(e, err, sizeof err);
      std::fprintf(stderr, "tls_load: %s failed: %s %s\n", what, std::strerror(errno), err);
    }
    return false;
  }

  const Options& opt_;
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  bool clean_ = false;
  std::string buf_;
};

std::string makeMessage(long size) {
  std::string m =
      "From: <bench@client.test>\r\nTo: <sink@test.local>\r\nSubject: tls_load\r\n"
      "Message-ID: <tls_load@client.test>\r\n\r\n";
  const std::string filler =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n";
  while (static_cast<long>(m.size() + filler.size()) <= size - 3) m += filler;
  m += ".\r\n";
  return m;
}

// One connection carrying up to perConnection messages; returns messages delivered.
long mailSession(const Options& o, SSL_CTX* ctx, const std::string& message, long want) {
  Conn c(o);
  if (!c.connect() || !c.expect(220) || !c.cmd("EHLO tls-load.client.test", 250)) return -1;
  if (o.starttls) {
    if (!c.cmd("STARTTLS", 220) || !c.bufferEmpty() || !c.handshake(ctx, nullptr) ||
        !c.cmd("EHLO tls-load.client.test", 250)) {
      return -1;
    }
  }
  const std::string mail = "MAIL FROM:<bench@client.test>";
  const std::string rcpt = "RCPT TO:<" + o.rcpt + ">";
  const std::string group = mail + "\r\n" + rcpt + "\r\nDATA\r\n";
  long sent = 0;
  for (; sent < want; ++sent) {
    const bool envelope = o.pipelining
                              ? c.send(group) && c.expect(250) && c.expect(250) && c.expect(354)
                              : c.cmd(mail, 250) && c.cmd(rcpt, 250) && c.cmd("DATA", 354);
    if (!envelope || !c.send(message) || !c.expect(250)) return sent > 0 ? sent : -1;
  }
  if (c.cmd("QUIT", 221)) c.setClean();
  return sent;
}

void mailWorker(const Options& o, SSL_CTX* ctx, const std::string& message) {
  for (;;) {
    const long first = g_next.fetch_add(o.perConnection);
    if (first >= o.messages) return;
    const long want = std::min<long>(o.perConnection, o.messages - first);
    const long got = mailSession(o, ctx, message, want);
    if (got > 0) g_done += got;
    if (got < want) g_errors += want - std::max(got, 0L);
  }
}

void handshakeWorker(const Options& o, SSL_CTX* ctx) {
  SSL_SESSION* session = nullptr;
  while (g_next.fetch_add(1) < o.count) {
    Conn c(o);
    bool ok = c.connect() && c.handshake(ctx, o.resume ? session : nullptr) && c.expect(220);
    if (ok) {
      if (c.reused()) ++g_resumed;
      if (o.resume) {
        // After the 220 the TLS 1.3 tickets have been read: this session can resume.
        if (session) SSL_SESSION_free(session);
        session = c.takeSession();
      }
      ok = c.cmd("QUIT", 221);
      if (ok) c.setClean();
    }
    if (ok) {
      ++g_done;
    } else {
      ++g_errors;
    }
  }
  if (session) SSL_SESSION_free(session);
}

[[noreturn]] void usage(int status) {
  std::fprintf(status ? stderr : stdout,
               "usage: tls_load mail --port P [--host 127.0.0.1] [--starttls] [--pipelining]\n"
               "                     [--connections N] [--messages M] [--size BYTES]\n"
               "                     [--per-connection K] [--rcpt sink@test.local]\n"
               "       tls_load handshake --port P [--resume] [--connections N] [--count M]\n"
               "       (handshake: P is an implicit-TLS listener)  [--verbose]\n");
  std::exit(status);
}

Options parse(int argc, char** argv) {
  Options o;
  if (argc < 2) usage(2);
  o.mode = argv[1];
  if (o.mode == "-h" || o.mode == "--help") usage(0);
  if (o.mode != "mail" && o.mode != "handshake") usage(2);
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (a == "--port")
      o.port = std::atoi(value().c_str());
    else if (a == "--host")
      o.host = value();
    else if (a == "--starttls")
      o.starttls = true;
    else if (a == "--rcpt")
      o.rcpt = value();
    else if (a == "--pipelining")
      o.pipelining = true;
    else if (a == "--resume")
      o.resume = true;
    else if (a == "--connections")
      o.connections = std::atoi(value().c_str());
    else if (a == "--messages")
      o.messages = std::atol(value().c_str());
    else if (a == "--count")
      o.count = std::atol(value().c_str());
    else if (a == "--size")
      o.size = std::atol(value().c_str());
    else if (a == "--per-connection")
      o.perConnection = std::atoi(value().c_str());
    else if (a == "--verbose")
      o.verbose = true;
    else if (a == "-h" || a == "--help")
      usage(0);
    else
      usage(2);
  }
  if (o.port <= 0 || o.connections <= 0 || o.perConnection <= 0 || o.size < 100) usage(2);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // SSL_write to a peer that already closed
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    std::fprintf(stderr, "tls_load: SSL_CTX_new failed\n");
    return 1;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  const std::string message = makeMessage(o.size);

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(o.connections));
  for (int i = 0; i < o.connections; ++i) {
    if (o.mode == "mail") {
      threads.emplace_back(mailWorker, std::cref(o), ctx, std::cref(message));
    } else {
      threads.emplace_back(handshakeWorker, std::cref(o), ctx);
    }
  }
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long done = g_done.load();
  if (o.mode == "mail") {
    std::printf(
        "mode=mail starttls=%s pipelining=%s connections=%d per_connection=%d size=%ld done=%ld "
        "errors=%ld seconds=%.3f rate=%.1f\n",
        o.starttls ? "yes" : "no", o.pipelining ? "yes" : "no", o.connections, o.perConnection,
        o.size, done, g_errors.load(), secs, done / secs);
  } else {
    std::printf(
        "mode=handshake resume=%s connections=%d done=%ld resumed=%ld errors=%ld "
        "seconds=%.3f rate=%.1f\n",
        o.resume ? "yes" : "no", o.connections, done, g_resumed.load(), g_errors.load(), secs,
        done / secs);
  }
  SSL_CTX_free(ctx);
  return g_errors.load() == 0 ? 0 : 1;
}
