#pragma once
// PluginSet: loads the config's filter plugins (.so) and keeps them loaded; it is the
// PluginLoader that proxy/config calls before the filters are resolved. For each `plugins:`
// entry, in order: the trust checks (plugin_trust.h), dlopen(RTLD_NOW | RTLD_LOCAL), the
// portcullis_plugin_v1 entry point, an exact ABI match (portcullis/plugin.h), then the
// plugin's factories into a registry of its own, none named like a filter the daemon or an
// earlier plugin has. Only when every plugin passes do their factories join the daemon's
// registry, each wrapped so that an error while configuring names the plugin. Any failure
// throws ConfigError naming the file, the plugin's version and ours, and nothing stays loaded.
// Lifetime: construct it after the registry and before the config: the registry's wrappers
// and the config's creators call into the plugins' code, which is unmapped when this goes.
// Start-up only; not thread-safe.

#include <sys/types.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "portcullis/filter_registry.h"
#include "portcullis/plugin.h"
#include "proxy/config/config.h"

namespace portcullis {

// One loaded plugin, for the start-up log line.
struct LoadedPlugin {
  std::string path;  // as resolved (symlinks followed)
  std::string name;
  std::string version;
  std::vector<std::string> filters;  // the names it registered
};

class PluginSet final : public PluginLoader {
 public:
  // `trustedUser`: who may own a plugin file and its directory besides root.
  explicit PluginSet(FilterRegistry& registry, uid_t trustedUser = ::geteuid());
  ~PluginSet() override;
  PluginSet(const PluginSet&) = delete;
  PluginSet& operator=(const PluginSet&) = delete;

  void load(const std::vector<PluginConfig>& plugins) override;
  std::vector<LoadedPlugin> loaded() const;

  // "portcullis 0.2.0, API 1.3, gcc 12, libstdc++ cxx11abi=1", for error lines.
  static std::string describe(const PluginAbi& abi);

 private:
  struct Plugin;

  FilterRegistry& registry_;
  uid_t trustedUser_;
  std::vector<std::unique_ptr<Plugin>> plugins_;
};

}  // namespace portcullis
