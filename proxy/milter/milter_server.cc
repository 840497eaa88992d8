// MilterServer: libmilter's callbacks, its thread, and the signal arrangement. See
// milter_server.h.
//
// Threads. libmilter calls the xxfi_* callbacks on one thread per MTA connection, one at a
// time per connection. A callback touches only its connection's Conn (header and body bytes
// are gathered there, bounded) and the shared Bridge; everything else, the filter chain, the
// sessions and every log line, happens on the loop, in jobs.
//
// Signals. smfi_main starts a thread that sigwait()s SIGHUP, SIGTERM and SIGINT and, on the
// first one, stops the milter and exits (sendmail's libmilter/signal.c). A thread in sigwait
// is eligible for a process-directed signal even though it blocks it, so the kernel could hand
// the daemon's SIGTERM or SIGHUP to that thread instead of the loop's handler: the milter would
// stop silently and the daemon would neither drain nor reload. Blocking the signals in our
// threads' masks does not prevent that; keeping that thread out of sigwait does. The daemon
// never calls sigwait itself, so this file defines it: for libmilter's exact set (HUP, TERM,
// INT) the call parks for good (MilterServer::stop() stops smfi_main with smfi_stop); any
// other set goes to the C library's sigwait. With every milter thread blocking those signals and
// none waiting for them, the loop's thread is the only one they can be delivered to.

#include "proxy/milter/milter_server.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "proxy/base/log.h"
#include "proxy/server/startup_checks.h"

namespace portcullis {
namespace {

constexpr std::size_t kMaxHeaderFields = 1000;  // per message, as Postfix's header_count_limit

// What the callbacks share; a connection keeps it alive (a callback may outlive stop()).
struct Shared {
  Shared(std::shared_ptr<LoopBridge> b, MilterServer* s, std::size_t max,
         std::chrono::milliseconds t, std::uint64_t m)
      : bridge(std::move(b)), server(s), gate(max), timeout(t), maxMessage(m) {}
  std::shared_ptr<LoopBridge> bridge;
  MilterServer* server;  // dereferenced only by jobs on the loop, which run while it lives
  SessionGate gate;
  std::chrono::milliseconds timeout;
  std::uint64_t maxMessage;
  std::atomic<std::uint64_t> nextKey{1};
  std::atomic<bool> draining{false};      // SIGTERM: new connections are refused
  std::atomic<bool> shuttingDown{false};  // the drain's deadline: what waits is refused
};

Reply shutdownReply() {
  return Reply::transient(421, "4.3.2", "Service shutting down, please try again later");
}

std::mutex gSharedMutex;
std::shared_ptr<Shared> gShared;

bool isLibmilterSignalSet(const sigset_t* set) {
  for (int sig = 1; sig < NSIG; ++sig) {
    const bool want = sig == SIGHUP || sig == SIGTERM || sig == SIGINT;
    if ((sigismember(set, sig) == 1) != want) return false;
  }
  return true;
}

// libmilter creates a unix socket with the process's umask and owner; the MTA needs write
// permission to connect (Postfix's smtpd runs as postfix), and no one else should have it.
bool setSocketAccess(const std::string& path, const MilterConfig& milter, std::string* error) {
  if (!milter.socketGroup.empty()) {
    const std::optional<gid_t> gid = groupId(milter.socketGroup);
    if (!gid) {
      *error = "milter.socket_group: no group \"" + milter.socketGroup + "\" on this host";
      return false;
    }
    if (::chown(path.c_str(), static_cast<uid_t>(-1), *gid) != 0) {
      *error = "milter.socket_group: chown " + path + ": " + std::strerror(errno);
      return false;
    }
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(milter.socketMode)) != 0) {
    *error = "milter.socket_mode: chmod " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

// The process's listening TCP sockets (descriptor numbers).
std::set<int> listeningTcpSockets() {
  std::set<int> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    int fd = -1;
    if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc{}) continue;
    int value = 0;
    socklen_t len = sizeof value;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) != 0 || value == 0) continue;
    len = sizeof value;
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &len) != 0) continue;
    if (value == AF_INET || value == AF_INET6) out.insert(fd);
  }
  return out;
}

// Connects to our own milter socket and hangs up: wakes smfi_main's listener, which otherwise
// looks at its stop flag only every 5 seconds (libmilter's MI_CHK_TIME).
void pokeListener(const std::string& conn) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  const auto colon = conn.find(':');
  const std::string kind = conn.substr(0, colon);
  const std::string rest = colon == std::string::npos ? "" : conn.substr(colon + 1);
  if (kind == "unix" || kind == "local") {
    auto* un = reinterpret_cast<sockaddr_un*>(&ss);
    un->sun_family = AF_UNIX;
    std::strncpy(un->sun_path, rest.c_str(), sizeof un->sun_path - 1);
    len = sizeof(sockaddr_un);
  } else {
    const auto at = rest.find('@');
    const int port = std::atoi(rest.substr(0, at).c_str());
    std::string host = at == std::string::npos ? "" : rest.substr(at + 1);
    if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
    if (kind == "inet6") {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(static_cast<std::uint16_t>(port));
      if (host.empty() || inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1 ||
          IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) {
        in6->sin6_addr = in6addr_loopback;
      }
      len = sizeof(sockaddr_in6);
    } else {
      auto* in = reinterpret_cast<sockaddr_in*>(&ss);
      in->sin_family = AF_INET;
      in->sin_port = htons(static_cast<std::uint16_t>(port));
      if (host.empty() || inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1 ||
          in->sin_addr.s_addr == htonl(INADDR_ANY)) {
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      }
      len = sizeof(sockaddr_in);
    }
  }
  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return;
  (void)::connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  ::close(fd);
}

// One MTA connection, on libmilter's side.
struct Conn {
  std::shared_ptr<Shared> shared;
  std::uint64_t key = 0;
  bool admitted = false;
  std::vector<HeaderField> headers;
  std::uint64_t headerBytes = 0;
  std::string body;
  std::uint64_t bodySize = 0;
};

bool isDigit(char c) { return c >= '0' && c <= '9'; }

Conn* connOf(SMFICTX* ctx) { return static_cast<Conn*>(smfi_getpriv(ctx)); }

std::string macro(SMFICTX* ctx, const char* name) {
  const char* v = smfi_getsymval(ctx, const_cast<char*>(name));
  return v == nullptr ? std::string() : sanitizeText(v, 255);
}

MilterMacros macros(SMFICTX* ctx) {
  MilterMacros m;
  m.queueId = macro(ctx, "i");
  m.authAuthen = macro(ctx, "{auth_authen}");
  m.tlsVersion = macro(ctx, "{tls_version}");
  m.cipher = macro(ctx, "{cipher}");
  const std::string bits = macro(ctx, "{cipher_bits}");
  m.cipherBits = bits.empty() || bits.size() > 5 || !std::all_of(bits.begin(), bits.end(), isDigit)
                     ? 0
                     : std::stoi(bits);
  return m;
}

std::vector<std::string> args(char** argv) {
  std::vector<std::string> out;
  for (char** a = argv; a != nullptr && *a != nullptr && out.size() < 64; ++a) out.emplace_back(*a);
  return out;
}

// The reply text for smfi_setreply: sendmail reads '%' as a format character.
std::string replyText(const Reply& r) {
  std::string t = r.text();
  std::erase(t, '%');
  return t;
}

sfsistat setReply(SMFICTX* ctx, const Reply& r, sfsistat status) {
  const std::string code = std::to_string(r.code());
  const std::string text = replyText(r);
  smfi_setreply(ctx, const_cast<char*>(code.c_str()),
                r.enhanced().empty() ? nullptr : const_cast<char*>(r.enhanced().c_str()),
                const_cast<char*>(text.c_str()));
  return status;
}

sfsistat noAnswer(SMFICTX* ctx, Conn& c, Stage stage) {
  // 421: Postfix hangs up on its client, which comes back to a portcullis that is running.
  if (c.shared->shuttingDown.load()) return setReply(ctx, shutdownReply(), SMFIS_TEMPFAIL);
  c.shared->bridge->post([shared = c.shared, key = c.key, stage] {
    MilterSession* s = shared->server->find(key);
    spdlog::warn(
        "{} event=milter-tempfail stage={} reason=\"no answer within milter.timeout ({}ms)\"",
        s != nullptr ? s->id() : "milter", stageName(stage), shared->timeout.count());
  });
  return setReply(ctx, Reply::transient(451, "4.3.0", "Temporary failure, please try again later"),
                  SMFIS_TEMPFAIL);
}

// Runs `stage` on the loop through `job` and turns the answer into libmilter's.
// The connect stage opens the loop's session; the others find it.
sfsistat ask(SMFICTX* ctx, Stage stage,
             std::function<void(MilterSession&, LoopBridge::Completion)> job) {
  Conn* c = connOf(ctx);
  if (c == nullptr || !c->admitted) return SMFIS_TEMPFAIL;
  auto answer = c->shared->bridge->call(
      [shared = c->shared, key = c->key, stage, job = std::move(job)](LoopBridge::Completion done) {
        MilterSession* s =
            stage == Stage::kConnect ? &shared->server->open(key) : shared->server->find(key);
        if (s != nullptr) job(*s, std::move(done));
      },
      c->shared->timeout);
  if (!answer) return noAnswer(ctx, *c, stage);
  const MilterAction& a = *answer;
  switch (a.status) {
    case MilterAction::Status::kContinue:
      break;
    case MilterAction::Status::kAccept:
      return SMFIS_ACCEPT;
    case MilterAction::Status::kDiscard:
      return SMFIS_DISCARD;
    case MilterAction::Status::kReject:
      return a.reply ? setReply(ctx, *a.reply, SMFIS_REJECT) : SMFIS_REJECT;
    case MilterAction::Status::kTempfail:
      return a.reply ? setReply(ctx, *a.reply, SMFIS_TEMPFAIL) : SMFIS_TEMPFAIL;
  }
  for (const MilterHeaderOp& op : a.headerOps) {
    auto* name = const_cast<char*>(op.name.c_str());
    if (op.kind == MilterHeaderOp::Kind::kAdd) {
      smfi_addheader(ctx, name, const_cast<char*>(op.value.c_str()));
    } else {
      smfi_chgheader(ctx, name, op.index,
                     op.value.empty() ? nullptr : const_cast<char*>(op.value.c_str()));
    }
  }
  return SMFIS_CONTINUE;
}

// libmilter's callback signatures take char*, not const char*.
sfsistat onConnect(SMFICTX* ctx, char* hostname,  // NOLINT(readability-non-const-parameter)
                   _SOCK_ADDR* hostaddr) {
  std::shared_ptr<Shared> shared;
  {
    const std::lock_guard lock(gSharedMutex);
    shared = gShared;
  }
  if (!shared) return SMFIS_TEMPFAIL;
  auto conn = std::make_unique<Conn>();
  conn->shared = shared;
  conn->key = shared->nextKey.fetch_add(1);
  const bool draining = shared->draining.load();
  conn->admitted = !draining && shared->gate.enter();
  Conn* c = conn.release();
  smfi_setpriv(ctx, c);
  if (draining) {
    shared->bridge->post(
        [] { spdlog::info("milter event=milter-refused code=421 reason=\"shutting down\""); });
    return setReply(ctx, shutdownReply(), SMFIS_TEMPFAIL);
  }
  if (!c->admitted) {
    shared->bridge->post([shared] {
      spdlog::warn("milter event=milter-busy sessions={} reason=\"milter.max_sessions reached\"",
                   shared->gate.active());
    });
    return setReply(ctx, Reply::transient(451, "4.3.2", "Too busy, please try again later"),
                    SMFIS_TEMPFAIL);
  }
  MilterConnectInfo info;
  info.name = hostname == nullptr ? "" : hostname;
  info.ptr = macro(ctx, "{client_ptr}");
  info.address = macro(ctx, "{client_addr}");
  if (hostaddr != nullptr && (hostaddr->sa_family == AF_INET || hostaddr->sa_family == AF_INET6)) {
    char text[INET6_ADDRSTRLEN] = {};
    if (hostaddr->sa_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(hostaddr);
      inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
      info.port = ntohs(in->sin_port);
    } else {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(hostaddr);
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      info.port = ntohs(in6->sin6_port);
      info.ipv6 = true;
    }
    if (info.address.empty()) info.address = text;
  }
  if (info.address.empty()) info.address = "unknown";  // the sendmail command (non_smtpd_milters)
  if (info.name.empty()) info.name = macro(ctx, "{client_name}");
  info.localAddress = macro(ctx, "{daemon_addr}");
  const std::string port = macro(ctx, "{daemon_port}");
  if (!port.empty() && port.size() <= 5 && std::all_of(port.begin(), port.end(), isDigit)) {
    info.localPort = static_cast<std::uint16_t>(std::stoi(port));
  }
  return ask(ctx, Stage::kConnect, [info](MilterSession& s, LoopBridge::Completion done) {
    s.connect(info, std::move(done));
  });
}

sfsistat onHelo(SMFICTX* ctx, char* helo) {  // NOLINT(readability-non-const-parameter)
  const std::string h = helo == nullptr ? "" : sanitizeText(helo, 255);
  const MilterMacros m = macros(ctx);
  return ask(ctx, Stage::kHelo, [h, m](MilterSession& s, LoopBridge::Completion done) {
    s.helo(h, m, std::move(done));
  });
}

sfsistat onEnvFrom(SMFICTX* ctx, char** argv) {
  if (Conn* c = connOf(ctx)) {
    c->headers.clear();
    c->headerBytes = 0;
    c->body.clear();
    c->bodySize = 0;
  }
  const auto a = args(argv);
  const MilterMacros m = macros(ctx);
  return ask(ctx, Stage::kMailFrom, [a, m](MilterSession& s, LoopBridge::Completion done) {
    s.mailFrom(a, m, std::move(done));
  });
}

sfsistat onEnvRcpt(SMFICTX* ctx, char** argv) {
  const auto a = args(argv);
  const std::string q = macro(ctx, "i");
  return ask(ctx, Stage::kRcptTo, [a, q](MilterSession& s, LoopBridge::Completion done) {
    s.noteQueueId(q);
    s.rcptTo(a, std::move(done));
  });
}

sfsistat onData(SMFICTX* ctx) {
  return ask(ctx, Stage::kData,
             [](MilterSession& s, LoopBridge::Completion done) { s.data(std::move(done)); });
}

sfsistat onHeader(SMFICTX* ctx, char* name, char* value) {
  Conn* c = connOf(ctx);
  if (c == nullptr || !c->admitted) return SMFIS_TEMPFAIL;
  const std::size_t n = std::strlen(name) + std::strlen(value) + 4;
  c->headerBytes += n;
  // Bounded like the proxy's spool: what is over the limit is not kept (the size still counts).
  if (c->headers.size() < kMaxHeaderFields && c->headerBytes <= c->shared->maxMessage) {
    c->headers.push_back({name, value});
  }
  return SMFIS_CONTINUE;
}

sfsistat onEoh(SMFICTX* ctx) {
  Conn* c = connOf(ctx);
  if (c == nullptr || !c->admitted) return SMFIS_TEMPFAIL;
  const std::string q = macro(ctx, "i");
  return ask(ctx, Stage::kEndOfHeaders,
             [headers = c->headers, q](MilterSession& s, LoopBridge::Completion done) {
               s.noteQueueId(q);
               s.endOfHeaders(headers, std::move(done));
             });
}

sfsistat onBody(SMFICTX* ctx, unsigned char* bytes, size_t len) {
  Conn* c = connOf(ctx);
  if (c == nullptr || !c->admitted) return SMFIS_TEMPFAIL;
  c->bodySize += len;
  const std::uint64_t room = c->shared->maxMessage > c->headerBytes + c->body.size()
                                 ? c->shared->maxMessage - c->headerBytes - c->body.size()
                                 : 0;
  c->body.append(reinterpret_cast<const char*>(bytes), std::min<std::uint64_t>(len, room));
  return SMFIS_CONTINUE;
}

sfsistat onEom(SMFICTX* ctx) {
  Conn* c = connOf(ctx);
  if (c == nullptr || !c->admitted) return SMFIS_TEMPFAIL;
  std::string body = std::move(c->body);
  c->body.clear();
  const std::uint64_t size = c->bodySize;
  const std::string q = macro(ctx, "i");
  return ask(ctx, Stage::kEndOfMessage,
             [body = std::move(body), size, q](MilterSession& s, LoopBridge::Completion done) {
               s.noteQueueId(q);
               s.endOfMessage(body, size, std::move(done));
             });
}

sfsistat onAbort(SMFICTX* ctx) {
  if (Conn* c = connOf(ctx); c != nullptr && c->admitted) {
    c->shared->bridge->post([shared = c->shared, key = c->key] {
      if (MilterSession* s = shared->server->find(key)) s->abort();
    });
  }
  return SMFIS_CONTINUE;
}

sfsistat onClose(SMFICTX* ctx) {
  std::unique_ptr<Conn> c(connOf(ctx));
  smfi_setpriv(ctx, nullptr);
  if (!c) return SMFIS_CONTINUE;
  if (c->admitted) {
    c->shared->bridge->post([shared = c->shared, key = c->key] { shared->server->close(key); });
    c->shared->gate.leave();
  }
  return SMFIS_CONTINUE;
}

}  // namespace

MilterServer::MilterServer(Dispatcher& dispatcher, std::shared_ptr<const Config> config,
                           const FilterContext& context, SnapshotSource snapshot)
    : dispatcher_(dispatcher),
      config_(std::move(config)),
      context_(context),
      snapshot_(std::move(snapshot)) {}

MilterServer::~MilterServer() { stop(); }

MilterSession* MilterServer::find(std::uint64_t key) {
  auto it = sessions_.find(key);
  return it != sessions_.end() ? it->second.get() : nullptr;
}

MilterSession& MilterServer::open(std::uint64_t key) {
  auto s = std::make_unique<MilterSession>(dispatcher_, snapshot_ ? snapshot_() : config_, context_,
                                           newSessionId());
  MilterSession& ref = *s;
  if (draining_) ref.drain();  // admitted just before the drain began
  sessions_.emplace(key, std::move(s));
  return ref;
}

void MilterServer::close(std::uint64_t key) {
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return;
  it->second->close();
  // Possibly inside the chain's own callback: freed from the loop.
  dispatcher_.deferredDelete(std::move(it->second));
  sessions_.erase(it);
  if (draining_ && sessions_.empty() && drainedCallback_) {
    spdlog::info("event=milter-drained");
    drainedCallback_();
  }
}

void MilterServer::beginDrain(std::function<void()> drained) {
  if (!started_ || draining_) return;
  draining_ = true;
  drainedCallback_ = std::move(drained);
  {
    const std::lock_guard lock(gSharedMutex);
    if (gShared) gShared->draining.store(true);
  }
  spdlog::info("event=milter-drain sessions={}", sessions_.size());
  for (auto& [key, s] : sessions_) s->drain();
}

void MilterServer::drainDeadline() {
  if (!started_ || sessions_.empty()) return;
  spdlog::warn("event=milter-drain-deadline sessions={}", sessions_.size());
  {
    const std::lock_guard lock(gSharedMutex);
    if (gShared) gShared->shuttingDown.store(true);  // before the callers wake
  }
  // As stop(): every waiting callback is answered (421 now), later ones find the bridge closed.
  bridge_->close();
  for (auto& [key, s] : sessions_) s->close();
  sessions_.clear();
}

bool MilterServer::start(std::string* error) {
  bridge_ = std::make_shared<LoopBridge>(dispatcher_.base());
  static smfiDesc desc{};
  desc.xxfi_name = const_cast<char*>("portcullis");
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS;
  desc.xxfi_connect = onConnect;
  desc.xxfi_helo = onHelo;
  desc.xxfi_envfrom = onEnvFrom;
  desc.xxfi_envrcpt = onEnvRcpt;
  desc.xxfi_header = onHeader;
  desc.xxfi_eoh = onEoh;
  desc.xxfi_body = onBody;
  desc.xxfi_eom = onEom;
  desc.xxfi_abort = onAbort;
  desc.xxfi_close = onClose;
  desc.xxfi_data = onData;
  static std::string conn;  // libmilter keeps the pointer
  conn = config_->milter.listen;
  if (smfi_setconn(conn.data()) != MI_SUCCESS) {
    *error = "milter.listen: libmilter refuses \"" + conn + "\"";
    return false;
  }
  if (smfi_register(desc) != MI_SUCCESS) {
    *error = "milter: smfi_register failed";
    return false;
  }
  // Bind now, so that a bad address fails start-up rather than the milter thread later.
  const std::set<int> before = listeningTcpSockets();
  if (smfi_opensocket(true) != MI_SUCCESS) {
    *error = "milter.listen: cannot listen on \"" + conn + "\"";
    return false;
  }
  // Nagle's algorithm off on the MTA's connections. libmilter answers in small writes, some
  // back to back (at end-of-message each header change, then the verdict); with Nagle a write
  // waited for the MTA's delayed ACK of the one before. On one Postfix session over TCP that
  // was 10-16 msg/s against 34-48 over a unix socket, and 44-50 with TCP_NODELAY (README,
  // milter benchmark). libmilter gives no access to its descriptors: the listening socket is
  // the one smfi_opensocket added, and on Linux accepted sockets inherit TCP_NODELAY from it.
  for (const int fd : listeningTcpSockets()) {
    if (before.contains(fd)) continue;
    const int one = 1;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
      spdlog::warn("event=milter-nodelay result=failed error={}", logValue(std::strerror(errno)));
    }
  }
  if (conn.starts_with("unix:") && !setSocketAccess(conn.substr(5), config_->milter, error)) {
    return false;
  }
  {
    const std::lock_guard lock(gSharedMutex);
    gShared = std::make_shared<Shared>(bridge_, this, config_->milter.maxSessions,
                                       config_->milter.timeout, config_->limits.maxMessageSize);
  }
  // The milter's threads inherit this mask: the daemon's signals stay with the loop's thread.
  sigset_t blocked;
  sigset_t old;
  sigemptyset(&blocked);
  for (const int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1}) sigaddset(&blocked, sig);
  pthread_sigmask(SIG_BLOCK, &blocked, &old);
  mainDone_ = std::make_shared<std::atomic<bool>>(false);
  thread_ = std::thread([done = mainDone_] {
    (void)smfi_main();
    done->store(true);
  });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  started_ = true;
  spdlog::info("event=milter-listening address={} max_sessions={} timeout_ms={}", logValue(conn),
               config_->milter.maxSessions, config_->milter.timeout.count());
  return true;
}

void MilterServer::stop() {
  if (!started_) return;
  started_ = false;
  // First answer everything that waits (callbacks get "no answer": tempfail), then stop
  // accepting and join smfi_main. Connections libmilter still serves end on their own; their
  // callbacks find the bridge closed.
  bridge_->close();
  for (auto& [key, s] : sessions_) s->close();
  sessions_.clear();
  {
    const std::lock_guard lock(gSharedMutex);
    gShared.reset();
  }
  // smfi_stop() waits for the listener's lock, which the listener holds while it polls (up to
  // 5 s): stop from a helper thread and poke the listener until smfi_main has returned.
  std::thread stopper([] { smfi_stop(); });
  constexpr auto kPokeEvery = std::chrono::milliseconds(20);
  constexpr int kMaxPokes = 400;  // 8 s, past libmilter's own 5 s check
  for (int i = 0; i < kMaxPokes && !mainDone_->load(); ++i) {
    pokeListener(config_->milter.listen);
    std::this_thread::sleep_for(kPokeEvery);
  }
  stopper.join();
  if (thread_.joinable()) thread_.join();
  spdlog::info("event=milter-stopped");
}

}  // namespace portcullis

// libmilter's signal thread is parked here (see the top of the file), for good: it blocks the
// signals, so pause() never returns, and it never calls mi_stop_milters (which would race with
// smfi_main's clean-up of libmilter's mutexes at stop). The process's exit ends it.
extern "C" int sigwait(const sigset_t* __restrict set, int* __restrict sig) {
  using Real = int (*)(const sigset_t*, int*);
  if (!portcullis::isLibmilterSignalSet(set)) {
    static const auto real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "sigwait"));
    return real != nullptr ? real(set, sig) : EINVAL;
  }
  for (;;) ::pause();
}
