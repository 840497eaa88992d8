// `portcullis explain`: arguments, finding the sessions, printing them. See explain.h.

#include "proxy/explain/explain.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <unordered_map>

#include "proxy/base/log_fields.h"
#include "proxy/explain/log_reader.h"
#include "proxy/explain/reply_codes.h"
#include "proxy/explain/story.h"

namespace portcullis {

const char* const kExplainUsage =
    "usage: portcullis explain REF [--log FILE]... [FILE...]\n"
    "       portcullis explain --session ID [--log FILE]... [FILE...]\n"
    "       portcullis explain --client IP [--last N] [--log FILE]... [FILE...]\n"
    "       portcullis explain --code CODE\n"
    "\n"
    "Finds a session in portcullis's logs and tells its story: the client, TLS, HELO, each\n"
    "command with its reply, where it failed, who refused and what the code means.\n"
    "\n"
    "  REF                the reference from a refusal, e.g. 7Q2K9XHM or \"[ref=7Q2K9XHM]\"\n"
    "  --session ID       the session with this id (the 12 hex digits that start its lines)\n"
    "  --client IP        the latest sessions of this client (--last N, default 5)\n"
    "  --code CODE        what a reply code means: 451, 5.7.1 or \"550 5.7.1\" (no log needed)\n"
    "  --verbose          also the debug-level steps (state, phase, upstream), when logged\n"
    "  --log FILE         a log to read: plain or .gz, text, syslog, journald or JSON lines;\n"
    "                     \"-\" is standard input. Repeat it, or list files after the REF.\n"
    "                     Rotated files are read oldest first (mail.log.2.gz, mail.log.1, ...).\n"
    "\n"
    "Without --log, standard input is read:\n"
    "  journalctl -u portcullis -o cat | portcullis explain 7Q2K9XHM\n"
    "  portcullis explain 7Q2K9XHM --log /var/log/mail.log --log /var/log/mail.log.1\n"
    "Exit status: 0 found, 1 not found, 2 usage or unreadable log.\n";

namespace {

constexpr std::string_view kRefAlphabet = "23456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr std::size_t kRefLength = 8;
constexpr std::size_t kMaxLinesPerSession = 5000;  // a session's lines kept (bounds memory)
constexpr std::size_t kMaxRefSessions = 16;        // sessions one reference may name
constexpr std::size_t kMaxLast = 1000;

bool isAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "unknown[192.0.2.1]:25", "192.0.2.1:25", "[2001:db8::1]:25" -> the address.
std::string_view clientAddress(std::string_view client) {
  const std::size_t open = client.find('[');
  if (open != std::string_view::npos) {
    const std::size_t close = client.find(']', open);
    if (close != std::string_view::npos) return client.substr(open + 1, close - open - 1);
  }
  const std::size_t colon = client.rfind(':');
  if (colon != std::string_view::npos && client.find(':') == colon) return client.substr(0, colon);
  return client;
}

// The inputs, read in order, once or twice. Standard input is spooled during the first pass
// when a second one will follow.
class Inputs {
 public:
  Inputs(std::vector<std::string> paths, std::ostream& err)
      : paths_(orderRotatedLogs(std::move(paths))), err_(err) {}
  Inputs(const Inputs&) = delete;
  Inputs& operator=(const Inputs&) = delete;
  ~Inputs() {
    if (spoolFd_ >= 0) ::close(spoolFd_);
  }

  const std::vector<std::string>& paths() const { return paths_; }
  const std::string& current() const { return current_; }
  std::size_t bytesRead() const { return bytes_; }
  bool hasStdin() const { return std::find(paths_.begin(), paths_.end(), "-") != paths_.end(); }

  // One pass over every input; fn returns false to stop the whole pass. False when an input
  // could not be read (the reason is printed).
  bool pass(const ChunkFn& fn, bool spoolStdin) {
    bool stopped = false;
    const ChunkFn wrapped = [&](std::string_view chunk) {
      if (!fn(chunk)) stopped = true;
      return !stopped;
    };
    for (const std::string& path : paths_) {
      if (stopped) break;
      current_ = path == "-" ? "standard input" : path;
      ReadResult r;
      if (path == "-" && spooled_) {
        if (::lseek(spoolFd_, 0, SEEK_SET) < 0) {
          err_ << "portcullis explain: cannot reread the spooled standard input: "
               << std::strerror(errno) << "\n";
          return false;
        }
        r = readLogChunksFd(spoolFd_, current_, wrapped);
      } else if (path == "-") {
        if (spoolStdin && !openSpool()) return false;
        r = readLogChunks(path, wrapped, spoolStdin ? spoolFd_ : -1);
        spooled_ = spoolStdin;
      } else {
        r = readLogChunks(path, wrapped);
      }
      bytes_ += r.bytes;
      if (!r.warning.empty()) err_ << "portcullis explain: warning: " << r.warning << "\n";
      if (!r.ok) {
        err_ << "portcullis explain: " << r.error << "\n";
        return false;
      }
    }
    return true;
  }

 private:
  bool openSpool() {
    const char* dir = std::getenv("TMPDIR");
    std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/portcullis-explain.XXXXXX";
    spoolFd_ = ::mkstemp(tmpl.data());
    if (spoolFd_ < 0) {
      err_ << "portcullis explain: cannot create a temporary file in " << tmpl << ": "
           << std::strerror(errno) << " (set TMPDIR, or give the log with --log)\n";
      return false;
    }
    ::unlink(tmpl.c_str());  // gone when we exit, whatever happens
    return true;
  }

  std::vector<std::string> paths_;
  std::ostream& err_;
  std::string current_;
  std::size_t bytes_ = 0;
  int spoolFd_ = -1;
  bool spooled_ = false;
};

// Collects the lines of the sessions in `ids` (second pass, or the only one for --session).
class Collector {
 public:
  explicit Collector(const std::vector<std::string>& ids)
      : perSession_(std::clamp<std::size_t>(kMaxLinesTotal / std::max<std::size_t>(ids.size(), 1),
                                            kMinLinesPerSession, kMaxLinesPerSession)) {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      sessions_.push_back(SessionLog{ids[i], {}, 0});
      index_.emplace(ids[i], i);
    }
    ended_.assign(ids.size(), false);
  }

  bool onChunk(std::string_view chunk, const std::string& source) {
    if (sessions_.size() <= kMaxMemmemIds) {
      // A few sessions: memmem for each id, so lines of other sessions cost nothing.
      for (std::size_t i = 0; i < sessions_.size(); ++i) {
        forEachLineContaining(chunk, sessions_[i].id, [&](std::string_view raw) {
          take(raw, source, &i);
          return true;
        });
      }
    } else {
      // Many (--client --last 1000): one look at each line's session id beats 1000 scans.
      while (!chunk.empty()) {
        const std::size_t nl = chunk.find('\n');
        take(chunk.substr(0, nl), source, nullptr);
        chunk.remove_prefix(nl == std::string_view::npos ? chunk.size() : nl + 1);
      }
    }
    // Every session has its last line: nothing more to find.
    return !std::all_of(ended_.begin(), ended_.end(), [](bool b) { return b; });
  }

  std::vector<SessionLog>& sessions() { return sessions_; }

 private:
  static constexpr std::size_t kMaxMemmemIds = 16;
  static constexpr std::size_t kMaxLinesTotal = 200000;  // all sessions' lines kept, about
  static constexpr std::size_t kMinLinesPerSession = 200;

  // Keeps `raw` when it is a line of one of the sessions (of session *which, when given).
  void take(std::string_view raw, const std::string& source, const std::size_t* which) {
    LogLine line;
    if (parseLogLine(raw, line) == LineFormat::kOther) return;
    // The session id first, then a space: not the id inside another session's quoted value.
    const std::size_t sp = line.message.find(' ');
    if (sp == std::string_view::npos) return;
    const std::string_view id = line.message.substr(0, sp);
    std::size_t i = 0;
    if (which) {
      i = *which;
      if (id != sessions_[i].id) return;
    } else {
      const auto it = index_.find(std::string(id));
      if (it == index_.end()) return;
      i = it->second;
    }
    SessionLog& s = sessions_[i];
    if (s.lines.size() >= perSession_) {
      ++s.dropped;
      return;
    }
    s.lines.push_back(
        SessionLogLine{std::string(line.timestamp), std::string(line.message), source});
    LogFields f;
    parseLogFields(line.message, f);
    const std::string* ev = f.find("event");
    if (ev && *ev == "session") ended_[i] = true;
  }

  std::size_t perSession_;
  std::vector<SessionLog> sessions_;
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<bool> ended_;
};

std::string describeInputs(const Inputs& in) {
  std::string s;
  for (const auto& p : in.paths()) s += (s.empty() ? "" : ", ") + (p == "-" ? "standard input" : p);
  const std::size_t n = in.bytesRead();
  return s + " (" +
         (n >= 1024 * 1024 ? std::to_string(n / (1024 * 1024)) + " MB"
                           : std::to_string(n) + " bytes") +
         " read)";
}

int explainCode(const std::string& code, std::ostream& out, std::ostream& err) {
  const auto spec = parseCodeSpec(code);
  if (!spec) {
    err << "portcullis explain: --code " << code
        << ": not a reply code; give a basic code (451), an enhanced code (5.7.1) or both "
           "(\"550 5.7.1\")\n";
    return 2;
  }
  out << "SMTP reply " << code << ":\n" << describeCode(*spec, "  ");
  return 0;
}

}  // namespace

std::string normalizeRef(std::string_view arg) {
  std::string s(arg);
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  if (s.size() > 4 && lower(s.substr(0, 4)) == "ref=") s = s.substr(4);
  if (s.size() != kRefLength) return {};
  for (char& c : s) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (kRefAlphabet.find(c) == std::string_view::npos) return {};
  }
  return s;
}

bool parseExplainArgs(const std::vector<std::string>& args, ExplainOptions& out,
                      std::string& error) {
  out = ExplainOptions{};
  bool haveTarget = false;
  std::vector<std::string> positional;
  auto setMode = [&](ExplainOptions::Mode m, const std::string& value) {
    if (haveTarget) {
      error = "give one of REF, --session, --client or --code";
      return false;
    }
    out.mode = m;
    out.target = value;
    haveTarget = true;
    return true;
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    std::string value;
    bool hasValue = false;
    if (arg.starts_with("--") && arg.find('=') != std::string::npos) {
      value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
      hasValue = true;
    }
    auto takeValue = [&]() {
      if (hasValue) return true;
      if (i + 1 >= args.size()) {
        error = arg + " needs a value";
        return false;
      }
      value = args[++i];
      return true;
    };
    if (arg == "--verbose" || arg == "-v") {
      out.verbose = true;
    } else if (arg == "--log" || arg == "-l") {
      if (!takeValue()) return false;
      out.logs.push_back(value);
    } else if (arg == "--session" || arg == "-s") {
      if (!takeValue() || !setMode(ExplainOptions::Mode::kSession, lower(value))) return false;
      if (out.target.size() != 12 || !std::all_of(out.target.begin(), out.target.end(), [](char c) {
            return std::isxdigit(static_cast<unsigned char>(c));
          })) {
        error = "--session " + value + ": a session id is 12 hex digits";
        return false;
      }
    } else if (arg == "--client" || arg == "-c") {
      if (!takeValue()) return false;
      std::string ip = value;
      if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
      if (ip.empty()) {
        error = "--client needs an IP address";
        return false;
      }
      if (!setMode(ExplainOptions::Mode::kClient, ip)) return false;
    } else if (arg == "--code") {
      if (!takeValue() || !setMode(ExplainOptions::Mode::kCode, value)) return false;
    } else if (arg == "--last" || arg == "-n") {
      if (!takeValue()) return false;
      char* end = nullptr;
      const long n = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || n < 1 || n > static_cast<long>(kMaxLast)) {
        error = "--last " + value + ": a number from 1 to " + std::to_string(kMaxLast);
        return false;
      }
      out.last = static_cast<std::size_t>(n);
    } else if (arg.starts_with("-") && arg != "-") {  // "-" alone is standard input
      error = "unknown option " + arg;
      return false;
    } else {
      positional.push_back(arg);
    }
  }
  std::size_t firstLog = 0;
  if (!haveTarget) {
    if (positional.empty()) {
      error = "give a REF (from the refusal's \"[ref=...]\"), --session, --client or --code";
      return false;
    }
    const std::string ref = normalizeRef(positional[0]);
    if (ref.empty()) {
      error = positional[0] +
              ": not a reference (8 characters of 23456789ABCDEFGHJKMNPQRSTVWXYZ, as in "
              "\"[ref=7Q2K9XHM]\")";
      return false;
    }
    setMode(ExplainOptions::Mode::kRef, ref);
    firstLog = 1;
  }
  for (std::size_t i = firstLog; i < positional.size(); ++i) out.logs.push_back(positional[i]);
  if (out.mode == ExplainOptions::Mode::kCode && !out.logs.empty()) {
    error = "--code needs no log";
    return false;
  }
  return true;
}

int runExplain(const ExplainOptions& options, std::ostream& out, std::ostream& err,
               bool stdinIsTty) {
  if (options.mode == ExplainOptions::Mode::kCode) return explainCode(options.target, out, err);
  std::vector<std::string> logs = options.logs;
  if (logs.empty()) {
    if (stdinIsTty) {
      err << "portcullis explain: no log to read: give --log FILE (e.g. --log "
             "/var/log/mail.log), or pipe the log in (journalctl -u portcullis -o cat | "
             "portcullis explain ...)\n";
      return 2;
    }
    logs.emplace_back("-");
  }
  Inputs inputs(std::move(logs), err);

  // Pass 1: which sessions (not needed for --session).
  std::vector<std::string> ids;
  if (options.mode == ExplainOptions::Mode::kSession) {
    ids.push_back(options.target);
  } else {
    const bool byRef = options.mode == ExplainOptions::Mode::kRef;
    const std::string& needle = options.target;
    const bool stopAtFirst = byRef && !inputs.hasStdin();
    bool found = false;
    const bool ok = inputs.pass(
        [&](std::string_view chunk) {
          forEachLineContaining(chunk, needle, [&](std::string_view raw) {
            LogLine line;
            if (parseLogLine(raw, line) == LineFormat::kOther) return true;
            LogFields f;
            parseLogFields(line.message, f);
            if (f.session.empty()) return true;
            if (byRef) {
              // A whole token: "ref=X", "[ref=X]", not part of a longer word.
              const std::size_t at = line.message.find(needle);
              const std::size_t after = at + needle.size();
              if (at == std::string_view::npos || (at > 0 && isAlnum(line.message[at - 1])) ||
                  (after < line.message.size() && isAlnum(line.message[after]))) {
                return true;
              }
            } else {
              const std::string* client = f.find("client");
              if (!client || clientAddress(*client) != needle) return true;
            }
            const std::string id(f.session);
            const auto it = std::find(ids.begin(), ids.end(), id);
            if (byRef) {
              if (it == ids.end() && ids.size() < kMaxRefSessions) ids.push_back(id);
            } else if (it == ids.end() || it + 1 != ids.end()) {
              // The latest sessions of the client, most recent last.
              if (it != ids.end()) ids.erase(it);
              ids.push_back(id);
              if (ids.size() > options.last) ids.erase(ids.begin());
            }
            found = true;
            return !(stopAtFirst && found);
          });
          return !(stopAtFirst && found);
        },
        /*spoolStdin=*/true);
    if (!ok) return 2;
    if (ids.empty()) {
      err << "portcullis explain: no "
          << (byRef ? "line with ref=" + options.target : "session of client " + options.target)
          << " in " << describeInputs(inputs) << "\n";
      return 1;
    }
  }

  // Pass 2: their lines.
  Collector collector(ids);
  if (!inputs.pass(
          [&](std::string_view chunk) { return collector.onChunk(chunk, inputs.current()); },
          /*spoolStdin=*/false)) {
    return 2;
  }
  std::vector<SessionLog>& sessions = collector.sessions();
  std::erase_if(sessions, [](const SessionLog& s) { return s.lines.empty(); });
  if (sessions.empty()) {
    err << "portcullis explain: no line of session " << options.target << " in "
        << describeInputs(inputs) << "\n";
    return 1;
  }
  if (options.mode == ExplainOptions::Mode::kClient) {
    out << "The last " << sessions.size() << " session(s) of client " << options.target
        << ", oldest first:\n\n";
  }
  StoryOptions story;
  if (options.mode == ExplainOptions::Mode::kRef) story.ref = options.target;
  story.verbose = options.verbose;
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    if (i > 0) out << "\n" << std::string(72, '-') << "\n\n";
    printStory(sessions[i], story, out);
  }
  return 0;
}

int explainMain(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kExplainUsage;
      return 0;
    }
    args.push_back(a);
  }
  ExplainOptions options;
  std::string error;
  if (!parseExplainArgs(args, options, error)) {
    std::cerr << "portcullis explain: " << error << "\n\n" << kExplainUsage;
    return 2;
  }
  return runExplain(options, std::cout, std::cerr, ::isatty(STDIN_FILENO) != 0);
}

}  // namespace portcullis
