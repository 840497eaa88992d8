// Server. See server.h.

#include "proxy/server/server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "proxy/base/log.h"
#include "proxy/base/reference.h"
#include "proxy/config/config_print.h"
#include "proxy/server/sd_notify.h"
#include "proxy/services/dns/dns_resolver.h"

namespace portcullis {
namespace {

constexpr std::chrono::milliseconds kAcceptBackoff{250};

// Tells systemd (Type=notify) where the daemon stands; a failure is logged, never fatal.
void notifySystemd(const char* state) {
  std::string error;
  if (!sdNotify(state, &error)) {
    spdlog::warn("event=sd-notify result=failed error={}", logValue(error));
  }
}
constexpr std::chrono::seconds kAcceptPauseLogEvery{10};
constexpr int kMaxTurnedAwayPerBackoff = 64;  // per listener: bounded work per back-off
constexpr std::string_view kBusy421 = "421 4.3.2 Error: server too busy, try again later\r\n";

int openSpareDescriptor() { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }

// Whether `address` can be bound without SO_REUSEPORT (SO_REUSEADDR, as the listener): not
// while any other socket listens there.
std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}

std::string adminText(const Config& c) { return c.admin.listen ? c.admin.listen->toString() : ""; }

std::string sectionText(const Config& c, std::string_view key) {
  for (const auto& s : configSections(c)) {
    if (s.key == key) return s.yaml;
  }
  return {};
}

}  // namespace

ReloadPlan planReload(const Config& running, const Config& fresh) {
  ReloadPlan plan;
  auto next = std::make_shared<Config>(fresh);
  // Each of these is used once, at start-up (bound, opened, looked up, dlopen'ed, or handed
  // to the unprivileged user), or keys state that lives across sessions (the per-IP counts).
  const auto keep = [&](const char* key, bool differs, const auto& restore) {
    if (!differs) return;
    plan.needsRestart.emplace_back(key);
    restore();
  };
  keep("user", running.process.user != next->process.user,
       [&] { next->process.user = running.process.user; });
  keep("group", running.process.group != next->process.group,
       [&] { next->process.group = running.process.group; });
  keep("pid_file", running.process.pidFile != next->process.pidFile,
       [&] { next->process.pidFile = running.process.pidFile; });
  // The worker threads and their listeners are made once, at start-up.
  keep("workers", sectionText(running, "workers") != sectionText(*next, "workers"), [&] {
    next->process.workers = running.process.workers;
    next->process.workersAuto = running.process.workersAuto;
  });
  keep("admin.listen", adminText(running) != adminText(*next),
       [&] { next->admin = running.admin; });
  // libmilter is set up once per process (smfi_register, smfi_setconn, smfi_main).
  keep("milter", sectionText(running, "milter") != sectionText(*next, "milter"),
       [&] { next->milter = running.milter; });
  keep("spool.directory", running.spool.directory != next->spool.directory,
       [&] { next->spool.directory = running.spool.directory; });
  keep("log", sectionText(running, "log") != sectionText(*next, "log"),
       [&] { next->log = running.log; });
  keep("dns.servers", running.dns.servers != next->dns.servers,
       [&] { next->dns.servers = running.dns.servers; });
  keep("dns.timeout", running.dns.timeout != next->dns.timeout,
       [&] { next->dns.timeout = running.dns.timeout; });
  keep("dns.attempts", running.dns.attempts != next->dns.attempts,
       [&] { next->dns.attempts = running.dns.attempts; });
  keep("limits.ipv6_prefix_length",
       running.limits.ipv6PrefixLength != next->limits.ipv6PrefixLength,
       [&] { next->limits.ipv6PrefixLength = running.limits.ipv6PrefixLength; });
  keep("plugins", sectionText(running, "plugins") != sectionText(*next, "plugins"),
       [&] { next->plugins = running.plugins; });
  plan.changed = changedSections(running, *next);

  // A listener is the same one when its address is (its tls and proxy_protocol options may
  // change: they apply to the connections it accepts from now on).
  std::vector<bool> matched(running.listeners.size(), false);
  for (std::size_t j = 0; j < next->listeners.size(); ++j) {
    const std::string address = next->listeners[j].address.toString();
    bool found = false;
    for (std::size_t i = 0; i < running.listeners.size() && !found; ++i) {
      if (!matched[i] && running.listeners[i].address.toString() == address) {
        matched[i] = found = true;
        plan.kept.emplace_back(i, j);
      }
    }
    if (!found) plan.added.push_back(j);
  }
  for (std::size_t i = 0; i < matched.size(); ++i) {
    if (!matched[i]) plan.removed.push_back(i);
  }
  plan.next = std::move(next);
  return plan;
}

TlsServerSettings serverTlsSettings(const Config& config) {
  TlsServerSettings t;
  t.cert = config.tls.cert;
  t.key = config.tls.key;
  t.ciphers = config.tls.ciphers;
  t.ciphersuites = config.tls.ciphersuites;
  t.minVersion = tlsVersionFromName(config.tls.minVersion);
  return t;
}

TlsClientSettings upstreamTlsSettings(const Config& config) {
  TlsClientSettings c;
  c.verify = config.upstream.tlsVerify;
  c.caFile = config.upstream.caFile;
  c.name = config.upstream.tlsName;
  return c;
}

Server::Server(Dispatcher& dispatcher, std::shared_ptr<const Config> config, WorkerRole role)
    : dispatcher_(dispatcher),
      base_(dispatcher.base()),
      config_(std::move(config)),
      role_(std::move(role)),
      workerTag_(role_.count > 1 ? " worker=" + std::to_string(role_.index) : ""),
      connections_(role_.connections != nullptr ? *role_.connections : ownConnections_),
      drainTimer_(dispatcher,
                  [this] {
                    spdlog::warn("event=drain-deadline sessions={}{}", sessions_.size(),
                                 workerTag_);
                    for (auto& [ptr, s] : sessions_) s->drain(true);
                    for (DrainParticipant* p : participants_) p->drainDeadline();
                    exitTimer_.start(std::chrono::milliseconds(5000));  // last resort
                    maybeExit();
                  }),
      exitTimer_(dispatcher, [this] { event_base_loopexit(base_, nullptr); }),
      probeTimer_(dispatcher, [this] { probe(); }),
      poolTimer_(dispatcher, [this] { expirePool(); }),
      spareFd_(openSpareDescriptor()),
      acceptTimer_(dispatcher, [this] { resumeAccepting(); }) {
  probeSettings_.address = config_->upstream.address;
  probeSettings_.identity = IdentityMode::kNone;
  probeSettings_.hostname = config_->hostname;
  probeSettings_.connectTimeout = config_->upstream.connectTimeout;
  probeSettings_.commandTimeout = config_->upstream.connectTimeout;
}

Server::~Server() {
  sessions_.clear();
  probe_.reset();
  for (auto& p : pool_) p.upstream->quit();
  pool_.clear();
  if (spareFd_ >= 0) ::close(spareFd_);
}

void Server::retire(std::unique_ptr<UpstreamConnection> upstream) {
  // Possibly inside its own callback: freed from the loop.
  dispatcher_.deferredDelete(std::move(upstream));
}

std::unique_ptr<UpstreamConnection> Server::newUpstream(const UpstreamSettings& settings,
                                                        std::string sessionId) {
  return std::make_unique<Upstream>(dispatcher_, settings, std::move(sessionId));
}

std::unique_ptr<UpstreamConnection> Server::takeUpstream() {
  while (!pool_.empty()) {
    Pooled p = std::move(pool_.back());
    pool_.pop_back();
    if (p.upstream->reusable(config_->upstream.poolMaxReuse)) {
      p.upstream->markReused();
      return std::move(p.upstream);
    }
    retire(std::move(p.upstream));  // closed while idle: free from the loop
  }
  return nullptr;
}

void Server::returnUpstream(std::unique_ptr<UpstreamConnection> upstream) {
  if (draining_ || pool_.size() >= poolLimit(*config_) ||
      !upstream->reusable(config_->upstream.poolMaxReuse)) {
    upstream->quit();
    retire(std::move(upstream));
    return;
  }
  upstream->setSessionId("pool");
  upstream->setIdleFailureHandler([](const std::string&) {});  // reusable() turns false
  pool_.push_back({std::move(upstream), std::chrono::steady_clock::now()});
  if (!poolTimer_.armed()) poolTimer_.start(config_->upstream.poolIdleTimeout);
}

void Server::expirePool() {
  // Oldest first; Postfix would drop them at its own idle timeout anyway.
  const auto now = std::chrono::steady_clock::now();
  std::vector<Pooled> keep;
  for (auto& p : pool_) {
    if (now - p.since >= config_->upstream.poolIdleTimeout ||
        !p.upstream->reusable(config_->upstream.poolMaxReuse)) {
      p.upstream->quit();
      retire(std::move(p.upstream));
    } else {
      keep.push_back(std::move(p));
    }
  }
  pool_.swap(keep);
  if (!pool_.empty()) poolTimer_.start(config_->upstream.poolIdleTimeout / 2);
}

bool Server::start(std::string* error) {
  DnsSettings dns;
  dns.servers = config_->dns.servers;
  if (dns.servers.empty()) dns.servers = DnsResolver::serversFromResolvConf();
  dns.timeout = config_->dns.timeout;
  dns.attempts = config_->dns.attempts;
  std::string dnsError;
  std::unique_ptr<DnsResolver> resolver = DnsResolver::create(dispatcher_, dns, &dnsError);
  dns_ = resolver.get();
  resolver_ = std::move(resolver);
  if (!resolver_) {
    *error = "dns.servers: " + dnsError;
    return false;
  }
  context_.resolver = resolver_.get();
  services_.install(dispatcher_, context_);

  if (!buildTls(*config_, &serverTls_, &clientTls_, error)) return false;

  // Signals go to worker 0 only, which passes the drain and reloads on (WorkerRole). They are
  // caught before the first listener binds: a client (or a supervisor's health check) may
  // connect from then on, and a SIGTERM then must drain, not kill by default action. It waits
  // in libevent until the loop runs.
  for (const int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) {
    if (role_.index != 0) break;
    signals_.emplace_back(evsignal_new(base_, sig, &Server::onSignal, this));
    event_add(signals_.back().get(), nullptr);
  }
  for (const ListenerConfig& l : config_->listeners) {
    listenerContexts_.push_back(std::make_unique<ListenerContext>(ListenerContext{this, &l}));
    auto listener = bindListener(l, listenerContexts_.back().get(), {}, error);
    if (!listener) return false;
    listeners_.push_back(std::move(listener));
    logListening(l);
  }
  // Milter only (listen: []): no session ever goes to the MTA, so nothing to probe.
  if (!config_->listeners.empty()) probe();
  return true;
}

bool Server::buildTls(const Config& config, std::shared_ptr<const TlsContext>* server,
                      std::shared_ptr<const TlsContext>* client, std::string* error) {
  // Read from the files every time: a reload is also how a renewed certificate is picked up.
  std::shared_ptr<const TlsContext> s;
  std::shared_ptr<const TlsContext> c;
  if (config.tls.enabled()) {
    s = TlsContext::server(serverTlsSettings(config), error);
    if (!s) return false;
  }
  if (config.upstream.tls != UpstreamTls::kNone) {
    c = TlsContext::client(upstreamTlsSettings(config), error);
    if (!c) return false;
  }
  *server = std::move(s);
  *client = std::move(c);
  return true;
}

std::unique_ptr<Listener> Server::bindListener(const ListenerConfig& l, ListenerContext* context,
                                               ListeningSocket bound, std::string* error) {
  if (!bound) {
    Listener::Options options;
    if (role_.count > 1) {
      // Every worker binds the address (SO_REUSEPORT: the kernel spreads new connections over
      // them). Worker 0 first binds it without, so that a port held by anyone else, another
      // portcullis included, still fails here with EADDRINUSE instead of being shared.
      if (role_.index == 0) {
        if (const int err = bindError(l.address); err != 0) {
          *error = "listen " + l.text + ": " + std::strerror(err);
          return nullptr;
        }
      }
      options.reusePort = true;
    }
    bound = ListeningSocket::bind(l.address, options, error);
    if (!bound) {
      *error = "listen " + l.text + ": " + *error;
      return nullptr;
    }
  }
  auto listener = Listener::adopt(
      base_, std::move(bound),
      [context](int fd, const sockaddr* addr, socklen_t len) {
        const auto peer = fromSockaddr(addr, len);
        if (!peer) {
          ::close(fd);
          return;
        }
        context->server->accept(fd, *peer, *context->config);
      },
      // EMFILE, ENFILE, ENOBUFS, ENOMEM would fail again at once while the client waits in the
      // backlog, so the listener would spin: back off instead.
      [server = this](int err) { server->pauseAccepting(err); }, error);
  if (!listener) {
    *error = "listen " + l.text + ": " + *error;
    return nullptr;
  }
  setNoDelay(listener->fd());  // inherited by every accepted socket
  return listener;
}

void Server::logListening(const ListenerConfig& l) const {
  spdlog::info("event=listening address={} tls={} proxy_protocol={} upstream={} identity={}{}",
               l.address.toString(),
               l.tls == TlsListenMode::kImplicit                   ? "implicit"
               : (l.tls == TlsListenMode::kStartTls && serverTls_) ? "starttls"
                                                                   : "none",
               l.proxyProtocol ? "yes" : "no", config_->upstream.address.toString(),
               identityModeName(config_->upstream.identity), workerTag_);
}

void Server::reloadFromSource() {
  std::string error;
  std::shared_ptr<const Config> fresh;
  if (draining_) {
    error = "shutting down (SIGTERM): not reloading";
  } else if (!configSource_) {
    error = "no configuration source";
  } else {
    fresh = configSource_(&error);
  }
  if (!fresh) {
    spdlog::error("event=reload result=failed error={} detail=\"keeping the running config\"",
                  logValue(error, 1024));
    return;
  }
  reload(fresh, &error);
}

bool Server::reload(const std::shared_ptr<const Config>& fresh, std::string* error) {
  const auto fail = [&] {
    spdlog::error("event=reload result=failed error={} detail=\"keeping the running config\"",
                  logValue(*error, 1024));
    return false;
  };
  if (draining_) {
    *error = "shutting down (SIGTERM): not reloading";
    return fail();
  }
  notifySystemd("RELOADING=1");
  ReloadPlan plan = planReload(*config_, *fresh);
  std::shared_ptr<const TlsContext> serverTls;
  std::shared_ptr<const TlsContext> clientTls;
  std::vector<std::string> added;
  std::vector<std::string> removed;
  NewListeners prepared;
  // Every other worker's sockets too, before any worker commits: one that cannot be bound fails
  // the reload here, for all of them, not in that worker after the others have swapped.
  std::vector<BoundListeners> forOthers;
  if (!buildTls(*plan.next, &serverTls, &clientTls, error) ||
      !bindAdded(plan, nullptr, &prepared, error) ||
      (role_.reloadOthers && !bindForOthers(plan, &forOthers, error))) {
    notifySystemd("READY=1");
    return fail();
  }
  commit(plan, std::move(prepared), std::move(serverTls), std::move(clientTls), &added, &removed);
  if (!plan.needsRestart.empty()) {
    spdlog::warn(
        "event=reload-needs-restart keys={} detail=\"changed in the file; the running values "
        "stay until portcullis is restarted\"",
        logValue(joined(plan.needsRestart)));
  }
  // The summary, once every worker runs the new snapshot: the others swap the same snapshot and
  // the same TLS contexts in, each on its own loop, and answer on this one.
  auto summary = [this, config = config_, changed = joined(plan.changed), added = joined(added),
                  removed = joined(removed), kept = plan.kept.size(),
                  needsRestart = joined(plan.needsRestart)](std::size_t lagging) {
    spdlog::info(
        "event=reload result=ok config={} changed={} listeners_added={} listeners_removed={} "
        "listeners_kept={} needs_restart={}{}",
        logValue(config->sourcePath.empty() ? "(built-in defaults)" : config->sourcePath),
        logValue(changed), logValue(added), logValue(removed), kept, logValue(needsRestart),
        role_.count > 1 ? " workers=" + std::to_string(role_.count - lagging) + "/" +
                              std::to_string(role_.count)
                        : "");
    notifySystemd("READY=1");
  };
  if (role_.reloadOthers) {
    role_.reloadOthers(config_, serverTls_, clientTls_, std::move(forOthers), std::move(summary));
  } else {
    summary(0);
  }
  return true;
}

bool Server::bindAdded(const ReloadPlan& plan, BoundListeners* bound, NewListeners* out,
                       std::string* error) {
  // Bound before anything changes: if one cannot be bound, the ones bound just now close again
  // (with `out`) and the running config stays as it was.
  const Config& next = *plan.next;
  out->contexts.resize(next.listeners.size());
  out->listeners.resize(next.listeners.size());
  for (const std::size_t j : plan.added) {
    const ListenerConfig& l = next.listeners[j];
    out->contexts[j] = std::make_unique<ListenerContext>(ListenerContext{this, &l});
    ListeningSocket socket;
    if (bound != nullptr) {
      const std::string address = l.address.toString();
      for (BoundListener& b : *bound) {
        if (b.socket && b.address.toString() == address) socket = std::move(b.socket);
      }
    }
    out->listeners[j] = bindListener(l, out->contexts[j].get(), std::move(socket), error);
    if (!out->listeners[j]) {
      *error = "listen[" + std::to_string(j) + "]: " + *error;
      return false;
    }
  }
  return true;
}

bool Server::bindForOthers(const ReloadPlan& plan, std::vector<BoundListeners>* out,
                           std::string* error) const {
  out->resize(role_.count);
  for (std::size_t i = 1; i < role_.count; ++i) {
    for (const std::size_t j : plan.added) {
      const ListenerConfig& l = plan.next->listeners[j];
      ListeningSocket socket = ListeningSocket::bind(l.address, {.reusePort = true}, error);
      if (!socket) {
        *error = "listen[" + std::to_string(j) + "]: listen " + l.text + " (worker " +
                 std::to_string(i) + "): " + *error;
        return false;
      }
      (*out)[i].push_back({l.address, std::move(socket)});
    }
  }
  return true;
}

void Server::commit(const ReloadPlan& plan, NewListeners prepared,
                    std::shared_ptr<const TlsContext> serverTls,
                    std::shared_ptr<const TlsContext> clientTls, std::vector<std::string>* added,
                    std::vector<std::string>* removed) {
  const Config& next = *plan.next;
  std::vector<std::unique_ptr<ListenerContext>>& contexts = prepared.contexts;
  std::vector<std::unique_ptr<Listener>>& listeners = prepared.listeners;
  // A kept listener keeps its socket and its context object (the address libevent calls back
  // with); only the settings it points at change.
  for (const auto& [i, j] : plan.kept) {
    contexts[j] = std::move(listenerContexts_[i]);
    contexts[j]->config = &next.listeners[j];
    listeners[j] = std::move(listeners_[i]);
  }
  for (const std::size_t i : plan.removed) {
    removed->push_back(config_->listeners[i].address.toString());
    spdlog::info("event=listener-closed address={}{}", removed->back(), workerTag_);
  }
  const bool upstreamChanged = sectionText(*config_, "upstream") != sectionText(next, "upstream") ||
                               config_->hostname != next.hostname;
  listeners_ = std::move(listeners);  // closes the removed ones
  listenerContexts_ = std::move(contexts);
  config_ = plan.next;
  serverTls_ = std::move(serverTls);
  clientTls_ = std::move(clientTls);
  for (const std::size_t j : plan.added) {
    added->push_back(config_->listeners[j].address.toString());
    logListening(config_->listeners[j]);
  }
  probeSettings_.address = config_->upstream.address;
  probeSettings_.hostname = config_->hostname;
  probeSettings_.connectTimeout = config_->upstream.connectTimeout;
  probeSettings_.commandTimeout = config_->upstream.connectTimeout;
  if (upstreamChanged) {
    // Pooled connections were opened with the old settings (address, identity, TLS): quit them,
    // and learn what the (maybe different) MTA offers.
    for (auto& p : pool_) p.upstream->quit();
    pool_.clear();
    poolTimer_.stop();
    ipv6Checked_ = false;
    probe();
  }
}

bool Server::follow(const std::shared_ptr<const Config>& next,
                    std::shared_ptr<const TlsContext> serverTls,
                    std::shared_ptr<const TlsContext> clientTls, BoundListeners bound) {
  std::string error;
  std::vector<std::string> added;
  std::vector<std::string> removed;
  if (draining_) return false;
  ReloadPlan plan = planReload(*config_, *next);
  plan.next = next;  // the very snapshot worker 0 runs (its restart-only keys already kept)
  NewListeners prepared;
  if (!bindAdded(plan, &bound, &prepared, &error)) {
    spdlog::error(
        "event=reload result=failed{} error={} detail=\"this worker keeps the running config\"",
        workerTag_, logValue(error, 1024));
    return false;
  }
  commit(plan, std::move(prepared), std::move(serverTls), std::move(clientTls), &added, &removed);
  spdlog::debug("event=reload result=ok{} listeners_added={} listeners_removed={}", workerTag_,
                logValue(joined(added)), logValue(joined(removed)));
  return true;
}

void Server::onSignal(evutil_socket_t sig, short, void* self) {
  auto* s = static_cast<Server*>(self);
  if (sig == SIGUSR1) {
    // logrotate has moved the log file (deploy/logrotate/portcullis): open it again by name.
    // Here, on the loop, not in the signal handler: opening files is not async-signal-safe.
    std::string error;
    if (reopenLogs(&error)) {
      spdlog::info("event=log-reopen result=ok");
    } else {
      spdlog::error(
          "event=log-reopen result=failed error={} detail=\"still writing to the "
          "previous file\"",
          logValue(error));
    }
    return;
  }
  if (sig == SIGHUP) {
    // Here, on the loop: reading files and binding sockets are not async-signal-safe.
    s->reloadFromSource();
    return;
  }
  spdlog::info("event=signal signal={} action=drain sessions={}", sig == SIGTERM ? "TERM" : "INT",
               s->sessions_.size());
  s->beginDrain();
}

void Server::beginDrain() {
  if (draining_) return;
  draining_ = true;
  notifySystemd("STOPPING=1\nSTATUS=draining");
  acceptTimer_.stop();
  listeners_.clear();  // stop accepting at once
  probeTimer_.stop();
  for (auto& p : pool_) p.upstream->quit();
  pool_.clear();
  poolTimer_.stop();
  for (auto& [ptr, s] : sessions_) s->drain(false);
  for (DrainParticipant* p : participants_) p->beginDrain([this] { maybeExit(); });
  drainTimer_.start(config_->timeouts.shutdown);
  if (role_.drainOthers) role_.drainOthers();
  maybeExit();
}

void Server::maybeExit() {
  if (draining_ && sessions_.empty() &&
      std::all_of(participants_.begin(), participants_.end(),
                  [](const DrainParticipant* p) { return p->drained(); })) {
    spdlog::info("event=drained{}", workerTag_);
    event_base_loopexit(base_, nullptr);
  }
}

std::string Server::countKey(const std::string& address) const {
  return clientCountKey(address, config_->limits.ipv6PrefixLength);
}

bool Server::rekeyClient(const std::string& before, const std::string& after) {
  return connections_.rekey(countKey(before), countKey(after), config_->limits.maxConnectionsPerIp);
}

void Server::pauseAccepting(int err) {
  const auto now = std::chrono::steady_clock::now();
  int turnedAway = 0;
  if (spareFd_ >= 0) ::close(spareFd_);
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    const int lfd = listeners_[i]->fd();
    const bool tls = listenerContexts_[i]->config->tls == TlsListenMode::kImplicit;
    for (int n = 0; n < kMaxTurnedAwayPerBackoff; ++n) {
      const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;  // the backlog is empty (EAGAIN), or even one descriptor is too many
      // An implicit-TLS client would read a plaintext line as a broken handshake: just close.
      if (!tls) ::send(fd, kBusy421.data(), kBusy421.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(fd);
      ++turnedAway;
    }
    listeners_[i]->disable();
  }
  spareFd_ = openSpareDescriptor();
  AcceptPause& p = acceptPause_;
  const bool first = !p.active;
  if (first) p = AcceptPause{true, now, now, 0, 0};
  ++p.backoffs;
  p.turnedAway += static_cast<std::uint64_t>(turnedAway);
  if (first || now - p.lastLog >= kAcceptPauseLogEvery) {
    p.lastLog = now;
    spdlog::error(
        "event=accept-paused error={} sessions={} backoff_ms={} backoffs={} turned_away={} "
        "spare_fd={} detail=\"not accepting new connections until descriptors free up; raise "
        "the open-files limit or lower limits.max_connections\"",
        logValue(evutil_socket_error_to_string(err)), sessions_.size(), kAcceptBackoff.count(),
        p.backoffs, p.turnedAway, spareFd_ >= 0 ? "yes" : "no");
  }
  if (!draining_) acceptTimer_.start(kAcceptBackoff);
}

void Server::resumeAccepting() {
  // Listen again; the episode ends at the next accept that works (see accept()).
  for (auto& l : listeners_) l->enable();
}

void Server::accept(evutil_socket_t fd, const SocketAddress& peer, const ListenerConfig& listener) {
  if (acceptPause_.active) {
    const auto& p = acceptPause_;
    spdlog::warn("event=accept-resumed paused_ms={} backoffs={} turned_away={}",
                 std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - p.since)
                     .count(),
                 p.backoffs, p.turnedAway);
    acceptPause_.active = false;
  }
  const std::string ip = countKey(peer.host());  // an IPv6 client counts by its /64 (default)
  if (listener.proxyProtocol) {
    // Only a trusted load balancer may tell us who the client is (DESIGN invariant 3).
    bool trusted = false;
    for (const Cidr& c : config_->trustedProxies) trusted = trusted || c.contains(peer);
    if (!trusted) {
      spdlog::warn("event=proxy-refused source={} listener={} reason=\"not in trusted_proxies\"",
                   peer.toString(), listener.address.toString());
      ::close(fd);
      return;
    }
  }
  const char* refusal = nullptr;
  ConnectionTable::Admission admission;
  if (draining_) {
    refusal = "421 4.3.2 Service shutting down";
  } else {
    // Counted here if admitted, in the table every worker shares: the limits are exact.
    admission = connections_.admit(ip, config_->limits.maxConnections,
                                   config_->limits.maxConnectionsPerIp, !listener.proxyProtocol);
    if (admission.verdict == ConnectionTable::Verdict::kTooMany) {
      refusal = "421 4.7.0 Error: too many connections, try again later";
    } else if (admission.verdict == ConnectionTable::Verdict::kTooManyFromAddress) {
      refusal = "421 4.7.0 Error: too many connections from your address, try again later";
    }
  }
  if (refusal != nullptr) {
    // No session, no upstream connection: one line and close. The reference is on the
    // warning, as it is on a session's reject line.
    const std::string ref = config_->reply.reference ? newReference() : "";
    const std::string line =
        std::string(refusal) + (ref.empty() ? "" : " [ref=" + ref + "]") + "\r\n";
    spdlog::warn("event=connection-refused client={} reason={} sessions={} from_ip={}{}{}",
                 peer.toString(), logValue(refusal + 10), admission.total, admission.fromKey,
                 ref.empty() ? "" : " ref=" + ref, workerTag_);
    ::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(fd, SHUT_WR);
    ::close(fd);
    return;
  }
  // A listener on a specific address knows the local end already; only a wildcard one asks.
  SocketAddress local = listener.address;
  if (local.isWildcard()) {
    local.length = sizeof local.storage;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&local.storage), &local.length);
  }
  auto session = std::make_unique<Session>(*this, config_, listener,
                                           std::make_unique<Stream>(base_, fd), peer, local);
  Session* raw = session.get();
  sessions_.emplace(raw, std::move(session));
  raw->start();
}

std::vector<LiveSession> Server::liveSessions() const {
  const Dispatcher::Clock::time_point now = dispatcher_.now();
  std::vector<LiveSession> out;
  out.reserve(sessions_.size());
  for (const auto& [raw, session] : sessions_) {
    out.push_back(
        {session->id(), session->clientAddress(), session->helo(),
         std::string(stateName(session->state())),
         std::chrono::duration_cast<std::chrono::seconds>(now - session->started()).count()});
  }
  // Oldest first: the ones an admin looks for.
  std::sort(out.begin(), out.end(), [](const LiveSession& a, const LiveSession& b) {
    return a.ageSeconds != b.ageSeconds ? a.ageSeconds > b.ageSeconds : a.id < b.id;
  });
  return out;
}

void Server::sessionClosed(Session* session) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return;
  std::erase_if(capsWaiters_, [session](const auto& w) { return w.first == session; });
  const std::string ip = countKey(session->clientAddress());
  // Called from inside the session: freed from the loop, after this callback has returned.
  dispatcher_.deferredDelete(std::move(it->second));
  sessions_.erase(it);
  connections_.release(ip);
  maybeExit();
}

void Server::learnUpstreamCapabilities(const UpstreamCapabilities& caps) {
  caps_ = caps;
  wakeCapsWaiters();
}

void Server::whenUpstreamKnown(Session* session, std::function<void()> ready) {
  // Only the first probe is waited for (upstreamPending): after it, caps_ holds an answer, or
  // the MTA is down and the EHLO offer cannot wait on its return (a session's own connection
  // refreshes caps_).
  if (!upstreamPending()) {
    ready();
    return;
  }
  capsWaiters_.emplace_back(session, std::move(ready));
}

void Server::wakeCapsWaiters() {
  // In arrival order, the whole list taken at once (linear however many wait). A woken session
  // may close another one that waits (sessionClosed takes it out of sessions_ at once, and its
  // object is freed only from the loop): that one is skipped.
  std::vector<std::pair<Session*, std::function<void()>>> waking;
  waking.swap(capsWaiters_);
  for (auto& [session, ready] : waking) {
    if (sessions_.contains(session)) ready();
  }
}

void Server::upstreamReached(bool ok) {
  // Each failure is a warning where it happens (event=upstream-failure, upstream-probe); the
  // recovery is one info line, so that an admin reading at info sees the outage end.
  if (!ok) {
    if (!upstreamDownSince_) upstreamDownSince_ = dispatcher_.now();
    ++upstreamFailures_;
    return;
  }
  if (!upstreamDownSince_) return;
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(dispatcher_.now() - *upstreamDownSince_)
          .count();
  spdlog::info("event=upstream-recovered upstream={} down_for={}.{:03d}s failed_attempts={}{}",
               config_->upstream.address.toString(), ms / 1000, static_cast<int>(ms % 1000),
               upstreamFailures_, workerTag_);
  upstreamDownSince_.reset();
  upstreamFailures_ = 0;
}

void Server::probe() {
  // Learn what the MTA offers without waiting for the first client (the EHLO we advertise
  // depends on it), and refresh it now and then.
  if (probe_) {  // the last one has not finished: superseded, its result ignored
    retire(std::move(probe_));
    // An EHLO waits for one probe, not for a chain of them (probe_interval may be shorter than
    // the probe's own timeouts): it gets the offer for an MTA not known yet.
    wakeCapsWaiters();
  }
  probe_ = newUpstream(probeSettings_, "probe");
  UpstreamConnection* const self = probe_.get();
  probe_->open(XclientIdentity{}, [this, self](const UpstreamResult& r) {
    if (probe_.get() != self) return;
    if (r.ok()) {
      caps_ = probe_->capabilities();
      probeAnswered_ = true;
      upstreamReached(true);
      spdlog::debug("event=upstream-probe result=ok smtputf8={} 8bitmime={} xclient={}{}",
                    caps_.smtputf8, caps_.eightBitMime, caps_.xclient, workerTag_);
      const bool recovered = probeFailing_;
      if (config_->upstream.identity == IdentityMode::kXclient && !caps_.xclient) {
        spdlog::error(
            "event=upstream-probe problem=\"MTA does not offer XCLIENT to us; mail will be "
            "tempfailed (Postfix: smtpd_authorized_xclient_hosts)\"{}",
            workerTag_);
      } else if (config_->upstream.identity == IdentityMode::kXclient && ipv6ClientsPossible() &&
                 role_.index == 0 && (!ipv6Checked_ || recovered)) {
        // One check for the process: the MTA is the same for every worker.
        checkIpv6Xclient();  // once, and again whenever the MTA comes back (maybe reconfigured)
      }
      probe_->quit();
      probeFailing_ = false;
    } else {
      if (!probeFailing_) {
        spdlog::warn("event=upstream-probe result=failed failure={} detail={}{}",
                     upstreamFailureName(r.failure), logValue(r.detail), workerTag_);
      }
      probeFailing_ = true;
      probeAnswered_ = false;
      upstreamReached(r.failure == UpstreamFailure::kRefused ||
                      r.failure == UpstreamFailure::kIdentity);
    }
    retire(std::move(probe_));
    wakeCapsWaiters();  // with what was learned, or with the offer for an unknown MTA
  });
  if (!draining_) probeTimer_.start(config_->upstream.probeInterval);
}

bool Server::ipv6ClientsPossible() const {
  // An IPv4 listener never sees an IPv6 client (v4-mapped listen addresses are refused); an
  // IPv6 one does, and so does a PROXY listener, whose header may name either family.
  return std::ranges::any_of(config_->listeners, [](const ListenerConfig& l) {
    return l.proxyProtocol || l.address.family() == AF_INET6;
  });
}

void Server::checkIpv6Xclient() {
  // An MTA that takes XCLIENT may still refuse an IPv6 ADDR (Postfix with inet_protocols =
  // ipv4). Find out now rather than from the first IPv6 client's 451: pass a documentation
  // address (RFC 3849) on a connection of its own, then QUIT.
  ipv6Checked_ = true;
  if (ipv6Probe_) {
    retire(std::move(ipv6Probe_));
  }
  UpstreamSettings settings = probeSettings_;
  settings.identity = IdentityMode::kXclient;
  settings.tls = config_->upstream.tls;  // an identity goes only where a session's would
  settings.tlsContext = clientTls_;
  XclientIdentity id;
  id.name = "[UNAVAILABLE]";
  id.addr = "2001:db8::1";
  id.ipv6 = true;
  id.proto = "ESMTP";
  id.helo = config_->hostname;
  ipv6Probe_ = newUpstream(settings, "probe-ipv6");
  UpstreamConnection* const self = ipv6Probe_.get();
  ipv6Probe_->open(id, [this, self](const UpstreamResult& r) {
    if (ipv6Probe_.get() != self) return;  // superseded by a newer check
    if (r.ok()) {
      spdlog::debug("event=upstream-probe check=ipv6-xclient result=ok");
      ipv6Probe_->quit();
    } else if (r.failure == UpstreamFailure::kIdentity) {
      spdlog::error("event=upstream-probe check=ipv6-xclient problem={}", logValue(r.detail));
    } else if (r.failure == UpstreamFailure::kConnect || r.failure == UpstreamFailure::kClosed ||
               r.failure == UpstreamFailure::kTimeout) {
      ipv6Checked_ = false;  // the MTA went away meanwhile: check again on the next probe
    }                        // anything else (TLS, a refusal) every session meets too, and logs
    retire(std::move(ipv6Probe_));
  });
}

}  // namespace portcullis
