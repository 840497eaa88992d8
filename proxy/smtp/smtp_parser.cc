// SMTP command parser. See smtp_parser.h for the contract.

#include "proxy/smtp/smtp_parser.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "portcullis/domain.h"

namespace portcullis {
namespace {

struct VerbEntry {
  std::string_view name;
  Verb verb;
};

constexpr std::array<VerbEntry, 18> kVerbs = {{
    {"EHLO", Verb::kEhlo},
    {"HELO", Verb::kHelo},
    {"MAIL", Verb::kMail},
    {"RCPT", Verb::kRcpt},
    {"DATA", Verb::kData},
    {"RSET", Verb::kRset},
    {"NOOP", Verb::kNoop},
    {"QUIT", Verb::kQuit},
    {"VRFY", Verb::kVrfy},
    {"EXPN", Verb::kExpn},
    {"HELP", Verb::kHelp},
    {"STARTTLS", Verb::kStartTls},
    {"AUTH", Verb::kAuth},
    {"BDAT", Verb::kBdat},
    {"ETRN", Verb::kEtrn},
    {"TURN", Verb::kTurn},
    {"XCLIENT", Verb::kXclient},
    {"XFORWARD", Verb::kXforward},
}};

Reply err(int code, std::string_view enhanced, std::string_view text) {
  return *Reply::make(code, enhanced, {std::string(text)});
}

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return upper(x) == upper(y); });
}

bool istartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool isAlpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(unsigned char c) { return c >= '0' && c <= '9'; }

// RFC 5322 atext.
bool isAtext(unsigned char c) {
  return isAlpha(c) || isDigit(c) || std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr;
}

enum class AddrError { kNone, kSyntax, kTooLong };

AddrError checkLocalPart(std::string_view lp, bool& nonAscii) {
  if (lp.empty()) return AddrError::kSyntax;
  if (lp.size() > kMaxLocalPart) return AddrError::kTooLong;
  if (lp.front() == '"') {
    // Quoted-string: qtextSMTP / quoted-pairSMTP (RFC 5321 4.1.2).
    if (lp.size() < 2 || lp.back() != '"') return AddrError::kSyntax;
    for (std::size_t i = 1; i + 1 < lp.size(); ++i) {
      const auto c = static_cast<unsigned char>(lp[i]);
      if (c == '\\') {
        if (i + 2 >= lp.size()) return AddrError::kSyntax;
        const auto q = static_cast<unsigned char>(lp[++i]);
        if (q < 32 || q > 126) return AddrError::kSyntax;
        continue;
      }
      if (c == '"') return AddrError::kSyntax;
      if (c >= 0x80) {
        nonAscii = true;
        continue;
      }
      if (c < 32 || c > 126) return AddrError::kSyntax;
    }
    return AddrError::kNone;
  }
  // Dot-string; like Postfix we tolerate empty atoms ("a..b", "a.") which real senders use.
  for (const char ch : lp) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) {
      nonAscii = true;
      continue;
    }
    if (!isAtext(c) && c != '.') return AddrError::kSyntax;
  }
  return AddrError::kNone;
}

bool isAddressLiteral(std::string_view d) {
  if (d.size() < 3 || d.front() != '[' || d.back() != ']') return false;
  for (std::size_t i = 1; i + 1 < d.size(); ++i) {
    const auto c = static_cast<unsigned char>(d[i]);
    // RFC 5321 4.1.3 allows any dcontent in a General-address-literal, but only IPv4, IPv6
    // and tags are in use; accepting '>' or '"' here would make the path we send upstream
    // parse differently from what the client sent.
    if (!isAlpha(c) && !isDigit(c) && c != '.' && c != ':' && c != '-') return false;
  }
  return true;
}

AddrError checkDomain(std::string_view d, bool& nonAscii) {
  if (d.empty()) return AddrError::kSyntax;
  if (d.size() > kMaxDomain) return AddrError::kTooLong;
  if (d.front() == '[') return isAddressLiteral(d) ? AddrError::kNone : AddrError::kSyntax;
  // RFC 6531 3.3: an SMTPUTF8 domain may carry U-labels; the caller decides if that is allowed.
  if (checkDomainName(d, {.maxLength = kMaxDomain, .utf8 = true}) != DomainError::kNone) {
    return AddrError::kSyntax;
  }
  if (std::any_of(d.begin(), d.end(),
                  [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
    nonAscii = true;
  }
  return AddrError::kNone;
}

// Validates "local@domain" (or a bare "postmaster" when allowed).
AddrError checkMailbox(std::string_view box, bool allowBarePostmaster, bool& nonAscii) {
  const auto at = box.rfind('@');
  if (at == std::string_view::npos) {
    return (allowBarePostmaster && iequals(box, "postmaster")) ? AddrError::kNone
                                                               : AddrError::kSyntax;
  }
  const AddrError l = checkLocalPart(box.substr(0, at), nonAscii);
  if (l != AddrError::kNone) return l;
  return checkDomain(box.substr(at + 1), nonAscii);
}

bool validKeyword(std::string_view k) {
  if (k.empty() ||
      !(isAlpha(static_cast<unsigned char>(k[0])) || isDigit(static_cast<unsigned char>(k[0])))) {
    return false;
  }
  return std::all_of(k.begin(), k.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return isAlpha(c) || isDigit(c) || c == '-';
  });
}

// esmtp-value: %d33-60 / %d62-126, plus UTF-8 (RFC 6531 3.3).
bool validValue(std::string_view v) {
  if (v.empty()) return false;
  return std::all_of(v.begin(), v.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c >= 33 && c <= 126 && c != '=') || c >= 0x80;
  });
}

std::optional<Reply> parseParams(std::string_view rest, std::vector<EsmtpParam>& out) {
  // Built only when needed: every MAIL and RCPT comes through here.
  const auto bad = [] { return err(501, "5.5.4", "Syntax error in parameters"); };
  while (true) {
    rest = trim(rest);
    if (rest.empty()) return std::nullopt;
    const auto sp = rest.find_first_of(" \t");
    const std::string_view tok = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp);
    EsmtpParam p;
    const auto eq = tok.find('=');
    const std::string_view key = tok.substr(0, eq);
    if (!validKeyword(key)) return bad();
    p.keyword.reserve(key.size());
    for (const char c : key) p.keyword.push_back(upper(c));
    if (eq != std::string_view::npos) {
      p.value = std::string(tok.substr(eq + 1));
      p.hasValue = true;
      if (!validValue(p.value)) return bad();
    }
    for (const auto& seen : out) {
      if (seen.keyword == p.keyword) return err(501, "5.5.4", "Duplicate parameter " + p.keyword);
    }
    if (out.size() >= 16) return bad();
    out.push_back(std::move(p));
  }
}

// MAIL FROM:<path> [params] / RCPT TO:<path> [params]
ParseResult parsePathCommand(Command c, std::string_view arg, bool isMail) {
  const std::string_view prefix = isMail ? "FROM:" : "TO:";
  // Built only when needed: every MAIL and RCPT comes through here.
  const auto syntax = [isMail] {
    return isMail ? err(501, "5.5.4", "Syntax: MAIL FROM:<address>")
                  : err(501, "5.5.4", "Syntax: RCPT TO:<address>");
  };
  const auto badAddr = [isMail] {
    return isMail ? err(501, "5.1.7", "Bad sender address syntax")
                  : err(501, "5.1.3", "Bad recipient address syntax");
  };
  if (!istartsWith(arg, prefix)) return syntax();
  std::string_view rest = arg.substr(prefix.size());
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);  // tolerated, as Postfix
  if (rest.empty()) return syntax();

  std::string_view path;
  if (rest.front() == '<') {
    // Find the closing '>' outside a quoted local-part.
    bool quoted = false;
    std::size_t end = std::string_view::npos;
    for (std::size_t i = 1; i < rest.size(); ++i) {
      if (rest[i] == '\\' && quoted) {
        ++i;
        continue;
      }
      if (rest[i] == '"') quoted = !quoted;
      if (rest[i] == '>' && !quoted) {
        end = i;
        break;
      }
    }
    if (end == std::string_view::npos) return syntax();
    if (end + 1 > kMaxPath) return err(501, isMail ? "5.1.7" : "5.1.3", "Path too long");
    path = rest.substr(1, end - 1);
    rest = rest.substr(end + 1);
    if (!rest.empty() && rest.front() != ' ') return syntax();
  } else {
    // Unbracketed address: tolerated (Postfix does unless strict_rfc821_envelopes), as long
    // as the bracketed line we send upstream still fits the command-line limit.
    if (arg.size() + 7 > kMaxCommandLine - 2) return err(500, "5.5.2", "Error: line too long");
    const auto sp = rest.find(' ');
    path = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp);
    if (path.size() + 2 > kMaxPath) return err(501, isMail ? "5.1.7" : "5.1.3", "Path too long");
  }

  // RFC 5321 4.1.1.3 / C: a source route "@a,@b:" MUST be accepted and SHOULD be ignored.
  if (!path.empty() && path.front() == '@') {
    const auto colon = path.find(':');
    if (colon == std::string_view::npos) return badAddr();
    path = path.substr(colon + 1);
    if (path.empty()) return badAddr();  // a route to nowhere is not the null path
  }

  if (path.empty()) {
    if (!isMail) return badAddr();  // RCPT TO:<> is never valid
    c.nullPath = true;
  } else {
    const AddrError e = checkMailbox(path, !isMail, c.nonAscii);
    if (e == AddrError::kTooLong) {
      return err(501, isMail ? "5.1.7" : "5.1.3", "Path too long");
    }
    if (e != AddrError::kNone) return badAddr();
    c.address = std::string(path);
  }

  if (auto e = parseParams(rest, c.params)) return *e;

  // Parameters whose syntax we own (we advertise them); the rest are relayed verbatim.
  if (const EsmtpParam* size = c.param("SIZE"); size && isMail) {
    if (!size->hasValue || size->value.size() > 20 ||
        !std::all_of(size->value.begin(), size->value.end(),
                     [](char ch) { return isDigit(static_cast<unsigned char>(ch)); })) {
      return err(501, "5.5.4", "Bad SIZE parameter");
    }
  }
  if (const EsmtpParam* body = c.param("BODY"); body && isMail) {
    if (!body->hasValue) return err(501, "5.5.4", "Bad BODY parameter");
    if (iequals(body->value, "BINARYMIME")) {
      return err(555, "5.5.4", "BODY=BINARYMIME is not supported");
    }
    if (!iequals(body->value, "7BIT") && !iequals(body->value, "8BITMIME")) {
      return err(501, "5.5.4", "Bad BODY parameter");
    }
  }
  if (const EsmtpParam* u = c.param("SMTPUTF8"); u && (u->hasValue || !isMail)) {
    return err(501, "5.5.4", "Bad SMTPUTF8 parameter");
  }
  return c;
}

bool noArgument(std::string_view arg) { return arg.empty(); }

}  // namespace

std::string_view verbName(Verb v) {
  for (const auto& e : kVerbs) {
    if (e.verb == v) return e.name;
  }
  return "UNKNOWN";
}

const EsmtpParam* Command::param(std::string_view keyword) const {
  for (const auto& p : params) {
    if (p.keyword == keyword) return &p;
  }
  return nullptr;
}

ParseResult parseCommand(std::string_view line) {
  if (line.size() + 2 > kMaxCommandLine) return err(500, "5.5.2", "Error: line too long");
  for (const char ch : line) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == 0) return err(500, "5.5.2", "Error: NUL character in command");
    if ((c < 32 && c != '\t') || c == 127) {
      return err(500, "5.5.2", "Error: control character in command");
    }
  }
  const auto sp = line.find_first_of(" \t");
  const std::string_view verbText = line.substr(0, sp);
  const std::string_view arg =
      trim(sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1));
  Command c;
  for (const auto& e : kVerbs) {
    if (iequals(verbText, e.name)) {
      c.verb = e.verb;
      break;
    }
  }
  c.argument = std::string(arg);

  switch (c.verb) {
    case Verb::kUnknown:
      return err(500, "5.5.2", "Error: command not recognized");
    case Verb::kEhlo:
    case Verb::kHelo:
      if (arg.empty()) {
        return err(501, "5.5.4",
                   c.verb == Verb::kEhlo ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
      }
      if (arg.size() > kMaxDomain) return err(501, "5.5.4", "Error: hostname too long");
      return c;
    case Verb::kMail:
      return parsePathCommand(std::move(c), arg, true);
    case Verb::kRcpt:
      return parsePathCommand(std::move(c), arg, false);
    case Verb::kData:
    case Verb::kRset:
    case Verb::kQuit:
    case Verb::kStartTls:
      if (!noArgument(arg)) {
        return err(501, "5.5.4", "Syntax: " + std::string(verbName(c.verb)));
      }
      return c;
    case Verb::kBdat: {
      // RFC 3030: BDAT chunk-size [LAST]. Parsed only so the session can skip the chunk.
      const auto sp2 = arg.find(' ');
      const std::string_view num = arg.substr(0, sp2);
      if (num.empty() || num.size() > 19 || !std::all_of(num.begin(), num.end(), [](char ch) {
            return isDigit(static_cast<unsigned char>(ch));
          })) {
        return err(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
      }
      c.chunkSize = std::stoull(std::string(num));
      c.lastChunk = sp2 != std::string_view::npos && iequals(trim(arg.substr(sp2)), "LAST");
      return c;
    }
    default:
      return c;
  }
}

void writeEnvelopeCommandLine(const Command& c, std::string& out) {
  out.assign(c.verb == Verb::kMail ? "MAIL FROM:<" : "RCPT TO:<");
  out += c.address;
  out += '>';
  for (const auto& p : c.params) {
    out += ' ';
    out += p.wire();
  }
}

std::string envelopeCommandLine(const Command& c) {
  std::string out;
  writeEnvelopeCommandLine(c, out);
  return out;
}

LineScan scanLine(std::string_view input, std::size_t maxLine) {
  LineScan r;
  const std::size_t window = std::min(input.size(), maxLine);
  const void* lf = std::memchr(input.data(), '\n', window);
  if (lf == nullptr) {
    r.status = input.size() >= maxLine ? LineScan::Status::kTooLong : LineScan::Status::kNeedMore;
    return r;
  }
  const std::size_t pos = static_cast<const char*>(lf) - input.data();
  r.consumed = pos + 1;
  if (pos > 0 && input[pos - 1] == '\r') {
    r.status = LineScan::Status::kLine;
    r.line = input.substr(0, pos - 1);
  } else {
    r.status = LineScan::Status::kBareLf;
    r.line = input.substr(0, pos);
  }
  return r;
}

}  // namespace portcullis
