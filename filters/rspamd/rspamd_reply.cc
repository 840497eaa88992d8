// rspamd's /checkv2 reply. See rspamd_reply.h.

#include "filters/rspamd/rspamd_reply.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <utility>

#include "portcullis/log.h"
#include "portcullis/reply.h"

namespace portcullis {
namespace {

constexpr std::size_t kMaxSymbolName = 64;
constexpr std::size_t kMaxSymbolList = 400;  // bytes of symbol names in a log line or reason
constexpr std::size_t kMaxSubject = kMaxRspamdHeaderValue;
constexpr int kMaxOccurrence = 1000;
// What the add header action writes (rspamd's proxy spam_header, and the score).
constexpr std::array<std::string_view, 2> kOwnHeaders = {"X-Spam", "X-Spam-Score"};

struct ActionName {
  std::string_view rspamd;  // as rspamd spells it
  std::string_view token;   // one log token
  RspamdAction action;
};
constexpr std::array<ActionName, 6> kActions{{
    {"reject", "reject", RspamdAction::kReject},
    {"soft reject", "soft-reject", RspamdAction::kSoftReject},
    {"rewrite subject", "rewrite-subject", RspamdAction::kRewriteSubject},
    {"add header", "add-header", RspamdAction::kAddHeader},
    {"greylist", "greylist", RspamdAction::kGreylist},
    {"no action", "no-action", RspamdAction::kNoAction},
}};

const ActionName& actionEntry(RspamdAction a) {
  return *std::ranges::find(kActions, a, &ActionName::action);
}

RspamdParse fail(std::string error) { return {std::nullopt, std::move(error)}; }

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isLower(char c) { return c >= 'a' && c <= 'z'; }

// Our own bounds before yaml-cpp sees a byte: an object, nested at most kMaxRspamdDepth deep
// (yaml-cpp parses recursively), and outside strings only JSON's tokens: structure, numbers,
// true/false/null and white space. That leaves yaml-cpp nothing but JSON to parse.
std::optional<std::string> checkJsonShape(std::string_view s) {
  std::size_t depth = 0;
  bool inString = false;
  bool sawObject = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (inString) {
      if (c == '\\') {
        ++i;  // the escaped character, whatever it is
      } else if (c == '"') {
        inString = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        inString = true;
        break;
      case '{':
      case '[':
        if (depth == 0 && (c != '{' || sawObject)) return "not a JSON object";
        sawObject = true;
        if (++depth > kMaxRspamdDepth) {
          return "nested deeper than " + std::to_string(kMaxRspamdDepth);
        }
        break;
      case '}':
      case ']':
        if (depth == 0) return "unbalanced brackets";
        --depth;
        break;
      case ':':
      case ',':
      case ' ':
      case '\t':
      case '\r':
      case '\n':
        break;
      default:
        if (depth == 0) return "not a JSON object";
        if (isDigit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') break;
        if (isLower(c)) {
          std::size_t e = i;
          while (e < s.size() && isLower(s[e])) ++e;
          const std::string_view word = s.substr(i, e - i);
          if (word != "true" && word != "false" && word != "null") {
            return "unexpected token outside a string";
          }
          i = e - 1;
          break;
        }
        return "unexpected character outside a string";
    }
  }
  if (inString) return "unterminated string";
  if (depth != 0 || !sawObject) return "not a complete JSON object";
  return std::nullopt;
}

// A JSON string: a quoted scalar (yaml-cpp tags those "!"; a plain one is a number or literal).
std::optional<std::string> stringOf(const YAML::Node& n) {
  if (!n.IsDefined() || !n.IsScalar() || n.Tag() != "!") return std::nullopt;
  return n.Scalar();
}

std::optional<double> numberOf(const YAML::Node& n) {
  if (!n.IsDefined() || !n.IsScalar() || n.Tag() == "!") return std::nullopt;
  double v = 0;
  if (!YAML::convert<double>::decode(n, v) || !std::isfinite(v)) return std::nullopt;
  return v;
}

bool isSymbolName(std::string_view s) {
  if (s.empty() || s.size() > kMaxSymbolName) return false;
  return std::ranges::all_of(
      s, [](char c) { return isDigit(c) || (c >= 'A' && c <= 'Z') || isLower(c) || c == '_'; });
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::ranges::equal(a, b, [](char x, char y) { return lower(x) == lower(y); });
}

std::string headerValue(std::string_view v) { return sanitizeText(v, kMaxRspamdHeaderValue); }

// symbols: {"NAME": {"score": 1.0, ...}, ...}: the names, highest score first.
void readSymbols(const YAML::Node& symbols, RspamdReply& r) {
  if (!symbols.IsDefined() || !symbols.IsMap()) return;
  std::vector<std::pair<double, std::string>> named;
  for (const auto& entry : symbols) {
    ++r.symbolCount;
    const auto name = stringOf(entry.first);
    if (!name || !isSymbolName(*name)) continue;
    const auto score = entry.second.IsMap() ? numberOf(entry.second["score"]) : std::nullopt;
    named.emplace_back(score.value_or(0), *name);
  }
  std::ranges::stable_sort(named, [](const auto& a, const auto& b) { return a.first > b.first; });
  for (auto& [score, name] : named) {
    if (r.symbols.size() == kMaxRspamdSymbols) break;
    r.symbols.push_back(std::move(name));
  }
}

bool roomForEdit(const RspamdReply& r) {
  return r.addHeaders.size() + r.removeHeaders.size() < kMaxRspamdHeaderEdits;
}

// One value of milter.add_headers: "text" or {"value": "text", "order": N}. portcullis adds
// every header on top of the header block, so `order` is accepted and not used.
void addHeaderValue(const std::string& name, const YAML::Node& v, RspamdReply& r) {
  std::optional<std::string> value = stringOf(v);
  if (!value && v.IsMap()) value = stringOf(v["value"]);
  if (!value || !roomForEdit(r)) {
    ++r.droppedEdits;
    return;
  }
  r.addHeaders.push_back({name, headerValue(*value)});
}

void readMilter(const YAML::Node& milter, RspamdReply& r) {
  if (!milter.IsDefined() || !milter.IsMap()) return;
  const YAML::Node add = milter["add_headers"];
  if (add.IsDefined() && add.IsMap()) {
    for (const auto& entry : add) {
      const auto name = stringOf(entry.first);
      if (!name || !isHeaderName(*name)) {
        ++r.droppedEdits;
        continue;
      }
      if (entry.second.IsSequence()) {
        for (const auto& v : entry.second) addHeaderValue(*name, v, r);
      } else {
        addHeaderValue(*name, entry.second, r);
      }
    }
  }
  const YAML::Node remove = milter["remove_headers"];
  if (remove.IsDefined() && remove.IsMap()) {
    for (const auto& entry : remove) {
      const auto name = stringOf(entry.first);
      const auto index = numberOf(entry.second);
      if (!name || !isHeaderName(*name) || !index || *index != std::trunc(*index) ||
          std::fabs(*index) > kMaxOccurrence || !roomForEdit(r)) {
        ++r.droppedEdits;
        continue;
      }
      HeaderEdit e;
      e.kind = HeaderEdit::Kind::kRemove;
      e.name = *name;
      e.occurrence = static_cast<int>(*index);
      r.removeHeaders.push_back(std::move(e));
    }
  }
}

RspamdParse readReply(const YAML::Node& root) {
  if (!root.IsMap()) return fail("not a JSON object");
  RspamdReply r;
  const auto action = stringOf(root["action"]);
  if (!action) return fail("no action");
  const auto* known = std::ranges::find(kActions, *action, &ActionName::rspamd);
  if (known == kActions.end()) return fail("unknown action " + logQuote(*action, 40));
  r.action = known->action;
  for (const auto& [key, out] : {std::pair{"score", &r.score}, {"required_score", &r.required}}) {
    const YAML::Node n = root[key];
    if (!n.IsDefined()) continue;
    const auto v = numberOf(n);
    if (!v) return fail(std::string(key) + " is not a number");
    *out = *v;
  }
  if (const YAML::Node skipped = root["is_skipped"]; skipped.IsDefined() && skipped.IsScalar()) {
    r.skipped = skipped.Scalar() == "true";
  }
  readSymbols(root["symbols"], r);
  if (const YAML::Node messages = root["messages"]; messages.IsDefined() && messages.IsMap()) {
    if (const auto text = stringOf(messages["smtp_message"])) {
      r.smtpMessage = sanitizeText(*text, kMaxScannerText);
    }
  }
  if (const auto subject = stringOf(root["subject"]))
    r.subject = sanitizeText(*subject, kMaxSubject);
  readMilter(root["milter"], r);
  if (const auto t = numberOf(root["time_real"]); t && *t >= 0) r.timeReal = t;
  return {std::move(r), {}};
}

std::string formatScore(double v) {
  // Any finite double parses: 1e300 in "%.2f" is 300 digits. A score too long for the buffer is
  // written in "%g" form (at most 13 characters), never cut short or read past the buffer.
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%.2f", v);
  if (n <= 0 || static_cast<std::size_t>(n) >= sizeof buf) {
    n = std::snprintf(buf, sizeof buf, "%.6g", v);
  }
  return n > 0 && static_cast<std::size_t>(n) < sizeof buf
             ? std::string(buf, static_cast<std::size_t>(n))
             : std::string("0.00");
}

std::string joinSymbols(const RspamdReply& r) {
  std::string out;
  for (const std::string& s : r.symbols) {
    if (out.size() + 1 + s.size() > kMaxSymbolList) break;
    if (!out.empty()) out += ',';
    out += s;
  }
  return out;
}

Reply replyFor(const RspamdReply& r, int code, std::string_view fallback) {
  const std::string text = r.smtpMessage.empty() ? std::string(fallback) : r.smtpMessage;
  return code >= 500 ? Reply::permanent(code, "5.7.1", text)
                     : Reply::transient(code, "4.7.1", text);
}

}  // namespace

std::string_view rspamdActionName(RspamdAction a) { return actionEntry(a).rspamd; }

bool isHeaderName(std::string_view name) {
  if (name.empty() || name.size() > kMaxRspamdHeaderName) return false;
  return std::ranges::all_of(name, [](char c) { return c > ' ' && c < 0x7f && c != ':'; });
}

RspamdParse parseRspamdReply(std::string_view body) {
  if (body.size() > kMaxRspamdReply) {
    return fail("reply longer than " + std::to_string(kMaxRspamdReply) + " bytes");
  }
  if (auto problem = checkJsonShape(body)) return fail("bad JSON: " + *problem);
  // yaml-cpp reports only by exception: caught here, so none leaves the parser.
  try {
    return readReply(YAML::Load(std::string(body)));
  } catch (const YAML::Exception& e) {
    return fail("bad JSON: " + sanitizeText(e.what(), 120));
  }
}

ScanResult rspamdScanResult(const RspamdReply& r) {
  const ActionName& action = actionEntry(r.action);
  std::string facts = "score=" + formatScore(r.score) + " required=" + formatScore(r.required) +
                      " symbols=" + logQuote(joinSymbols(r), kMaxSymbolList + 2);
  if (r.symbolCount > r.symbols.size()) facts += " symbols_total=" + std::to_string(r.symbolCount);
  if (r.skipped) facts += " skipped=yes";
  if (r.droppedEdits > 0) facts += " dropped_header_edits=" + std::to_string(r.droppedEdits);
  if (r.timeReal) {
    facts += " rspamd_time=" + std::to_string(std::llround(*r.timeReal * 1000)) + "ms";
  }
  const std::string reason = "action=" + std::string(action.token) + " " + facts;
  const std::string summary = "scan=" + std::string(action.token) + " " + facts;

  switch (r.action) {
    case RspamdAction::kReject:
      return {ScanResult::Kind::kDone,
              Verdict::reject(replyFor(r, 554, "Message rejected as spam"), reason),
              summary,
              {}};
    case RspamdAction::kSoftReject:
      return {ScanResult::Kind::kDone,
              Verdict::tempfail(replyFor(r, 451, "Message deferred, try again later"), reason),
              summary,
              {}};
    case RspamdAction::kGreylist:
      return {ScanResult::Kind::kDone,
              Verdict::tempfail(replyFor(r, 451, "Greylisted, try again later"), reason),
              summary,
              {}};
    case RspamdAction::kRewriteSubject:
    case RspamdAction::kAddHeader:
    case RspamdAction::kNoAction:
      break;
  }
  // A continuing verdict: the milter block first (rspamd removes its own stale headers before
  // adding new ones), then what the action adds.
  Verdict v = Verdict::proceed();
  for (const HeaderEdit& e : r.removeHeaders) v.removeHeader(e.name, e.occurrence);
  // The headers we write ourselves are never the client's: a forged "X-Spam: No" goes
  // whatever rspamd said, as spamd's filter does with X-Spam-Flag.
  for (const std::string_view own : kOwnHeaders) {
    const bool removed = std::ranges::any_of(r.removeHeaders, [own](const HeaderEdit& e) {
      return iequals(e.name, own) && e.occurrence == 0;
    });
    if (!removed) v.removeHeader(std::string(own));
  }
  for (const HeaderField& h : r.addHeaders) v.addHeader(h.name, h.value);
  const auto milterAdds = [&r](std::string_view name) {
    return std::ranges::any_of(r.addHeaders,
                               [name](const HeaderField& h) { return iequals(h.name, name); });
  };
  if (r.action == RspamdAction::kRewriteSubject && !r.subject.empty()) {
    v.replaceHeader("Subject", r.subject);
  }
  if (r.action == RspamdAction::kAddHeader) {
    // rspamd's proxy in milter mode writes its spam_header ("X-Spam: Yes"); the score as our
    // spamd filter writes it, so one header rule serves both scanners.
    if (!milterAdds("X-Spam")) v.addHeader("X-Spam", "Yes");
    if (!milterAdds("X-Spam-Score")) v.addHeader("X-Spam-Score", formatScore(r.score));
  }
  return {ScanResult::Kind::kDone, std::move(v), summary, {}};
}

}  // namespace portcullis
