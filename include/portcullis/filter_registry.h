#pragma once
// FilterRegistry: name -> FilterFactory. The daemon registers the built-in filters at start-up
// (filters/builtin_filters.h); config loading looks names up here and asks each factory's
// traits() what it needs (e.g. always-on filters come in registration order).
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
  // Sorted by name (for messages listing the known filters).
  std::vector<std::string> names() const;
  // In registration order.
  const std::vector<const FilterFactory*>& factories() const { return order_; }

 private:
  std::map<std::string, std::unique_ptr<FilterFactory>, std::less<>> factories_;
  std::vector<const FilterFactory*> order_;
};

}  // namespace portcullis
