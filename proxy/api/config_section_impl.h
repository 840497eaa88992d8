#pragma once
// The yaml-cpp side of ConfigSection, visible to the config loader only (not to filters).

#include <yaml-cpp/yaml.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "portcullis/config_section.h"

namespace portcullis {

class ConfigNode {
 public:
  ConfigNode(const YAML::Node& n, std::string p) : node(n), path(std::move(p)) {}
  YAML::Node node;
  std::string path;
  mutable std::set<std::string> used;
  mutable std::vector<std::shared_ptr<ConfigNode>> children;
};

class ConfigSectionAccess {
 public:
  static ConfigSection make(std::shared_ptr<ConfigNode> node) {
    return ConfigSection(std::move(node));
  }
};

ConfigSection makeConfigSection(const YAML::Node& node, std::string path);

}  // namespace portcullis
