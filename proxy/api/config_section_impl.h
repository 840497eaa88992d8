#pragma once
// The yaml-cpp side of ConfigSection, visible to the config loader only (not to filters).

#include <yaml-cpp/yaml.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "portcullis/config_section.h"

namespace portcullis {

struct ConfigSection::Impl {
  Impl(YAML::Node n, std::string p) : node(std::move(n)), path(std::move(p)) {}
  YAML::Node node;
  std::string path;
  mutable std::set<std::string> used;
  mutable std::vector<std::shared_ptr<Impl>> children;
};

ConfigSection makeConfigSection(const YAML::Node& node, std::string path);

}  // namespace portcullis
