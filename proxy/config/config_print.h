#pragma once
// The effective configuration as YAML (portcullis --print-config), and what a reload compares.
// configToYaml() writes every setting of a Config, defaults filled in, in the spelling the
// loader reads, so its output loads back into an equal Config (the round trip is tested).
// A filter's own settings are shown as written (its factory keeps them private); the keys
// every filter has (mode, timeout, on_error) are filled in. Pure functions, no I/O.

#include <string>
#include <vector>

#include "proxy/config/config.h"

namespace portcullis {

// One top-level key and its value as YAML text ("limits" -> "max_message_size: ...").
struct ConfigSectionText {
  std::string key;
  std::string yaml;
};

// Every top-level key of `config`, in the order of config/portcullis.yaml.
std::vector<ConfigSectionText> configSections(const Config& config);

// The whole file. `onlyChanged`: only the settings that differ from `defaults` (postconf -n);
// a list (listen, filters, ...) is shown whole when it differs at all.
std::string configToYaml(const Config& config, const Config* defaults = nullptr);

// The top-level keys whose value differs between `a` and `b` ("filters", "limits").
std::vector<std::string> changedSections(const Config& a, const Config& b);

}  // namespace portcullis
