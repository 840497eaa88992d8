#pragma once
// ConfigSection: a typed, read-only window on one map in the YAML config, for filter factories.
// Every getter validates and throws ConfigError naming the full key ("filters[1].threshold"),
// which the loader turns into one clear error line and exit status 2. Keys that nobody read are
// reported as unknown after the factory returns, so typos never pass silently.
// Used only while loading config, never on the data path; exceptions are fine here.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis {

class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string key, const std::string& message)
      : std::runtime_error(key.empty() ? message : key + ": " + message), key_(std::move(key)) {}
  const std::string& key() const { return key_; }

 private:
  std::string key_;
};

// "30s", "5m", "250ms", "1h", "2d"; a bare number is seconds. nullopt when malformed.
std::optional<std::chrono::milliseconds> parseDuration(std::string_view text);
// "10240000", "10M", "512k" (binary multiples). nullopt when malformed or out of range.
std::optional<std::uint64_t> parseSize(std::string_view text);

// The parsed YAML behind a section: the core's, opaque to filters.
class ConfigNode;
// The core's way to make a section (proxy/api/config_section_impl.h); filters only receive them.
class ConfigSectionAccess;

class ConfigSection {
 public:
  ~ConfigSection();
  ConfigSection(const ConfigSection&);
  ConfigSection& operator=(const ConfigSection&);

  const std::string& path() const;
  std::string keyPath(std::string_view key) const;
  bool has(std::string_view key) const;

  std::string getString(std::string_view key, std::optional<std::string> fallback = {}) const;
  std::int64_t getInt(std::string_view key, std::optional<std::int64_t> fallback, std::int64_t min,
                      std::int64_t max) const;
  double getDouble(std::string_view key, std::optional<double> fallback) const;
  bool getBool(std::string_view key, std::optional<bool> fallback = {}) const;
  std::chrono::milliseconds getDuration(
      std::string_view key, std::optional<std::chrono::milliseconds> fallback = {}) const;
  std::uint64_t getSize(std::string_view key, std::optional<std::uint64_t> fallback = {}) const;
  std::vector<std::string> getStringList(
      std::string_view key, std::optional<std::vector<std::string>> fallback = {}) const;
  // A string that must be one of `choices`.
  std::string getChoice(std::string_view key, const std::vector<std::string>& choices,
                        std::optional<std::string> fallback = {}) const;
  // A nested map; an absent key gives an empty section (all getters fall back to defaults).
  ConfigSection section(std::string_view key) const;
  // A list of maps (e.g. header_checks rules); each element tracks its own unknown keys.
  std::vector<ConfigSection> getSectionList(std::string_view key) const;

  // Marks a key as handled without reading it through a getter.
  void markUsed(std::string_view key) const;
  [[noreturn]] void fail(std::string_view key, const std::string& message) const;

  // Throws ConfigError for the first key (here or in any sub-section handed out) never read.
  void rejectUnknownKeys() const;

 private:
  friend class ConfigSectionAccess;
  explicit ConfigSection(std::shared_ptr<ConfigNode> impl);

  std::shared_ptr<ConfigNode> impl_;
};

}  // namespace portcullis
