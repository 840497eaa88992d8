#pragma once
// Helpers for filter unit tests: build a filter from YAML through its registered factory (so
// config validation is exercised exactly as the daemon does it), call one hook with a real
// Next, and collect the verdict whether it arrives inline or later. TestSession is the session
// data a test fills in (the core's SessionRecord fields) and the SessionView filters see of it.

#include <yaml-cpp/yaml.h>

#include <memory>
#include <optional>
#include <string>

#include "filters/builtin_filters.h"
#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"
#include "portcullis/filter_registry.h"
#include "portcullis/resolver.h"
#include "proxy/api/config_section_impl.h"
#include "proxy/api/next_access.h"
#include "proxy/api/session_record.h"

namespace portcullis::testing {

// Collects the completion of one hook call.
class Collector final : public CompletionSink {
 public:
  void complete(std::uint64_t, std::optional<Verdict> verdict, std::string error) override {
    ++completions;
    this->verdict = std::move(verdict);
    this->error = std::move(error);
  }
  void duplicate(std::uint64_t) override { ++duplicates; }

  int completions = 0;
  int duplicates = 0;
  std::optional<Verdict> verdict;
  std::string error;
};

// Builds the filter `name` with the YAML map `yaml` (its own keys only). Throws ConfigError.
inline std::unique_ptr<Filter> makeFilter(const std::string& name, const std::string& yaml,
                                          const FilterContext& context) {
  FilterRegistry registry;
  registerBuiltinFilters(registry);
  const FilterFactory* factory = registry.find(name);
  if (factory == nullptr) throw std::runtime_error("no filter " + name);
  YAML::Node node = yaml.empty() ? YAML::Node(YAML::NodeType::Map) : YAML::Load(yaml);
  const ConfigSection section = makeConfigSection(node, "filters[0]");
  FilterCreator creator = factory->configure(section);
  section.rejectUnknownKeys();
  return creator(context);
}

// Calls `hook` (e.g. &Filter::onConnect) with a Next wired to `sink`.
template <typename Hook>
void callHook(Filter& f, Hook hook, const SessionView& view,
              const std::shared_ptr<Collector>& sink) {
  (f.*hook)(view, NextAccess::make(std::weak_ptr<CompletionSink>(sink), 1));
}

// A completion for failure messages: "kind code enhanced text [+Name: value]...",
// "fail(error)" or "no completion".
inline std::string show(const Collector& c) {
  if (c.completions == 0) return "no completion";
  if (!c.verdict) return "fail(" + c.error + ")";
  std::string out(verdictName(c.verdict->kind()));
  if (c.verdict->reply()) out += " " + c.verdict->reply()->summary();
  for (const auto& h : c.verdict->headers()) out += " +" + h.name + ": " + h.value;
  return out;
}

// The queries a FakeResolver saw, in order: "MX?mx.test A?mail.mx.test".
template <typename Resolver>
std::string showQueries(const Resolver& r) {
  std::string out;
  for (const auto& [name, type] : r.queries()) {
    out += (out.empty() ? "" : " ") + std::string(dnsTypeName(type)) + "?" + name;
  }
  return out;
}

// A SessionRecord to fill in, that is also shown as a SessionView (the view reads it live).
class TestSession : public SessionRecord {
 public:
  TestSession() : view_(*this) {}
  TestSession(const TestSession& other) : SessionRecord(other), view_(*this) {}
  TestSession& operator=(const TestSession& other) {
    SessionRecord::operator=(other);
    return *this;
  }
  operator const SessionView&() const { return view_; }  // NOLINT: a test convenience
  const SessionView& view() const { return view_; }

 private:
  SessionRecordView view_;
};

inline TestSession viewFor(const std::string& address) {
  TestSession v;
  v.id = "test";
  v.client.address = address;
  v.client.port = 12345;
  v.client.ipv6 = address.find(':') != std::string::npos;
  v.localAddress = "127.0.0.1";
  v.localPort = 25;
  v.hostname = "mx.test.local";
  v.limits = {10'240'000, 1000};
  return v;
}

}  // namespace portcullis::testing
