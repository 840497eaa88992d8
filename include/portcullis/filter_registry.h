#pragma once
// FilterRegistry: name -> FilterFactory. The daemon registers the built-in filters at start-up
// (filters/builtin_filters.cc, one line each); config loading looks names up here.
// Not thread-safe; filled before the event loop starts and read-only afterwards.

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "portcullis/filter_factory.h"

namespace portcullis {

class FilterRegistry {
 public:
  // Returns false (and keeps the first) when the name is already taken.
  bool add(std::unique_ptr<FilterFactory> factory);
  const FilterFactory* find(std::string_view name) const;
  std::vector<std::string> names() const;

 private:
  std::map<std::string, std::unique_ptr<FilterFactory>, std::less<>> factories_;
};

// Registers every built-in filter (defined in filters/).
void registerBuiltinFilters(FilterRegistry& registry);

}  // namespace portcullis
