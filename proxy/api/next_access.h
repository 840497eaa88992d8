#pragma once
// The core side of Next: the sink a completion lands in, and the only way to make a live Next.
// Not part of the public API (filters receive a Next; they never make one). The chain owns the
// sink; a Next holds it weakly, so a completion after the chain is gone is dropped.
// complete() and duplicate() run inline inside the filter's call to Next.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "portcullis/filter.h"

namespace portcullis {

class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  // `error` non-empty means the filter failed (the chain applies its on_error setting).
  virtual void complete(std::uint64_t call, std::optional<Verdict> verdict, std::string error) = 0;
  virtual void duplicate(std::uint64_t call) = 0;
};

class NextAccess {
 public:
  // A pending Next for call number `call`, completing into `sink`.
  static Next make(std::weak_ptr<CompletionSink> sink, std::uint64_t call) {
    return Next(std::move(sink), call);
  }
};

}  // namespace portcullis
