#pragma once
// plugin.h: what a filter plugin (a .so) exports. One C entry point, portcullis_plugin_v1(),
// returns a PluginEntry: the ABI tag the plugin was compiled with and a function that adds its
// factories to the daemon's FilterRegistry. The C++ API itself crosses the boundary (vtables,
// std::string, std::function), so the daemon loads a plugin only when its tag equals the
// daemon's own field by field: API version, SDK release, compiler and standard library ABI.
// The entry point is called once, at start-up, before the config's filters are resolved
// (proxy/plugins/plugin_loader.h); never on the data path. Usage (one per plugin):
//
//   extern "C" const portcullis::PluginEntry* portcullis_plugin_v1() {
//     static constexpr portcullis::PluginEntry kEntry =
//         portcullis::makePluginEntry("my_filters", "1.0.0", &registerMyFilters);
//     return &kEntry;
//   }

#include <cstdint>

#include "portcullis/filter_registry.h"
#include "portcullis/sdk_version.h"
#include "portcullis/version.h"

namespace portcullis {

enum class PluginCompiler : std::int32_t { kOther = 0, kGcc = 1, kClang = 2 };
enum class PluginStdlib : std::int32_t { kOther = 0, kLibstdcxx = 1, kLibcxx = 2 };

// What makes two C++ builds binary-compatible for this API. Plain integers in a fixed order:
// the daemon reads it from a plugin built for another version, so the layout never changes
// within portcullis_plugin_v1 (a new layout gets a new entry point name).
struct PluginAbi {
  std::int32_t apiMajor;  // kApiVersionMajor/Minor (portcullis/version.h)
  std::int32_t apiMinor;
  std::int32_t sdkMajor;  // the portcullis release the headers came with (sdk_version.h)
  std::int32_t sdkMinor;
  std::int32_t sdkPatch;
  PluginCompiler compiler;
  std::int32_t compilerMajor;  // vtable and name-mangling changes come with major versions
  PluginStdlib stdlib;
  std::int32_t cxx11Abi;         // libstdc++'s _GLIBCXX_USE_CXX11_ABI (std::string layout); -1
  std::int32_t debugContainers;  // _GLIBCXX_DEBUG changes every container's layout

  bool operator==(const PluginAbi&) const = default;
};

// The tag of whatever includes this header: the plugin's when the plugin compiles it, the
// daemon's when the daemon does.
inline constexpr PluginAbi kPluginAbi {
  .apiMajor = kApiVersionMajor, .apiMinor = kApiVersionMinor, .sdkMajor = kSdkVersionMajor,
  .sdkMinor = kSdkVersionMinor, .sdkPatch = kSdkVersionPatch,
#if defined(__clang__)
  .compiler = PluginCompiler::kClang, .compilerMajor = __clang_major__,
#elif defined(__GNUC__)
  .compiler = PluginCompiler::kGcc, .compilerMajor = __GNUC__,
#else
  .compiler = PluginCompiler::kOther, .compilerMajor = 0,
#endif
#if defined(_LIBCPP_VERSION)
  .stdlib = PluginStdlib::kLibcxx, .cxx11Abi = -1,
#elif defined(__GLIBCXX__)
  .stdlib = PluginStdlib::kLibstdcxx, .cxx11Abi = _GLIBCXX_USE_CXX11_ABI,
#else
  .stdlib = PluginStdlib::kOther, .cxx11Abi = -1,
#endif
#if defined(_GLIBCXX_DEBUG)
  .debugContainers = 1,
#else
  .debugContainers = 0,
#endif
};

using RegisterFilters = void (*)(FilterRegistry& registry);

struct PluginEntry {
  PluginAbi abi;            // first: read before anything else is trusted
  const char* name;         // the plugin's name, for logs ("example")
  const char* version;      // the plugin's own release, for logs
  RegisterFilters install;  // adds the plugin's factories; called once, after the checks
};

// The entry point's name, for dlsym.
inline constexpr const char* kPluginEntryPoint = "portcullis_plugin_v1";

constexpr PluginEntry makePluginEntry(const char* name, const char* version,
                                      RegisterFilters install) {
  return PluginEntry{kPluginAbi, name, version, install};
}

}  // namespace portcullis

// Defined by each plugin (see the top of this file); never by the daemon.
extern "C" const portcullis::PluginEntry* portcullis_plugin_v1();
