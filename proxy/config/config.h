#pragma once
// Config: the validated, immutable configuration snapshot (shared_ptr<const Config>).
// Built once from built-in defaults, then the YAML file, then command-line overrides; any error
// is a ConfigError naming the key (main prints one line and exits 2). A reload builds a new
// snapshot; each session keeps the snapshot it started with. Nothing here does I/O at runtime.

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portcullis/filter_factory.h"
#include "portcullis/filter_registry.h"
#include "portcullis/stage.h"
#include "proxy/admin/filter_stats.h"
#include "proxy/base/log.h"
#include "proxy/base/net_util.h"

namespace portcullis {

using std::chrono::milliseconds;

enum class TlsListenMode { kNone, kStartTls, kImplicit };
enum class IdentityMode { kXclient, kNone, kProxyV1, kProxyV2 };
// The config spelling of each IdentityMode, in enum order (upstream.identity, logs).
inline constexpr std::array<std::string_view, 4> kIdentityModeNames = {"xclient", "none",
                                                                       "proxy-v1", "proxy-v2"};
inline std::string_view identityModeName(IdentityMode m) {
  return kIdentityModeNames[static_cast<std::size_t>(m)];
}
enum class UpstreamTls { kNone, kOpportunistic, kRequire };
enum class FilterMode { kEnforce, kObserve };
enum class OnError { kTempfail, kContinue };

struct ListenerConfig {
  std::string text;  // as written, for logs
  SocketAddress address;
  TlsListenMode tls = TlsListenMode::kStartTls;  // STARTTLS offered when tls.cert is set
  bool proxyProtocol = false;
};

struct UpstreamConfig {
  std::string text = "127.0.0.1:10025";
  SocketAddress address;
  IdentityMode identity = IdentityMode::kXclient;
  milliseconds connectTimeout{10'000};
  milliseconds commandTimeout{120'000};
  milliseconds probeInterval{60'000};
  // Idle connections kept for reuse. auto (the default): as many as there were sessions holding
  // one at a time, up to limits.max_connections, each closed after poolIdleTimeout unused (see
  // poolLimit). A number: at most that many; 0 disables the pool.
  bool poolAuto = true;
  std::size_t poolSize = 0;  // when !poolAuto
  milliseconds poolIdleTimeout{30'000};
  std::uint32_t poolMaxReuse = 100;        // sessions per connection
  milliseconds keepaliveInterval{60'000};  // NOOP to the MTA while a slow client sends DATA
  bool chunking = true;  // upstream.chunking: auto (BDAT when the MTA offers CHUNKING) or off
  // upstream.pipelining: auto (a pipelining client's MAIL/RCPT go on as a group when the MTA
  // offers PIPELINING) or off (one command, one reply, then the next)
  bool pipelining = true;
  UpstreamTls tls = UpstreamTls::kNone;
  bool tlsVerify = false;
  std::string caFile;
  std::string tlsName;
};

struct TlsConfig {
  std::string cert;  // empty: no TLS (no STARTTLS offered, no implicit listeners)
  std::string key;
  std::string ciphers;
  std::string ciphersuites;
  std::string minVersion = "1.2";
  bool require = false;        // MAIL needs STARTTLS first (530 5.7.0)
  bool receivedHeader = true;  // record the client's TLS in a Received: trace header
  bool enabled() const { return !cert.empty(); }
};

struct LimitsConfig {
  std::uint64_t maxMessageSize = 10'240'000;  // Postfix's default message_size_limit
  std::size_t maxRecipients = 1000;           // Postfix's smtpd_recipient_limit
  std::size_t maxConnections = 1000;
  std::size_t maxConnectionsPerIp = 50;
  int maxErrors = 10;
  std::uint64_t minDataRate = 1024;  // octets/s during DATA, checked after timeouts.data_grace
  // RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF. A message with a
  // longer line is refused after the dot (554 5.6.0); 0 disables the check.
  std::uint64_t maxLineLength = 998;
  // IPv6 clients are counted per prefix for max_connections_per_ip, since one host commonly
  // holds a whole /64 (as Postfix 3.8's smtpd_client_ipv6_prefix_length and postscreen do).
  int ipv6PrefixLength = 64;
};

struct TimeoutsConfig {
  milliseconds command{300'000};    // RFC 5321 4.5.3.2.7 server timeout
  milliseconds dataBlock{180'000};  // RFC 5321 4.5.3.2.6 between data chunks
  milliseconds endOfData{300'000};  // our answer to the final dot (filters + MTA)
  milliseconds dataGrace{30'000};   // before min_data_rate applies
  milliseconds greetingDelay{0};    // hold the 220 this long (pre-greeting talkers get 554)
  milliseconds shutdown{30'000};    // SIGTERM drain deadline
};

struct SpoolConfig {
  std::size_t memoryLimit = 1024 * 1024;
  std::string directory = "/var/spool/portcullis";
};

// log: (level, output, format, file, syslog_socket, syslog_facility, flush_interval); the struct
// lives with the logging code in proxy/base so that setupLogging takes it as it is.
using LogConfig = LogOptions;

// What portcullis adds to the replies it writes itself.
struct ReplyConfig {
  bool reference = true;  // "[ref=7Q2K9XHM]" on every 4xx/5xx of ours, logged with the reject
};

struct DnsConfig {
  std::vector<std::string> servers;  // empty: /etc/resolv.conf
  milliseconds timeout{2000};
  int attempts = 2;
  bool reverseLookup = true;  // FCrDNS of every client, like Postfix smtpd
};

struct FilterSpec {
  std::string name;
  std::string label;  // "dnsbl" or "dnsbl#2" when a name repeats; used in logs
  FilterMode mode = FilterMode::kEnforce;
  milliseconds timeout{30'000};
  OnError onError = OnError::kTempfail;
  std::optional<Stage> deferTo;  // hold connect/helo rejects until this stage (rcpt)
  FilterTraits traits;           // what the factory declared
  FilterCreator creator;
  // The chain's counters for this filter (processFilterStats()); null counts nothing (tests).
  std::shared_ptr<const FilterStats> stats;
  // The entry as written (YAML, empty for an always-on filter the loader added): what
  // --print-config shows of the filter's own settings, and what a reload compares.
  std::string source;
};

// Who the daemon runs as once its listeners are bound (empty user: whoever started it), and
// where it writes its pid.
struct ProcessConfig {
  std::string user;
  std::string group;  // empty: the user's primary group
  std::string pidFile;
  // workers: event-loop threads, each with its own listeners (SO_REUSEPORT), sessions, MTA
  // pool and DNS cache (proxy/server/workers.h). "auto": one per online CPU, resolved here.
  std::size_t workers = 1;
  bool workersAuto = false;  // written as "auto" (what --print-config shows)
};
inline constexpr std::size_t kMaxWorkers = 256;

// admin: the HTTP endpoint for metrics and probes (off unless admin.listen is set).
struct AdminConfig {
  std::optional<SocketAddress> listen;
};

// plugins: one entry per filter plugin (.so) to load before the filters are resolved.
struct PluginConfig {
  std::string path;  // absolute, as written
  std::string key;   // "plugins[0].path", for error lines
};

// Loads the `plugins:` list into the registry the filters are then resolved from
// (proxy/plugins/plugin_loader.h). All or nothing; throws ConfigError naming the key and file.
class PluginLoader {
 public:
  virtual ~PluginLoader() = default;
  virtual void load(const std::vector<PluginConfig>& plugins) = 0;
};

// milter: the same filter chain served to an MTA over the milter protocol (proxy/milter/), off
// unless milter.listen is set. The address is libmilter's: "inet:8891@127.0.0.1",
// "inet6:8891@[::1]" or "unix:/run/portcullis/milter.sock".
struct MilterConfig {
  std::string listen;
  std::size_t maxSessions = 64;  // MTA connections served at once; over it: tempfail
  milliseconds timeout{25'000};  // each callback's wait for the chain; then tempfail
  // A unix: socket's group and mode, set after libmilter creates it: connecting needs write
  // permission, and Postfix's smtpd runs as the unprivileged postfix user. Empty group: the
  // group it was created with.
  std::string socketGroup = "postfix";
  unsigned socketMode = 0660;
  bool enabled() const { return !listen.empty(); }
};

struct Config {
  std::string hostname;
  ProcessConfig process;
  AdminConfig admin;
  MilterConfig milter;
  std::vector<ListenerConfig> listeners;  // may be empty when the milter is on
  std::vector<Cidr> trustedProxies;
  std::vector<std::string> trustedProxiesText;  // as written, for --print-config
  UpstreamConfig upstream;
  TlsConfig tls;
  LimitsConfig limits;
  TimeoutsConfig timeouts;
  SpoolConfig spool;
  LogConfig log;
  ReplyConfig reply;
  DnsConfig dns;
  std::vector<PluginConfig> plugins;
  std::vector<FilterSpec> filters;
  std::string sourcePath;  // the file it came from, empty for built-in defaults
};

struct CommandLineOverrides {
  std::optional<std::string> listen;
  std::optional<std::string> upstream;
};

// Smallest values the runtime can live with (config.cc refuses anything below, naming the key).
inline constexpr milliseconds kMinProbeInterval{1000};    // 0 would probe the MTA every loop
inline constexpr milliseconds kMinPoolIdleTimeout{1000};  // the sweep runs every half of it
inline constexpr std::size_t kDescriptorReserve = 32;     // stdio, logs, epoll, signals, TLS files

// The open-files budget the config needs at its limits, checked against RLIMIT_NOFILE by main
// (--check-config and start-up alike):
//   4 * limits.max_connections   a client socket, an MTA socket, a spool file (DATA past
//                                spool.memory_limit) and one DNS socket per session
//   + upstream.pool_size         idle MTA connections kept for reuse, per worker (auto: none
//                                with one worker, else max_connections: see poolLimit)
//   + listeners                  one socket each, per worker (SO_REUSEPORT)
//   + 2 * (workers - 1)          the other workers' DNS socket and wake-up pipe
//   + 2 * milter.max_sessions    the MTA's milter socket and a DNS socket (milter on)
//   + kDescriptorReserve         everything else
// How many idle MTA connections one worker's pool may hold. With pool_size: auto that is
// limits.max_connections shared out over the workers: a session takes a pooled connection
// before it opens one, so a worker's connections (in use and idle) never outnumber the sessions
// that held one at the same time, the pool follows the load up, and the idle timeout trims it
// back (the pool hands out its most recently returned connection first, so the surplus ages
// out).
std::size_t poolLimit(const Config& config);

std::size_t descriptorsNeeded(const Config& config);

// Loads `path` (if set) over the defaults and applies the overrides. Throws ConfigError.
// `plugins`, when given, loads the `plugins:` list into `registry` before the filters are
// looked up in it; without one the list is validated and recorded, and nothing is loaded.
std::shared_ptr<const Config> loadConfig(const std::optional<std::string>& path,
                                         const CommandLineOverrides& overrides,
                                         const FilterRegistry& registry,
                                         PluginLoader* plugins = nullptr);

// Same, from YAML text (tests).
std::shared_ptr<const Config> loadConfigFromString(const std::string& yaml,
                                                   const CommandLineOverrides& overrides,
                                                   const FilterRegistry& registry,
                                                   PluginLoader* plugins = nullptr);

}  // namespace portcullis
