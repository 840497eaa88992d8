// FilterServices. See filter_services.h.

#include "proxy/chain/filter_services.h"

#include <spdlog/spdlog.h>

#include "proxy/admin/stats_registry.h"

namespace portcullis {
namespace {

spdlog::level::level_enum toSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      break;
  }
  return spdlog::level::err;
}

// One shot on a dispatcher Timer. The callback may destroy this handle: then the Timer, whose
// callback is still on the stack, is let go through deferredDelete (the one lifetime idiom).
class DispatcherTimerHandle final : public TimerHandle {
 public:
  DispatcherTimerHandle(Dispatcher& dispatcher, std::function<void()> fire)
      : dispatcher_(dispatcher),
        fire_(std::move(fire)),
        timer_(std::make_unique<Timer>(dispatcher, [this] { fireOnce(); })) {}
  ~DispatcherTimerHandle() override {
    if (fired_) dispatcher_.deferredDelete(std::move(timer_));
  }
  DispatcherTimerHandle(const DispatcherTimerHandle&) = delete;
  DispatcherTimerHandle& operator=(const DispatcherTimerHandle&) = delete;

  void start(std::chrono::milliseconds delay) { timer_->start(delay); }

 private:
  void fireOnce() {
    fired_ = true;
    std::function<void()> fire = std::move(fire_);
    if (fire) fire();  // may destroy this handle: touch nothing afterwards
  }

  Dispatcher& dispatcher_;
  std::function<void()> fire_;
  std::unique_ptr<Timer> timer_;
  bool fired_ = false;
};

}  // namespace

bool SpdlogLog::enabled(LogLevel level) const { return spdlog::should_log(toSpdlog(level)); }

void SpdlogLog::write(LogLevel level, std::string_view sessionId, std::string_view fields) const {
  spdlog::log(toSpdlog(level), "{} {}", sessionId, fields);
}

std::unique_ptr<TimerHandle> DispatcherTimers::start(std::chrono::milliseconds delay,
                                                     std::function<void()> fire) {
  auto handle = std::make_unique<DispatcherTimerHandle>(dispatcher_, std::move(fire));
  handle->start(delay);
  return handle;
}

void FilterServices::install(Dispatcher& dispatcher, FilterContext& context) {
  timers_ = std::make_unique<DispatcherTimers>(dispatcher);
  context.log = &log_;
  context.timers = timers_.get();
  connector_ = std::make_unique<EventConnector>(dispatcher);
  context.connector = connector_.get();
  http_ = std::make_unique<EvhttpClient>(dispatcher);
  context.http = http_.get();
  context.stats = &processStats();
}

}  // namespace portcullis
