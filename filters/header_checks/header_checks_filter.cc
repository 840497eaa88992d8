// header_checks filter. See header_checks_filter.h.
//
// Patterns are compiled once at config load, byte-oriented (no UTF mode, as Postfix pcre tables
// without SMTPUTF8), caseless unless case_sensitive is set, and JIT-compiled when the platform
// supports it. Every match runs under kMatchLimit/kDepthLimit/kHeapLimitKiB and a bounded JIT
// stack; a match that hits a limit fails the hook (next.fail), it never counts as "no match".

#define PCRE2_CODE_UNIT_WIDTH 8
#include "filters/header_checks/header_checks_filter.h"

#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis {
namespace {

// Bounds on one pcre2_match call (one rule against one header line). The match limit bounds
// the whole call, not each start position: about 10 ms interpreted, 1 ms with JIT, at worst.
// A literal-heavy pattern like "^Subject:.*spam" needs about one unit per octet, so the limit
// still covers the longest header line the core hands us (256 KiB of header block).
constexpr std::uint32_t kMatchLimit = 1'000'000;
constexpr std::uint32_t kDepthLimit = 100'000;
constexpr std::uint32_t kHeapLimitKiB = 16 * 1024;
constexpr std::size_t kJitStackMin = std::size_t{32} * 1024;
constexpr std::size_t kJitStackMax = std::size_t{1024} * 1024;
// How much of a header value the log reason shows.
constexpr std::size_t kReasonValueChars = 64;
// RFC 5322 3.6.8 field-name, bounded like the core's formatHeader.
constexpr std::size_t kMaxHeaderName = 76;

enum class Action { kReject, kTempfail, kDiscard, kAddHeader, kAccept };

struct ActionName {
  std::string_view name;
  Action action;
};
constexpr std::array<ActionName, 5> kActions{{
    {"reject", Action::kReject},
    {"tempfail", Action::kTempfail},
    {"discard", Action::kDiscard},
    {"add_header", Action::kAddHeader},
    {"accept", Action::kAccept},
}};

struct CodeFree {
  void operator()(pcre2_code* p) const { pcre2_code_free(p); }
};
struct MatchDataFree {
  void operator()(pcre2_match_data* p) const { pcre2_match_data_free(p); }
};
struct MatchContextFree {
  void operator()(pcre2_match_context* p) const { pcre2_match_context_free(p); }
};
struct JitStackFree {
  void operator()(pcre2_jit_stack* p) const { pcre2_jit_stack_free(p); }
};

std::string pcre2Message(int error) {
  std::array<PCRE2_UCHAR, 256> buf{};
  if (pcre2_get_error_message(error, buf.data(), buf.size()) < 0) {
    return "pcre2 error " + std::to_string(error);
  }
  return std::string(reinterpret_cast<const char*>(buf.data()));
}

// Match resources for the calling thread. Hooks run on the event-loop thread and match
// synchronously, so one set per thread serves every session and nothing is shared across
// threads. context() is null if allocation failed; callers then fail rather than run unbounded.
class MatchResources {
 public:
  MatchResources()
      : context_(pcre2_match_context_create(nullptr)),
        jitStack_(pcre2_jit_stack_create(kJitStackMin, kJitStackMax, nullptr)) {
    if (!context_) return;
    pcre2_set_match_limit(context_.get(), kMatchLimit);
    pcre2_set_depth_limit(context_.get(), kDepthLimit);
    pcre2_set_heap_limit(context_.get(), kHeapLimitKiB);
    // Null when JIT is unsupported; the interpreter then runs under the limits above.
    if (jitStack_) pcre2_jit_stack_assign(context_.get(), nullptr, jitStack_.get());
  }
  pcre2_match_context* context() const { return context_.get(); }

  static MatchResources& forThisThread() {
    thread_local MatchResources resources;
    return resources;
  }

 private:
  std::unique_ptr<pcre2_match_context, MatchContextFree> context_;
  std::unique_ptr<pcre2_jit_stack, JitStackFree> jitStack_;
};

bool validHeaderName(std::string_view name) {
  // RFC 5322 3.6.8: printable US-ASCII except ':'.
  if (name.empty() || name.size() > kMaxHeaderName) return false;
  return std::ranges::all_of(name, [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c >= 33 && c <= 126 && c != ':';
  });
}

std::string_view trimSpace(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

std::string reasonSnippet(const std::string& value) {
  std::string out = sanitizeText(value, kReasonValueChars);
  if (value.size() > kReasonValueChars) out += "...";
  return out;
}

}  // namespace

struct HeaderRule {
  std::string label;  // "rules[2]", as in config errors
  Action action = Action::kReject;
  std::unique_ptr<pcre2_code, CodeFree> code;
  std::optional<Reply> reply;  // reject / tempfail
  HeaderField header;          // add_header
};

struct HeaderChecksConfig {
  Stage stage = Stage::kEndOfHeaders;
  std::vector<HeaderRule> rules;
};

void HeaderChecksFilter::onEndOfHeaders(const SessionView& s, Next next) {
  if (config_->stage == Stage::kEndOfHeaders) {
    check(s, std::move(next));
  } else {
    next(Verdict::proceed());
  }
}

void HeaderChecksFilter::onEndOfMessage(const SessionView& s, Next next) {
  if (config_->stage == Stage::kEndOfMessage) {
    check(s, std::move(next));
  } else {
    next(Verdict::proceed());
  }
}

void HeaderChecksFilter::check(const SessionView& s, Next next) const {
  pcre2_match_context* context = MatchResources::forThisThread().context();
  // Only the overall match is needed, so one ovector pair; a match then returns 1 (or 0).
  std::unique_ptr<pcre2_match_data, MatchDataFree> data(pcre2_match_data_create(1, nullptr));
  if (context == nullptr || !data) {
    next.fail("cannot allocate PCRE2 match resources");
    return;
  }
  const std::vector<HeaderRule>& rules = config_->rules;
  std::vector<bool> fired(rules.size(), false);  // add_header fires once per message
  std::vector<HeaderField> added;
  std::string line;
  for (const HeaderField& h : s.message().headers()) {
    line.assign(h.name).append(": ").append(h.value);
    for (std::size_t i = 0; i < rules.size(); ++i) {
      const HeaderRule& rule = rules[i];
      const int rc = pcre2_match(rule.code.get(), reinterpret_cast<PCRE2_SPTR>(line.data()),
                                 line.size(), 0, 0, data.get(), context);
      if (rc == PCRE2_ERROR_NOMATCH) continue;
      if (rc < 0) {
        next.fail(rule.label + ": match error on header " + sanitizeText(h.name, kMaxHeaderName) +
                  ": " + pcre2Message(rc));
        return;
      }
      if (rule.action == Action::kAddHeader) {
        if (!fired[i]) {
          fired[i] = true;
          added.push_back(rule.header);
        }
        break;  // this rule decided for this line; go on with the next line
      }
      std::string reason = rule.label + " matched header " + sanitizeText(h.name, kMaxHeaderName) +
                           ": " + reasonSnippet(h.value);
      switch (rule.action) {
        case Action::kReject:
          next(Verdict::reject(*rule.reply, std::move(reason)));
          return;
        case Action::kTempfail:
          next(Verdict::tempfail(*rule.reply, std::move(reason)));
          return;
        case Action::kDiscard:
          next(Verdict::discard(std::move(reason)));
          return;
        case Action::kAccept: {
          Verdict verdict = Verdict::accept(std::move(reason));
          for (auto& f : added) verdict.addHeader(std::move(f.name), std::move(f.value));
          next(std::move(verdict));
          return;
        }
        case Action::kAddHeader:
          break;  // handled above
      }
    }
  }
  Verdict verdict = Verdict::proceed();
  for (auto& f : added) verdict.addHeader(std::move(f.name), std::move(f.value));
  next(std::move(verdict));
}

namespace {

std::unique_ptr<pcre2_code, CodeFree> compilePattern(const ConfigSection& rule,
                                                     const std::string& pattern,
                                                     bool caseSensitive) {
  // Postfix pcre tables are case-insensitive unless the pattern says otherwise.
  const std::uint32_t options = caseSensitive ? 0 : PCRE2_CASELESS;
  int error = 0;
  PCRE2_SIZE offset = 0;
  std::unique_ptr<pcre2_code, CodeFree> code(
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error,
                    &offset, nullptr));
  if (!code) {
    rule.fail("match", "invalid regular expression at offset " + std::to_string(offset) + ": " +
                           pcre2Message(error));
  }
  // Best effort: without JIT support the interpreter runs, under the same limits.
  (void)pcre2_jit_compile(code.get(), PCRE2_JIT_COMPLETE);
  return code;
}

HeaderField parseHeaderSetting(const ConfigSection& rule, const std::string& text) {
  const auto colon = text.find(':');
  if (colon == std::string::npos) {
    rule.fail("header", "expected \"Name: value\", got \"" + text + "\"");
  }
  const std::string name = text.substr(0, colon);
  if (!validHeaderName(name)) {
    rule.fail("header",
              "invalid header name \"" + name + "\" (1-76 printable characters, no spaces or ':')");
  }
  const std::string_view value = trimSpace(std::string_view(text).substr(colon + 1));
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      // A line break here would be a second header (or a smuggled body); refuse it at load.
      rule.fail("header", "the value must be a single line without control characters");
    }
  }
  return {name, std::string(value)};
}

HeaderRule parseRule(const ConfigSection& r, std::size_t index) {
  HeaderRule rule;
  rule.label = "rules[" + std::to_string(index) + "]";
  const std::string pattern = r.getString("match");
  if (pattern.empty()) r.fail("match", "must not be empty");
  const bool caseSensitive = r.getBool("case_sensitive", false);

  std::vector<std::string> names;
  names.reserve(kActions.size());
  for (const auto& a : kActions) names.emplace_back(a.name);
  const std::string actionName = r.getChoice("action", names);
  for (const auto& a : kActions) {
    if (a.name == actionName) rule.action = a.action;
  }
  rule.code = compilePattern(r, pattern, caseSensitive);

  const bool takesReply = rule.action == Action::kReject || rule.action == Action::kTempfail;
  if (r.has("reply")) {
    if (!takesReply) r.fail("reply", "only rules with action reject or tempfail take a reply");
    const std::string text = r.getString("reply");
    auto reply = Reply::parseNegative(text);
    if (!reply) {
      r.fail("reply",
             "expected a reply like \"550 5.7.1 Message content rejected\", got \"" + text + "\"");
    }
    if (rule.action == Action::kReject && !reply->isPermanent()) {
      r.fail("reply", "action reject needs a 5xx reply, got " + std::to_string(reply->code()));
    }
    if (rule.action == Action::kTempfail && !reply->isTransient()) {
      r.fail("reply", "action tempfail needs a 4xx reply, got " + std::to_string(reply->code()));
    }
    rule.reply = std::move(*reply);
  } else if (rule.action == Action::kReject) {
    rule.reply = Reply::permanent(550, "5.7.1", "Message content rejected");
  } else if (rule.action == Action::kTempfail) {
    rule.reply = Reply::transient(451, "4.7.1", "Message content deferred");
  }

  if (rule.action == Action::kAddHeader) {
    rule.header = parseHeaderSetting(r, r.getString("header"));
  } else if (r.has("header")) {
    r.fail("header", "only rules with action add_header take a header");
  }
  return rule;
}

}  // namespace

FilterCreator HeaderChecksFilterFactory::configure(const ConfigSection& section) const {
  auto config = std::make_shared<HeaderChecksConfig>();
  const std::string stage =
      section.getChoice("stage", {"end_of_headers", "end_of_message"}, "end_of_headers");
  config->stage = *stageFromName(stage);
  if (!section.has("rules")) section.fail("rules", "required key is missing");
  const std::vector<ConfigSection> rules = section.getSectionList("rules");
  if (rules.empty()) section.fail("rules", "expected at least one rule");
  config->rules.reserve(rules.size());
  for (std::size_t i = 0; i < rules.size(); ++i) config->rules.push_back(parseRule(rules[i], i));
  std::shared_ptr<const HeaderChecksConfig> shared = std::move(config);
  return [shared](const FilterContext&) { return std::make_unique<HeaderChecksFilter>(shared); };
}

}  // namespace portcullis
