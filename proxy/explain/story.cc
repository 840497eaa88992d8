// Printing a session's story. See story.h.

#include "proxy/explain/story.h"

#include <algorithm>
#include <cctype>
#include <string_view>
#include <utility>

#include "proxy/base/log_fields.h"
#include "proxy/explain/reply_codes.h"

namespace portcullis {
namespace {

constexpr std::string_view kFailedHere = "   <-- failed here";

struct Parsed {
  const SessionLogLine* line;
  LogFields fields;
  std::string_view get(std::string_view key) const {
    const std::string* v = fields.find(key);
    return v ? std::string_view(*v) : std::string_view();
  }
  std::string_view event() const { return get("event"); }
};

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool isFailureCode(std::string_view code) {
  return code.size() == 3 && (code[0] == '4' || code[0] == '5');
}

// Who gave a reply, in words.
std::string refuser(std::string_view filter) {
  if (filter == "portcullis")
    return "portcullis itself (a limit, a protocol error or the MTA unreachable)";
  if (filter == "mta") return "the MTA behind portcullis (its reply was relayed unchanged)";
  if (filter.empty()) return "(not logged)";
  return "filter " + std::string(filter);
}

std::string_view commandName(std::string_view verb) {
  if (verb == ".") return ". (end of message)";
  if (verb == "CONNECT") return "CONNECT (greeting)";
  return verb;
}

void printField(std::ostream& out, std::string_view label, std::string_view value) {
  if (value.empty()) return;
  out << "  " << label;
  for (std::size_t i = label.size(); i < 10; ++i) out << ' ';
  out << value << '\n';
}

// Continuation lines of a timeline entry start under its text.
std::string subIndent(const Parsed& p) {
  return std::string(2 + std::max<std::size_t>(p.line->timestamp.size(), 1) + 2 + 13, ' ');
}

void timelineHead(std::ostream& out, const Parsed& p, std::string_view what) {
  out << "  ";
  const std::string& ts = p.line->timestamp;
  out << (ts.empty() ? "-" : ts) << "  " << what;
  for (std::size_t i = what.size(); i < 12; ++i) out << ' ';
  out << ' ';
}

// Every field but the ones named, as key=value (for events we do not know in detail).
std::string otherFields(const Parsed& p, std::initializer_list<std::string_view> skip) {
  std::string s;
  for (const auto& f : p.fields.fields) {
    if (std::find(skip.begin(), skip.end(), f.key) != skip.end()) continue;
    if (!s.empty()) s += ' ';
    if (!f.key.empty()) {
      s += f.key;
      s += '=';
    }
    s += f.value;
  }
  return s;
}

struct Recipient {
  std::string_view address;
  std::string_view code;
  std::string_view by;
};

// to="<x>:250:mta,<y>:550:dnsbl": commas inside <...> belong to the address.
std::vector<Recipient> splitRecipients(std::string_view to) {
  std::vector<Recipient> out;
  std::size_t start = 0;
  int depth = 0;
  for (std::size_t i = 0; i <= to.size(); ++i) {
    if (i < to.size()) {
      if (to[i] == '<') ++depth;
      if (to[i] == '>' && depth > 0) --depth;
      if (to[i] != ',' || depth > 0) continue;
    }
    std::string_view item = to.substr(start, i - start);
    start = i + 1;
    if (item.empty()) continue;
    Recipient r;
    const std::size_t b = item.rfind(':');
    const std::size_t a =
        b == std::string_view::npos || b == 0 ? std::string_view::npos : item.rfind(':', b - 1);
    if (a == std::string_view::npos) {
      r.address = item;
    } else {
      r.address = item.substr(0, a);
      r.code = item.substr(a + 1, b - a - 1);
      r.by = item.substr(b + 1);
    }
    out.push_back(r);
  }
  return out;
}

void printReject(std::ostream& out, const Parsed& p, bool marked) {
  const std::string ind = subIndent(p);
  timelineHead(out, p, marked ? "REJECT" : "reject");
  out << "at " << p.get("stage") << ": " << p.get("code");
  if (!p.get("dsn").empty()) out << ' ' << p.get("dsn");
  out << " by " << refuser(p.get("filter"));
  if (marked) out << kFailedHere;
  out << '\n';
  std::string env;
  if (!p.get("from").empty()) env += "from " + std::string(p.get("from")) + "  ";
  if (!p.get("to").empty()) env += "to " + std::string(p.get("to")) + "  ";
  if (!p.get("helo").empty()) env += "helo " + std::string(p.get("helo"));
  if (!env.empty()) out << ind << env << '\n';
  if (!p.get("reason").empty()) out << ind << "reason: " << p.get("reason") << '\n';
  if (!p.get("reply").empty()) {
    const std::string_view dsn = p.get("dsn") == "-" ? std::string_view() : p.get("dsn");
    out << ind << "reply sent: " << p.get("code") << ' ' << dsn << (dsn.empty() ? "" : " ")
        << p.get("reply") << '\n';
  }
  if (!p.get("ref").empty()) out << ind << "ref: " << p.get("ref") << '\n';
}

void printTransaction(std::ostream& out, const Parsed& p) {
  const std::string ind = subIndent(p);
  timelineHead(out, p, "transaction");
  out << "from " << (p.get("from").empty() ? "<>" : p.get("from"));
  if (!p.get("rcpts").empty()) out << ", recipients accepted/given " << p.get("rcpts");
  if (!p.get("size").empty()) out << ", " << p.get("size") << " octets";
  out << '\n';
  for (const Recipient& r : splitRecipients(p.get("to"))) {
    out << ind << "to " << r.address;
    if (!r.code.empty()) out << "  " << r.code << " by " << r.by;
    if (isFailureCode(r.code)) out << "   <-- refused";
    out << '\n';
  }
  out << ind << "result: " << p.get("result");
  if (!p.get("code").empty()) out << " (" << p.get("code") << " by " << p.get("by") << ")";
  if (!p.get("queued_as").empty()) out << ", queued as " << p.get("queued_as");
  out << '\n';
  if (!p.get("reply").empty()) out << ind << "reply: " << p.get("reply") << '\n';
}

void printVerdict(std::ostream& out, const Parsed& p) {
  const std::string ind = subIndent(p);
  timelineHead(out, p, p.event());
  out << "at " << p.get("stage") << ": " << refuser(p.get("filter")) << " says "
      << p.get("verdict");
  if (!p.get("code").empty()) out << " (" << p.get("code");
  if (!p.get("mode").empty()) out << (p.get("code").empty() ? " (" : ", ") << p.get("mode");
  if (!p.get("code").empty() || !p.get("mode").empty()) out << ')';
  out << '\n';
  if (!p.get("reason").empty()) out << ind << "reason: " << p.get("reason") << '\n';
}

void printEnd(std::ostream& out, const Parsed& p) {
  const std::string ind = subIndent(p);
  timelineHead(out, p, "end");
  out << "closed by " << p.get("closed_by") << (p.get("quit") == "yes" ? " after QUIT" : "")
      << (p.get("quit") == "no" ? " without QUIT" : "") << ", " << p.get("duration") << ", "
      << p.get("messages") << " message(s) delivered, furthest stage " << p.get("stage") << '\n';
  if (!p.get("reason").empty()) out << ind << "reason: " << p.get("reason") << '\n';
  if (!p.get("last_reply").empty()) {
    out << ind << "last reply: " << p.get("last_reply") << '\n';
  }
}

void printTimelineEntry(std::ostream& out, const Parsed& p, bool marked) {
  const std::string_view ev = p.event();
  if (ev == "connect") {
    timelineHead(out, p, "connect");
    out << "from " << p.get("client") << " to " << p.get("local") << '\n';
  } else if (ev == "proxy-header") {
    timelineHead(out, p, "PROXY");
    out << "v" << p.get("version") << " header: the real client is " << p.get("client") << '\n';
  } else if (ev == "tls") {
    timelineHead(out, p, "STARTTLS");
    out << p.get("protocol") << ' ' << p.get("cipher");
    if (!p.get("bits").empty()) out << ' ' << p.get("bits") << " bits";
    if (p.get("resumed") == "yes") out << ", resumed";
    out << '\n';
  } else if (ev == "reject") {
    printReject(out, p, marked);
  } else if (ev == "transaction") {
    printTransaction(out, p);
  } else if (ev == "verdict" || ev == "observe" || ev == "defer" || ev == "filter-error") {
    printVerdict(out, p);
  } else if (ev == "session") {
    printEnd(out, p);
  } else {
    timelineHead(out, p, ev.empty() ? "?" : ev);
    out << otherFields(p, {"event"}) << '\n';
  }
}

void explainReject(std::ostream& out, const Parsed& p) {
  out << "  Refused at stage " << p.get("stage") << " by " << refuser(p.get("filter"));
  if (!p.get("reason").empty()) out << ":\n    " << p.get("reason");
  out << '\n';
  CodeSpec spec;
  if (auto c = parseCodeSpec(p.get("code"))) spec.basic = c->basic;
  spec.enhanced = parseEnhancedCode(p.get("dsn"));
  if (!spec.basic && !spec.enhanced) return;
  out << "  What " << p.get("code") << (p.get("dsn").empty() ? "" : " ") << p.get("dsn")
      << " means:\n"
      << describeCode(spec, "    ");
}

}  // namespace

void printStory(const SessionLog& session, const StoryOptions& options, std::ostream& out) {
  std::vector<Parsed> lines;
  lines.reserve(session.lines.size());
  for (const auto& l : session.lines) {
    Parsed p{&l, {}};
    parseLogFields(l.message, p.fields);
    lines.push_back(std::move(p));
  }
  const Parsed* connect = nullptr;
  const Parsed* proxy = nullptr;
  const Parsed* tls = nullptr;
  const Parsed* summary = nullptr;
  std::vector<const Parsed*> rejects;
  std::vector<std::string> sources;
  std::string_view helo;
  for (const auto& p : lines) {
    const std::string_view ev = p.event();
    if (ev == "connect" && !connect) connect = &p;
    if (ev == "proxy-header" && !proxy) proxy = &p;
    if (ev == "tls" && !tls) tls = &p;
    if (ev == "session") summary = &p;
    if (ev == "reject") rejects.push_back(&p);
    if (helo.empty() && (ev == "session" || ev == "reject")) helo = p.get("helo");
    if (std::find(sources.begin(), sources.end(), p.line->source) == sources.end()) {
      sources.push_back(p.line->source);
    }
  }
  // The reject the reference names; else the first one (where the session first failed).
  const Parsed* key = rejects.empty() ? nullptr : rejects.front();
  if (!options.ref.empty()) {
    for (const Parsed* r : rejects) {
      if (upper(r->get("ref")) == options.ref) key = r;
    }
  }

  out << "Session " << session.id;
  if (!options.ref.empty()) out << " (ref " << options.ref << ")";
  out << '\n';
  std::string from;
  for (const auto& s : sources) from += (from.empty() ? "" : ", ") + s;
  printField(out, "log", from);
  std::string client;
  if (summary) client = std::string(summary->get("client"));
  if (client.empty() && key) client = std::string(key->get("client"));
  if (client.empty() && proxy) client = std::string(proxy->get("client"));
  if (client.empty() && connect) client = std::string(connect->get("client"));
  if (proxy) {
    client += " (via PROXY v" + std::string(proxy->get("version")) + " from " +
              std::string(connect ? connect->get("client") : "the proxy") + ")";
  }
  printField(out, "client", client);
  if (connect) printField(out, "local", connect->get("local"));
  if (connect) printField(out, "started", connect->line->timestamp);
  std::string tlsText;
  if (tls) {
    tlsText = std::string(tls->get("protocol")) + " " + std::string(tls->get("cipher"));
  } else if (summary) {
    tlsText = summary->get("tls") == "no" ? "no (plain text)" : std::string(summary->get("tls"));
  }
  printField(out, "TLS", tlsText);
  printField(out, "HELO", helo);
  if (summary) {
    printField(out, "ended", summary->line->timestamp);
    if (!summary->get("from").empty()) {
      printField(out, "envelope",
                 std::string(summary->get("from")) + ", recipients accepted/given " +
                     std::string(summary->get("rcpts")));
    }
    printField(out, "queued as", summary->get("queued_as"));
  }

  // The transcript: each command with the reply the client got.
  if (summary && !summary->get("commands").empty()) {
    out << "\nCommands and replies (from the session summary):\n";
    bool marked = false;
    std::string_view cmds = summary->get("commands");
    while (!cmds.empty()) {
      const std::size_t comma = cmds.find(',');
      const std::string_view item = cmds.substr(0, comma);
      cmds.remove_prefix(comma == std::string_view::npos ? cmds.size() : comma + 1);
      const std::size_t colon = item.rfind(':');
      const std::string_view verb = colon == std::string_view::npos ? item : item.substr(0, colon);
      const std::string_view code =
          colon == std::string_view::npos ? std::string_view() : item.substr(colon + 1);
      if (verb.starts_with('+')) {
        out << "  (" << verb.substr(1) << " more not logged)\n";
        continue;
      }
      std::string name(commandName(verb));
      out << "  " << name;
      for (std::size_t i = name.size(); i < 22; ++i) out << ' ';
      out << code;
      if (isFailureCode(code)) {
        out << (marked ? "   <-- refused" : kFailedHere);
        marked = true;
      }
      out << '\n';
    }
  }

  out << "\nTimeline:\n";
  for (const auto& p : lines) {
    // The debug-level steps of a session logged at debug are the machinery, not the story:
    // the summary's transcript already has every reply.
    static constexpr std::string_view kMachinery[] = {
        "state",          "phase", "upstream-state", "upstream-send",
        "upstream-reply", "reply", "client-eof",     "filter-late-completion"};
    if (!options.verbose && &p != key &&
        std::ranges::find(kMachinery, p.event()) != std::end(kMachinery)) {
      continue;
    }
    printTimelineEntry(out, p, &p == key);
  }

  std::vector<std::string> missing;
  if (!connect && !proxy) {
    missing.emplace_back(
        "the start of the session (event=connect): it began before the logs given; add the "
        "previous (rotated) log file");
  }
  if (!summary) {
    missing.emplace_back(
        "the end of the session (event=session, with the command transcript): it was still "
        "open when the log ends, or its end is in a newer log file");
  }
  if (session.dropped > 0) {
    missing.push_back(std::to_string(session.dropped) +
                      " further line(s) of this session, not kept (too many)");
  }
  if (!missing.empty()) {
    out << "\nIncomplete: these lines are not in the logs read:\n";
    for (const auto& m : missing) out << "  - " << m << '\n';
  }

  out << '\n';
  if (key) {
    out << "Why it failed:\n";
    explainReject(out, *key);
    // Other refusals with a different code, once each.
    std::vector<std::pair<std::string_view, std::string_view>> seen{
        {key->get("code"), key->get("dsn")}};
    for (const Parsed* r : rejects) {
      const std::pair<std::string_view, std::string_view> c{r->get("code"), r->get("dsn")};
      if (std::find(seen.begin(), seen.end(), c) != seen.end() || seen.size() >= 4) continue;
      seen.push_back(c);
      out << "\nAlso:\n";
      explainReject(out, *r);
    }
  } else if (summary && summary->get("commands").find(":4") == std::string_view::npos &&
             summary->get("commands").find(":5") == std::string_view::npos) {
    out << "No refusal: every command got a positive reply";
    if (!summary->get("queued_as").empty()) {
      out << "; the MTA queued the message as " << summary->get("queued_as");
    }
    out << ".\n";
  } else {
    out << "No reject line for this session in the logs read";
    if (summary) out << "; the transcript above shows which command was refused";
    out << ".\n";
  }
}

}  // namespace portcullis
