// ConfigSection: typed access to one YAML map with key-path error messages and unknown-key
// detection. yaml-cpp stays behind the pimpl so the public header does not depend on it.

#include "portcullis/config_section.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <set>

#include "proxy/api/config_section_impl.h"

namespace portcullis {

std::optional<std::chrono::milliseconds> parseDuration(std::string_view text) {
  if (text.empty() || text.size() > 32) return std::nullopt;
  std::size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0) return std::nullopt;
  std::uint64_t n = 0;
  if (std::from_chars(text.data(), text.data() + i, n).ec != std::errc()) return std::nullopt;
  const std::string_view unit = text.substr(i);
  std::uint64_t factor = 0;
  if (unit.empty() || unit == "s") {
    factor = 1000;
  } else if (unit == "ms") {
    factor = 1;
  } else if (unit == "m") {
    factor = 60'000;
  } else if (unit == "h") {
    factor = 3'600'000;
  } else if (unit == "d") {
    factor = 86'400'000;
  } else {
    return std::nullopt;
  }
  if (n > std::numeric_limits<std::int64_t>::max() / factor / 2) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(n * factor));
}

std::optional<std::uint64_t> parseSize(std::string_view text) {
  if (text.empty() || text.size() > 24) return std::nullopt;
  std::size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0) return std::nullopt;
  std::uint64_t n = 0;
  if (std::from_chars(text.data(), text.data() + i, n).ec != std::errc()) return std::nullopt;
  std::string_view unit = text.substr(i);
  std::uint64_t factor = 1;
  if (unit == "k" || unit == "K" || unit == "KiB") {
    factor = 1024;
  } else if (unit == "M" || unit == "MiB") {
    factor = 1024 * 1024;
  } else if (unit == "G" || unit == "GiB") {
    factor = 1024ULL * 1024 * 1024;
  } else if (!unit.empty()) {
    return std::nullopt;
  }
  if (n > std::numeric_limits<std::uint64_t>::max() / factor) return std::nullopt;
  return n * factor;
}

ConfigSection::ConfigSection(std::shared_ptr<ConfigNode> impl) : impl_(std::move(impl)) {}
ConfigSection::~ConfigSection() = default;
ConfigSection::ConfigSection(const ConfigSection&) = default;
ConfigSection& ConfigSection::operator=(const ConfigSection&) = default;

const std::string& ConfigSection::path() const { return impl_->path; }

std::string ConfigSection::keyPath(std::string_view key) const {
  if (impl_->path.empty()) return std::string(key);
  return impl_->path + "." + std::string(key);
}

bool ConfigSection::has(std::string_view key) const {
  const YAML::Node& node = impl_->node;
  if (!node.IsMap()) return false;
  const YAML::Node v = node[std::string(key)];
  return v.IsDefined() && !v.IsNull();
}

void ConfigSection::markUsed(std::string_view key) const { impl_->used.insert(std::string(key)); }

void ConfigSection::fail(std::string_view key, const std::string& message) const {
  throw ConfigError(keyPath(key), message);
}

namespace {

std::string describe(const YAML::Node& n) {
  if (n.IsScalar()) return "\"" + n.Scalar() + "\"";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a map";
  return "nothing";
}

}  // namespace

// Returns the scalar text for `key`, or nullopt when absent. Throws if present but not scalar.
static std::optional<std::string> scalar(const ConfigSection& s, const ConfigNode& impl,
                                         std::string_view key) {
  impl.used.insert(std::string(key));
  if (!s.has(key)) return std::nullopt;
  const YAML::Node& node = impl.node;
  const YAML::Node n = node[std::string(key)];
  if (!n.IsScalar()) s.fail(key, "expected a single value, got " + describe(n));
  return n.Scalar();
}

std::string ConfigSection::getString(std::string_view key,
                                     std::optional<std::string> fallback) const {
  auto v = scalar(*this, *impl_, key);
  if (v) return *v;
  if (fallback) return *fallback;
  fail(key, "required key is missing");
}

std::int64_t ConfigSection::getInt(std::string_view key, std::optional<std::int64_t> fallback,
                                   std::int64_t min, std::int64_t max) const {
  auto v = scalar(*this, *impl_, key);
  if (!v) {
    if (fallback) return *fallback;
    fail(key, "required key is missing");
  }
  std::int64_t n = 0;
  const auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || p != v->data() + v->size()) {
    fail(key, "expected an integer, got \"" + *v + "\"");
  }
  if (n < min || n > max) {
    fail(key, "value " + *v + " out of range [" + std::to_string(min) + ", " + std::to_string(max) +
                  "]");
  }
  return n;
}

double ConfigSection::getDouble(std::string_view key, std::optional<double> fallback) const {
  auto v = scalar(*this, *impl_, key);
  if (!v) {
    if (fallback) return *fallback;
    fail(key, "required key is missing");
  }
  try {
    std::size_t used = 0;
    const double d = std::stod(*v, &used);
    if (used != v->size() || !std::isfinite(d)) throw std::invalid_argument("bad");
    return d;
  } catch (const std::exception&) {
    fail(key, "expected a number, got \"" + *v + "\"");
  }
}

bool ConfigSection::getBool(std::string_view key, std::optional<bool> fallback) const {
  auto v = scalar(*this, *impl_, key);
  if (!v) {
    if (fallback) return *fallback;
    fail(key, "required key is missing");
  }
  if (*v == "true" || *v == "yes" || *v == "on") return true;
  if (*v == "false" || *v == "no" || *v == "off") return false;
  fail(key, "expected true or false, got \"" + *v + "\"");
}

std::chrono::milliseconds ConfigSection::getDuration(
    std::string_view key, std::optional<std::chrono::milliseconds> fallback) const {
  auto v = scalar(*this, *impl_, key);
  if (!v) {
    if (fallback) return *fallback;
    fail(key, "required key is missing");
  }
  auto d = parseDuration(*v);
  if (!d) fail(key, "expected a duration like 30s, 5m or 250ms, got \"" + *v + "\"");
  return *d;
}

std::uint64_t ConfigSection::getSize(std::string_view key,
                                     std::optional<std::uint64_t> fallback) const {
  auto v = scalar(*this, *impl_, key);
  if (!v) {
    if (fallback) return *fallback;
    fail(key, "required key is missing");
  }
  auto n = parseSize(*v);
  if (!n) fail(key, "expected a size in bytes (optionally k, M or G), got \"" + *v + "\"");
  return *n;
}

std::vector<std::string> ConfigSection::getStringList(
    std::string_view key, std::optional<std::vector<std::string>> fallback) const {
  impl_->used.insert(std::string(key));
  if (!has(key)) {
    if (fallback) return *fallback;
    fail(key, "required key is missing");
  }
  const YAML::Node& node = impl_->node;
  const YAML::Node n = node[std::string(key)];
  if (n.IsScalar()) return {n.Scalar()};
  if (!n.IsSequence()) fail(key, "expected a list of strings, got " + describe(n));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n.size(); ++i) {
    if (!n[i].IsScalar()) {
      fail(std::string(key) + "[" + std::to_string(i) + "]",
           "expected a string, got " + describe(n[i]));
    }
    out.push_back(n[i].Scalar());
  }
  return out;
}

std::string ConfigSection::getChoice(std::string_view key, const std::vector<std::string>& choices,
                                     std::optional<std::string> fallback) const {
  std::string v = getString(key, std::move(fallback));
  if (std::find(choices.begin(), choices.end(), v) != choices.end()) return v;
  std::string all;
  for (const auto& c : choices) all += (all.empty() ? "" : " | ") + c;
  fail(key, "expected one of " + all + ", got \"" + v + "\"");
}

ConfigSection ConfigSection::section(std::string_view key) const {
  impl_->used.insert(std::string(key));
  YAML::Node child(YAML::NodeType::Map);
  if (has(key)) {
    const YAML::Node& node = impl_->node;
    child = node[std::string(key)];
    if (!child.IsMap()) fail(key, "expected a map, got " + describe(child));
  }
  auto impl = std::make_shared<ConfigNode>(child, keyPath(key));
  impl_->children.push_back(impl);
  return ConfigSection(impl);
}

std::vector<ConfigSection> ConfigSection::getSectionList(std::string_view key) const {
  impl_->used.insert(std::string(key));
  std::vector<ConfigSection> out;
  if (!has(key)) return out;
  const YAML::Node& node = impl_->node;
  const YAML::Node n = node[std::string(key)];
  if (!n.IsSequence()) fail(key, "expected a list, got " + describe(n));
  for (std::size_t i = 0; i < n.size(); ++i) {
    const std::string path = keyPath(key) + "[" + std::to_string(i) + "]";
    if (!n[i].IsMap()) throw ConfigError(path, "expected a map, got " + describe(n[i]));
    auto child = std::make_shared<ConfigNode>(n[i], path);
    impl_->children.push_back(child);
    out.push_back(ConfigSection(child));
  }
  return out;
}

void ConfigSection::rejectUnknownKeys() const {
  if (impl_->node.IsMap()) {
    for (const auto& kv : impl_->node) {
      const std::string k = kv.first.Scalar();
      if (!impl_->used.contains(k)) throw ConfigError(keyPath(k), "unknown key");
    }
  }
  for (const auto& child : impl_->children) ConfigSection(child).rejectUnknownKeys();
}

ConfigSection makeConfigSection(const YAML::Node& node, std::string path) {
  return ConfigSectionAccess::make(std::make_shared<ConfigNode>(node, std::move(path)));
}

}  // namespace portcullis
