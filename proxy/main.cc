// portcullis: command line, configuration, start-up and the event loop.
//   portcullis [--config FILE] [--listen ADDR:PORT] [--upstream HOST:PORT]
//              [--check-config] [--print-config [-n]] [--version] [--help]
//   portcullis explain ...   (reads the logs back; proxy/explain/explain.h)
// Exit status: 0 normal (including a drained SIGTERM), 1 start-up failure, 2 bad config/usage.

#include <getopt.h>
#include <pthread.h>
#include <unistd.h>

#include <event2/thread.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <optional>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>

#include "filters/builtin_filters.h"
#include "portcullis/filter_registry.h"
#include "proxy/admin/admin_server.h"
#include "proxy/admin/core_stats.h"
#include "proxy/admin/refusal_ring.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/event_util.h"
#include "proxy/base/log.h"
#include "proxy/config/config.h"
#include "proxy/config/config_print.h"
#include "proxy/explain/explain.h"
#include "proxy/milter/milter_server.h"
#include "proxy/net/tls.h"
#include "proxy/plugins/plugin_loader.h"
#include "proxy/server/privileges.h"
#include "proxy/server/sd_notify.h"
#include "proxy/server/server.h"
#include "proxy/server/startup_checks.h"
#include "proxy/server/workers.h"
#include "proxy/smtp/spool.h"

namespace {

constexpr const char* kUsage =
    "usage: portcullis [--config FILE] [--listen ADDR:PORT] [--upstream HOST:PORT]\n"
    "                  [--check-config] [--print-config [-n]] [--version] [--help]\n"
    "       portcullis explain REF|--session ID|--client IP|--code CODE [--log FILE]...\n"
    "\n"
    "A stage-aware SMTP filtering proxy in front of an MTA.\n"
    "\n"
    "  -c, --config FILE      YAML configuration (built-in defaults without it)\n"
    "  -l, --listen ADDR:PORT listen here instead of the config's listen list\n"
    "  -u, --upstream ADDR:PORT  the MTA to relay to (default 127.0.0.1:10025)\n"
    "      --check-config     validate the configuration and exit (0 ok, 2 error)\n"
    "      --print-config     print the effective configuration, every default filled in, as\n"
    "                         YAML that loads back; with -n only what differs from the defaults\n"
    "  -V, --version          print the version and exit\n"
    "  -h, --help             this text\n"
    "\n"
    "`portcullis explain` finds a session in the logs by the reference of a refusal, its id or\n"
    "its client and tells its story; `portcullis explain --help` says more.\n";

void blockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

bool makeSpoolDirectory(const std::string& dir, std::string* error) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      *error = dir + " is not a directory";
      return false;
    }
    return true;
  }
  // mkdir -p, mode 0700: spool files hold other people's mail.
  std::string partial;
  for (std::size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || (dir[i] == '/' && i > 0)) {
      partial = dir.substr(0, i);
      if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
        *error = "cannot create " + partial + ": " + std::strerror(errno);
        return false;
      }
    }
  }
  return true;
}

struct OpenFilesLimit {
  rlim_t before = 0;  // the soft limit we were started with
  rlim_t soft = 0;    // the soft limit now
  rlim_t hard = 0;
};

// Raises the soft RLIMIT_NOFILE to the hard limit (DESIGN.md invariant 10: descriptors are a
// budget, and the common soft default of 1024 is far below what max_connections needs). An
// unlimited hard limit is capped at fs.nr_open, the most setrlimit accepts for open files.
OpenFilesLimit raiseOpenFilesLimit() {
  OpenFilesLimit out;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return out;
  out.before = out.soft = rl.rlim_cur;
  out.hard = rl.rlim_max;
  rlim_t target = rl.rlim_max;
  if (target == RLIM_INFINITY) {
    std::ifstream in("/proc/sys/fs/nr_open");
    unsigned long long nrOpen = 0;
    target = (in >> nrOpen) && nrOpen > 0 ? static_cast<rlim_t>(nrOpen) : rl.rlim_cur;
  }
  if (rl.rlim_cur != RLIM_INFINITY && target > rl.rlim_cur) {
    rl.rlim_cur = target;
    if (::setrlimit(RLIMIT_NOFILE, &rl) == 0) out.soft = target;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace portcullis;
  // A subcommand, before the daemon's options: it reads logs and never starts the proxy.
  if (argc > 1 && std::strcmp(argv[1], "explain") == 0) return explainMain(argc - 1, argv + 1);
  enum { kCheckConfig = 1000, kPrintConfig };
  static const option kOptions[] = {
      {"config", required_argument, nullptr, 'c'},
      {"listen", required_argument, nullptr, 'l'},
      {"upstream", required_argument, nullptr, 'u'},
      {"check-config", no_argument, nullptr, kCheckConfig},
      {"print-config", no_argument, nullptr, kPrintConfig},
      {"non-default", no_argument, nullptr, 'n'},
      {"version", no_argument, nullptr, 'V'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  std::optional<std::string> configPath;
  CommandLineOverrides overrides;
  bool checkOnly = false;
  bool printConfig = false;
  bool nonDefault = false;
  int opt = 0;
  while ((opt = getopt_long(argc, argv, "c:l:u:nVh", kOptions, nullptr)) != -1) {
    switch (opt) {
      case 'c':
        configPath = optarg;
        break;
      case 'l':
        overrides.listen = optarg;
        break;
      case 'u':
        overrides.upstream = optarg;
        break;
      case kCheckConfig:
        checkOnly = true;
        break;
      case kPrintConfig:
        printConfig = true;
        break;
      case 'n':
        nonDefault = true;
        break;
      case 'V':
        std::cout << "portcullis " << PORTCULLIS_VERSION << "\n";
        return 0;
      case 'h':
        std::cout << kUsage;
        return 0;
      default:
        std::cerr << kUsage;
        return 2;
    }
  }
  if (nonDefault && !printConfig) {
    std::cerr << "portcullis: -n goes with --print-config\n" << kUsage;
    return 2;
  }
  if (optind < argc) {
    std::cerr << "portcullis: unexpected argument: " << argv[optind] << "\n" << kUsage;
    return 2;
  }

  FilterRegistry registry;
  registerBuiltinFilters(registry);
  // After the registry, before the config: both hold objects whose code is in the plugins.
  PluginSet plugins(registry);
  std::shared_ptr<const Config> config;
  try {
    config = loadConfig(configPath, overrides, registry, &plugins);
  } catch (const ConfigError& e) {
    std::cerr << "portcullis: config error: " << e.what() << "\n";
    return 2;
  }
  if (printConfig) {
    // The file's settings as the daemon would run them; with -n only what the file changes.
    std::shared_ptr<const Config> defaults;
    if (nonDefault) defaults = loadConfig(std::nullopt, {}, registry);
    std::cout << configToYaml(*config, defaults.get());
    return 0;
  }
  std::string error;
  // Checked here rather than in the loader because it depends on the process, not the file; but
  // before --check-config returns, so the check fails exactly where start-up would.
  const OpenFilesLimit fdLimit = raiseOpenFilesLimit();
  const std::size_t fdNeeded = descriptorsNeeded(*config);
  if (!checkDescriptorBudget(*config, fdLimit.soft, &error) || !checkHost(*config, &error)) {
    std::cerr << "portcullis: config error: " << error << "\n";
    return 2;
  }
  // user:/group: are looked up now, so --check-config catches an unknown name or a start by
  // a user who could not switch.
  std::optional<RunAs> runAs;
  if (!config->process.user.empty()) {
    runAs = resolveRunAs(config->process.user, config->process.group, &error);
    if (!runAs || !canBecome(*runAs, &error)) {
      std::cerr << "portcullis: config error: user: " << error << "\n";
      return 2;
    }
  }
  if (!makeSpoolDirectory(config->spool.directory, &error)) {
    std::cerr << "portcullis: config error: spool.directory: " << error << "\n";
    return 2;
  }
  if (config->tls.enabled()) {
    // Certificates are checked up front too, so --check-config catches a missing key.
    if (!TlsContext::server(serverTlsSettings(*config), &error)) {
      std::cerr << "portcullis: config error: " << error << "\n";
      return 2;
    }
  }
  if (config->upstream.tls != UpstreamTls::kNone) {
    // As for the server certificate: a missing upstream.ca_file fails here, not at start-up.
    if (!TlsContext::client(upstreamTlsSettings(*config), &error)) {
      std::cerr << "portcullis: config error: " << error << "\n";
      return 2;
    }
  }
  // A log file that cannot be opened fails here, before --check-config returns; until
  // setupLogging succeeds, errors go to stderr.
  if (!checkLogOutput(config->log, &error)) {
    std::cerr << "portcullis: config error: log.file: " << error << "\n";
    return 2;
  }
  if (checkOnly) {
    std::cout << "portcullis: configuration OK (" << config->listeners.size() << " listener(s), "
              << config->plugins.size() << " plugin(s), " << config->filters.size()
              << " filter(s), upstream " << config->upstream.address.toString() << ")\n";
    return 0;
  }

  if (!setupLogging(config->log, &error)) {
    std::cerr << "portcullis: cannot set up logging: " << error << "\n";
    return 1;
  }
  // What the process keeps using after the drop becomes the user's: spool files are created in
  // the spool directory, and the log file is reopened by name on SIGUSR1.
  if (runAs &&
      (!handOver(config->spool.directory, *runAs, &error) ||
       (config->log.output == LogOutput::kFile && !handOver(config->log.file, *runAs, &error)))) {
    spdlog::critical("event=startup-failed error={}", logValue(error));
    return 1;
  }
  spdlog::info("event=fd-limit soft={} hard={} was={} needed={}", fdLimit.soft, fdLimit.hard,
               fdLimit.before, fdNeeded);
  for (const LoadedPlugin& p : plugins.loaded()) {
    std::string names;
    for (const auto& n : p.filters) names += (names.empty() ? "" : ",") + n;
    spdlog::info("event=plugin-loaded path={} plugin={} version={} filters={}", logValue(p.path),
                 logValue(p.name), logValue(p.version), names);
  }
  std::signal(SIGPIPE, SIG_IGN);
  // SIGUSR1 (logrotate) would end the process until the server's handler is in place; the
  // file was opened by name just now anyway.
  std::signal(SIGUSR1, SIG_IGN);
  // Every message allocates and frees its spool and buffers; with glibc's default, dynamic
  // trim threshold the heap top kept shrinking and regrowing (a brk pair every few messages
  // in the benchmark). Fixed thresholds keep freed memory for the next message; the per-
  // session bounds (spool.memory_limit, stream watermarks) still bound the total.
  mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
  if (const int n = removeStaleSpoolFiles(config->spool.directory); n > 0) {
    spdlog::warn("event=spool-cleanup removed={} directory={}", n,
                 logValue(config->spool.directory));
  }

  // Milter mode hands work to the loop from libmilter's threads (event_active), and with
  // several workers the syslog output arms its write event on worker 0's loop from any thread:
  // the bases must be made thread-aware before they exist. Otherwise libevent stays lock-free
  // (the workers wake each other through an eventfd, LoopInbox).
  const bool crossThreadEvents =
      config->milter.enabled() ||
      (config->process.workers > 1 && config->log.output == LogOutput::kSyslog);
  if (crossThreadEvents && evthread_use_pthreads() != 0) {
    spdlog::critical("event=startup-failed error=\"libevent has no pthreads support\"");
    return 1;
  }
  EventBasePtr base(event_base_new());
  if (!base) {
    spdlog::critical("event=startup-failed error=\"cannot create event base\"");
    return 1;
  }
  attachLogsToLoop(base.get());
  // Detached on every way out, before `base` is freed.
  const std::unique_ptr<void, void (*)(void*)> detachLogs(base.get(),
                                                          [](void*) { attachLogsToLoop(nullptr); });
  int rc = 0;
  {
    // Info lines logged on this loop leave in batches; the rest when this block ends, after
    // the workers (declared after it) are gone.
    const LogBatching logBatching(base.get());
    EventDispatcher dispatcher(base.get());
    Workers workers(dispatcher, config);  // worker 0 runs on this loop
    Server& server = workers.primary();
    // SIGHUP: the same file, loader and checks as above. Plugins stay as loaded (a changed
    // plugins: list needs a restart), so the loader gets none to load.
    server.setConfigSource([&](std::string* err) -> std::shared_ptr<const Config> {
      std::shared_ptr<const Config> next;
      try {
        next = loadConfig(configPath, overrides, registry);
      } catch (const ConfigError& e) {
        *err = e.what();
        return nullptr;
      }
      rlimit rl{};
      if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && !checkDescriptorBudget(*next, rl.rlim_cur, err)) {
        return nullptr;
      }
      return next;
    });
    if (!workers.start(&error)) {
      spdlog::critical("event=startup-failed error={}", logValue(error));
      return 1;
    }
    // Every core series registered now: there from the first scrape, at zero, and no session
    // pays for registering them.
    (void)coreStats();
    std::unique_ptr<MilterServer> milter;  // stopped and joined before the server goes
    if (config->milter.enabled()) {
      milter = std::make_unique<MilterServer>(dispatcher, config, server.filterContext(),
                                              [&server] { return server.snapshot(); });
      if (!milter->start(&error)) {
        spdlog::critical("event=startup-failed error={}", logValue(error));
        return 1;
      }
      server.addDrainParticipant(milter.get());  // SIGTERM drains the milter's sessions too
    }
    std::unique_ptr<AdminServer> admin;
    if (config->admin.listen) {
      // On worker 0's loop; the figures are every worker's, merged.
      admin = std::make_unique<AdminServer>(base.get(), processStats(), [&workers] {
        const SpoolUsage spool = spoolUsage();
        AdminStatus status = workers.status();
        status.spoolMemoryBytes = spool.memoryBytes;
        status.spoolDiskBytes = spool.diskBytes;
        return status;
      });
      admin->setStatusPage([&workers, &server, &config, &dispatcher] {
        const auto minute =
            std::chrono::duration_cast<std::chrono::minutes>(dispatcher.now().time_since_epoch());
        return StatusPageInput{config->hostname, workers.liveSessions(),
                               processRefusals().lastHour(minute.count()),
                               server.upstreamAnswered(), server.draining()};
      });
      if (!admin->start(*config->admin.listen, &error)) {
        spdlog::critical("event=startup-failed error={}", logValue(error));
        return 1;
      }
      spdlog::info("event=admin-listening address={}", config->admin.listen->toString());
    }
    // Listeners bound: the pid file, then the user for good (nothing after this needs root).
    if (!config->process.pidFile.empty() && !writePidFile(config->process.pidFile, &error)) {
      spdlog::critical("event=startup-failed error={}", logValue(error));
      return 1;
    }
    if (runAs) {
      if (!dropPrivileges(*runAs, &error)) {
        spdlog::critical("event=startup-failed error={}", logValue("privilege drop: " + error));
        return 1;
      }
      spdlog::info("event=privileges user={} uid={} group={} gid={}", logValue(runAs->user),
                   runAs->uid, logValue(runAs->group), runAs->gid);
    }
    spdlog::info("event=started version={} config={} filters={} workers={}", PORTCULLIS_VERSION,
                 config->sourcePath.empty() ? "(built-in defaults)" : config->sourcePath,
                 config->filters.size(), workers.count());
    // systemd (Type=notify): ready once the listeners are bound and the privileges dropped.
    if (!sdNotify("READY=1\nMAINPID=" + std::to_string(getpid()) + "\nSTATUS=accepting on " +
                      std::to_string(config->listeners.size()) + " listener(s)",
                  &error)) {
      spdlog::warn("event=sd-notify result=failed error={}", logValue(error));
    }
    workers.run();  // the other workers' threads, after the privilege drop
    event_base_dispatch(base.get());
    // Drained: from here on a repeated stop signal (a supervisor or a test that sends SIGTERM
    // again) must not turn the clean exit into a kill. Tearing down the server puts the
    // default actions back, so this thread blocks them now; a signal still pending at exit is
    // discarded with the process. (Workers' threads, until joined, still run libevent's
    // handlers, which only note the signal.)
    blockStopSignals();
    workers.join();  // they end when drained too (worker 0 passed the SIGTERM on)
  }
  spdlog::info("event=stopped");
  spdlog::shutdown();
  return rc;
}
