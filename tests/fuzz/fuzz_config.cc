// Fuzz target: the config loader, loadConfigFromString (proxy/config.cc) with the built-in filter
// registry, as main() builds it. Input: YAML text (run with -max_len=4096 and
// -dict=tests/fuzz/dict/fuzz_config.dict so the fuzzer reaches the nested sections).
// Invariants: never crash; the only exception is ConfigError (config.h: "any error is a
// ConfigError naming the key"); a loaded config passes the checks config.cc makes (at least
// one listener, the mandatory size and recipients filters present and enforcing, positive
// timeouts, a plain DNS hostname).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <typeinfo>

#include "filters/builtin_filters.h"
#include "portcullis/config_section.h"
#include "portcullis/filter_registry.h"
#include "proxy/config/config.h"

namespace {

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

const portcullis::FilterRegistry& registry() {
  static const portcullis::FilterRegistry r = [] {
    portcullis::FilterRegistry reg;
    portcullis::registerBuiltinFilters(reg);
    return reg;
  }();
  return r;
}

void checkConfig(const portcullis::Config& c) {
  require(!c.listeners.empty(), "no listener");
  require(!c.hostname.empty() && c.hostname.size() <= 253, "hostname size");
  require(c.hostname.find_first_of(" \r\n\t") == std::string::npos, "hostname whitespace");
  bool size = false;
  bool recipients = false;
  for (const auto& f : c.filters) {
    require(static_cast<bool>(f.creator), "filter without a creator");
    require(f.timeout.count() > 0, "filter timeout not positive");
    if (f.name == "size" || f.name == "recipients") {
      require(f.mode == portcullis::FilterMode::kEnforce, "mandatory filter in observe mode");
      (f.name == "size" ? size : recipients) = true;
    }
  }
  require(size && recipients, "mandatory filter missing");
  require(c.timeouts.command.count() > 0 && c.timeouts.dataBlock.count() > 0 &&
              c.timeouts.endOfData.count() > 0,
          "timeout not positive");
  require(c.limits.maxMessageSize > 0 && c.limits.maxRecipients > 0, "limits");
  require(!c.spool.directory.empty(), "spool directory empty");
  require(c.dns.attempts >= 1 && c.dns.attempts <= 10, "dns attempts");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  try {
    const auto cfg = portcullis::loadConfigFromString(yaml, {}, registry());
    require(cfg != nullptr, "null config");
    checkConfig(*cfg);
  } catch (const portcullis::ConfigError& e) {
    require(e.what() != nullptr && e.what()[0] != '\0', "ConfigError without a message");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception %s: %s\n", typeid(e).name(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "unexpected non-std exception\n");
    std::abort();
  }
  return 0;
}
