#pragma once
// FilterServices: the daemon's implementations of the services a FilterContext offers filters
// (include/portcullis/log.h, timer.h, stats.h, connector.h, http_client.h): the log writes through
// spdlog, the timers, outgoing connections and HTTP requests run on one event loop, the stats go to
// processStats(). The owner (the server) keeps it alive longer than every session; install() points
// a context at it. Event-loop thread only, like the timers it hands out (the log and stats are
// thread-safe).

#include <memory>

#include "portcullis/filter_factory.h"
#include "proxy/base/dispatcher.h"
#include "proxy/chain/connector.h"
#include "proxy/chain/http_client.h"

namespace portcullis {

// Log lines "<session id> <fields>" through the default spdlog logger.
class SpdlogLog final : public Log {
 public:
  bool enabled(LogLevel level) const override;
  void write(LogLevel level, std::string_view sessionId, std::string_view fields) const override;
};

// One-shot timers on the dispatcher (so they follow a test's manual clock too); a timer's
// callback runs from the loop, never inside start().
class DispatcherTimers final : public Timers {
 public:
  explicit DispatcherTimers(Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  std::unique_ptr<TimerHandle> start(std::chrono::milliseconds delay,
                                     std::function<void()> fire) override;

 private:
  Dispatcher& dispatcher_;
};

class FilterServices {
 public:
  // Fills in the log, the timers, the connector and the HTTP client on `dispatcher` and the process
  // stats; keeps the resolver.
  void install(Dispatcher& dispatcher, FilterContext& context);

 private:
  SpdlogLog log_;
  std::unique_ptr<DispatcherTimers> timers_;
  std::unique_ptr<EventConnector> connector_;
  std::unique_ptr<EvhttpClient> http_;
};

}  // namespace portcullis
