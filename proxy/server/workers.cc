// Workers. See workers.h.

#include "proxy/server/workers.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "proxy/base/log.h"

namespace portcullis {
namespace {

// How long worker 0 waits for the others: one pass of their loops is what it takes. A status
// query blocks worker 0's loop meanwhile; a reload does not, so it can afford to wait for a
// loop that is slow to come round (a long filter callback, a starved thread).
constexpr std::chrono::milliseconds kStatusWait{1000};
constexpr std::chrono::milliseconds kReloadWait{30'000};

// The answers of one collect(). A Ticket per worker counts down when its job is gone: run, or
// dropped unrun by a loop that stopped; so the waiter never waits on a job nobody will run.
template <typename T>
struct Gathering {
  std::mutex mutex;
  std::condition_variable done;
  std::size_t left = 0;
  std::vector<std::optional<T>> answers;
};

template <typename T>
struct Ticket {
  Ticket(std::shared_ptr<Gathering<T>> g, std::size_t i) : gathering(std::move(g)), index(i) {}
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;
  ~Ticket() {
    const std::lock_guard lock(gathering->mutex);
    --gathering->left;
    gathering->done.notify_all();
  }
  std::shared_ptr<Gathering<T>> gathering;
  std::size_t index;
};

}  // namespace

Workers::Workers(Dispatcher& dispatcher, const std::shared_ptr<const Config>& config)
    : primaryDispatcher_(dispatcher) {
  const std::size_t n = std::max<std::size_t>(config->process.workers, 1);
  for (std::size_t i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>();
    Dispatcher* d = &dispatcher;
    if (i > 0) {
      w->base.reset(event_base_new());
      w->ownDispatcher = std::make_unique<EventDispatcher>(w->base.get());
      d = w->ownDispatcher.get();
    }
    w->inbox = std::make_unique<LoopInbox>(d->base());
    WorkerRole role;
    role.index = i;
    role.count = n;
    role.connections = &connections_;
    if (i == 0 && n > 1) {
      role.drainOthers = [this] { drainOthers(); };
      role.reloadOthers = [this](const std::shared_ptr<const Config>& next,
                                 const std::shared_ptr<const TlsContext>& serverTls,
                                 const std::shared_ptr<const TlsContext>& clientTls,
                                 std::vector<BoundListeners> bound,
                                 std::function<void(std::size_t)> done) {
        reloadOthers(next, serverTls, clientTls, std::move(bound), std::move(done));
      };
    }
    w->server = std::make_unique<Server>(*d, config, std::move(role));
    workers_.push_back(std::move(w));
  }
}

Workers::~Workers() {
  join();
  // The last worker first; in each, the Server goes before its inbox, dispatcher and base
  // (Worker's members, destroyed in reverse), on this thread: the joins ordered everything its
  // loop did before.
  while (!workers_.empty()) workers_.pop_back();
}

bool Workers::start(std::string* error) {
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    if (workers_[i]->base == nullptr && i > 0) {
      *error = "cannot create the event base of worker " + std::to_string(i);
      return false;
    }
    if (!workers_[i]->server->start(error)) {
      if (i > 0) *error = "worker " + std::to_string(i) + ": " + *error;
      return false;
    }
  }
  return true;
}

void Workers::run() {
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    Worker* w = workers_[i].get();
    w->thread = std::thread([w] {
      {
        const LogBatching logBatching(w->base.get());
        event_base_dispatch(w->base.get());
      }
      w->inbox->close();  // from now on worker 0's questions fail at once
    });
  }
}

void Workers::join() {
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

template <typename T>
std::vector<std::optional<T>> Workers::collect(const std::function<T(Server&)>& fn,
                                               std::chrono::milliseconds deadline) {
  auto g = std::make_shared<Gathering<T>>();
  g->answers.resize(workers_.size());
  g->left = workers_.size() - 1;
  g->answers[0] = fn(*workers_[0]->server);
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    Server* server = workers_[i]->server.get();
    auto ticket = std::make_shared<Ticket<T>>(g, i);
    // Dropped unrun if the loop has stopped: the ticket still counts down.
    (void)workers_[i]->inbox->post([ticket = std::move(ticket), server, fn] {
      T answer = fn(*server);
      const std::lock_guard lock(ticket->gathering->mutex);
      ticket->gathering->answers[ticket->index] = std::move(answer);
    });
  }
  std::unique_lock lock(g->mutex);
  g->done.wait_for(lock, deadline, [&] { return g->left == 0; });
  return g->answers;  // a copy: a late answer still writes into g, under its lock
}

void Workers::drainOthers() {
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    Server* server = workers_[i]->server.get();
    (void)workers_[i]->inbox->post([server] { server->beginDrain(); });
  }
}

void Workers::reloadOthers(const std::shared_ptr<const Config>& next,
                           const std::shared_ptr<const TlsContext>& serverTls,
                           const std::shared_ptr<const TlsContext>& clientTls,
                           std::vector<BoundListeners> bound,
                           std::function<void(std::size_t lagging)> done) {
  const std::uint64_t id = nextReload_++;
  ReloadRound& round = reloads_[id];
  round.answers.resize(workers_.size());
  round.answers[0] = true;  // worker 0 swapped before it asked
  round.left = workers_.size() - 1;
  round.done = std::move(done);
  round.deadline = std::make_unique<Timer>(primaryDispatcher_, [this, id] {
    for (std::size_t i = 1; i < workers_.size(); ++i) reloadAnswered(id, i, std::nullopt);
  });
  round.deadline->start(kReloadWait);
  LoopInbox* home = workers_[0]->inbox.get();
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    Server* server = workers_[i]->server.get();
    // The job captures no pointer into the round: only worker 0's loop may touch it. Its
    // sockets go with it (closed with the job if that loop has stopped).
    auto sockets =
        std::make_shared<BoundListeners>(i < bound.size() ? std::move(bound[i]) : BoundListeners{});
    const bool posted =
        workers_[i]->inbox->post([this, home, id, i, server, next, serverTls, clientTls, sockets] {
          const bool followed = server->follow(next, serverTls, clientTls, std::move(*sockets));
          (void)home->post([this, id, i, followed] { reloadAnswered(id, i, followed); });
        });
    if (!posted) reloadAnswered(id, i, false);  // that loop has stopped
  }
}

void Workers::reloadAnswered(std::uint64_t round, std::size_t index, std::optional<bool> followed) {
  const auto it = reloads_.find(round);
  if (it == reloads_.end()) return;  // ended: this answer came after the deadline
  ReloadRound& r = it->second;
  if (r.answers[index]) return;  // answered already (the deadline came after it)
  if (!followed) {
    spdlog::error("event=reload result=unknown worker={} detail=\"no answer in {} ms\"", index,
                  kReloadWait.count());
    followed = false;
  }
  r.answers[index] = followed;
  --r.left;
  if (r.left > 0) return;
  const auto lagging = static_cast<std::size_t>(
      std::count(r.answers.begin(), r.answers.end(), std::optional<bool>(false)));
  auto done = std::move(r.done);
  primaryDispatcher_.deferredDelete(std::move(r.deadline));  // it may be the caller
  reloads_.erase(it);
  done(lagging);
}

AdminStatus Workers::status() {
  struct Figures {
    std::size_t sessions = 0;
    std::size_t pooled = 0;
    DnsStats dns;
  };
  const std::function<Figures(Server&)> read = [](Server& s) {
    return Figures{s.sessionCount(), s.pooledUpstreams(), s.dnsStats()};
  };
  AdminStatus out;
  Server& first = primary();
  out.upstreamReady = first.upstreamAnswered();
  out.draining = first.draining();
  for (const auto& f : collect(read, kStatusWait)) {
    if (!f) continue;
    out.sessions += f->sessions;
    out.pooledUpstreams += f->pooled;
    out.dnsLookups += f->dns.lookups;
    out.dnsCacheHits += f->dns.cacheHits;
    out.dnsQueries += f->dns.queries;
    out.dnsTimeouts += f->dns.timeouts;
    out.dnsFailures += f->dns.failures;
    out.dnsRejected += f->dns.rejected;
  }
  return out;
}

std::vector<LiveSession> Workers::liveSessions() {
  const std::function<std::vector<LiveSession>(Server&)> read = [](Server& s) {
    return s.liveSessions();
  };
  std::vector<LiveSession> out;
  for (auto& part : collect(read, kStatusWait)) {
    if (part) out.insert(out.end(), part->begin(), part->end());
  }
  std::sort(out.begin(), out.end(), [](const LiveSession& a, const LiveSession& b) {
    return a.ageSeconds != b.ageSeconds ? a.ageSeconds > b.ageSeconds : a.id < b.id;
  });
  return out;
}

}  // namespace portcullis
