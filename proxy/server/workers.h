#pragma once
// Workers: `workers: N` event-loop threads, each a Server of its own (listeners bound with
// SO_REUSEPORT, sessions, MTA pool and probe, DNS resolver and cache, filter services), so that
// a worker touches nothing another one does on the data path. Shared, and thread-safe: the
// config snapshot (immutable), the stats (per-thread cells, merged when read), the refusal
// ring and the ConnectionTable (one mutex, at accept and close: the connection limits stay
// exact).
// Worker 0 is the caller's own loop: it takes the signals and passes the drain and a reload on
// (LoopInbox), and main puts the admin endpoint and the milter on it. start() binds every
// worker's listeners on the calling thread (before the privilege drop); run() starts the
// threads of workers 1..N-1; join() waits for them once worker 0's loop has returned.
// Worker 0 asks the others (collect()) with a bounded wait and never the other way round, so
// no two loops ever wait on each other. A reload does not wait at all: each worker answers on
// worker 0's inbox, and the round ends on worker 0's loop when all have, or at its deadline.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "proxy/admin/admin_server.h"
#include "proxy/admin/status_page.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/event_util.h"
#include "proxy/base/loop_inbox.h"
#include "proxy/config/config.h"
#include "proxy/server/connection_table.h"
#include "proxy/server/server.h"

namespace portcullis {

class Workers {
 public:
  // Worker 0 runs on `dispatcher` (the caller's loop); the others get a base, a dispatcher and
  // a thread each. No libevent call crosses threads (LoopInbox wakes a loop through an eventfd).
  Workers(Dispatcher& dispatcher, const std::shared_ptr<const Config>& config);
  ~Workers();  // join(), then frees every worker but the caller's dispatcher
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  Server& primary() { return *workers_.front()->server; }
  std::size_t count() const { return workers_.size(); }

  // Starts every worker's Server (binds its listeners) on this thread. False, with `error`.
  [[nodiscard]] bool start(std::string* error);
  // Starts the threads of workers 1..N-1.
  void run();
  // Waits for the other workers' loops to end (they end when drained).
  void join();

  // Worker 0's loop: the figures of every worker, merged (the admin endpoint).
  AdminStatus status();
  std::vector<LiveSession> liveSessions();

 private:
  struct Worker {
    EventBasePtr base;  // null for worker 0 (the caller's)
    std::unique_ptr<EventDispatcher> ownDispatcher;
    std::unique_ptr<LoopInbox> inbox;  // worker 0's: the reload answers
    std::unique_ptr<Server> server;
    std::thread thread;
  };

  // Runs `fn` on every worker's loop (worker 0's inline) and returns each answer in worker
  // order; a worker that has stopped, or does not answer within `deadline`, gives nullopt.
  template <typename T>
  std::vector<std::optional<T>> collect(const std::function<T(Server&)>& fn,
                                        std::chrono::milliseconds deadline);
  void drainOthers();
  // Worker 0's loop: posts the swap to every other worker, each with the sockets bound for it
  // (`bound`, by worker); `done` runs on worker 0's loop.
  void reloadOthers(const std::shared_ptr<const Config>& next,
                    const std::shared_ptr<const TlsContext>& serverTls,
                    const std::shared_ptr<const TlsContext>& clientTls,
                    std::vector<BoundListeners> bound,
                    std::function<void(std::size_t lagging)> done);
  // Worker 0's loop: worker `index` answered reload round `round` (or will not: nullopt).
  void reloadAnswered(std::uint64_t round, std::size_t index, std::optional<bool> followed);

  // One reload on its way through the workers; only worker 0's loop touches it.
  struct ReloadRound {
    std::vector<std::optional<bool>> answers;  // per worker; [0] is worker 0's own swap
    std::size_t left = 0;
    std::function<void(std::size_t lagging)> done;
    std::unique_ptr<Timer> deadline;
  };

  Dispatcher& primaryDispatcher_;
  ConnectionTable connections_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::map<std::uint64_t, ReloadRound> reloads_;  // by round number
  std::uint64_t nextReload_ = 0;
};

}  // namespace portcullis
