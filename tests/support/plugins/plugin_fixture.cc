// Test plugins for the loader (tests/unit/plugins/plugin_loader_test.cc and
// tests/integration/test_plugins.py), one source built as several MODULE libraries that differ
// by one definition each (tests/CMakeLists.txt):
//   (none)                 a good plugin: the filter "plugin_fixture"
//   FIXTURE_WRONG_ABI      the same, tagged for API major + 1
//   FIXTURE_PREVIOUS_API   the same, tagged for the previous API minor (built against 1.2
//                          when the daemon is 1.3): a minor bump refuses it too
//   FIXTURE_NO_ENTRY       no portcullis_plugin_v1 at all
//   FIXTURE_NAME=<"name">  registers its filter under another name (a clash with "size", ...)
// The filter rejects at MAIL FROM when configured with `reject: true` and fails there (for
// on_error) with `fail: true`; `explode: true` makes its configure throw a std::runtime_error
// (a plugin bug the loader must turn into one line), `explode_per_session: true` its creator,
// for every session (a filter that cannot start: that session's error, not the daemon's).

#include <memory>
#include <stdexcept>

#include "portcullis/filter_factory.h"
#include "portcullis/filter_registry.h"
#include "portcullis/plugin.h"

#ifndef FIXTURE_NAME
#define FIXTURE_NAME "plugin_fixture"
#endif

namespace plugin_fixture {
namespace {

using portcullis::ConfigSection;
using portcullis::FilterContext;
using portcullis::FilterCreator;
using portcullis::Next;
using portcullis::SessionView;
using portcullis::Verdict;

class FixtureFilter final : public portcullis::Filter {
 public:
  FixtureFilter(bool reject, bool fail) : reject_(reject), fail_(fail) {}
  void onMailFrom(const SessionView&, Next next) override {
    if (fail_) {
      next.fail("the fixture failed on purpose");
      return;
    }
    if (reject_) {
      next(Verdict::reject(portcullis::Reply::permanent(550, "5.7.1", "Rejected by the fixture"),
                           "fixture"));
      return;
    }
    next(Verdict::proceed());
  }

 private:
  bool reject_;
  bool fail_;
};

class FixtureFactory final : public portcullis::FilterFactory {
 public:
  std::string_view name() const override { return FIXTURE_NAME; }
  FilterCreator configure(const ConfigSection& section) const override {
    if (section.getBool("explode", false)) throw std::runtime_error("the fixture exploded");
    const bool reject = section.getBool("reject", false);
    const bool fail = section.getBool("fail", false);
    const bool explodePerSession = section.getBool("explode_per_session", false);
    return [reject, fail, explodePerSession](const FilterContext&) {
      if (explodePerSession) throw std::runtime_error("the fixture could not start");
      return std::make_unique<FixtureFilter>(reject, fail);
    };
  }
};

#ifndef FIXTURE_NO_ENTRY
void install(portcullis::FilterRegistry& registry) {
  registry.add(std::make_unique<FixtureFactory>());
}

#ifdef FIXTURE_WRONG_ABI
constexpr portcullis::PluginEntry wrongAbi() {
  portcullis::PluginEntry entry = portcullis::makePluginEntry("fixture", "0.0.1", &install);
  entry.abi.apiMajor += 1;
  return entry;
}
constexpr portcullis::PluginEntry kEntry = wrongAbi();
#elif defined(FIXTURE_PREVIOUS_API)
constexpr portcullis::PluginEntry previousApi() {
  portcullis::PluginEntry entry = portcullis::makePluginEntry("fixture", "0.0.1", &install);
  entry.abi.apiMinor -= 1;
  return entry;
}
constexpr portcullis::PluginEntry kEntry = previousApi();
#else
constexpr portcullis::PluginEntry kEntry =
    portcullis::makePluginEntry("fixture", "0.0.1", &install);
#endif
#endif  // FIXTURE_NO_ENTRY

}  // namespace
}  // namespace plugin_fixture

#ifndef FIXTURE_NO_ENTRY
extern "C" const portcullis::PluginEntry* portcullis_plugin_v1() { return &plugin_fixture::kEntry; }
#endif
