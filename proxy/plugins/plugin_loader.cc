// PluginSet. See plugin_loader.h.

#include "proxy/plugins/plugin_loader.h"

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <exception>
#include <set>
#include <span>
#include <string_view>
#include <utility>

#include "portcullis/config_section.h"
#include "proxy/plugins/plugin_trust.h"

namespace portcullis {
namespace {

struct DlClose {
  void operator()(void* handle) const { ::dlclose(handle); }
};
using DlHandle = std::unique_ptr<void, DlClose>;

constexpr std::array<std::string_view, 3> kCompilerNames{"unknown compiler", "gcc", "clang"};
constexpr std::array<std::string_view, 3> kStdlibNames{"unknown library", "libstdc++", "libc++"};

std::string_view nameIn(std::span<const std::string_view> names, std::int32_t i) {
  return i >= 0 && static_cast<std::size_t>(i) < names.size() ? names[i] : names[0];
}

// A plugin's factory as the daemon's registry holds it: the same filter, but an error while
// configuring it names the plugin, and an exception that is not a ConfigError (the plugin's
// own bug) becomes one instead of ending the process.
class PluginFilterFactory final : public FilterFactory {
 public:
  PluginFilterFactory(const FilterFactory& inner, std::string plugin)
      : inner_(inner), plugin_(std::move(plugin)) {}

  std::string_view name() const override { return inner_.name(); }
  FilterTraits traits() const override { return inner_.traits(); }

  FilterCreator configure(const ConfigSection& section) const override {
    try {
      return inner_.configure(section);
    } catch (const ConfigError& e) {
      // what() is "key: message"; keep the key and say whose filter it is.
      std::string_view message = e.what();
      if (!e.key().empty()) message.remove_prefix(std::min(message.size(), e.key().size() + 2));
      throw ConfigError(e.key(), std::string(message) + " (plugin " + plugin_ + ")");
    } catch (const std::exception& e) {
      throw ConfigError(section.path(), "the " + std::string(name()) + " filter of plugin " +
                                            plugin_ + " failed to configure: " + e.what());
    } catch (...) {
      throw ConfigError(section.path(), "the " + std::string(name()) + " filter of plugin " +
                                            plugin_ + " failed to configure (unknown exception)");
    }
  }

 private:
  const FilterFactory& inner_;
  std::string plugin_;
};

}  // namespace

struct PluginSet::Plugin {
  // Declared first, so destroyed last: `own` holds objects whose code is in the library.
  DlHandle handle;
  std::string path;
  const PluginEntry* entry = nullptr;
  FilterRegistry own;
};

PluginSet::PluginSet(FilterRegistry& registry, uid_t trustedUser)
    : registry_(registry), trustedUser_(trustedUser) {}

PluginSet::~PluginSet() = default;

std::string PluginSet::describe(const PluginAbi& abi) {
  std::string out = "portcullis " + std::to_string(abi.sdkMajor) + "." +
                    std::to_string(abi.sdkMinor) + "." + std::to_string(abi.sdkPatch) + ", API " +
                    std::to_string(abi.apiMajor) + "." + std::to_string(abi.apiMinor) + ", " +
                    std::string(nameIn(kCompilerNames, static_cast<std::int32_t>(abi.compiler))) +
                    " " + std::to_string(abi.compilerMajor) + ", " +
                    std::string(nameIn(kStdlibNames, static_cast<std::int32_t>(abi.stdlib)));
  if (abi.stdlib == PluginStdlib::kLibstdcxx) out += " cxx11abi=" + std::to_string(abi.cxx11Abi);
  if (abi.debugContainers != 0) out += " debug containers";
  return out;
}

void PluginSet::load(const std::vector<PluginConfig>& plugins) {
  const std::string ours = describe(kPluginAbi);
  // Every error line names the file, what the plugin was built for when that is known, and
  // what we are: enough to tell "rebuild it" from "wrong file".
  auto fail = [&ours](const PluginConfig& p, const std::string& problem,
                      const PluginEntry* entry = nullptr) {
    std::string line = p.path + ": " + problem;
    if (entry != nullptr) {
      line += " (plugin " + std::string(entry->name != nullptr ? entry->name : "?") + " " +
              std::string(entry->version != nullptr ? entry->version : "?") + " built for " +
              describe(entry->abi) + "; this is " + ours + ")";
    } else {
      line += " (this is " + ours + ")";
    }
    return ConfigError(p.key, line);
  };

  // Loaded here first; moved to plugins_ only when all of them pass.
  std::vector<std::unique_ptr<Plugin>> pending;
  std::set<std::string, std::less<>> taken;
  // Plugins' filter names so far (an earlier load() too); the registry's others are built-in.
  for (const auto& plugin : plugins_) {
    for (const FilterFactory* factory : plugin->own.factories()) taken.emplace(factory->name());
  }
  for (const PluginConfig& p : plugins) {
    std::string why;
    const auto trusted = checkPluginFile(p.path, trustedUser_, &why);
    if (!trusted) throw fail(p, "not loaded: " + why);

    auto plugin = std::make_unique<Plugin>();
    plugin->path = trusted->realPath;
    // RTLD_NOW: an unresolved symbol fails here, not at the first call on the data path.
    // RTLD_LOCAL: one plugin's symbols never satisfy another's.
    plugin->handle.reset(::dlopen(plugin->path.c_str(), RTLD_NOW | RTLD_LOCAL));
    if (!plugin->handle) {
      const char* error = ::dlerror();
      throw fail(p, std::string("cannot load: ") + (error != nullptr ? error : "dlopen failed"));
    }
    using EntryPoint = const PluginEntry* (*)();
    void* symbol = ::dlsym(plugin->handle.get(), kPluginEntryPoint);
    if (symbol == nullptr) {
      throw fail(p, std::string("has no ") + kPluginEntryPoint +
                        " entry point (not a portcullis plugin, or one for another plugin "
                        "interface)");
    }
    // POSIX guarantees that a dlsym result converts to a function pointer.
    plugin->entry = reinterpret_cast<EntryPoint>(symbol)();
    if (plugin->entry == nullptr) throw fail(p, std::string(kPluginEntryPoint) + " returned null");
    // The gate: an exact match, field by field. Anything else may lay out a std::string or a
    // vtable differently from us, and would fail later in ways nobody could diagnose.
    if (!(plugin->entry->abi == kPluginAbi)) {
      throw fail(p, "ABI mismatch: rebuild the plugin against this portcullis's SDK",
                 plugin->entry);
    }
    if (plugin->entry->install == nullptr) throw fail(p, "has no install function", plugin->entry);
    try {
      plugin->entry->install(plugin->own);
    } catch (const std::exception& e) {
      throw fail(p, std::string("failed to register its filters: ") + e.what(), plugin->entry);
    } catch (...) {
      throw fail(p, "failed to register its filters (unknown exception)", plugin->entry);
    }
    if (plugin->own.factories().empty()) throw fail(p, "registers no filters", plugin->entry);
    for (const FilterFactory* factory : plugin->own.factories()) {
      const std::string name(factory->name());
      if (!taken.insert(name).second) {
        throw fail(p, "filter name \"" + name + "\" clashes with another plugin's", plugin->entry);
      }
      if (registry_.find(name) != nullptr) {
        throw fail(p, "filter name \"" + name + "\" clashes with a built-in filter", plugin->entry);
      }
    }
    pending.push_back(std::move(plugin));
  }
  for (auto& plugin : pending) {
    for (const FilterFactory* factory : plugin->own.factories()) {
      // Cannot fail: every name was checked above.
      registry_.add(std::make_unique<PluginFilterFactory>(*factory, plugin->path));
    }
    plugins_.push_back(std::move(plugin));
  }
}

std::vector<LoadedPlugin> PluginSet::loaded() const {
  std::vector<LoadedPlugin> out;
  for (const auto& plugin : plugins_) {
    LoadedPlugin l{plugin->path,
                   plugin->entry->name != nullptr ? plugin->entry->name : "",
                   plugin->entry->version != nullptr ? plugin->entry->version : "",
                   {}};
    for (const FilterFactory* factory : plugin->own.factories()) {
      l.filters.emplace_back(factory->name());
    }
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace portcullis
