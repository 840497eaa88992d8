// FilterRegistry: name -> factory map.

#include "portcullis/filter_registry.h"

namespace portcullis {

bool FilterRegistry::add(std::unique_ptr<FilterFactory> factory) {
  std::string name(factory->name());
  const FilterFactory* added = factory.get();
  if (!factories_.emplace(std::move(name), std::move(factory)).second) return false;
  order_.push_back(added);
  return true;
}

const FilterFactory* FilterRegistry::find(std::string_view name) const {
  const auto it = factories_.find(name);
  return it == factories_.end() ? nullptr : it->second.get();
}

std::vector<std::string> FilterRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, factory] : factories_) out.push_back(name);
  return out;
}

}  // namespace portcullis
