// The plugin loader against real .so files (tests/support/plugins/plugin_fixture.cc, built in
// PORTCULLIS_TEST_PLUGIN_DIR): a good plugin loads and configures through the config loader;
// every refusal (missing file, not a library, no entry point, ABI mismatch, name clashes, an
// untrusted file or directory, a configure that throws) is one ConfigError that names the key
// and the file, leaves the registry as it was and keeps nothing loaded.

#include "proxy/plugins/plugin_loader.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "filters/builtin_filters.h"
#include "proxy/config/config.h"

namespace portcullis {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) {
  return std::string(PORTCULLIS_TEST_PLUGIN_DIR) + "/" + name + ".so";
}

// True while `path` is mapped in this process (RTLD_NOLOAD only looks).
bool isLoaded(const std::string& path) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (handle == nullptr) return false;
  ::dlclose(handle);
  return true;
}

std::string pluginList(const std::vector<std::string>& paths) {
  std::string yaml = "plugins:\n";
  for (const auto& p : paths) yaml += "  - path: " + p + "\n";
  return yaml;
}

// A private directory (mode 0700, ours) for copies of the fixtures with other modes/owners.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "plugin-test-XXXXXX").string();
    path_ = ::mkdtemp(templ.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string copy(const std::string& from, const std::string& name) const {
    std::string to = path_ + "/" + name;
    fs::copy_file(from, to, fs::copy_options::overwrite_existing);
    ::chmod(to.c_str(), 0755);
    return to;
  }

 private:
  std::string path_;
};

class PluginLoaderTest : public ::testing::Test {
 protected:
  PluginLoaderTest() { registerBuiltinFilters(registry_); }

  // Loads `yaml` with a fresh PluginSet; returns the error line ("" when it loaded).
  std::string loadError(const std::string& yaml) {
    try {
      config_ = loadConfigFromString(yaml, {}, registry_, &plugins_);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return {};
  }

  FilterRegistry registry_;
  PluginSet plugins_{registry_};
  std::shared_ptr<const Config> config_;
};

TEST_F(PluginLoaderTest, GoodPluginLoadsAndConfiguresLikeABuiltIn) {
  const std::string yaml = pluginList({fixture("good")}) +
                           "filters:\n  - name: plugin_fixture\n    reject: true\n"
                           "    mode: observe\n    on_error: continue\n";
  ASSERT_EQ(loadError(yaml), "");
  ASSERT_NE(registry_.find("plugin_fixture"), nullptr);
  const auto loaded = plugins_.loaded();
  ASSERT_EQ(loaded.size(), 1U);
  EXPECT_EQ(loaded[0].name, "fixture");
  EXPECT_EQ(loaded[0].version, "0.0.1");
  EXPECT_EQ(loaded[0].filters, std::vector<std::string>{"plugin_fixture"});
  ASSERT_EQ(config_->plugins.size(), 1U);
  EXPECT_EQ(config_->plugins[0].key, "plugins[0].path");
  // The chain keys are the core's, as for a built-in filter.
  const FilterSpec* spec = nullptr;
  for (const auto& f : config_->filters) {
    if (f.name == "plugin_fixture") spec = &f;
  }
  ASSERT_NE(spec, nullptr);
  EXPECT_EQ(spec->mode, FilterMode::kObserve);
  EXPECT_EQ(spec->onError, OnError::kContinue);
  EXPECT_NE(spec->creator(FilterContext{}), nullptr);
}

// Each case: the plugins to load, and what the one error line must say besides the key.
struct RefusalCase {
  std::string what;
  std::vector<std::string> files;
  std::string key;
  std::vector<std::string> says;
};

TEST_F(PluginLoaderTest, RefusalsAreOneLineAndLoadNothing) {
  TempDir dir;
  const std::string notElf = dir.path() + "/not_elf.so";
  std::ofstream(notElf) << "this is not a shared object\n";
  ::chmod(notElf.c_str(), 0755);
  const std::string ours = PluginSet::describe(kPluginAbi);
  const std::vector<RefusalCase> cases = {
      {"missing file",
       {dir.path() + "/absent.so"},
       "plugins[0].path",
       {"absent.so: not loaded: cannot open: No such file or directory", ours}},
      {"not a library", {notElf}, "plugins[0].path", {"not_elf.so: cannot load: "}},
      {"no entry point",
       {fixture("no_entry")},
       "plugins[0].path",
       {"has no portcullis_plugin_v1 entry point"}},
      {"ABI mismatch",
       {fixture("wrong_abi")},
       "plugins[0].path",
       {"wrong_abi.so: ABI mismatch", "plugin fixture 0.0.1 built for portcullis",
        "API " + std::to_string(kApiVersionMajor + 1) + "." + std::to_string(kApiVersionMinor),
        "this is " + ours}},
      {"built against the previous API minor",
       {fixture("previous_api")},
       "plugins[0].path",
       {"previous_api.so: ABI mismatch", "plugin fixture 0.0.1 built for portcullis",
        "API " + std::to_string(kApiVersionMajor) + "." + std::to_string(kApiVersionMinor - 1),
        "this is " + ours}},
      {"clash with a built-in",
       {fixture("clash_builtin")},
       "plugins[0].path",
       {"filter name \"size\" clashes with a built-in filter"}},
      {"clash between plugins",
       {fixture("good"), fixture("clash_good")},
       "plugins[1].path",
       {"clash_good.so: filter name \"plugin_fixture\" clashes with another plugin's"}},
      {"good then bad: the good one is not kept either",
       {fixture("good"), fixture("wrong_abi")},
       "plugins[1].path",
       {"ABI mismatch"}},
  };
  const std::vector<std::string> before = registry_.names();
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string error = loadError(pluginList(c.files));
    EXPECT_EQ(error.rfind(c.key + ": ", 0), 0U) << "got: " << error;
    for (const auto& s : c.says) EXPECT_NE(error.find(s), std::string::npos) << "got: " << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << "got: " << error;
    EXPECT_EQ(registry_.names(), before);
    EXPECT_TRUE(plugins_.loaded().empty());
    for (const auto& f : c.files) EXPECT_FALSE(isLoaded(f)) << f;
  }
}

// A name taken by a plugin from an earlier load() is still another plugin's, not a built-in.
TEST_F(PluginLoaderTest, ClashesSayWhoseNameItIs) {
  plugins_.load({{fixture("good"), "plugins[0].path"}});
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"clash_good", "clashes with another plugin's"},
      {"clash_builtin", "clashes with a built-in filter"},
  };
  for (const auto& [file, says] : cases) {
    SCOPED_TRACE(file);
    std::string error;
    try {
      plugins_.load({{fixture(file), "plugins[1].path"}});
    } catch (const ConfigError& e) {
      error = e.what();
    }
    EXPECT_NE(error.find(says), std::string::npos) << "got: " << error;
    EXPECT_EQ(plugins_.loaded().size(), 1U);
  }
}

TEST_F(PluginLoaderTest, TrustChecksRefuseWhatOthersCouldChange) {
  struct Case {
    std::string what;
    mode_t fileMode;
    mode_t dirMode;
    uid_t fileOwner;  // kOurs: the test's own uid
    std::string says;
  };
  constexpr uid_t kOurs = static_cast<uid_t>(-1);
  const bool root = ::geteuid() == 0;
  std::vector<Case> cases = {
      {"group-writable file", 0775, 0755, kOurs,
       "the file is writable by group or others (mode "
       "0775)"},
      {"world-writable file", 0757, 0755, kOurs, "writable by group or others (mode 0757)"},
      {"world-writable directory", 0755, 0777, kOurs, "its directory"},
      {"group-writable directory", 0755, 0775, kOurs, "writable by group or others (mode 0775)"},
  };
  if (root) {
    cases.push_back({"owned by someone else", 0755, 0755, 65534,
                     "the file is owned by uid 65534, not by root or uid 0"});
  }
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    TempDir dir;
    const std::string so = dir.copy(fixture("good"), "good_copy.so");
    ::chmod(so.c_str(), c.fileMode);
    if (c.fileOwner != kOurs) {
      ASSERT_EQ(::chown(so.c_str(), c.fileOwner, 0), 0);
    }
    ::chmod(dir.path().c_str(), c.dirMode);
    const std::string error = loadError(pluginList({so}));
    EXPECT_NE(error.find("good_copy.so: not loaded: "), std::string::npos) << error;
    EXPECT_NE(error.find(c.says), std::string::npos) << "got: " << error;
    EXPECT_FALSE(isLoaded(so));
  }
}

TEST_F(PluginLoaderTest, TrustChecksFollowSymlinksToTheRealFile) {
  TempDir real;
  const std::string so = real.copy(fixture("good"), "good_copy.so");
  ::chmod(so.c_str(), 0777);
  TempDir links;
  const std::string link = links.path() + "/link.so";
  fs::create_symlink(so, link);
  const std::string error = loadError(pluginList({link}));
  EXPECT_NE(error.find("the file " + so + " is writable by group or others"), std::string::npos)
      << error;
}

TEST(PluginTrustTest, TheTrustedUserMayOwnIt) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  TempDir dir;
  const std::string so = dir.copy(fixture("good"), "good_copy.so");
  ASSERT_EQ(::chown(so.c_str(), 65534, 0), 0);
  ASSERT_EQ(::chown(dir.path().c_str(), 65534, 0), 0);
  FilterRegistry registry;
  PluginSet plugins(registry, 65534);
  plugins.load({{so, "plugins[0].path"}});
  EXPECT_NE(registry.find("plugin_fixture"), nullptr);
}

TEST_F(PluginLoaderTest, ConfigureErrorsNameThePlugin) {
  struct Case {
    std::string filter;
    std::string says;
  };
  const std::string good = fs::canonical(fixture("good")).string();
  const std::vector<Case> cases = {
      // A ConfigError from the plugin keeps its key path and gains the plugin's file.
      {"reject: banana", "filters[0].reject: expected true or false"},
      // Anything else it throws is its bug: one line, not std::terminate.
      {"explode: true", "filters[0]: the plugin_fixture filter of plugin " + good +
                            " failed to configure: the fixture exploded"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.filter);
    FilterRegistry registry;
    registerBuiltinFilters(registry);
    PluginSet plugins(registry);
    std::string error;
    try {
      loadConfigFromString(
          pluginList({fixture("good")}) + "filters:\n  - name: plugin_fixture\n    " + c.filter, {},
          registry, &plugins);
    } catch (const ConfigError& e) {
      error = e.what();
    }
    EXPECT_EQ(error.rfind(c.says, 0), 0U) << "got: " << error;
    EXPECT_NE(error.find(good), std::string::npos) << "got: " << error;
  }
}

TEST_F(PluginLoaderTest, PluginListIsValidated) {
  EXPECT_EQ(loadError("plugins:\n  - path: relative.so\n"),
            "plugins[0].path: must be an absolute path");
  EXPECT_EQ(loadError("plugins:\n  - path: /a.so\n    typo: 1\n"), "plugins[0].typo: unknown key");
  EXPECT_EQ(loadError("plugins:\n  - path: /a.so\n  - path: /a.so\n"),
            "plugins[1].path: \"/a.so\" is already loaded by plugins[0].path");
}

TEST(PluginConfigTest, WithoutALoaderTheListIsRecordedAndNothingLoaded) {
  FilterRegistry registry;
  registerBuiltinFilters(registry);
  const auto config =
      loadConfigFromString(pluginList({fixture("good")}), {}, registry, /*plugins=*/nullptr);
  ASSERT_EQ(config->plugins.size(), 1U);
  EXPECT_EQ(registry.find("plugin_fixture"), nullptr);
  EXPECT_FALSE(isLoaded(fixture("good")));
}

}  // namespace
}  // namespace portcullis
