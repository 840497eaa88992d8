// Next: the move-only, exactly-once completion handed to every filter hook.

#include "portcullis/filter.h"

#include "proxy/api/next_access.h"

namespace portcullis {

Next::Next(std::weak_ptr<CompletionSink> sink, std::uint64_t call)
    : sink_(std::move(sink)), call_(call), pending_(true) {}

Next::Next(Next&& other) noexcept
    : sink_(std::move(other.sink_)), call_(other.call_), pending_(other.pending_) {
  other.pending_ = false;
  other.sink_.reset();
}

Next& Next::operator=(Next&& other) noexcept {
  if (this != &other) {
    if (pending_) finish(std::nullopt, "filter dropped its completion");
    sink_ = std::move(other.sink_);
    call_ = other.call_;
    pending_ = other.pending_;
    other.pending_ = false;
    other.sink_.reset();
  }
  return *this;
}

Next::~Next() {
  if (pending_) finish(std::nullopt, "filter dropped its completion");
}

void Next::operator()(Verdict verdict) { finish(std::move(verdict), {}); }

void Next::fail(std::string error) {
  if (error.empty()) error = "filter failed";
  finish(std::nullopt, std::move(error));
}

void Next::finish(std::optional<Verdict> verdict, std::string error) {
  auto sink = sink_.lock();
  if (!pending_) {
    // A second completion from the same Next (or a moved-from one) is ignored, and logged.
    if (sink) sink->duplicate(call_);
    return;
  }
  pending_ = false;
  if (sink) sink->complete(call_, std::move(verdict), std::move(error));
}

}  // namespace portcullis
