// spamd filter. See spamd_filter.h.

#include "filters/spamd/spamd_filter.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <memory>

#include "portcullis/log.h"

namespace portcullis {
namespace {

// spamd's reply is a status line, a few headers and a body of rule names or a report of a few
// KiB; anything much longer is not spamd talking.
constexpr std::size_t kMaxSpamdReply = 64 * 1024;
constexpr std::size_t kMaxLine = 1024;
constexpr std::size_t kMaxHeaders = 32;
constexpr std::size_t kMaxSymbol = 64;
constexpr std::size_t kMaxNumber = 16;
// X-Spam-Status stays well under RFC 5322's 998-byte line limit before folding.
constexpr std::size_t kMaxStatus = 900;
constexpr std::size_t kMaxUser = 64;

constexpr std::string_view kBlank = " \t\r\n";

std::string_view trim(std::string_view s) {
  const std::size_t b = s.find_first_not_of(kBlank);
  if (b == std::string_view::npos) return {};
  const std::size_t e = s.find_last_not_of(kBlank);
  return s.substr(b, e - b + 1);
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// A SpamAssassin rule name: letters, digits, underscores (Mail::SpamAssassin::Conf).
bool isSymbol(std::string_view s) {
  if (s.empty() || s.size() > kMaxSymbol) return false;
  return std::ranges::all_of(s, [](char c) {
    return isDigit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
  });
}

// "-?DIGITS(.DIGITS)?", as spamd prints its scores; nullopt for anything else.
std::optional<double> parseNumber(std::string_view s) {
  if (s.empty() || s.size() > kMaxNumber) return std::nullopt;
  std::size_t i = s.front() == '-' ? 1 : 0;
  std::size_t digits = 0;
  while (i < s.size() && isDigit(s[i])) ++i, ++digits;
  if (digits == 0) return std::nullopt;
  if (i < s.size() && s[i] == '.') {
    ++i;
    std::size_t frac = 0;
    while (i < s.size() && isDigit(s[i])) ++i, ++frac;
    if (frac == 0) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  double v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

SpamdReply fail(std::string error) {
  SpamdReply r;
  r.kind = SpamdReply::Kind::kError;
  r.error = std::move(error);
  return r;
}

void addSymbol(std::string_view token, std::vector<std::string>& out) {
  token = trim(token);
  if (out.size() < kMaxSpamdSymbols && isSymbol(token)) out.emplace_back(token);
}

// SYMBOLS: "GTUBE,MISSING_DATE,..." (spamd joins the names with commas). A token that is not a
// rule name (a hostile CR, LF or NUL inside, an over-long one) is dropped, never passed on.
std::vector<std::string> symbolsFromList(std::string_view body) {
  std::vector<std::string> out;
  while (!body.empty()) {
    const std::size_t comma = body.find(',');
    addSymbol(body.substr(0, comma), out);
    if (comma == std::string_view::npos) break;
    body.remove_prefix(comma + 1);
  }
  return out;
}

// REPORT: the rule names are the second column of the table after the "---- ----" line:
// " 1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email".
std::vector<std::string> symbolsFromReport(std::string_view body) {
  std::vector<std::string> out;
  bool inTable = false;
  while (!body.empty()) {
    const std::size_t nl = body.find('\n');
    const std::string_view line = trim(body.substr(0, nl));
    body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
    if (!inTable) {
      inTable = line.starts_with("----");
      continue;
    }
    const std::size_t sp = line.find_first_of(" \t");
    if (sp == std::string_view::npos || !parseNumber(line.substr(0, sp))) continue;
    const std::string_view rest = trim(line.substr(sp));
    addSymbol(rest.substr(0, rest.find_first_of(" \t")), out);
  }
  return out;
}

// "SPAMD/1.5 0 EX_OK": nullopt when it is not a status line, else the code and its text.
std::optional<std::pair<int, std::string_view>> parseStatus(std::string_view line) {
  constexpr std::string_view kPrefix = "SPAMD/";
  if (!line.starts_with(kPrefix)) return std::nullopt;
  line.remove_prefix(kPrefix.size());
  std::size_t i = 0;
  while (i < line.size() && isDigit(line[i])) ++i;
  if (i == 0 || i >= line.size() || line[i] != '.') return std::nullopt;
  const std::size_t minor = ++i;
  while (i < line.size() && isDigit(line[i])) ++i;
  if (i == minor || i >= line.size() || line[i] != ' ') return std::nullopt;
  line.remove_prefix(i + 1);
  int code = 0;
  const auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), code);
  if (ec != std::errc() || ptr == line.data() || code < 0) return std::nullopt;
  line.remove_prefix(static_cast<std::size_t>(ptr - line.data()));
  if (!line.empty() && line.front() != ' ') return std::nullopt;
  return std::make_pair(code, trim(line));
}

// "True ; 1000.0 / 5.0"
bool parseSpamHeader(std::string_view value, SpamdReply& r) {
  const std::size_t semi = value.find(';');
  if (semi == std::string_view::npos) return false;
  const std::string_view flag = trim(value.substr(0, semi));
  if (iequals(flag, "True") || iequals(flag, "Yes")) {
    r.spam = true;
  } else if (iequals(flag, "False") || iequals(flag, "No")) {
    r.spam = false;
  } else {
    return false;
  }
  const std::string_view scores = value.substr(semi + 1);
  const std::size_t slash = scores.find('/');
  if (slash == std::string_view::npos) return false;
  const auto score = parseNumber(trim(scores.substr(0, slash)));
  const auto threshold = parseNumber(trim(scores.substr(slash + 1)));
  if (!score || !threshold) return false;
  r.score = *score;
  r.threshold = *threshold;
  return true;
}

std::string joinSymbols(const std::vector<std::string>& symbols, std::size_t budget) {
  std::string out;
  for (const std::string& s : symbols) {
    if (out.size() + 1 + s.size() > budget) break;
    if (!out.empty()) out += ',';
    out += s;
  }
  return out.empty() ? "none" : out;
}

}  // namespace

SpamdReply parseSpamdReply(std::string_view reply, bool closed, SpamdCommand command) {
  // Lines end in CRLF (PROTOCOL); a bare LF is accepted. Until a line is whole it is
  // incomplete, unless spamd closed: then what is there is all there will be.
  std::string_view rest = reply;
  enum class Got { kLine, kIncomplete, kTooLong };
  std::string_view line;
  const auto nextLine = [&]() {
    const std::size_t nl = rest.substr(0, kMaxLine + 1).find('\n');
    if (nl == std::string_view::npos) {
      if (rest.size() > kMaxLine) return Got::kTooLong;
      return Got::kIncomplete;
    }
    line = rest.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    rest.remove_prefix(nl + 1);
    return Got::kLine;
  };

  Got got = nextLine();
  if (got == Got::kTooLong) return fail("status line too long");
  if (got == Got::kIncomplete) {
    if (!closed) return {};
    if (rest.empty()) return fail("empty reply");
    line = rest;  // cut short by the close, but an error status still says what went wrong
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    rest = {};
  }
  const auto status = parseStatus(line);
  if (!status) return fail("bad status line " + logQuote(line, 80));
  if (status->first != 0) {
    return fail("spamd error " + std::to_string(status->first) + " " +
                sanitizeScannerText(status->second, 80));
  }

  SpamdReply r;
  bool sawSpam = false;
  std::optional<std::size_t> length;
  for (std::size_t n = 0;; ++n) {
    got = nextLine();
    if (got == Got::kTooLong) return fail("header line too long");
    if (got == Got::kIncomplete) return closed ? fail("reply cut short in the headers") : r;
    if (line.empty()) break;
    if (n == kMaxHeaders) return fail("too many headers");
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail("bad header line " + logQuote(line, 80));
    const std::string_view name = trim(line.substr(0, colon));
    const std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "Spam")) {
      if (!parseSpamHeader(value, r)) return fail("bad Spam header " + logQuote(value, 80));
      sawSpam = true;
    } else if (iequals(name, "Content-length")) {
      std::size_t v = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (value.empty() || ec != std::errc() || ptr != value.data() + value.size() ||
          v > kMaxSpamdReply) {
        return fail("bad Content-length " + logQuote(value, 40));
      }
      length = v;
    }
  }
  if (!sawSpam) return fail("no Spam header");

  std::string_view body = rest;
  if (length) {
    if (body.size() < *length) {
      if (!closed) return r;
      return fail("reply cut short (" + std::to_string(body.size()) + " of " +
                  std::to_string(*length) + " body bytes)");
    }
    body = body.substr(0, *length);
  } else if (!closed) {
    return r;  // no length: the body ends when spamd closes
  }
  r.symbols = command == SpamdCommand::kSymbols ? symbolsFromList(body) : symbolsFromReport(body);
  r.kind = SpamdReply::Kind::kDone;
  return r;
}

std::string spamdRequest(SpamdCommand command, std::string_view user, std::uint64_t size) {
  std::string out = command == SpamdCommand::kSymbols ? "SYMBOLS" : "REPORT";
  out += " SPAMC/1.5\r\nContent-length: " + std::to_string(size) + "\r\n";
  if (!user.empty()) out += "User: " + std::string(user) + "\r\n";
  out += "\r\n";
  return out;
}

std::string formatSpamScore(double score) {
  // spamassassin's _SCORE_ is sprintf("%2.1f"); scores come bounded from parseNumber, and a
  // result too long for the buffer is refused rather than read past its end.
  char buf[64];
  const int n = std::snprintf(buf, sizeof buf, "%.1f", score);
  return n > 0 && static_cast<std::size_t>(n) < sizeof buf
             ? std::string(buf, static_cast<std::size_t>(n))
             : std::string("0.0");
}

// The headers spamassassin writes (Mail::SpamAssassin::Conf "add_header" defaults and
// spamass-milter's), which only the scanner may set.
constexpr std::array<std::string_view, 6> kSpamHeaders = {
    "X-Spam-Flag",  "X-Spam-Score",  "X-Spam-Status",
    "X-Spam-Level", "X-Spam-Report", "X-Spam-Checker-Version"};

std::string spamStatusValue(const SpamdReply& reply) {
  std::string out = std::string(reply.spam ? "Yes" : "No") +
                    ", score=" + formatSpamScore(reply.score) +
                    " required=" + formatSpamScore(reply.threshold) + " tests=";
  out += joinSymbols(reply.symbols, kMaxStatus - out.size());
  return out;
}

std::string SpamdProtocol::request(const SessionView&, std::uint64_t size) const {
  return spamdRequest(options_.command, options_.user, size);
}

std::optional<bool> SpamdProtocol::parseProbeReply(std::string_view reply, bool closed) const {
  const std::size_t eol = reply.find("\r\n");
  if (eol == std::string_view::npos) {
    if (!closed && reply.size() < 256) return std::nullopt;
    return false;
  }
  const std::string_view line = reply.substr(0, eol);
  return line.starts_with("SPAMD/") && line.ends_with(" 0 PONG");
}

std::size_t SpamdProtocol::maxReply() const { return kMaxSpamdReply; }

ScanResult SpamdProtocol::parseReply(std::string_view reply, bool closed) const {
  SpamdReply r = parseSpamdReply(reply, closed, options_.command);
  if (r.kind == SpamdReply::Kind::kIncomplete) return {};
  if (r.kind == SpamdReply::Kind::kError) {
    return {ScanResult::Kind::kError, std::nullopt, {}, std::move(r.error)};
  }
  const std::string scores =
      "score=" + formatSpamScore(r.score) + " required=" + formatSpamScore(r.threshold);
  const std::string tests = "tests=" + logQuote(joinSymbols(r.symbols, kMaxStatus));
  if (options_.rejectScore && r.score >= *options_.rejectScore) {
    const std::string reason =
        scores + " reject_score=" + formatSpamScore(*options_.rejectScore) + " " + tests;
    return {ScanResult::Kind::kDone,
            Verdict::reject(Reply::permanent(550, "5.7.1", "Message rejected as spam"), reason),
            "scan=reject " + reason,
            {}};
  }
  // Whatever spamd said, the verdict headers the client wrote itself go, as spamassassin and
  // spamass-milter remove them: a forged "X-Spam-Flag: NO" must not reach a delivery rule.
  Verdict v = Verdict::proceed();
  for (std::string_view name : kSpamHeaders) v.removeHeader(std::string(name));
  if (r.spam) {
    v.addHeader("X-Spam-Flag", "YES");
    v.addHeader("X-Spam-Score", formatSpamScore(r.score));
    v.addHeader("X-Spam-Status", spamStatusValue(r));
    return {ScanResult::Kind::kDone, std::move(v), "scan=spam " + scores + " " + tests, {}};
  }
  return {ScanResult::Kind::kDone, std::move(v), "scan=clean " + scores, {}};
}

FilterCreator SpamdFilterFactory::configure(const ConfigSection& section) const {
  auto config = std::make_shared<const ScannerConfig>(parseScannerConfig(section, "127.0.0.1:783"));
  SpamdOptions options;
  options.command =
      section.getChoice("command", {"symbols", "report"}, std::string("symbols")) == "symbols"
          ? SpamdCommand::kSymbols
          : SpamdCommand::kReport;
  options.user = section.getString("user", std::string());
  // The user goes into a protocol header line: a plain name, nothing that could end the line.
  if (options.user.size() > kMaxUser) section.fail("user", "longer than 64 bytes");
  for (const char c : options.user) {
    const bool ok = isDigit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    std::string_view("._-@+").find(c) != std::string_view::npos;
    if (!ok) section.fail("user", "may hold only letters, digits and . _ - @ +");
  }
  if (section.has("reject_score")) {
    const double v = section.getDouble("reject_score", std::nullopt);
    if (!std::isfinite(v)) section.fail("reject_score", "must be a finite number");
    options.rejectScore = v;
  }
  return makeScannerCreator(config, std::make_shared<const SpamdProtocol>(std::move(options)));
}

}  // namespace portcullis
