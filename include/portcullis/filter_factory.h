#pragma once
// FilterFactory: builds filters from config, by name, through the registry.
// configure() runs once at config load: it validates the section (throwing ConfigError naming
// the key) and returns a creator that captures an immutable config shared by every session.
// The creator is then called once per session to make that session's Filter instance.
// Chain-level keys (name, mode, timeout, on_error, defer_to) are read by the core, not here.

#include <functional>
#include <memory>
#include <string_view>

#include "portcullis/config_section.h"
#include "portcullis/filter.h"
#include "portcullis/resolver.h"

namespace portcullis {

// Services a filter instance may use; they outlive every session.
struct FilterContext {
  Resolver* resolver = nullptr;  // never null in a running daemon
};

using FilterCreator = std::function<std::unique_ptr<Filter>(const FilterContext&)>;

class FilterFactory {
 public:
  virtual ~FilterFactory() = default;
  virtual std::string_view name() const = 0;
  virtual FilterCreator configure(const ConfigSection& section) const = 0;
};

}  // namespace portcullis
