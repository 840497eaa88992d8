#pragma once
// Config loading for unit tests that need only the built-in filters: one registry for the
// test binary, and the loader over it.

#include <memory>
#include <string>

#include "filters/builtin_filters.h"
#include "portcullis/filter_registry.h"
#include "proxy/config/config.h"

namespace portcullis::test {

inline const FilterRegistry& builtinRegistry() {
  static const FilterRegistry r = [] {
    FilterRegistry reg;
    registerBuiltinFilters(reg);
    return reg;
  }();
  return r;
}

inline std::shared_ptr<const Config> loadBuiltin(const std::string& yaml) {
  return loadConfigFromString(yaml, {}, builtinRegistry());
}

}  // namespace portcullis::test
