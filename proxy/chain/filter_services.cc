// FilterServices. See filter_services.h.

#include "proxy/chain/filter_services.h"

#include <spdlog/spdlog.h>

#include "proxy/admin/stats_registry.h"
#include "proxy/base/event_util.h"

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

// Owns the libevent timer; destroying the handle frees the event, so the callback cannot run.
class EventTimerHandle final : public TimerHandle {
 public:
  EventTimerHandle(event_base* base, std::function<void()> fire)
      : fire_(std::move(fire)), event_(evtimer_new(base, &EventTimerHandle::trampoline, this)) {}
  void start(std::chrono::milliseconds delay) {
    const timeval tv = toTimeval(delay);
    evtimer_add(event_.get(), &tv);
  }

 private:
  // One-shot, and the callback may destroy this handle: move it out, and touch nothing after.
  static void trampoline(evutil_socket_t, short, void* self) {
    std::function<void()> fire = std::move(static_cast<EventTimerHandle*>(self)->fire_);
    if (fire) fire();
  }

  std::function<void()> fire_;
  EventPtr event_;
};

}  // namespace

bool SpdlogLog::enabled(LogLevel level) const { return spdlog::should_log(toSpdlog(level)); }

void SpdlogLog::write(LogLevel level, std::string_view sessionId, std::string_view fields) const {
  spdlog::log(toSpdlog(level), "{} {}", sessionId, fields);
}

std::unique_ptr<TimerHandle> EventTimers::start(std::chrono::milliseconds delay,
                                                std::function<void()> fire) {
  auto handle = std::make_unique<EventTimerHandle>(base_, std::move(fire));
  handle->start(delay);
  return handle;
}

void FilterServices::install(event_base* base, FilterContext& context) {
  timers_ = std::make_unique<EventTimers>(base);
  context.log = &log_;
  context.timers = timers_.get();
  context.stats = &processStats();
}

}  // namespace portcullis
