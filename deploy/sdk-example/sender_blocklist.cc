// sender_blocklist: an example portcullis filter plugin. Rejects MAIL FROM with 550 5.7.1 when
// the sender's domain is listed in a file (one domain per line, '#' comments), and re-reads the
// file when it changes, without a restart.
//
//   filters:
//     - name: sender_blocklist
//       file: /etc/portcullis/blocked-domains    # required; must be readable at start-up
//       check_interval: 2s                       # how often the file's mtime is checked
//
// Ownership: the factory's creator owns one Blocklist, shared by every session's filter. While
// at least one session is open, a timer from the Timers service checks the file every
// check_interval; the last session to close cancels it, and the next one to open checks the
// file at once and re-arms it. So no timer outlives the sessions (the event loop does not),
// and an idle daemon still sees the edit at the next connection. Hooks, creators and timer
// callbacks all run on the event-loop thread (portcullis/filter.h): no locking.

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"
#include "portcullis/filter_registry.h"
#include "portcullis/plugin.h"

#ifndef SENDER_BLOCKLIST_VERSION
#define SENDER_BLOCKLIST_VERSION "dev"
#endif

// Our own namespace, never portcullis: the daemon exports that one, and its symbols would
// take the place of a plugin's own of the same name.
namespace sender_blocklist {
namespace {

using namespace portcullis;
using std::chrono::milliseconds;

constexpr std::string_view kFilterName = "sender_blocklist";
constexpr milliseconds kMinCheckInterval{100};

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// What identifies a version of the file: an edit in place changes the mtime (and often the
// size), an editor's write-and-rename changes the inode.
struct FileStamp {
  timespec mtime{};
  off_t size = -1;
  ino_t inode = 0;
  bool operator==(const FileStamp& o) const {
    return mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec && size == o.size &&
           inode == o.inode;
  }
};

class Blocklist {
 public:
  Blocklist(std::string path, milliseconds interval)
      : path_(std::move(path)), interval_(interval) {}

  // Reads the file; false (and *why) when it cannot be read.
  bool reload(std::string* why) {
    struct stat st {};
    std::ifstream in(path_);
    if (!in || ::stat(path_.c_str(), &st) != 0) {
      *why = "cannot read " + path_;
      return false;
    }
    std::set<std::string, std::less<>> domains;
    std::string line;
    while (std::getline(in, line)) {
      const auto first = line.find_first_not_of(" \t\r");
      if (first == std::string::npos || line[first] == '#') continue;
      const auto last = line.find_last_not_of(" \t\r");
      domains.insert(lowercase(std::string_view(line).substr(first, last - first + 1)));
    }
    domains_ = std::move(domains);
    stamp_ = FileStamp{st.st_mtim, st.st_size, st.st_ino};
    return true;
  }

  bool blocked(std::string_view domain) const { return domains_.contains(lowercase(domain)); }
  const std::string& path() const { return path_; }

  // A session's filter was created / destroyed.
  void attach(const FilterContext& ctx) {
    if (ctx.log != nullptr) log_ = ctx.log;
    if (sessions_++ == 0 && ctx.timers != nullptr) {
      timers_ = ctx.timers;
      check();  // idle until now: the file may have changed meanwhile
    }
  }
  void detach() {
    if (--sessions_ == 0) timer_.reset();  // cancels: the callback will not run
  }

 private:
  // Re-reads the file if it changed, then re-arms the timer.
  void check() {
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0 &&
        !(FileStamp{st.st_mtim, st.st_size, st.st_ino} == stamp_)) {
      std::string why;
      const bool ok = reload(&why);
      if (log_ != nullptr) {
        // Not a session's event: "-" where the session id goes.
        if (ok) {
          log_->info("-", "event=reload filter=sender_blocklist file=" + logQuote(path_) +
                              " domains=" + std::to_string(domains_.size()));
        } else {
          log_->warn("-", "event=reload-failed filter=sender_blocklist file=" + logQuote(path_) +
                              " error=" + logQuote(why) +
                              " kept=" + std::to_string(domains_.size()));
        }
      }
    }
    timer_ = timers_->start(interval_, [this] { check(); });
  }

  std::string path_;
  milliseconds interval_;
  std::set<std::string, std::less<>> domains_;
  FileStamp stamp_;
  int sessions_ = 0;
  Timers* timers_ = nullptr;
  const Log* log_ = nullptr;
  std::unique_ptr<TimerHandle> timer_;
};

class SenderBlocklistFilter final : public FilterWithHooks<SenderBlocklistFilter> {
 public:
  SenderBlocklistFilter(std::shared_ptr<Blocklist> list, const FilterContext& ctx)
      : list_(std::move(list)) {
    list_->attach(ctx);
    if (ctx.stats != nullptr) rejected_ = ctx.stats->counter("sender_blocklist_rejected_total", {});
  }
  ~SenderBlocklistFilter() override { list_->detach(); }
  SenderBlocklistFilter(const SenderBlocklistFilter&) = delete;
  SenderBlocklistFilter& operator=(const SenderBlocklistFilter&) = delete;

  void onMailFrom(const SessionView& s, Next next) override {
    const std::string_view from = s.envelope().mailFrom();
    const auto at = from.rfind('@');
    // RFC 5321 4.5.5: the null reverse-path (bounces) has no domain to judge.
    if (s.envelope().nullSender() || at == std::string_view::npos) {
      next(Verdict::proceed());
      return;
    }
    const std::string_view domain = from.substr(at + 1);
    if (!list_->blocked(domain)) {
      next(Verdict::proceed());
      return;
    }
    rejected_.add();
    // The client gets a short reply; the log gets which domain and which list.
    next(Verdict::reject(Reply::permanent(550, "5.7.1", "Sender domain is blocked"),
                         "domain=" + logQuote(domain) + " file=" + logQuote(list_->path())));
  }

 private:
  std::shared_ptr<Blocklist> list_;
  Counter rejected_;
};

class SenderBlocklistFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return kFilterName; }

  // Every error names its key ("filters[2].file: ..."); the loader adds the plugin's file.
  FilterCreator configure(const ConfigSection& section) const override {
    const std::string file = section.getString("file");
    const milliseconds interval = section.getDuration("check_interval", milliseconds{2000});
    if (interval < kMinCheckInterval) section.fail("check_interval", "must be at least 100ms");
    auto list = std::make_shared<Blocklist>(file, interval);
    std::string why;
    if (!list->reload(&why)) section.fail("file", why);
    return [list](const FilterContext& ctx) -> std::unique_ptr<Filter> {
      return std::make_unique<SenderBlocklistFilter>(list, ctx);
    };
  }
};

void install(FilterRegistry& registry) { registry.add(std::make_unique<SenderBlocklistFactory>()); }

constexpr PluginEntry kEntry =
    makePluginEntry("sender_blocklist", SENDER_BLOCKLIST_VERSION, &install);

}  // namespace
}  // namespace sender_blocklist

extern "C" const portcullis::PluginEntry* portcullis_plugin_v1() {
  return &sender_blocklist::kEntry;
}
