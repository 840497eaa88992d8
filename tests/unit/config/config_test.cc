// Config loading: built-in defaults, every documented key, errors that name the key path,
// the mandatory size/recipients filters, filter-chain keys (mode, timeout, on_error, defer_to),
// and command-line overrides.

#include "proxy/config/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "filters/builtin_filters.h"
#include "portcullis/filter_registry.h"

namespace portcullis {
namespace {

using std::chrono::milliseconds;

// A filter factory local to these tests, with one optional key of its own ("level").
class ProbeFilter final : public Filter {};
class ProbeFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "probe"; }
  FilterCreator configure(const ConfigSection& section) const override {
    section.getInt("level", 0, 0, 9);
    return [](const FilterContext&) { return std::make_unique<ProbeFilter>(); };
  }
};

const FilterRegistry& registry() {
  static const FilterRegistry r = [] {
    FilterRegistry reg;
    registerBuiltinFilters(reg);
    reg.add(std::make_unique<ProbeFactory>());
    return reg;
  }();
  return r;
}

std::shared_ptr<const Config> load(const std::string& yaml, const CommandLineOverrides& o = {}) {
  return loadConfigFromString(yaml, o, registry());
}

std::vector<std::string> labels(const Config& c) {
  std::vector<std::string> out;
  for (const auto& f : c.filters) out.push_back(f.label);
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return "[" + out + "]";
}

void expectDefaults(const Config& c) {
  EXPECT_FALSE(c.hostname.empty());
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].text, "127.0.0.1:2525");
  EXPECT_EQ(c.listeners[0].address.toString(), "127.0.0.1:2525");
  EXPECT_EQ(c.listeners[0].tls, TlsListenMode::kStartTls);
  EXPECT_FALSE(c.listeners[0].proxyProtocol);
  EXPECT_TRUE(c.trustedProxies.empty());
  EXPECT_EQ(c.upstream.text, "127.0.0.1:10025");
  EXPECT_EQ(c.upstream.address.toString(), "127.0.0.1:10025");
  EXPECT_EQ(c.upstream.identity, IdentityMode::kXclient);
  EXPECT_EQ(c.upstream.connectTimeout, milliseconds(10'000));
  EXPECT_EQ(c.upstream.commandTimeout, milliseconds(120'000));
  EXPECT_EQ(c.upstream.probeInterval, milliseconds(60'000));
  EXPECT_EQ(c.limits.maxMessageSize, 10'240'000u);
  EXPECT_EQ(c.limits.maxRecipients, 1000u);
  EXPECT_EQ(c.limits.maxConnections, 1000u);
  EXPECT_EQ(c.limits.maxConnectionsPerIp, 50u);
  EXPECT_EQ(c.limits.maxErrors, 10);
  EXPECT_EQ(c.limits.minDataRate, 1024u);
  EXPECT_EQ(c.limits.ipv6PrefixLength, 64);
  EXPECT_EQ(c.timeouts.command, milliseconds(300'000));
  EXPECT_EQ(c.timeouts.dataBlock, milliseconds(180'000));
  EXPECT_EQ(c.timeouts.endOfData, milliseconds(300'000));
  EXPECT_EQ(c.timeouts.dataGrace, milliseconds(30'000));
  EXPECT_EQ(c.timeouts.greetingDelay, milliseconds(0));
  EXPECT_EQ(c.timeouts.shutdown, milliseconds(30'000));
  EXPECT_EQ(c.spool.memoryLimit, 1024u * 1024u);
  EXPECT_EQ(c.spool.directory, "/var/spool/portcullis");
  EXPECT_EQ(c.log.level, "info");
  EXPECT_EQ(c.log.output, LogOutput::kStderr);
  EXPECT_EQ(c.log.format, LogFormat::kText);
  EXPECT_EQ(c.log.syslogSocket, "/dev/log");
  EXPECT_EQ(c.log.syslogFacility, 2);
  EXPECT_TRUE(c.dns.servers.empty());
  EXPECT_EQ(c.dns.timeout, milliseconds(2000));
  EXPECT_EQ(c.dns.attempts, 2);
  EXPECT_TRUE(c.dns.reverseLookup);
  EXPECT_EQ(labels(c), (std::vector<std::string>{"size", "recipients"}))
      << "got " << joined(labels(c));
  for (const auto& f : c.filters) {
    EXPECT_EQ(f.mode, FilterMode::kEnforce) << f.label;
    EXPECT_EQ(f.timeout, milliseconds(30'000)) << f.label;
    EXPECT_EQ(f.onError, OnError::kTempfail) << f.label;
    EXPECT_FALSE(f.deferTo) << f.label;
    EXPECT_TRUE(static_cast<bool>(f.creator)) << f.label;
  }
}

TEST(Config, Defaults) {
  for (const char* yaml : {"", "{}", "# only a comment\n", "filters: []\n"}) {
    SCOPED_TRACE(std::string("yaml: \"") + yaml + "\"");
    const auto c = load(yaml);
    expectDefaults(*c);
    EXPECT_EQ(c->sourcePath, "");
  }
  const auto none = loadConfig(std::nullopt, {}, registry());
  expectDefaults(*none);
}

TEST(Config, ShippedExampleIsTheDefaults) {
  // config/portcullis.yaml documents every key with its default.
  std::string path = __FILE__;
  path = path.substr(0, path.rfind("tests/unit/")) + "config/portcullis.yaml";
  const auto c = loadConfig(path, {}, registry());
  EXPECT_EQ(c->sourcePath, path);
  EXPECT_EQ(c->hostname, "mx.example.com");
  expectDefaults(*c);
}

TEST(Config, MilterAloneOrBesideTheListeners) {
  EXPECT_FALSE(load("")->milter.enabled());  // off by default
  auto c = load("listen: []\nmilter: {listen: \"inet:8891@127.0.0.1\"}");
  EXPECT_TRUE(c->listeners.empty());
  EXPECT_EQ(c->milter.listen, "inet:8891@127.0.0.1");
  EXPECT_EQ(c->milter.maxSessions, 64U);
  EXPECT_EQ(c->milter.timeout, std::chrono::milliseconds(25'000));
  c = load("milter: {listen: \"unix:/run/portcullis/milter.sock\", max_sessions: 8, timeout: 5s}");
  EXPECT_EQ(c->listeners.size(), 1U);  // the default listener stays
  EXPECT_EQ(c->milter.maxSessions, 8U);
  EXPECT_EQ(c->milter.timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(c->milter.socketGroup, "postfix");
  EXPECT_EQ(c->milter.socketMode, 0660U);
  const auto unixSocket =
      load("milter: {listen: \"unix:/m.sock\", socket_group: mail, socket_mode: \"0600\"}");
  EXPECT_EQ(unixSocket->milter.socketGroup, "mail");
  EXPECT_EQ(unixSocket->milter.socketMode, 0600U);
  for (const char* bad : {"\"0999\"", "\"rw\"", "\"06600\""}) {
    EXPECT_THROW(load(std::string("milter: {listen: \"unix:/m.sock\", socket_mode: ") + bad + "}"),
                 ConfigError)
        << bad;
  }
  // The descriptor budget counts the milter's sessions.
  EXPECT_EQ(descriptorsNeeded(*c), descriptorsNeeded(*load("")) + 2 * 8 + 1);
}

TEST(Config, EveryDocumentedKeyParses) {
  const auto c = load(R"(
hostname: relay.example.net
listen:
  - "0.0.0.0:25"
  - address: "[::]:465"
    tls: implicit
    proxy_protocol: true
  - address: "127.0.0.1:2526"
    tls: none
trusted_proxies: ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]
upstream:
  address: "127.0.0.1:10026"
  identity: none
  connect_timeout: 3s
  command_timeout: 90s
  probe_interval: 5m
  pool_size: 8
  pool_idle_timeout: 10s
  pool_max_reuse: 20
  tls: opportunistic
  tls_verify: true
  ca_file: /etc/ssl/certs/ca-certificates.crt
  tls_name: mta.example.net
tls:
  cert: /etc/portcullis/cert.pem
  key: /etc/portcullis/key.pem
  ciphers: "HIGH:!aNULL"
  ciphersuites: "TLS_AES_256_GCM_SHA384"
  min_version: "1.3"
  require: true
  received_header: false
limits:
  max_message_size: 50M
  max_recipients: 100
  max_connections: 200
  max_connections_per_ip: 5
  max_errors: 3
  min_data_rate: 0
  ipv6_prefix_length: 56
timeouts:
  command: 30s
  data_block: 5m
  end_of_data: 250ms
  data_grace: 1h
  greeting_delay: 6s
  shutdown: 2d
spool:
  memory_limit: 512k
  directory: /tmp/spool
log:
  level: debug
  output: syslog
  format: json
  syslog_socket: /run/portcullis/log
  syslog_facility: local1
dns:
  servers: ["127.0.0.1:5353", "192.0.2.53", "::1"]
  timeout: 500ms
  attempts: 3
  reverse_lookup: false
filters:
  - name: probe
    mode: observe
    timeout: 250ms
    on_error: continue
    defer_to: rcpt
    level: 4
)");
  EXPECT_EQ(c->hostname, "relay.example.net");
  ASSERT_EQ(c->listeners.size(), 3u);
  EXPECT_EQ(c->listeners[0].address.toString(), "0.0.0.0:25");
  EXPECT_EQ(c->listeners[0].tls, TlsListenMode::kStartTls);
  EXPECT_EQ(c->listeners[1].address.toString(), "[::]:465");
  EXPECT_EQ(c->listeners[1].tls, TlsListenMode::kImplicit);
  EXPECT_TRUE(c->listeners[1].proxyProtocol);
  EXPECT_EQ(c->listeners[2].tls, TlsListenMode::kNone);
  ASSERT_EQ(c->trustedProxies.size(), 3u);
  EXPECT_TRUE(c->trustedProxies[0].contains("10.9.8.7"));
  EXPECT_TRUE(c->trustedProxies[1].contains("2001:db8::5"));
  EXPECT_TRUE(c->trustedProxies[2].contains("192.0.2.1"));
  EXPECT_EQ(c->upstream.address.toString(), "127.0.0.1:10026");
  EXPECT_EQ(c->upstream.identity, IdentityMode::kNone);
  EXPECT_EQ(c->upstream.connectTimeout, milliseconds(3'000));
  EXPECT_EQ(c->upstream.commandTimeout, milliseconds(90'000));
  EXPECT_EQ(c->upstream.probeInterval, milliseconds(300'000));
  EXPECT_EQ(c->upstream.poolSize, 8u);
  EXPECT_EQ(c->upstream.poolIdleTimeout, milliseconds(10'000));
  EXPECT_EQ(c->upstream.poolMaxReuse, 20u);
  EXPECT_EQ(c->upstream.tls, UpstreamTls::kOpportunistic);
  EXPECT_TRUE(c->upstream.tlsVerify);
  EXPECT_EQ(c->upstream.tlsName, "mta.example.net");
  EXPECT_EQ(c->tls.cert, "/etc/portcullis/cert.pem");
  EXPECT_EQ(c->tls.key, "/etc/portcullis/key.pem");
  EXPECT_EQ(c->tls.minVersion, "1.3");
  EXPECT_TRUE(c->tls.require);
  EXPECT_FALSE(c->tls.receivedHeader);
  EXPECT_EQ(c->limits.maxMessageSize, 50u * 1024 * 1024);
  EXPECT_EQ(c->limits.maxRecipients, 100u);
  EXPECT_EQ(c->limits.maxConnections, 200u);
  EXPECT_EQ(c->limits.maxConnectionsPerIp, 5u);
  EXPECT_EQ(c->limits.maxErrors, 3);
  EXPECT_EQ(c->limits.minDataRate, 0u);
  EXPECT_EQ(c->limits.ipv6PrefixLength, 56);
  EXPECT_EQ(c->timeouts.command, milliseconds(30'000));
  EXPECT_EQ(c->timeouts.dataBlock, milliseconds(300'000));
  EXPECT_EQ(c->timeouts.endOfData, milliseconds(250));
  EXPECT_EQ(c->timeouts.dataGrace, milliseconds(3'600'000));
  EXPECT_EQ(c->timeouts.greetingDelay, milliseconds(6'000));
  EXPECT_EQ(c->timeouts.shutdown, milliseconds(172'800'000));
  EXPECT_EQ(c->spool.memoryLimit, 512u * 1024);
  EXPECT_EQ(c->spool.directory, "/tmp/spool");
  EXPECT_EQ(c->log.level, "debug");
  EXPECT_EQ(c->log.output, LogOutput::kSyslog);
  EXPECT_EQ(c->log.format, LogFormat::kJson);
  EXPECT_EQ(c->log.syslogSocket, "/run/portcullis/log");
  EXPECT_EQ(c->log.syslogFacility, 17);
  EXPECT_EQ(c->dns.servers, (std::vector<std::string>{"127.0.0.1:5353", "192.0.2.53", "::1"}));
  EXPECT_EQ(c->dns.timeout, milliseconds(500));
  EXPECT_EQ(c->dns.attempts, 3);
  EXPECT_FALSE(c->dns.reverseLookup);
  ASSERT_EQ(labels(*c), (std::vector<std::string>{"size", "recipients", "probe"}))
      << "got " << joined(labels(*c));
  const FilterSpec& probe = c->filters[2];
  EXPECT_EQ(probe.name, "probe");
  EXPECT_EQ(probe.mode, FilterMode::kObserve);
  EXPECT_EQ(probe.timeout, milliseconds(250));
  EXPECT_EQ(probe.onError, OnError::kContinue);
  ASSERT_TRUE(probe.deferTo);
  EXPECT_EQ(*probe.deferTo, Stage::kRcptTo);
  ASSERT_TRUE(static_cast<bool>(probe.creator));
  EXPECT_NE(probe.creator(FilterContext{}), nullptr);

  for (const char* id : {"xclient", "none", "proxy-v1", "proxy-v2"}) {
    EXPECT_NO_THROW(load(std::string("upstream: {identity: ") + id + "}")) << id;
  }
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    EXPECT_EQ(load(std::string("log: {level: ") + level + "}")->log.level, level);
  }
  EXPECT_EQ(load("listen: \"127.0.0.1:25\"")->listeners.at(0).text, "127.0.0.1:25")
      << "a single listener may be written without a list";
}

TEST(Config, LogOutputs) {
  const auto d = load("");
  EXPECT_EQ(d->log.output, LogOutput::kStderr);
  EXPECT_EQ(d->log.format, LogFormat::kText);
  EXPECT_EQ(d->log.file, "");
  EXPECT_EQ(d->log.syslogSocket, "/dev/log");
  EXPECT_EQ(d->log.syslogFacility, 2) << "facility mail by default, next to Postfix";
  EXPECT_EQ(d->log.flushInterval, milliseconds(100));
  EXPECT_EQ(load("log: {flush_interval: 0}")->log.flushInterval, milliseconds(0));
  EXPECT_EQ(load("log: {flush_interval: 250ms}")->log.flushInterval, milliseconds(250));
  EXPECT_EQ(load("log: {flush_interval: 10s}")->log.flushInterval, milliseconds(10'000));

  const auto f = load("log: {output: file, file: /var/log/portcullis.log, format: json}");
  EXPECT_EQ(f->log.output, LogOutput::kFile);
  EXPECT_EQ(f->log.file, "/var/log/portcullis.log");
  EXPECT_EQ(f->log.format, LogFormat::kJson);

  const auto s = load("log: {output: syslog, syslog_socket: /run/x/log, syslog_facility: local3}");
  EXPECT_EQ(s->log.output, LogOutput::kSyslog);
  EXPECT_EQ(s->log.syslogSocket, "/run/x/log");
  EXPECT_EQ(s->log.syslogFacility, 19);

  // RFC 3164 4.1.1 codes.
  const struct {
    const char* name;
    int code;
  } facilities[] = {{"kern", 0}, {"user", 1},      {"mail", 2},    {"daemon", 3},
                    {"auth", 4}, {"authpriv", 10}, {"local0", 16}, {"local7", 23}};
  for (const auto& tc : facilities) {
    const int got =
        load(std::string("log: {syslog_facility: ") + tc.name + "}")->log.syslogFacility;
    EXPECT_EQ(got, tc.code) << tc.name << ": got " << got << ", want " << tc.code;
  }
  EXPECT_EQ(load("log: {output: stderr}")->log.output, LogOutput::kStderr);
  EXPECT_EQ(load("log: {format: text}")->log.format, LogFormat::kText);
}

TEST(Config, Durations) {
  const struct {
    std::string value;
    long long ms;
  } cases[] = {{"30s", 30'000},   {"5m", 300'000},     {"250ms", 250},
               {"1h", 3'600'000}, {"2d", 172'800'000}, {"45", 45'000}};
  for (const auto& tc : cases) {
    const auto c = load("timeouts: {command: " + tc.value + "}");
    EXPECT_EQ(c->timeouts.command.count(), tc.ms)
        << "timeouts.command " << tc.value << ": got " << c->timeouts.command.count() << "ms, want "
        << tc.ms << "ms";
  }
}

struct ErrorCase {
  std::string yaml;
  std::string key;
  std::string messagePart;
};

void expectError(const ErrorCase& tc, const CommandLineOverrides& o = {}) {
  try {
    load(tc.yaml, o);
    ADD_FAILURE() << tc.yaml << "\ngot no error, want a ConfigError naming \"" << tc.key << "\"";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.key(), tc.key) << tc.yaml << "\ngot key \"" << e.key() << "\" (" << what
                               << "), want \"" << tc.key << "\"";
    if (!tc.key.empty()) {
      EXPECT_EQ(what.rfind(tc.key + ": ", 0), 0u)
          << "got \"" << what << "\", want the message to start with the key path";
    }
    EXPECT_NE(what.find(tc.messagePart), std::string::npos)
        << "got \"" << what << "\", want it to mention \"" << tc.messagePart << "\"";
  }
}

TEST(Config, ErrorsNameTheKeyPath) {
  const std::vector<ErrorCase> cases = {
      {"limits: {max_message_size: ten}", "limits.max_message_size", "\"ten\""},
      {"limits: {max_message_size: 0}", "limits.max_message_size", "greater than zero"},
      {"limits: {max_mesage_size: 10}", "limits.max_mesage_size", "unknown key"},
      {"limits: {max_recipients: 0}", "limits.max_recipients", "out of range"},
      {"limits: {max_recipients: many}", "limits.max_recipients", "integer"},
      {"limits: {max_connections: 0}", "limits.max_connections", "out of range"},
      {"limits: {max_connections_per_ip: -1}", "limits.max_connections_per_ip", "out of range"},
      {"limits: {max_errors: 1001}", "limits.max_errors", "out of range"},
      {"limits: {min_data_rate: fast}", "limits.min_data_rate", "size"},
      {"limits: [1, 2]", "limits", "map"},
      {"upstream: {identity: smoke-signals}", "upstream.identity", "xclient"},
      {"upstream: {address: \"mx.example.com:25\"}", "upstream.address", "numeric"},
      {"upstream: {address: \"127.0.0.1\"}", "upstream.address", "numeric"},
      {"upstream: {connect_timeout: soon}", "upstream.connect_timeout", "duration"},
      {"upstream: {command_timeout: 1.5s}", "upstream.command_timeout", "duration"},
      {"upstream: {probe_interval: -1s}", "upstream.probe_interval", "duration"},
      {"upstream: {adress: x}", "upstream.adress", "unknown key"},
      {"timeouts: {command: 0s}", "timeouts.command", "greater than zero"},
      {"timeouts: {data_block: 5x}", "timeouts.data_block", "duration"},
      {"timeouts: {end_of_data: 0}", "timeouts.end_of_data", "greater than zero"},
      {"timeouts: {data_grace: 1w}", "timeouts.data_grace", "duration"},
      {"timeouts: {greeting_delay: x}", "timeouts.greeting_delay", "duration"},
      {"timeouts: {shutdown: []}", "timeouts.shutdown", "a list"},
      {"spool: {directory: \"\"}", "spool.directory", "empty"},
      {"spool: {memory_limit: lots}", "spool.memory_limit", "size"},
      {"log: {level: loud}", "log.level", "info"},
      {"log: {output: journal}", "log.output", "syslog"},
      {"log: {output: file}", "log.file", "path"},
      {"log: {output: file, file: \"\"}", "log.file", "path"},
      {"log: {file: /var/log/portcullis.log}", "log.file", "output: file"},
      {"log: {format: xml}", "log.format", "json"},
      {"log: {syslog_facility: mial}", "log.syslog_facility", "local7"},
      {"log: {syslog_facility: 2}", "log.syslog_facility", "mail"},
      {"log: {flush_interval: 11s}", "log.flush_interval", "at most 10s"},
      {"log: {flush_interval: soon}", "log.flush_interval", "duration"},
      {"log: {syslog_socket: dev/log}", "log.syslog_socket", "absolute path"},
      {"log: {syslog_socket: \"/" + std::string(120, 'x') + "\"}", "log.syslog_socket",
       "at most 107"},
      {"log: {outptu: syslog}", "log.outptu", "unknown key"},
      {"dns: {servers: [\"not an address\"]}", "dns.servers[0]", "not an address"},
      {"dns: {attempts: 0}", "dns.attempts", "out of range"},
      {"dns: {timeout: forever}", "dns.timeout", "duration"},
      {"dns: {reverse_lookup: maybe}", "dns.reverse_lookup", "true or false"},
      {"hostname: \"has space\"", "hostname", "DNS name"},
      {"hostname: \"\"", "hostname", "DNS name"},
      {"hostnme: mx.example", "hostnme", "unknown key"},
      {"listen: [\"bogus\"]", "listen[0]", "ADDRESS:PORT"},
      {"listen: [\"127.0.0.1:25\", \"[::1]\"]", "listen[1]", "ADDRESS:PORT"},
      {"listen: [{address: \"127.0.0.1:25\", tls: maybe}]", "listen[0].tls", "starttls"},
      {"listen: [{address: \"127.0.0.1:25\", proxy: true}]", "listen[0].proxy", "unknown key"},
      {"listen: [{address: \"nope\"}]", "listen[0].address", "ADDRESS:PORT"},
      {"listen: [{tls: none}]", "listen[0].address", "required"},
      {"listen: []", "listen", "at least one"},
      {"milter: {listen: \"127.0.0.1:8891\"}", "milter.listen", "inet:PORT@ADDRESS"},
      {"milter: {listen: \"inet:8891@127.0.0.1\", max_sessions: 0}", "milter.max_sessions",
       "out of range"},
      {"milter: {listen: \"inet:8891@127.0.0.1\", timeout: 0s}", "milter.timeout",
       "greater than zero"},
      {"milter: {listne: \"inet:8891@127.0.0.1\"}", "milter.listne", "unknown key"},
      {"trusted_proxies: [\"10.0.0.0/33\"]", "trusted_proxies", "10.0.0.0/33"},
      {"filters: [{name: size, mode: bogus}]", "filters[0].mode", "enforce"},
      {"filters: [{name: size, mode: observe}]", "filters[0].mode", "observe"},
      {"filters: [{name: probe}, {name: recipients, mode: observe}]", "filters[1].mode", "observe"},
      {"filters: [{name: nosuch}]", "filters[0].name", "probe"},
      {"filters: [{mode: enforce}]", "filters[0].name", "required"},
      {"filters: [{name: probe, timeout: 0s}]", "filters[0].timeout", "greater than zero"},
      {"filters: [{name: probe, timeout: never}]", "filters[0].timeout", "duration"},
      {"filters: [{name: probe, on_error: ignore}]", "filters[0].on_error", "tempfail"},
      {"filters: [{name: probe, defer_to: data}]", "filters[0].defer_to", "rcpt"},
      {"filters: [{name: size, limit: 5}]", "filters[0].limit", "unknown key"},
      {"filters: [{name: probe}, {name: probe, level: x}]", "filters[1].level", "integer"},
      {"filters: [{name: probe, levle: 1}]", "filters[0].levle", "unknown key"},
      {"filters: size", "filters", "list"},
      {"filters: [size]", "filters[0]", "map"},
      {"[1, 2]", "", "YAML map"},
      {"limits: {max_message_size: [\n", "", "YAML syntax error"},
  };
  for (const auto& tc : cases) expectError(tc);
  expectError({"", "--listen", "bogus"}, {std::string("bogus"), std::nullopt});
  expectError({"", "--upstream", "bogus"}, {std::nullopt, std::string("bogus")});
  try {
    loadConfig(std::string("/nonexistent/portcullis.yaml"), {}, registry());
    ADD_FAILURE() << "a missing file must be an error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/portcullis.yaml"), std::string::npos)
        << e.what();
  }
}

// Values that used to pass the loader and then broke start-up or the runtime (hardening issue
// item 10): each must be refused here, naming the key, so --check-config fails where start-up
// would.
TEST(Config, RefusesValuesTheRuntimeCannotLiveWith) {
  const std::vector<ErrorCase> cases = {
      {"upstream: {probe_interval: 0}", "upstream.probe_interval", "at least 1s"},
      {"upstream: {probe_interval: 0ms}", "upstream.probe_interval", "at least 1s"},
      {"upstream: {probe_interval: 999ms}", "upstream.probe_interval", "at least 1s"},
      {"upstream: {connect_timeout: 0}", "upstream.connect_timeout", "greater than zero"},
      {"upstream: {command_timeout: 0s}", "upstream.command_timeout", "greater than zero"},
      {"upstream: {pool_idle_timeout: 0}", "upstream.pool_idle_timeout", "at least 1s"},
      {"upstream: {pool_idle_timeout: 500ms}", "upstream.pool_idle_timeout", "at least 1s"},
      {"timeouts: {data_block: 0}", "timeouts.data_block", "greater than zero"},
      {"dns: {timeout: 0}", "dns.timeout", "greater than zero"},
      {"dns: {timeout: 0ms}", "dns.timeout", "greater than zero"},
      {"dns: {attempts: 11}", "dns.attempts", "out of range"},
      {"dns: {servers: [localhost]}", "dns.servers[0]", "numeric"},
      {"dns: {servers: [\"127.0.0.1:0\"]}", "dns.servers[0]", "port"},
      {"dns: {servers: [\"127.0.0.1:65536\"]}", "dns.servers[0]", "port"},
      {"dns: {servers: [\"[::1\"]}", "dns.servers[0]", "]"},
      {"dns: {servers: [\"*\"]}", "dns.servers[0]", "numeric"},
      {"dns: {servers: [\"127.1\"]}", "dns.servers[0]", "numeric"},
      {"dns: {servers: [\"0x7f.0.0.1:53\"]}", "dns.servers[0]", "numeric"},
      {"dns: {servers: [\"127.0.0.1\", \"localhost:53\"]}", "dns.servers[1]", "localhost"},
      {"limits: {ipv6_prefix_length: 0}", "limits.ipv6_prefix_length", "out of range"},
      {"limits: {ipv6_prefix_length: 129}", "limits.ipv6_prefix_length", "out of range"},
      {"limits: {ipv6_prefix_length: /64}", "limits.ipv6_prefix_length", "integer"},
      {"limits: {max_line_length: -1}", "limits.max_line_length", "out of range"},
      {"limits: {max_line_length: 998x}", "limits.max_line_length", "integer"},
      // The same socket twice, however spelt: bind() fails with "Address already in use".
      {"listen: [\"127.0.0.1:25\", \"127.0.0.1:25\"]", "listen[1]", "listen[0]"},
      {"listen: [\"localhost:25\", \"127.0.0.1:25\"]", "listen[1]", "same socket"},
      {"listen: [\"*:25\", \"0.0.0.0:25\"]", "listen[1]", "same socket"},
      {"listen: [\":25\", \"127.0.0.1:26\", \"127.0.0.1:25\"]", "listen[2]", "listen[0]"},
      {"listen: [\"127.0.0.1:25\", \"0.0.0.0:25\"]", "listen[1]", "same socket"},
      {"listen: [\"[::1]:25\", \"[0:0::1]:25\"]", "listen[1]", "same socket"},
      {"listen: [\"[::]:25\", \"[2001:db8::1]:25\"]", "listen[1]", "same socket"},
      {"listen: [\"127.0.0.1:25\", {address: \"127.0.0.1:25\", tls: none}]", "listen[1]",
       "same socket"},
      {"listen: [\"[::ffff:127.0.0.1]:25\"]", "listen[0]", "IPv4-mapped"},
      {"listen: [{address: \"[::ffff:127.0.0.1]:25\"}]", "listen[0].address", "127.0.0.1:25"},
  };
  for (const auto& tc : cases) expectError(tc);
  expectError({"", "--listen", "IPv4-mapped"},
              {std::string("[::ffff:127.0.0.1]:25"), std::nullopt});
}

TEST(Config, DistinctListenersAndSmallestValuesAreAccepted) {
  const std::string smallestUpstream =
      std::string("upstream: {probe_interval: 1s, pool_idle_timeout: 1s, connect_timeout: 1ms, ") +
      "command_timeout: 1ms, keepalive_interval: 0}";
  for (const char* yaml : {
           "listen: [\"0.0.0.0:25\", \"[::]:25\"]",  // IPv6 listeners are IPv6-only
           "listen: [\"127.0.0.1:25\", \"127.0.0.1:26\"]",
           "listen: [\"127.0.0.1:25\", \"127.0.0.2:25\", \"[::1]:25\"]",
           smallestUpstream.c_str(),
           "dns: {timeout: 1ms, attempts: 1, servers: [\"127.0.0.1\", \"::1\", \"[::1]:5353\"]}",
           "limits: {ipv6_prefix_length: 1}",
           "limits: {ipv6_prefix_length: 128, min_data_rate: 0}",
           "timeouts: {data_grace: 0, greeting_delay: 0, shutdown: 0}",
           "spool: {memory_limit: 0}",
       }) {
    EXPECT_NO_THROW(load(yaml)) << yaml;
  }
}

TEST(Config, DescriptorsNeeded) {
  const struct {
    std::string yaml;
    std::size_t want;
  } cases[] = {
      // 4 per connection + pool (none for auto) + listeners + reserve
      {"", 4 * 1000 + 0 + 1 + kDescriptorReserve},
      {"limits: {max_connections: 100}", 4 * 100 + 0 + 1 + kDescriptorReserve},
      {"limits: {max_connections: 100}\nupstream: {pool_size: 32}",
       4 * 100 + 32 + 1 + kDescriptorReserve},
      {"limits: {max_connections: 1}\nupstream: {pool_size: 0}\n"
       "listen: [\"127.0.0.1:25\", \"127.0.0.1:587\"]",
       4 + 0 + 2 + kDescriptorReserve},
  };
  for (const auto& tc : cases) {
    const std::size_t got = descriptorsNeeded(*load(tc.yaml));
    EXPECT_EQ(got, tc.want) << tc.yaml << ": got " << got << ", want " << tc.want;
  }
}

TEST(Config, PoolSizeIsAutoOrANumber) {
  // auto (the default) lets the pool follow the load up to max_connections.
  const auto byDefault = load("limits: {max_connections: 300}");
  EXPECT_TRUE(byDefault->upstream.poolAuto);
  EXPECT_EQ(poolLimit(*byDefault), 300u);
  const auto spelled = load("limits: {max_connections: 50}\nupstream: {pool_size: auto}");
  EXPECT_TRUE(spelled->upstream.poolAuto);
  EXPECT_EQ(poolLimit(*spelled), 50u);
  const auto fixed = load("upstream: {pool_size: 7}");
  EXPECT_FALSE(fixed->upstream.poolAuto);
  EXPECT_EQ(poolLimit(*fixed), 7u);
  EXPECT_EQ(poolLimit(*load("upstream: {pool_size: 0}")), 0u);
  expectError({"upstream: {pool_size: automatic}", "upstream.pool_size", "integer"});
  expectError({"upstream: {pool_size: -1}", "upstream.pool_size", ""});
}

TEST(Config, ChunkingAndPipeliningUpstreamAreAutoOrOff) {
  const auto byDefault = load("");
  EXPECT_TRUE(byDefault->upstream.chunking);
  EXPECT_TRUE(byDefault->upstream.pipelining);
  const auto off = load("upstream: {chunking: 'off', pipelining: 'off'}");
  EXPECT_FALSE(off->upstream.chunking);
  EXPECT_FALSE(off->upstream.pipelining);
  EXPECT_TRUE(load("upstream: {pipelining: auto}")->upstream.pipelining);
  expectError({"upstream: {pipelining: yes}", "upstream.pipelining", "auto"});
}

TEST(Config, HostnameMustFitInAReply) {
  // The hostname goes into the 220 greeting, the EHLO reply and 421 texts, all built with
  // *Reply::make(...) (e.g. proxy/session_commands.cc make()): a name that is not a valid reply
  // text makes those dereference an empty optional at runtime. Config must refuse it.
  expectError({"hostname: " + std::string(300, 'h'), "hostname", "hostname"});
  expectError({"hostname: \"mx\\x01.example\"", "hostname", "hostname"});
  // RFC 1123 2.1 host names, label by label.
  expectError({"hostname: mx..example", "hostname", "empty label"});
  expectError({"hostname: .example", "hostname", "empty label"});
  expectError({"hostname: -mx.example", "hostname", "hyphen"});
  expectError({"hostname: mx.example.123", "hostname", "numeric top-level"});
  expectError({"hostname: " + std::string(64, 'a') + ".example", "hostname", "63 octets"});
}

TEST(Config, MandatoryFiltersAreAddedAtTheFront) {
  const struct {
    std::string yaml;
    std::vector<std::string> want;
  } cases[] = {
      {"", {"size", "recipients"}},
      {"filters: [{name: probe}]", {"size", "recipients", "probe"}},
      {"filters: [{name: probe}, {name: size}]", {"recipients", "probe", "size"}},
      {"filters: [{name: probe}, {name: recipients}]", {"size", "probe", "recipients"}},
      {"filters: [{name: recipients}, {name: size}]", {"recipients", "size"}},
      {"filters: [{name: probe}, {name: probe}, {name: probe, mode: observe}]",
       {"size", "recipients", "probe", "probe#2", "probe#3"}},
  };
  for (const auto& tc : cases) {
    const auto c = load(tc.yaml);
    EXPECT_EQ(labels(*c), tc.want)
        << tc.yaml << ": got " << joined(labels(*c)) << ", want " << joined(tc.want);
    for (const auto& f : c->filters) {
      if (f.name == "size" || f.name == "recipients") {
        EXPECT_EQ(f.mode, FilterMode::kEnforce) << tc.yaml << ": " << f.label;
      }
    }
  }
}

TEST(Config, DeferTo) {
  const auto c = load("filters: [{name: probe, defer_to: rcpt}, {name: probe}]");
  ASSERT_EQ(c->filters.size(), 4u);
  ASSERT_TRUE(c->filters[2].deferTo);
  EXPECT_EQ(*c->filters[2].deferTo, Stage::kRcptTo);
  EXPECT_FALSE(c->filters[3].deferTo);
}

TEST(Config, ReplyReference) {
  EXPECT_TRUE(load("")->reply.reference);
  EXPECT_FALSE(load("reply: {reference: false}")->reply.reference);
  EXPECT_THROW(load("reply: {reference: maybe}"), ConfigError);
  EXPECT_THROW(load("reply: {referense: false}"), ConfigError);
}

TEST(Config, CommandLineOverridesTheFile) {
  const auto c = load(
      "listen: [\"127.0.0.1:25\", \"127.0.0.1:26\"]\nupstream: {address: "
      "\"127.0.0.1:10025\"}\n",
      {std::string("[::1]:2500"), std::string("192.0.2.9:25")});
  ASSERT_EQ(c->listeners.size(), 1u);
  EXPECT_EQ(c->listeners[0].address.toString(), "[::1]:2500");
  EXPECT_EQ(c->upstream.text, "192.0.2.9:25");
  EXPECT_EQ(c->upstream.address.toString(), "192.0.2.9:25");
}

// The core names no filter: what it does for size, recipients and rdns it does for any factory
// that declares the same traits (a third-party filter gets the same treatment).
class TraitsFactory final : public FilterFactory {
 public:
  TraitsFactory(std::string name, FilterTraits traits)
      : name_(std::move(name)), traits_(std::move(traits)) {}
  std::string_view name() const override { return name_; }
  FilterTraits traits() const override { return traits_; }
  FilterCreator configure(const ConfigSection&) const override {
    return [](const FilterContext&) { return std::make_unique<ProbeFilter>(); };
  }

 private:
  std::string name_;
  FilterTraits traits_;
};

TEST(ConfigTest, FactoryTraitsDecideAlwaysOnAndReverseLookup) {
  FilterRegistry reg;
  reg.add(std::make_unique<TraitsFactory>("limit_b", FilterTraits{.alwaysOn = true}));
  reg.add(std::make_unique<TraitsFactory>("plain", FilterTraits{}));
  reg.add(std::make_unique<TraitsFactory>("limit_a", FilterTraits{.alwaysOn = true}));
  reg.add(std::make_unique<TraitsFactory>("judge", FilterTraits{.needsReverseLookup = true}));

  // Always-on filters come first, in registration order, unless the config places them.
  auto c = loadConfigFromString("filters: [{name: plain}]", {}, reg);
  EXPECT_EQ(labels(*c), (std::vector<std::string>{"limit_b", "limit_a", "plain"}))
      << "got " << joined(labels(*c));
  c = loadConfigFromString("filters: [{name: plain}, {name: limit_b}]", {}, reg);
  EXPECT_EQ(labels(*c), (std::vector<std::string>{"limit_a", "plain", "limit_b"}))
      << "got " << joined(labels(*c));
  for (const auto& f : c->filters) EXPECT_NE(f.stats, nullptr) << f.label << " is counted";

  const std::vector<std::pair<std::string, std::string>> errors = {
      {"filters: [{name: limit_a, mode: observe}]",
       "filters[0].mode: the limit_a filter enforces a resource limit and cannot run in observe "
       "mode"},
      {"dns: {reverse_lookup: false}\nfilters: [{name: judge}]",
       "dns.reverse_lookup: the judge filter (judge) judges the core's reverse lookup; it needs "
       "reverse_lookup: true"},
  };
  for (const auto& [yaml, want] : errors) {
    try {
      loadConfigFromString(yaml, {}, reg);
      ADD_FAILURE() << yaml << ": got no error, want: " << want;
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()), want) << yaml;
    }
  }
  // A filter without the trait is fine with reverse lookups off.
  EXPECT_NO_THROW(
      loadConfigFromString("dns: {reverse_lookup: false}\nfilters: [{name: plain}]", {}, reg));
}

}  // namespace
}  // namespace portcullis
