#pragma once
// MilterServer: milter mode. libmilter (smfi_register, smfi_setconn, smfi_main) speaks the
// milter protocol to the MTA on its own threads: smfi_main runs on a thread this class starts,
// and libmilter starts one more per MTA connection. Every callback hands its stage to the event
// loop through a LoopBridge and waits for the answer at most milter.timeout (then tempfail);
// the loop side keeps one MilterSession per connection, with the same filter chain the proxy
// listeners use. milter.max_sessions bounds the connections served at once (more: tempfail).
// Signals: SIGTERM, SIGHUP and SIGINT belong to the daemon's handlers on the loop; libmilter's
// own signal thread is kept from taking them (milter_server.cc says how).
// SIGTERM: the daemon's drain (DrainParticipant) reaches the milter too. New MTA connections are
// answered 421 4.3.2 (Postfix hangs up on its client), a session answers 421 4.3.2 at its next
// HELO or MAIL (between transactions), and a transaction under way goes on to its end; at
// timeouts.shutdown whatever still waits is answered 421 4.3.2 and the process exits.
// stop() (loop thread, also from the destructor) answers every waiting callback, stops
// smfi_main and joins it. libmilter keeps global state: one MilterServer per process.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>

#include "proxy/chain/filter_chain.h"
#include "proxy/config/config.h"
#include "proxy/milter/loop_bridge.h"
#include "proxy/milter/milter_session.h"
#include "proxy/server/server.h"

namespace portcullis {

class MilterServer final : public DrainParticipant {
 public:
  // `config` gives milter.* (fixed for the process's life). `snapshot`, called on the loop
  // thread for every new MTA connection, gives the config its filter chain and limits come
  // from, so a reload reaches the milter's new sessions as it reaches the listeners'.
  using SnapshotSource = std::function<std::shared_ptr<const Config>()>;
  MilterServer(Dispatcher& dispatcher, std::shared_ptr<const Config> config,
               const FilterContext& context, SnapshotSource snapshot = {});
  ~MilterServer() override;
  MilterServer(const MilterServer&) = delete;
  MilterServer& operator=(const MilterServer&) = delete;

  // Opens milter.listen and starts smfi_main. False, with `error`, when libmilter refuses the
  // address or cannot bind it. The event base must have been made after evthread_use_pthreads().
  [[nodiscard]] bool start(std::string* error);
  // Loop thread. Idempotent.
  void stop();

  std::size_t sessionCount() const { return sessions_.size(); }

  // DrainParticipant (the daemon's SIGTERM drain).
  void beginDrain(std::function<void()> drained) override;
  void drainDeadline() override;
  bool drained() const override { return sessions_.empty(); }

  // Loop side of the callbacks (milter_server.cc); public for the callbacks' jobs only.
  MilterSession* find(std::uint64_t key);
  MilterSession& open(std::uint64_t key);
  void close(std::uint64_t key);

 private:
  Dispatcher& dispatcher_;
  std::shared_ptr<const Config> config_;
  const FilterContext& context_;
  SnapshotSource snapshot_;
  std::shared_ptr<LoopBridge> bridge_;
  std::unordered_map<std::uint64_t, std::unique_ptr<MilterSession>> sessions_;
  std::thread thread_;
  std::shared_ptr<std::atomic<bool>> mainDone_;  // smfi_main has returned
  bool started_ = false;
  bool draining_ = false;
  std::function<void()> drainedCallback_;
};

}  // namespace portcullis
