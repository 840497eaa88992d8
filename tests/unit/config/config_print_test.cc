// --print-config: every setting written in the loader's spelling, so that the output loads back
// into the same config; -n shows only what differs from the defaults; changedSections names the
// top-level keys a reload reports.

#include "proxy/config/config_print.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/support/builtin_config.h"

namespace portcullis {
namespace {

std::shared_ptr<const Config> load(const std::string& yaml) { return test::loadBuiltin(yaml); }

constexpr const char* kBusy = R"(
hostname: mx.example.com
listen:
  - "127.0.0.1:2525"
  - {address: "[::1]:2526", tls: none}
trusted_proxies: [10.0.0.0/8]
upstream: {address: "127.0.0.1:10026", identity: proxy-v2, pool_size: 0, connect_timeout: 250ms}
limits: {max_message_size: 5M, max_recipients: 7, min_data_rate: 0}
timeouts: {command: 5m, greeting_delay: 2s}
spool: {directory: /tmp/spool, memory_limit: 65536}
log: {level: debug, format: json}
reply: {reference: false}
dns: {servers: ["127.0.0.1:5353"], timeout: 1500ms, reverse_lookup: true}
filters:
  - name: header_checks
    mode: observe
    rules:
      - {match: '^Subject:.*viagra', action: reject, reply: "550 5.7.1 No"}
  - {name: helo, defer_to: rcpt}
)";

TEST(ConfigPrint, OutputLoadsBackToTheSameConfig) {
  for (const char* yaml : {"{}", kBusy}) {
    const auto first = load(yaml);
    const std::string printed = configToYaml(*first);
    std::shared_ptr<const Config> again;
    ASSERT_NO_THROW(again = load(printed)) << printed;
    EXPECT_EQ(configToYaml(*again), printed);
    EXPECT_TRUE(changedSections(*first, *again).empty());
  }
}

TEST(ConfigPrint, EveryDefaultIsFilledIn) {
  const std::string printed = configToYaml(*load("{}"));
  for (const char* want :
       {"max_message_size: 10240000", "pool_size: auto", "command: 5m", "data_grace: 30s",
        "greeting_delay: 0s", "memory_limit: 1M", "min_version: 1.2", "reverse_lookup: true",
        "address: 127.0.0.1:2525", "level: info", "name: size", "name: recipients"}) {
    EXPECT_NE(printed.find(want), std::string::npos) << "want " << want << " in\n" << printed;
  }
}

TEST(ConfigPrint, NonDefaultShowsOnlyWhatDiffers) {
  const auto defaults = load("{}");
  EXPECT_EQ(configToYaml(*load("{}"), defaults.get()), "");
  const std::string printed = configToYaml(
      *load("limits: {max_message_size: 5M}\ntimeouts: {command: 90s}\n"), defaults.get());
  EXPECT_EQ(printed, "limits:\n  max_message_size: 5M\ntimeouts:\n  command: 90s\n");
}

TEST(ConfigPrint, ChangedSectionsNamesTopLevelKeys) {
  struct Case {
    const char* after;
    std::vector<std::string> want;
  };
  const char* before = "limits: {max_recipients: 5}\nfilters: [{name: helo}]\n";
  const Case cases[] = {
      {"limits: {max_recipients: 5}\nfilters: [{name: helo}]\n", {}},
      {"limits: {max_recipients: 6}\nfilters: [{name: helo}]\n", {"limits"}},
      {"limits: {max_recipients: 5}\nfilters: [{name: helo, mode: observe}]\n", {"filters"}},
      {"hostname: other.example\nlimits: {max_recipients: 9}\n", {"hostname", "limits", "filters"}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(changedSections(*load(before), *load(c.after)), c.want) << "after: " << c.after;
  }
}

}  // namespace
}  // namespace portcullis
