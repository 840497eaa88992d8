// ConfigSection: parseDuration, parseSize, the typed getters, key paths in every error, and
// unknown-key detection in nested sections and lists.

#include "portcullis/config_section.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "proxy/api/config_section_impl.h"

namespace portcullis {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, Table) {
  const struct {
    std::string in;
    std::optional<long long> wantMs;
  } cases[] = {
      {"30s", 30'000},
      {"5m", 300'000},
      {"250ms", 250},
      {"1h", 3'600'000},
      {"2d", 172'800'000},
      {"45", 45'000},
      {"0", 0},
      {"0s", 0},
      {"007s", 7'000},
      {"", std::nullopt},
      {"s", std::nullopt},
      {"ms", std::nullopt},
      {"5x", std::nullopt},
      {"5S", std::nullopt},
      {"5 s", std::nullopt},
      {" 5s", std::nullopt},
      {"5s ", std::nullopt},
      {"-5s", std::nullopt},
      {"+5s", std::nullopt},
      {"1.5s", std::nullopt},
      {"5m30s", std::nullopt},
      {"5sec", std::nullopt},
      {"99999999999999999999s", std::nullopt},
      {"9999999999999999d", std::nullopt},
      {std::string(40, '1'), std::nullopt},
  };
  for (const auto& tc : cases) {
    const auto got = parseDuration(tc.in);
    if (!tc.wantMs) {
      EXPECT_FALSE(got) << "\"" << tc.in << "\": got " << got->count() << "ms, want nullopt";
    } else {
      ASSERT_TRUE(got) << "\"" << tc.in << "\": got nullopt, want " << *tc.wantMs << "ms";
      EXPECT_EQ(got->count(), *tc.wantMs)
          << "\"" << tc.in << "\": got " << got->count() << "ms, want " << *tc.wantMs << "ms";
    }
  }
}

TEST(ParseSize, Table) {
  const struct {
    std::string in;
    std::optional<std::uint64_t> want;
  } cases[] = {
      {"10240000", 10'240'000},
      {"0", 0},
      {"512k", 524'288},
      {"512K", 524'288},
      {"1KiB", 1024},
      {"10M", 10'485'760},
      {"10MiB", 10'485'760},
      {"1G", 1'073'741'824},
      {"1GiB", 1'073'741'824},
      {"18446744073709551615", std::numeric_limits<std::uint64_t>::max()},
      {"", std::nullopt},
      {"M", std::nullopt},
      {"10MB", std::nullopt},
      {"10m", std::nullopt},
      {"10 M", std::nullopt},
      {"-1", std::nullopt},
      {"1.5M", std::nullopt},
      {"ten", std::nullopt},
      {"18446744073709551616", std::nullopt},
      {"17179869184G", std::nullopt},
      {"17179869183G", 17'179'869'183ULL * 1024 * 1024 * 1024},
  };
  for (const auto& tc : cases) {
    const auto got = parseSize(tc.in);
    if (!tc.want) {
      EXPECT_FALSE(got) << "\"" << tc.in << "\": got " << *got << ", want nullopt";
    } else {
      ASSERT_TRUE(got) << "\"" << tc.in << "\": got nullopt, want " << *tc.want;
      EXPECT_EQ(*got, *tc.want) << "\"" << tc.in << "\": got " << *got << ", want " << *tc.want;
    }
  }
}

ConfigSection sectionOf(const std::string& yaml, const std::string& path = "filters[0]") {
  return makeConfigSection(YAML::Load(yaml), path);
}

// Runs `f`, which must throw a ConfigError for `key` (and only that key).
void expectConfigError(const std::function<void()>& f, const std::string& key,
                       const std::string& messagePart = "") {
  try {
    f();
    ADD_FAILURE() << "got no error, want a ConfigError for " << key;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), key) << "got key \"" << e.key() << "\" (" << e.what() << "), want \"" << key
                            << "\"";
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(key + ": ", 0), 0u)
        << "got \"" << what << "\", want it to start with \"" << key << ": \"";
    EXPECT_NE(what.find(messagePart), std::string::npos)
        << "got \"" << what << "\", want it to mention \"" << messagePart << "\"";
  }
}

TEST(ConfigSection, ScalarGetters) {
  const ConfigSection s = sectionOf(R"(
name: dnsbl
count: 7
ratio: 0.25
on: yes
off: off
wait: 5m
big: 10M
list: [a, b]
nested: {x: 1}
empty:
)");
  EXPECT_EQ(s.path(), "filters[0]");
  EXPECT_EQ(s.keyPath("count"), "filters[0].count");
  EXPECT_EQ(s.getString("name"), "dnsbl");
  EXPECT_EQ(s.getString("absent", std::string("dflt")), "dflt");
  EXPECT_EQ(s.getInt("count", std::nullopt, 0, 10), 7);
  EXPECT_EQ(s.getInt("absent", 3, 0, 10), 3);
  EXPECT_DOUBLE_EQ(s.getDouble("ratio", std::nullopt), 0.25);
  EXPECT_TRUE(s.getBool("on"));
  EXPECT_FALSE(s.getBool("off"));
  EXPECT_TRUE(s.getBool("absent", true));
  EXPECT_EQ(s.getDuration("wait"), milliseconds(300'000));
  EXPECT_EQ(s.getDuration("absent", milliseconds(5)), milliseconds(5));
  EXPECT_EQ(s.getSize("big"), 10'485'760u);
  EXPECT_EQ(s.getSize("absent", 1u), 1u);
  EXPECT_EQ(s.getStringList("list"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(s.getStringList("name"), (std::vector<std::string>{"dnsbl"})) << "a scalar is a list";
  EXPECT_EQ(s.getStringList("absent", std::vector<std::string>{}), std::vector<std::string>{});
  EXPECT_EQ(s.getChoice("name", {"dnsbl", "rdns"}), "dnsbl");
  EXPECT_TRUE(s.has("name"));
  EXPECT_FALSE(s.has("empty")) << "a null value counts as absent";
  EXPECT_FALSE(s.has("absent"));
  EXPECT_EQ(s.getString("empty", std::string("fallback")), "fallback");
  EXPECT_EQ(makeConfigSection(YAML::Load("a: 1"), "").keyPath("a"), "a");
}

TEST(ConfigSection, ErrorsNameTheKey) {
  const ConfigSection s = sectionOf(R"(
name: dnsbl
count: seven
neg: -3
ratio: lots
inf: 1e999
flag: maybe
wait: soon
big: huge
list: [a, {b: 1}]
map: {x: 1}
seq: [1, 2]
rules: [{x: 1}, 5]
)");
  expectConfigError([&] { s.getString("missing"); }, "filters[0].missing", "required");
  expectConfigError([&] { s.getString("map"); }, "filters[0].map", "a map");
  expectConfigError([&] { s.getString("seq"); }, "filters[0].seq", "a list");
  expectConfigError([&] { s.getInt("count", 1, 0, 10); }, "filters[0].count", "integer");
  expectConfigError([&] { s.getInt("neg", 1, 0, 10); }, "filters[0].neg", "out of range");
  expectConfigError([&] { s.getInt("missing", std::nullopt, 0, 10); }, "filters[0].missing");
  expectConfigError([&] { s.getDouble("ratio", 1.0); }, "filters[0].ratio", "number");
  expectConfigError([&] { s.getDouble("inf", 1.0); }, "filters[0].inf", "number");
  expectConfigError([&] { s.getBool("flag"); }, "filters[0].flag", "true or false");
  expectConfigError([&] { s.getDuration("wait"); }, "filters[0].wait", "duration");
  expectConfigError([&] { s.getSize("big"); }, "filters[0].big", "size");
  expectConfigError([&] { s.getStringList("list"); }, "filters[0].list[1]", "string");
  expectConfigError([&] { s.getStringList("map"); }, "filters[0].map", "list");
  expectConfigError(
      [&] {
        s.getChoice("name", {"rdns", "helo"});
      },
      "filters[0].name", "rdns | helo");
  expectConfigError([&] { s.section("seq"); }, "filters[0].seq", "map");
  expectConfigError([&] { s.getSectionList("map"); }, "filters[0].map", "list");
  expectConfigError([&] { s.getSectionList("rules"); }, "filters[0].rules[1]", "map");
  expectConfigError([&] { s.fail("custom", "nope"); }, "filters[0].custom", "nope");
}

TEST(ConfigSection, UnknownKeys) {
  {
    const ConfigSection s = sectionOf("name: x\ntypo: 1\n");
    s.getString("name");
    expectConfigError([&] { s.rejectUnknownKeys(); }, "filters[0].typo", "unknown key");
  }
  {
    const ConfigSection s = sectionOf("name: x\ntypo: 1\n");
    s.getString("name");
    s.markUsed("typo");
    EXPECT_NO_THROW(s.rejectUnknownKeys());
  }
  {
    // A key read with a fallback counts as read even when it is absent or null.
    const ConfigSection s = sectionOf("name: x\nopt:\n");
    s.getString("name");
    s.getString("opt", std::string("d"));
    EXPECT_NO_THROW(s.rejectUnknownKeys());
  }
  {
    const ConfigSection s = sectionOf("sub: {a: 1, b: 2}\n");
    const ConfigSection sub = s.section("sub");
    EXPECT_EQ(sub.path(), "filters[0].sub");
    sub.getInt("a", std::nullopt, 0, 9);
    expectConfigError([&] { s.rejectUnknownKeys(); }, "filters[0].sub.b", "unknown key");
  }
  {
    const ConfigSection s = sectionOf("rules: [{a: 1}, {a: 2, z: 3}]\n");
    const auto rules = s.getSectionList("rules");
    ASSERT_EQ(rules.size(), 2u);
    EXPECT_EQ(rules[1].path(), "filters[0].rules[1]");
    for (const auto& r : rules) r.getInt("a", std::nullopt, 0, 9);
    expectConfigError([&] { s.rejectUnknownKeys(); }, "filters[0].rules[1].z", "unknown key");
  }
  {
    // An absent section is empty: every getter falls back.
    const ConfigSection s = sectionOf("name: x\n");
    s.getString("name");
    const ConfigSection sub = s.section("absent");
    EXPECT_EQ(sub.getInt("n", 4, 0, 9), 4);
    EXPECT_TRUE(s.getSectionList("absent").empty());
    EXPECT_NO_THROW(s.rejectUnknownKeys());
  }
}

}  // namespace
}  // namespace portcullis
