#pragma once
// Server: listeners, accept, connection limits, the upstream capability probe, signals and the
// SIGTERM drain. Owns every Session and frees closed ones from its own event (never inside a
// session's callback). Owns the services its sessions use (DNS resolver and cache, filter
// context, MTA pool). Single-threaded: everything runs on its event loop. With workers > 1 there
// is one Server per worker thread (proxy/server/workers.h); they share only the config snapshot,
// the stats and the ConnectionTable, and worker 0 takes the signals and passes them on.

#include <event2/event.h>
#include <event2/listener.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "portcullis/resolver.h"
#include "proxy/admin/status_page.h"
#include "proxy/base/event_util.h"
#include "proxy/chain/filter_services.h"
#include "proxy/config/config.h"
#include "proxy/net/listener.h"
#include "proxy/net/stream.h"
#include "proxy/net/tls.h"
#include "proxy/relay/session.h"
#include "proxy/relay/upstream.h"
#include "proxy/server/connection_table.h"
#include "proxy/services/dns/dns_resolver.h"

namespace portcullis {

// The TLS settings of the config, for the listeners and for the connection to the MTA: built
// here for the server and for --check-config alike, so both load exactly the same files.
TlsServerSettings serverTlsSettings(const Config& config);
TlsClientSettings upstreamTlsSettings(const Config& config);

// Builds the next config snapshot for a reload (main: the start-up loader and checks on the
// same file). Null, with `error` as "key: message", when the file is broken.
using ConfigSource = std::function<std::shared_ptr<const Config>(std::string* error)>;

// What a reload would change, worked out before anything is touched (pure; unit-tested).
struct ReloadPlan {
  std::vector<std::string> changed;       // top-level keys that take effect ("filters,limits")
  std::vector<std::string> needsRestart;  // keys changed in the file that keep their old value
  std::vector<std::size_t> added;         // indexes into next->listeners to bind
  std::vector<std::size_t> removed;       // indexes into the running listeners to close
  std::vector<std::pair<std::size_t, std::size_t>> kept;  // running index -> next index
  // The snapshot to run: the file's, with every needs-restart key at its running value.
  std::shared_ptr<const Config> next;
};
// Settings that cannot change without a restart (README "Reload"): user, group, pid_file,
// admin.listen, spool.directory, log.*, dns.servers/timeout/attempts, plugins.
ReloadPlan planReload(const Config& running, const Config& fresh);

// Something besides the listeners' sessions that the SIGTERM drain waits for (the milter).
// Loop thread only.
class DrainParticipant {
 public:
  virtual ~DrainParticipant() = default;
  // The drain has begun: take no new work, let what is in flight finish, and call `drained`
  // once nothing is left (possibly never: then drainDeadline() comes).
  virtual void beginDrain(std::function<void()> drained) = 0;
  // timeouts.shutdown has passed: end what is left now (tempfail it).
  virtual void drainDeadline() = 0;
  virtual bool drained() const = 0;
};

// A socket worker 0 bound for another worker's added listener during a reload, by address.
struct BoundListener {
  SocketAddress address;
  ListeningSocket socket;
};
using BoundListeners = std::vector<BoundListener>;

// Where a Server stands among the workers (proxy/server/workers.h). The default: the only one.
struct WorkerRole {
  std::size_t index = 0;  // worker 0 takes the signals; main puts the admin and milter there
  std::size_t count = 1;
  ConnectionTable* connections = nullptr;  // shared by every worker; null: the server's own
  // Worker 0 of several (set by Workers): the drain and a reload, passed on to the others. A
  // reload's `done` runs on worker 0's loop once every other worker has swapped (or the bounded
  // wait ran out) with how many did not, so that `event=reload result=ok` means new sessions
  // on every worker get the new snapshot. Worker 0's loop goes on serving meanwhile. `bound`
  // holds, per worker, the sockets worker 0 bound for its added listeners ([0] is empty).
  std::function<void()> drainOthers;
  std::function<void(
      const std::shared_ptr<const Config>& next, const std::shared_ptr<const TlsContext>& serverTls,
      const std::shared_ptr<const TlsContext>& clientTls, std::vector<BoundListeners> bound,
      std::function<void(std::size_t lagging)> done)>
      reloadOthers;
};

class Server final : public SessionHost {
 public:
  Server(Dispatcher& dispatcher, std::shared_ptr<const Config> config, WorkerRole role = {});
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listener and starts the probe and signal handlers. False, with `error`, when a
  // listener cannot be bound or the resolver cannot be built.
  [[nodiscard]] bool start(std::string* error);
  // SIGTERM: stop accepting, let sessions finish until timeouts.shutdown, then 421 the rest.
  void beginDrain();
  // `p` (which must outlive the loop) is drained with the sessions: the process exits when
  // both are done, or at the same deadline.
  void addDrainParticipant(DrainParticipant* p) { participants_.push_back(p); }

  std::size_t sessionCount() const { return sessions_.size(); }
  std::size_t pooledUpstreams() const { return pool_.size(); }
  // The MTA answered the last probe (false until the first one has).
  bool upstreamAnswered() const { return probeAnswered_; }
  bool draining() const { return draining_; }
  // For the admin endpoint: the resolver's counters (zeros before start()), and what /status
  // shows of each live session.
  DnsStats dnsStats() const { return dns_ != nullptr ? dns_->stats() : DnsStats{}; }
  std::vector<LiveSession> liveSessions() const;

  // SessionHost.
  Dispatcher& dispatcher() override { return dispatcher_; }
  std::unique_ptr<UpstreamConnection> newUpstream(const UpstreamSettings& settings,
                                                  std::string sessionId) override;
  const UpstreamCapabilities& upstreamCapabilities() const override { return caps_; }
  void learnUpstreamCapabilities(const UpstreamCapabilities& caps) override;
  void upstreamReached(bool ok) override;
  const FilterContext& filterContext() const override { return context_; }
  Resolver* resolver() override { return resolver_.get(); }
  void sessionClosed(Session* session) override;
  bool upstreamPending() const override {
    return !caps_.known && probe_ != nullptr && !probeFailing_;
  }
  void whenUpstreamKnown(Session* session, std::function<void()> ready) override;
  std::unique_ptr<UpstreamConnection> takeUpstream() override;
  void returnUpstream(std::unique_ptr<UpstreamConnection> upstream) override;
  std::shared_ptr<const TlsContext> serverTls() const override { return serverTls_; }
  std::shared_ptr<const TlsContext> clientTls() const override { return clientTls_; }
  bool rekeyClient(const std::string& before, const std::string& after) override;

  // SIGHUP: build the next snapshot with `source` and swap it in (reload()).
  void setConfigSource(ConfigSource source) { configSource_ = std::move(source); }
  // Swaps in `fresh` (minus the needs-restart keys): TLS contexts rebuilt from their files,
  // added listeners bound, removed ones closed, unchanged ones kept (same socket, no refused
  // connection). New sessions use the new snapshot; sessions in flight keep theirs. All or
  // nothing: on error (a listener that cannot be bound, a TLS file) nothing changes. Logs
  // event=reload either way.
  bool reload(const std::shared_ptr<const Config>& fresh, std::string* error);
  // Another worker's side of a reload: worker 0 planned it, built the TLS contexts and bound
  // this worker's sockets for the added listeners (`bound`); this swaps the same snapshot in on
  // this loop (its own listeners diffed). Logged at debug; a failure (none is expected: the
  // sockets are bound already) is an error line naming the worker.
  bool follow(const std::shared_ptr<const Config>& next,
              std::shared_ptr<const TlsContext> serverTls,
              std::shared_ptr<const TlsContext> clientTls, BoundListeners bound);
  std::size_t workerIndex() const { return role_.index; }
  std::string_view logTag() const override { return workerTag_; }
  const Config& config() const { return *config_; }
  // The snapshot new sessions get (loop thread): the milter's sessions take it too.
  std::shared_ptr<const Config> snapshot() const { return config_; }

 private:
  static void onSignal(evutil_socket_t sig, short, void* self);

  struct ListenerContext {
    Server* server;
    const ListenerConfig* config;
  };
  // The per-IP limit's key for a client address (limits.ipv6_prefix_length).
  std::string countKey(const std::string& address) const;
  void accept(evutil_socket_t fd, const SocketAddress& peer, const ListenerConfig& listener);
  // accept() failed for want of descriptors (EMFILE, ENFILE) or memory: turn the clients
  // waiting in the backlog away with a 421 through the spare descriptor, stop accepting for
  // kAcceptBackoff and log once per episode, never per attempt.
  void pauseAccepting(int err);
  void resumeAccepting();
  void retire(std::unique_ptr<UpstreamConnection> upstream);  // frees it from the loop
  // A reload's listeners, bound before anything changes: the added ones (the rest of the
  // slots are filled from the running ones at commit).
  struct NewListeners {
    std::vector<std::unique_ptr<ListenerContext>> contexts;
    std::vector<std::unique_ptr<Listener>> listeners;
  };
  // Binds the listeners `plan` adds (taking the sockets in `bound`, when it has one for the
  // address, as they are); false, with nothing changed, when one cannot be bound.
  bool bindAdded(const ReloadPlan& plan, BoundListeners* bound, NewListeners* out,
                 std::string* error);
  // Worker 0 of several: every other worker's sockets for the listeners `plan` adds.
  bool bindForOthers(const ReloadPlan& plan, std::vector<BoundListeners>* out,
                     std::string* error) const;
  // The swap of reload() and follow(), which cannot fail: the new snapshot, listeners and TLS
  // contexts in. The addresses added and removed, for the log.
  void commit(const ReloadPlan& plan, NewListeners prepared,
              std::shared_ptr<const TlsContext> serverTls,
              std::shared_ptr<const TlsContext> clientTls, std::vector<std::string>* added,
              std::vector<std::string>* removed);
  static bool buildTls(const Config& config, std::shared_ptr<const TlsContext>* server,
                       std::shared_ptr<const TlsContext>* client, std::string* error);
  // Binds one listener (or adopts `bound`, a socket bound for it already); null with `error`
  // when bind() refuses.
  std::unique_ptr<Listener> bindListener(const ListenerConfig& l, ListenerContext* context,
                                         ListeningSocket bound, std::string* error);
  void logListening(const ListenerConfig& l) const;
  void reloadFromSource();
  void probe();
  bool ipv6ClientsPossible() const;
  void checkIpv6Xclient();
  void maybeExit();
  void expirePool();

  Dispatcher& dispatcher_;
  event_base* base_;
  std::shared_ptr<const Config> config_;
  WorkerRole role_;
  std::string workerTag_;  // " worker=N" with workers > 1, else empty
  ConnectionTable ownConnections_;
  ConnectionTable& connections_;  // role_.connections, or ownConnections_
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<ListenerContext>> listenerContexts_;
  std::shared_ptr<const TlsContext> serverTls_;
  std::shared_ptr<const TlsContext> clientTls_;
  std::unique_ptr<Resolver> resolver_;
  const DnsResolver* dns_ = nullptr;  // resolver_, for its counters
  FilterServices services_;
  FilterContext context_;
  std::unordered_map<Session*, std::unique_ptr<Session>> sessions_;
  std::vector<EventPtr> signals_;
  Timer drainTimer_;
  Timer exitTimer_;
  Timer probeTimer_;
  UpstreamCapabilities caps_;
  UpstreamSettings probeSettings_;
  std::unique_ptr<UpstreamConnection> probe_;
  std::unique_ptr<UpstreamConnection> ipv6Probe_;
  bool ipv6Checked_ = false;
  struct Pooled {
    std::unique_ptr<UpstreamConnection> upstream;
    std::chrono::steady_clock::time_point since;
  };
  std::vector<Pooled> pool_;
  Timer poolTimer_;
  // Out of descriptors: one kept open so a waiting client can still be accepted and told 421.
  int spareFd_ = -1;
  Timer acceptTimer_;
  struct AcceptPause {
    bool active = false;  // an episode: from the first failed accept to the next good one
    std::chrono::steady_clock::time_point since, lastLog;
    std::uint64_t backoffs = 0, turnedAway = 0;
  } acceptPause_;
  bool probeFailing_ = false;
  bool probeAnswered_ = false;
  // Sessions whose EHLO waits for the first probe (whenUpstreamKnown), in arrival order.
  std::vector<std::pair<Session*, std::function<void()>>> capsWaiters_;
  void wakeCapsWaiters();
  // The MTA as sessions and the probe find it: unreachable since, and how many attempts failed.
  std::optional<Dispatcher::Clock::time_point> upstreamDownSince_;
  std::uint64_t upstreamFailures_ = 0;
  bool draining_ = false;
  std::vector<DrainParticipant*> participants_;
  ConfigSource configSource_;
};

}  // namespace portcullis
