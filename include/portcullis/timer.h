#pragma once
// Timers: one-shot timers on the session's event loop, offered to filters through FilterContext
// so that no filter includes libevent. The caller owns the returned handle: destroying it
// cancels the timer and guarantees the callback will not run. The callback always runs later
// from the event loop, never inline inside start(), and at most once.

#include <chrono>
#include <functional>
#include <memory>

namespace portcullis {

class TimerHandle {
 public:
  virtual ~TimerHandle() = default;  // cancels: the callback will not run afterwards
};

class Timers {
 public:
  virtual ~Timers() = default;
  [[nodiscard]] virtual std::unique_ptr<TimerHandle> start(std::chrono::milliseconds delay,
                                                           std::function<void()> fire) = 0;
};

}  // namespace portcullis
