// Config loading: defaults <- YAML file <- command line. See config.h.

#include "proxy/config/config.h"

#include <arpa/inet.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "portcullis/domain.h"
#include "portcullis/reply.h"
#include "proxy/admin/filter_stats.h"
#include "proxy/api/config_section_impl.h"
#include "proxy/services/dns/dns_transport.h"

namespace portcullis {
namespace {

std::string defaultHostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

SocketAddress parseAddressOrThrow(const std::string& key, const std::string& text) {
  auto a = parseSocketAddress(text);
  if (!a) {
    throw ConfigError(key,
                      "expected a numeric ADDRESS:PORT such as 127.0.0.1:2525 or [::1]:25, "
                      "got \"" +
                          text + "\"");
  }
  return *a;
}

// A listen address bind() will take: IPv6 listeners are IPV6_V6ONLY (server.cc), and Linux
// refuses a v4-mapped address on such a socket (EINVAL), so it must be written as IPv4.
SocketAddress parseListenAddressOrThrow(const std::string& key, const std::string& text) {
  const SocketAddress a = parseAddressOrThrow(key, text);
  if (a.family() == AF_INET6 &&
      IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr)) {
    throw ConfigError(
        key, "\"" + text + "\" is an IPv4-mapped IPv6 address; write it as " + a.toString());
  }
  return a;
}

// Whether bind() would refuse `b` once `a` listens: the same address and port however spelt
// ("localhost:25", "127.0.0.1:25"; "*:25", ":25", "0.0.0.0:25"), or a wildcard and any address
// of its family on one port (Linux refuses that overlap against a listening socket, with
// SO_REUSEADDR or without). IPv6 listeners are IPv6-only, so [::]:25 and 0.0.0.0:25 coexist.
bool sameSocket(const SocketAddress& a, const SocketAddress& b) {
  if (a.family() != b.family() || a.port() != b.port()) return false;
  return a.isWildcard() || b.isWildcard() || a.host() == b.host();
}

void parseListeners(const YAML::Node& node, Config& cfg) {
  if (!node.IsDefined() || node.IsNull()) return;
  std::vector<YAML::Node> items;
  if (node.IsScalar() || node.IsMap()) {
    items.push_back(node);
  } else if (node.IsSequence()) {
    for (const YAML::Node& item : node) items.push_back(item);
  } else {
    throw ConfigError("listen", "expected a list of addresses");
  }
  cfg.listeners.clear();
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string path = "listen[" + std::to_string(i) + "]";
    ListenerConfig l;
    if (items[i].IsScalar()) {
      l.text = items[i].Scalar();
      l.address = parseListenAddressOrThrow(path, l.text);
    } else if (items[i].IsMap()) {
      const ConfigSection s = makeConfigSection(items[i], path);
      l.text = s.getString("address");
      l.address = parseListenAddressOrThrow(s.keyPath("address"), l.text);
      const std::string tls = s.getChoice("tls", {"starttls", "implicit", "none"}, "starttls");
      l.tls = tls == "implicit" ? TlsListenMode::kImplicit
              : tls == "none"   ? TlsListenMode::kNone
                                : TlsListenMode::kStartTls;
      l.proxyProtocol = s.getBool("proxy_protocol", false);
      s.rejectUnknownKeys();
    } else {
      throw ConfigError(path, "expected \"ADDRESS:PORT\" or a map with address:");
    }
    for (std::size_t j = 0; j < cfg.listeners.size(); ++j) {
      if (sameSocket(cfg.listeners[j].address, l.address)) {
        throw ConfigError(path, "\"" + l.text + "\" is the same socket as listen[" +
                                    std::to_string(j) + "] (\"" + cfg.listeners[j].text +
                                    "\"); start-up would fail with \"Address already in use\"");
      }
    }
    cfg.listeners.push_back(std::move(l));
  }
}

void parseUpstream(const ConfigSection& s, Config& cfg) {
  cfg.upstream.text = s.getString("address", cfg.upstream.text);
  const std::vector<std::string> names(kIdentityModeNames.begin(), kIdentityModeNames.end());
  const std::string identity = s.getChoice("identity", names, "xclient");
  for (std::size_t i = 0; i < kIdentityModeNames.size(); ++i) {
    if (identity == kIdentityModeNames[i]) cfg.upstream.identity = static_cast<IdentityMode>(i);
  }
  cfg.upstream.connectTimeout = s.getDuration("connect_timeout", cfg.upstream.connectTimeout);
  if (cfg.upstream.connectTimeout.count() <= 0)
    s.fail("connect_timeout", "must be greater than zero");
  cfg.upstream.commandTimeout = s.getDuration("command_timeout", cfg.upstream.commandTimeout);
  if (cfg.upstream.commandTimeout.count() <= 0)
    s.fail("command_timeout", "must be greater than zero");
  // The probe timer re-arms with this interval: 0 would probe the MTA on every loop iteration.
  cfg.upstream.probeInterval = s.getDuration("probe_interval", cfg.upstream.probeInterval);
  if (cfg.upstream.probeInterval < kMinProbeInterval) {
    s.fail("probe_interval", "must be at least 1s");
  }
  cfg.upstream.poolAuto = !s.has("pool_size") || s.getString("pool_size") == "auto";
  if (!cfg.upstream.poolAuto) {
    cfg.upstream.poolSize = static_cast<std::size_t>(s.getInt("pool_size", std::nullopt, 0, 10000));
  }
  // The pool sweep re-arms every half of this: below 1s it would spin while the pool is full.
  cfg.upstream.poolIdleTimeout = s.getDuration("pool_idle_timeout", cfg.upstream.poolIdleTimeout);
  if (cfg.upstream.poolIdleTimeout < kMinPoolIdleTimeout) {
    s.fail("pool_idle_timeout", "must be at least 1s");
  }
  cfg.upstream.poolMaxReuse =
      static_cast<std::uint32_t>(s.getInt("pool_max_reuse", cfg.upstream.poolMaxReuse, 1, 1000000));
  cfg.upstream.keepaliveInterval =
      s.getDuration("keepalive_interval", cfg.upstream.keepaliveInterval);
  cfg.upstream.chunking = s.getChoice("chunking", {"auto", "off"}, "auto") == "auto";
  cfg.upstream.pipelining = s.getChoice("pipelining", {"auto", "off"}, "auto") == "auto";
  const std::string tls = s.getChoice("tls", {"none", "opportunistic", "require"}, "none");
  cfg.upstream.tls = tls == "require"         ? UpstreamTls::kRequire
                     : tls == "opportunistic" ? UpstreamTls::kOpportunistic
                                              : UpstreamTls::kNone;
  cfg.upstream.tlsVerify = s.getBool("tls_verify", false);
  cfg.upstream.caFile = s.getString("ca_file", "");
  cfg.upstream.tlsName = s.getString("tls_name", "");
}

void parseFilters(const ConfigSection& root, const YAML::Node& list, const FilterRegistry& registry,
                  Config& cfg) {
  std::map<std::string, int> seen;
  const std::vector<ConfigSection> sections = root.getSectionList("filters");
  for (std::size_t i = 0; i < sections.size(); ++i) {
    const ConfigSection& s = sections[i];
    FilterSpec spec;
    spec.source = YAML::Dump(list[i]);
    spec.name = s.getString("name");
    const FilterFactory* factory = registry.find(spec.name);
    if (factory == nullptr) {
      std::string known;
      for (const auto& n : registry.names()) known += (known.empty() ? "" : ", ") + n;
      s.fail("name", "unknown filter \"" + spec.name + "\" (known: " + known + ")");
    }
    const int n = ++seen[spec.name];
    spec.label = n == 1 ? spec.name : spec.name + "#" + std::to_string(n);
    spec.mode = s.getChoice("mode", {"enforce", "observe"}, "enforce") == "observe"
                    ? FilterMode::kObserve
                    : FilterMode::kEnforce;
    spec.timeout = s.getDuration("timeout", spec.timeout);
    if (spec.timeout.count() <= 0) s.fail("timeout", "must be greater than zero");
    spec.onError = s.getChoice("on_error", {"tempfail", "continue"}, "tempfail") == "continue"
                       ? OnError::kContinue
                       : OnError::kTempfail;
    if (s.has("defer_to")) {
      s.getChoice("defer_to", {"rcpt"});
      spec.deferTo = Stage::kRcptTo;
    }
    spec.traits = factory->traits();
    if (spec.traits.alwaysOn && spec.mode == FilterMode::kObserve) {
      s.fail("mode", "the " + spec.name +
                         " filter enforces a resource limit and cannot run in observe mode");
    }
    spec.creator = factory->configure(s);
    s.rejectUnknownKeys();
    spec.stats = processFilterStats(spec.label);
    cfg.filters.push_back(std::move(spec));
  }
  // The resource limits (message size, recipient count) always apply: the filters whose
  // factories say so are added at the front of the chain, in registration order, when the
  // config does not place them itself.
  std::vector<FilterSpec> front;
  for (const FilterFactory* factory : registry.factories()) {
    const std::string name(factory->name());
    if (!factory->traits().alwaysOn || seen.contains(name)) continue;
    FilterSpec spec;
    spec.name = spec.label = name;
    spec.traits = factory->traits();
    spec.creator = factory->configure(
        makeConfigSection(YAML::Node(YAML::NodeType::Map), "filters(" + name + ")"));
    spec.stats = processFilterStats(spec.label);
    front.push_back(std::move(spec));
  }
  cfg.filters.insert(cfg.filters.begin(), std::make_move_iterator(front.begin()),
                     std::make_move_iterator(front.end()));
}

// plugins: [{path: /abs/file.so}, ...]. Paths must be absolute: the daemon's working directory
// is not the config's, and a relative path would load whatever sits there.
void parsePlugins(const ConfigSection& root, Config& cfg) {
  const std::vector<ConfigSection> items = root.getSectionList("plugins");
  for (std::size_t i = 0; i < items.size(); ++i) {
    const ConfigSection& s = items[i];
    PluginConfig p;
    p.path = s.getString("path");
    p.key = s.keyPath("path");
    if (p.path.empty() || p.path.front() != '/') s.fail("path", "must be an absolute path");
    for (std::size_t j = 0; j < i; ++j) {
      if (cfg.plugins[j].path == p.path) {
        s.fail("path", "\"" + p.path + "\" is already loaded by " + cfg.plugins[j].key);
      }
    }
    s.rejectUnknownKeys();
    cfg.plugins.push_back(std::move(p));
  }
}

std::shared_ptr<const Config> build(const YAML::Node& root, const std::string& source,
                                    const CommandLineOverrides& overrides,
                                    const FilterRegistry& registry, PluginLoader* plugins) {
  auto cfg = std::make_shared<Config>();
  cfg->sourcePath = source;
  cfg->listeners.push_back(
      {"127.0.0.1:2525", *parseSocketAddress("127.0.0.1:2525"), TlsListenMode::kStartTls, false});
  if (!root.IsNull() && root.IsDefined() && !root.IsMap()) {
    throw ConfigError("", "the config file must be a YAML map");
  }
  const YAML::Node map = root.IsMap() ? root : YAML::Node(YAML::NodeType::Map);
  const ConfigSection s = makeConfigSection(map, "");

  cfg->hostname = s.getString("hostname", defaultHostname());
  // It goes into every greeting and EHLO reply, so it must be a host name (RFC 1123 2.1).
  if (const DomainError e = checkDomainName(cfg->hostname, {.hostname = true});
      e != DomainError::kNone) {
    s.fail("hostname", "must be a DNS name fit for a host (" +
                           domainErrorText(e, {.hostname = true}) + "), got \"" +
                           sanitizeText(cfg->hostname, 64) + "\"");
  }
  cfg->process.user = s.getString("user", "");
  cfg->process.group = s.getString("group", "");
  cfg->process.pidFile = s.getString("pid_file", "");
  if (!cfg->process.group.empty() && cfg->process.user.empty()) {
    s.fail("group", "needs user: (the group is the one the daemon switches to with it)");
  }
  if (!cfg->process.pidFile.empty() && cfg->process.pidFile.front() != '/') {
    s.fail("pid_file", "must be an absolute path");
  }
  if (const std::string w = s.getString("workers", "1"); w == "auto") {
    const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    cfg->process.workers =
        std::clamp<std::size_t>(cpus > 0 ? static_cast<std::size_t>(cpus) : 1, 1, kMaxWorkers);
    cfg->process.workersAuto = true;
  } else {
    cfg->process.workers =
        static_cast<std::size_t>(s.getInt("workers", 1, 1, static_cast<std::int64_t>(kMaxWorkers)));
  }
  s.markUsed("listen");
  parseListeners(map["listen"], *cfg);
  const ConfigSection milter = s.section("milter");
  cfg->milter.listen = milter.getString("listen", "");
  if (!cfg->milter.listen.empty() && !cfg->milter.listen.starts_with("inet:") &&
      !cfg->milter.listen.starts_with("inet6:") && !cfg->milter.listen.starts_with("unix:")) {
    milter.fail("listen",
                "expected \"inet:PORT@ADDRESS\", \"inet6:PORT@ADDRESS\" or \"unix:/PATH\"");
  }
  cfg->milter.maxSessions = static_cast<std::size_t>(
      milter.getInt("max_sessions", static_cast<std::int64_t>(cfg->milter.maxSessions), 1, 100000));
  cfg->milter.timeout = milter.getDuration("timeout", cfg->milter.timeout);
  if (cfg->milter.timeout.count() <= 0) milter.fail("timeout", "must be greater than zero");
  cfg->milter.socketGroup = milter.getString("socket_group", cfg->milter.socketGroup);
  if (const std::string mode = milter.getString("socket_mode", "0660");
      mode.size() < 3 || mode.size() > 4 ||
      mode.find_first_not_of("01234567") != std::string::npos) {
    milter.fail("socket_mode", "expected an octal mode such as \"0660\"");
  } else {
    cfg->milter.socketMode = static_cast<unsigned>(std::stoul(mode, nullptr, 8));
  }
  if (cfg->listeners.empty() && !cfg->milter.enabled()) {
    throw ConfigError("listen", "at least one listener is required (or milter.listen)");
  }
  const ConfigSection admin = s.section("admin");
  if (const std::string text = admin.getString("listen", ""); !text.empty()) {
    cfg->admin.listen = parseListenAddressOrThrow(admin.keyPath("listen"), text);
  }
  for (const auto& c : s.getStringList("trusted_proxies", std::vector<std::string>{})) {
    auto cidr = Cidr::parse(c);
    if (!cidr) s.fail("trusted_proxies", "\"" + c + "\" is not an address or CIDR block");
    cfg->trustedProxies.push_back(*cidr);
    cfg->trustedProxiesText.push_back(c);
  }
  parseUpstream(s.section("upstream"), *cfg);

  const ConfigSection tls = s.section("tls");
  cfg->tls.cert = tls.getString("cert", "");
  cfg->tls.key = tls.getString("key", cfg->tls.cert);
  cfg->tls.ciphers = tls.getString("ciphers", "");
  cfg->tls.ciphersuites = tls.getString("ciphersuites", "");
  cfg->tls.minVersion = tls.getChoice("min_version", {"1.0", "1.1", "1.2", "1.3"}, "1.2");
  cfg->tls.require = tls.getBool("require", false);
  cfg->tls.receivedHeader = tls.getBool("received_header", true);
  if (cfg->tls.require && !cfg->tls.enabled()) tls.fail("require", "needs tls.cert and tls.key");
  for (std::size_t i = 0; i < cfg->listeners.size(); ++i) {
    if (cfg->listeners[i].tls == TlsListenMode::kImplicit && !cfg->tls.enabled()) {
      throw ConfigError("listen[" + std::to_string(i) + "].tls",
                        "implicit TLS needs tls.cert and tls.key");
    }
    if (cfg->listeners[i].proxyProtocol && cfg->trustedProxies.empty()) {
      throw ConfigError("listen[" + std::to_string(i) + "].proxy_protocol",
                        "needs trusted_proxies: the sources allowed to send a PROXY header");
    }
  }

  const ConfigSection limits = s.section("limits");
  auto& l = cfg->limits;
  l.maxMessageSize = limits.getSize("max_message_size", l.maxMessageSize);
  if (l.maxMessageSize == 0) limits.fail("max_message_size", "must be greater than zero");
  l.maxRecipients = static_cast<std::size_t>(
      limits.getInt("max_recipients", static_cast<std::int64_t>(l.maxRecipients), 1, 100000));
  l.maxConnections = static_cast<std::size_t>(
      limits.getInt("max_connections", static_cast<std::int64_t>(l.maxConnections), 1, 1000000));
  l.maxConnectionsPerIp = static_cast<std::size_t>(limits.getInt(
      "max_connections_per_ip", static_cast<std::int64_t>(l.maxConnectionsPerIp), 1, 1000000));
  l.maxErrors = static_cast<int>(limits.getInt("max_errors", l.maxErrors, 1, 1000));
  l.minDataRate = limits.getSize("min_data_rate", l.minDataRate);  // 0: no rate check
  l.maxLineLength = static_cast<std::uint64_t>(limits.getInt(
      "max_line_length", static_cast<std::int64_t>(l.maxLineLength), 0, 1'000'000'000));
  l.ipv6PrefixLength =
      static_cast<int>(limits.getInt("ipv6_prefix_length", l.ipv6PrefixLength, 1, 128));

  const ConfigSection t = s.section("timeouts");
  auto& to = cfg->timeouts;
  to.command = t.getDuration("command", to.command);
  to.dataBlock = t.getDuration("data_block", to.dataBlock);
  to.endOfData = t.getDuration("end_of_data", to.endOfData);
  to.dataGrace = t.getDuration("data_grace", to.dataGrace);
  to.greetingDelay = t.getDuration("greeting_delay", to.greetingDelay);
  to.shutdown = t.getDuration("shutdown", to.shutdown);
  for (const auto& [key, value] : {std::pair{"command", to.command},
                                   {"data_block", to.dataBlock},
                                   {"end_of_data", to.endOfData}}) {
    if (value.count() <= 0) t.fail(key, "must be greater than zero");
  }

  const ConfigSection sp = s.section("spool");
  cfg->spool.memoryLimit =
      static_cast<std::size_t>(sp.getSize("memory_limit", cfg->spool.memoryLimit));
  cfg->spool.directory = sp.getString("directory", cfg->spool.directory);
  if (cfg->spool.directory.empty()) sp.fail("directory", "must not be empty");

  const ConfigSection lg = s.section("log");
  cfg->log.level = lg.getChoice(
      "level", {"trace", "debug", "info", "warn", "error", "critical", "off"}, cfg->log.level);
  const std::string output = lg.getChoice("output", {"stderr", "syslog", "file"}, "stderr");
  cfg->log.output = output == "syslog" ? LogOutput::kSyslog
                    : output == "file" ? LogOutput::kFile
                                       : LogOutput::kStderr;
  cfg->log.format = lg.getChoice("format", {"text", "json"}, "text") == "json" ? LogFormat::kJson
                                                                               : LogFormat::kText;
  cfg->log.file = lg.getString("file", "");
  if (cfg->log.output == LogOutput::kFile && cfg->log.file.empty()) {
    lg.fail("file", "output: file needs the path of the log file");
  }
  if (cfg->log.output != LogOutput::kFile && !cfg->log.file.empty()) {
    lg.fail("file", "is used only with output: file");
  }
  cfg->log.syslogSocket = lg.getString("syslog_socket", cfg->log.syslogSocket);
  // sockaddr_un holds at most 107 octets of path and its NUL.
  if (cfg->log.syslogSocket.empty() || cfg->log.syslogSocket.front() != '/' ||
      cfg->log.syslogSocket.size() >= sizeof(sockaddr_un::sun_path)) {
    lg.fail("syslog_socket", "must be an absolute path of at most " +
                                 std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " octets");
  }
  cfg->log.flushInterval = lg.getDuration("flush_interval", cfg->log.flushInterval);
  if (cfg->log.flushInterval > kMaxLogFlushInterval) {
    lg.fail("flush_interval", "must be at most 10s (0: each line written at once)");
  }
  std::vector<std::string> facilities;
  facilities.reserve(kSyslogFacilities.size());
  for (const auto& f : kSyslogFacilities) facilities.emplace_back(f.name);
  const std::string facility = lg.getChoice("syslog_facility", facilities, "mail");
  for (const auto& f : kSyslogFacilities) {
    if (f.name == facility) cfg->log.syslogFacility = f.code;
  }

  cfg->reply.reference = s.section("reply").getBool("reference", cfg->reply.reference);

  const ConfigSection dns = s.section("dns");
  // The same checks DnsResolver::create makes at start-up, so --check-config fails where
  // start-up would, naming the key.
  cfg->dns.servers = dns.getStringList("servers", std::vector<std::string>{});
  for (std::size_t i = 0; i < cfg->dns.servers.size(); ++i) {
    std::string why;
    const auto server = parseDnsServer(cfg->dns.servers[i], &why);
    if (!server) {
      dns.fail("servers[" + std::to_string(i) + "]",
               why + " (want a numeric ADDRESS, ADDRESS:PORT or [IPV6]:PORT)");
    }
    // getaddrinfo (behind parseDnsServer) also takes "*", "127.1" and "0x7f.0.0.1"; a config
    // should say exactly which address it means, so the loader wants inet_pton's forms only.
    const std::string& t = server->text;  // "host:port" or "[host]:port"
    const std::string host =
        t.front() == '[' ? t.substr(1, t.find(']') - 1) : t.substr(0, t.rfind(':'));
    unsigned char bytes[sizeof(in6_addr)];
    if (inet_pton(AF_INET, host.c_str(), bytes) != 1 &&
        inet_pton(AF_INET6, host.c_str(), bytes) != 1) {
      dns.fail(
          "servers[" + std::to_string(i) + "]",
          "\"" + cfg->dns.servers[i] + "\" is not a numeric ADDRESS, ADDRESS:PORT or [IPV6]:PORT");
    }
  }
  cfg->dns.timeout = dns.getDuration("timeout", cfg->dns.timeout);
  if (cfg->dns.timeout.count() <= 0) dns.fail("timeout", "must be greater than zero");
  cfg->dns.attempts = static_cast<int>(dns.getInt("attempts", cfg->dns.attempts, 1, 10));
  cfg->dns.reverseLookup = dns.getBool("reverse_lookup", cfg->dns.reverseLookup);

  // Before the filters: a plugin's filter names exist only once it is loaded.
  parsePlugins(s, *cfg);
  if (plugins != nullptr && !cfg->plugins.empty()) plugins->load(cfg->plugins);
  parseFilters(s, map["filters"], registry, *cfg);
  s.rejectUnknownKeys();
  for (std::size_t i = 0; i < cfg->filters.size(); ++i) {
    if (cfg->filters[i].traits.needsReverseLookup && !cfg->dns.reverseLookup) {
      throw ConfigError("dns.reverse_lookup",
                        "the " + cfg->filters[i].name + " filter (" + cfg->filters[i].label +
                            ") judges the core's reverse lookup; it needs reverse_lookup: true");
    }
  }

  // Command-line flags override the file.
  if (overrides.listen) {
    cfg->listeners.clear();
    cfg->listeners.push_back({*overrides.listen,
                              parseListenAddressOrThrow("--listen", *overrides.listen),
                              TlsListenMode::kStartTls, false});
  }
  // After --listen: the admin endpoint may not take the socket of a listener, however given.
  if (cfg->admin.listen) {
    for (std::size_t i = 0; i < cfg->listeners.size(); ++i) {
      if (sameSocket(cfg->listeners[i].address, *cfg->admin.listen)) {
        admin.fail("listen", "\"" + cfg->admin.listen->toString() + "\" is the same socket as " +
                                 (overrides.listen ? std::string("--listen")
                                                   : "listen[" + std::to_string(i) + "]") +
                                 " (\"" + cfg->listeners[i].text + "\")");
      }
    }
  }
  if (overrides.upstream) cfg->upstream.text = *overrides.upstream;
  cfg->upstream.address = parseAddressOrThrow(
      overrides.upstream ? "--upstream" : "upstream.address", cfg->upstream.text);
  return cfg;
}

}  // namespace

std::size_t poolLimit(const Config& config) {
  if (!config.upstream.poolAuto) return config.upstream.poolSize;
  const std::size_t workers = std::max<std::size_t>(config.process.workers, 1);
  return (config.limits.maxConnections + workers - 1) / workers;
}

std::size_t descriptorsNeeded(const Config& config) {
  // A milter session holds the MTA's socket and at most one DNS socket.
  const std::size_t milter = config.milter.enabled() ? 2 * config.milter.maxSessions + 1 : 0;
  const std::size_t workers = std::max<std::size_t>(config.process.workers, 1);
  // auto: one worker's pooled and busy MTA connections never outnumber its sessions, already
  // counted above; with several workers, each worker's pool (its share of max_connections)
  // may outlive the load that filled it while new sessions land on other workers.
  std::size_t pool = workers * poolLimit(config);
  if (config.upstream.poolAuto && workers == 1) pool = 0;
  return 4 * config.limits.maxConnections + pool + workers * config.listeners.size() +
         2 * (workers - 1) + milter + kDescriptorReserve;
}

std::shared_ptr<const Config> loadConfigFromString(const std::string& yaml,
                                                   const CommandLineOverrides& overrides,
                                                   const FilterRegistry& registry,
                                                   PluginLoader* plugins) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw ConfigError(
        "", "YAML syntax error at line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return build(root, "", overrides, registry, plugins);
}

std::shared_ptr<const Config> loadConfig(const std::optional<std::string>& path,
                                         const CommandLineOverrides& overrides,
                                         const FilterRegistry& registry, PluginLoader* plugins) {
  if (!path) return build(YAML::Node(), "", overrides, registry, plugins);
  std::ifstream in(*path);
  if (!in) throw ConfigError("", "cannot read config file " + *path);
  std::stringstream text;
  text << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    throw ConfigError("", *path + ": YAML syntax error at line " + std::to_string(e.mark.line + 1) +
                              ": " + e.msg);
  }
  return build(root, *path, overrides, registry, plugins);
}

}  // namespace portcullis
