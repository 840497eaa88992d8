#pragma once
// FakeLog: a Log (include/portcullis/log.h) for filter tests that keeps every line's fields,
// at every level, so a test can look for the one line an event should write. Not thread-safe.

#include <string>
#include <string_view>
#include <vector>

#include "portcullis/log.h"

namespace portcullis::testing {

class FakeLog final : public Log {
 public:
  bool enabled(LogLevel) const override { return true; }
  void write(LogLevel, std::string_view, std::string_view fields) const override {
    lines.emplace_back(fields);
  }
  // Every line so far, one per line.
  std::string all() const {
    std::string out;
    for (const auto& l : lines) out.append(l).append("\n");
    return out;
  }
  mutable std::vector<std::string> lines;
};

}  // namespace portcullis::testing
