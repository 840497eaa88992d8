// planReload: which listeners a reload binds, closes and keeps, which changed keys take effect,
// and which keep their running value until a restart.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "proxy/server/server.h"
#include "tests/support/builtin_config.h"

namespace portcullis {
namespace {

std::shared_ptr<const Config> load(const std::string& yaml) { return test::loadBuiltin(yaml); }

TEST(ReloadPlan, ListenersAddedRemovedAndKept) {
  const auto running = load(R"(listen: ["127.0.0.1:2525", "127.0.0.1:2526", "[::1]:2525"])");
  const auto fresh = load(R"(listen: ["[::1]:2525", {address: "127.0.0.1:2525", tls: none},
                                      "127.0.0.1:2527"])");
  const ReloadPlan plan = planReload(*running, *fresh);
  const std::vector<std::pair<std::size_t, std::size_t>> kept = {{2, 0}, {0, 1}};
  EXPECT_EQ(plan.kept, kept);
  EXPECT_EQ(plan.added, std::vector<std::size_t>{2});
  EXPECT_EQ(plan.removed, std::vector<std::size_t>{1});
  EXPECT_EQ(plan.changed, std::vector<std::string>{"listen"});
  EXPECT_TRUE(plan.needsRestart.empty());
}

TEST(ReloadPlan, RestartOnlyKeysKeepTheirRunningValue) {
  struct Case {
    const char* after;
    std::vector<std::string> needsRestart;
    std::vector<std::string> changed;
  };
  const char* before =
      "spool: {directory: /tmp/a}\ndns: {servers: [\"127.0.0.1:53\"]}\nlog: {level: info}\n";
  const Case cases[] = {
      {before, {}, {}},
      {"spool: {directory: /tmp/b}\ndns: {servers: [\"127.0.0.1:53\"]}\nlog: {level: info}\n",
       {"spool.directory"},
       {}},
      {"spool: {directory: /tmp/a, memory_limit: 4096}\ndns: {servers: [\"127.0.0.1:53\"]}\n",
       {},
       {"spool"}},
      {"spool: {directory: /tmp/a}\ndns: {servers: [\"127.0.0.1:54\"], reverse_lookup: false}\n"
       "log: {level: debug}\nadmin: {listen: \"127.0.0.1:9025\"}\nlimits: {max_errors: 3}\n",
       {"admin.listen", "log", "dns.servers"},
       {"limits", "dns"}},
      // The worker threads and their listeners are made once, at start-up.
      {"workers: 4\nspool: {directory: /tmp/a}\ndns: {servers: [\"127.0.0.1:53\"]}\n"
       "log: {level: info}\n",
       {"workers"},
       {}},
  };
  for (const Case& c : cases) {
    const auto running = load(before);
    const ReloadPlan plan = planReload(*running, *load(c.after));
    EXPECT_EQ(plan.needsRestart, c.needsRestart) << c.after;
    EXPECT_EQ(plan.changed, c.changed) << c.after;
    EXPECT_EQ(plan.next->spool.directory, "/tmp/a");
    EXPECT_EQ(plan.next->dns.servers, running->dns.servers);
    EXPECT_EQ(plan.next->log.level, "info");
    EXPECT_FALSE(plan.next->admin.listen.has_value());
    EXPECT_EQ(plan.next->process.workers, 1u);
  }
}

}  // namespace
}  // namespace portcullis
