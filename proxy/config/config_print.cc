// --print-config and reload's change list. See config_print.h.

#include "proxy/config/config_print.h"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <string_view>

namespace portcullis {
namespace {

// The largest unit that states the duration exactly ("30s", "5m", "250ms").
std::string duration(milliseconds d) {
  const auto ms = d.count();
  static constexpr std::pair<std::int64_t, std::string_view> kUnits[] = {
      {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}};
  for (const auto& [factor, unit] : kUnits) {
    if (ms != 0 && ms % factor == 0) return std::to_string(ms / factor) + std::string(unit);
  }
  return std::to_string(ms) + (ms == 0 ? "s" : "ms");
}

// Bytes, or G/M where that is exact, or k below a megabyte ("10240000" stays as Postfix's
// message_size_limit is usually written, not "10000k").
std::string size(std::uint64_t n) {
  static constexpr std::pair<std::uint64_t, std::string_view> kUnits[] = {
      {1024ULL * 1024 * 1024, "G"}, {1024ULL * 1024, "M"}, {1024, "k"}};
  for (const auto& [factor, unit] : kUnits) {
    if (n != 0 && n % factor == 0 && (factor > 1024 || n < 1024 * 1024)) {
      return std::to_string(n / factor) + std::string(unit);
    }
  }
  return std::to_string(n);
}

// A list; an empty one is written "[]" on the key's line.
YAML::Node list() {
  YAML::Node n(YAML::NodeType::Sequence);
  n.SetStyle(YAML::EmitterStyle::Flow);
  return n;
}

YAML::Node stringList(const std::vector<std::string>& items) {
  YAML::Node n = list();
  for (const auto& i : items) n.push_back(i);
  if (!items.empty()) n.SetStyle(YAML::EmitterStyle::Block);
  return n;
}

std::string_view tlsListenName(TlsListenMode m) {
  return m == TlsListenMode::kImplicit ? "implicit"
         : m == TlsListenMode::kNone   ? "none"
                                       : "starttls";
}

std::string_view upstreamTlsName(UpstreamTls t) {
  return t == UpstreamTls::kRequire         ? "require"
         : t == UpstreamTls::kOpportunistic ? "opportunistic"
                                            : "none";
}

std::string_view logOutputName(LogOutput o) {
  return o == LogOutput::kSyslog ? "syslog" : o == LogOutput::kFile ? "file" : "stderr";
}

std::string_view facilityName(int code) {
  for (const auto& f : kSyslogFacilities) {
    if (f.code == code) return f.name;
  }
  return "mail";
}

YAML::Node filterNode(const FilterSpec& f) {
  YAML::Node n = f.source.empty() ? YAML::Node(YAML::NodeType::Map) : YAML::Load(f.source);
  n["name"] = f.name;
  n["mode"] = f.mode == FilterMode::kObserve ? "observe" : "enforce";
  n["timeout"] = duration(f.timeout);
  n["on_error"] = f.onError == OnError::kContinue ? "continue" : "tempfail";
  if (f.deferTo) n["defer_to"] = "rcpt";
  return n;
}

// Top-level keys and their values, in the order of config/portcullis.yaml.
std::vector<std::pair<std::string, YAML::Node>> nodes(const Config& c) {
  std::vector<std::pair<std::string, YAML::Node>> out;
  out.emplace_back("user", YAML::Node(c.process.user));
  out.emplace_back("group", YAML::Node(c.process.group));
  out.emplace_back("pid_file", YAML::Node(c.process.pidFile));
  out.emplace_back("workers",
                   c.process.workersAuto ? YAML::Node("auto") : YAML::Node(c.process.workers));
  YAML::Node admin;
  admin["listen"] = c.admin.listen ? c.admin.listen->toString() : "";
  out.emplace_back("admin", admin);
  YAML::Node milter;
  milter["listen"] = c.milter.listen;
  milter["max_sessions"] = c.milter.maxSessions;
  milter["timeout"] = duration(c.milter.timeout);
  milter["socket_group"] = c.milter.socketGroup;
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", c.milter.socketMode);
  milter["socket_mode"] = std::string(mode);
  out.emplace_back("milter", milter);
  out.emplace_back("hostname", YAML::Node(c.hostname));
  YAML::Node listen(YAML::NodeType::Sequence);
  for (const ListenerConfig& l : c.listeners) {
    YAML::Node n;
    n["address"] = l.address.toString();
    n["tls"] = std::string(tlsListenName(l.tls));
    n["proxy_protocol"] = l.proxyProtocol;
    listen.push_back(n);
  }
  out.emplace_back("listen", listen);
  out.emplace_back("trusted_proxies", stringList(c.trustedProxiesText));
  YAML::Node tls;
  tls["cert"] = c.tls.cert;
  tls["key"] = c.tls.key;
  tls["ciphers"] = c.tls.ciphers;
  tls["ciphersuites"] = c.tls.ciphersuites;
  tls["min_version"] = c.tls.minVersion;
  tls["require"] = c.tls.require;
  tls["received_header"] = c.tls.receivedHeader;
  out.emplace_back("tls", tls);
  const UpstreamConfig& u = c.upstream;
  YAML::Node up;
  up["address"] = u.address.toString();
  up["identity"] = std::string(identityModeName(u.identity));
  up["connect_timeout"] = duration(u.connectTimeout);
  up["command_timeout"] = duration(u.commandTimeout);
  up["probe_interval"] = duration(u.probeInterval);
  if (u.poolAuto) {
    up["pool_size"] = "auto";
  } else {
    up["pool_size"] = u.poolSize;
  }
  up["pool_idle_timeout"] = duration(u.poolIdleTimeout);
  up["pool_max_reuse"] = u.poolMaxReuse;
  up["keepalive_interval"] = duration(u.keepaliveInterval);
  up["chunking"] = u.chunking ? "auto" : "off";
  up["pipelining"] = u.pipelining ? "auto" : "off";
  up["tls"] = std::string(upstreamTlsName(u.tls));
  up["tls_verify"] = u.tlsVerify;
  up["ca_file"] = u.caFile;
  up["tls_name"] = u.tlsName;
  out.emplace_back("upstream", up);
  const LimitsConfig& l = c.limits;
  YAML::Node limits;
  limits["max_message_size"] = size(l.maxMessageSize);
  limits["max_recipients"] = l.maxRecipients;
  limits["max_connections"] = l.maxConnections;
  limits["max_connections_per_ip"] = l.maxConnectionsPerIp;
  limits["max_errors"] = l.maxErrors;
  limits["min_data_rate"] = size(l.minDataRate);
  limits["max_line_length"] = l.maxLineLength;
  limits["ipv6_prefix_length"] = l.ipv6PrefixLength;
  out.emplace_back("limits", limits);
  const TimeoutsConfig& t = c.timeouts;
  YAML::Node timeouts;
  timeouts["command"] = duration(t.command);
  timeouts["data_block"] = duration(t.dataBlock);
  timeouts["end_of_data"] = duration(t.endOfData);
  timeouts["data_grace"] = duration(t.dataGrace);
  timeouts["greeting_delay"] = duration(t.greetingDelay);
  timeouts["shutdown"] = duration(t.shutdown);
  out.emplace_back("timeouts", timeouts);
  YAML::Node spool;
  spool["memory_limit"] = size(c.spool.memoryLimit);
  spool["directory"] = c.spool.directory;
  out.emplace_back("spool", spool);
  YAML::Node log;
  log["level"] = c.log.level;
  log["output"] = std::string(logOutputName(c.log.output));
  log["format"] = c.log.format == LogFormat::kJson ? "json" : "text";
  log["file"] = c.log.file;
  log["syslog_socket"] = c.log.syslogSocket;
  log["syslog_facility"] = std::string(facilityName(c.log.syslogFacility));
  log["flush_interval"] = duration(c.log.flushInterval);
  out.emplace_back("log", log);
  YAML::Node reply;
  reply["reference"] = c.reply.reference;
  out.emplace_back("reply", reply);
  YAML::Node dns;
  dns["servers"] = stringList(c.dns.servers);
  dns["timeout"] = duration(c.dns.timeout);
  dns["attempts"] = c.dns.attempts;
  dns["reverse_lookup"] = c.dns.reverseLookup;
  out.emplace_back("dns", dns);
  YAML::Node plugins = list();
  for (const PluginConfig& p : c.plugins) {
    YAML::Node n;
    n["path"] = p.path;
    plugins.push_back(n);
  }
  if (!c.plugins.empty()) plugins.SetStyle(YAML::EmitterStyle::Block);
  out.emplace_back("plugins", plugins);
  YAML::Node filters(YAML::NodeType::Sequence);
  for (const FilterSpec& f : c.filters) filters.push_back(filterNode(f));
  out.emplace_back("filters", filters);
  return out;
}

std::string dump(const YAML::Node& n) { return YAML::Dump(n); }

// `value` less what equals `base`, key by key through maps; lists compare whole. Null when
// nothing differs.
YAML::Node difference(const YAML::Node& value, const YAML::Node& base) {
  if (value.IsMap() && base.IsMap()) {
    YAML::Node out(YAML::NodeType::Map);
    for (const auto& kv : value) {
      const std::string key = kv.first.Scalar();
      const YAML::Node d = difference(kv.second, base[key]);
      if (!d.IsNull()) out[key] = d;
    }
    return out.size() == 0 ? YAML::Node() : out;
  }
  if (base.IsDefined() && dump(value) == dump(base)) return YAML::Node();
  return value;
}

}  // namespace

std::vector<ConfigSectionText> configSections(const Config& config) {
  std::vector<ConfigSectionText> out;
  for (const auto& [key, node] : nodes(config)) out.push_back({key, dump(node)});
  return out;
}

std::string configToYaml(const Config& config, const Config* defaults) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  const auto base =
      defaults != nullptr ? nodes(*defaults) : std::vector<std::pair<std::string, YAML::Node>>{};
  const auto mine = nodes(config);
  for (std::size_t i = 0; i < mine.size(); ++i) {
    YAML::Node value = mine[i].second;
    if (defaults != nullptr) {
      value = difference(value, base[i].second);
      if (value.IsNull()) continue;
    }
    out << YAML::Key << mine[i].first << YAML::Value << value;
  }
  out << YAML::EndMap;
  std::string text = out.c_str();
  if (text == "{}") text.clear();  // nothing differs from the defaults
  return text.empty() || text.back() == '\n' ? text : text + "\n";
}

std::vector<std::string> changedSections(const Config& a, const Config& b) {
  std::vector<std::string> out;
  const auto x = configSections(a);
  const auto y = configSections(b);
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (x[i].yaml != y[i].yaml) out.push_back(x[i].key);
  }
  return out;
}

}  // namespace portcullis
