// smtp_parser: parseCommand (verbs, MAIL/RCPT path grammar, ESMTP parameters, RFC 5321 4.5.3.1
// limits, control characters), the canonical MAIL/RCPT lines, and scanLine. Table-driven; every
// failure prints the input and "got X, want Y".

#include "proxy/smtp/smtp_parser.h"

#include <gtest/gtest.h>

#include "tests/support/test_text.h"

#include <cctype>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portcullis {
namespace {

using testing::escape;

std::string paramsWire(const Command& c) {
  std::string out;
  for (const auto& p : c.params) out += (out.empty() ? "" : " ") + p.wire();
  return out;
}

std::string describe(const ParseResult& r) {
  if (const auto* reply = std::get_if<Reply>(&r)) return "reply " + reply->summary();
  const auto& c = std::get<Command>(r);
  return "command " + std::string(verbName(c.verb)) + " arg=" + escape(c.argument) +
         " address=" + escape(c.address) + (c.nullPath ? " null-path" : "") +
         (c.nonAscii ? " non-ascii" : "") + " params=[" + paramsWire(c) + "]";
}

std::string repeat(char c, std::size_t n) { return std::string(n, c); }

// A syntactically valid domain of exactly n octets (labels of at most 50 octets).
std::string domainOf(std::size_t n) {
  std::string d(n, 'd');
  for (std::size_t i = 50; i + 1 < n; i += 51) d[i] = '.';
  return d;
}

// ---- verbs ----

struct VerbCase {
  std::string line;
  Verb want;
};

TEST(SmtpParser, EveryVerbInEveryCase) {
  const std::vector<VerbCase> base = {
      {"EHLO client.example", Verb::kEhlo},
      {"HELO client.example", Verb::kHelo},
      {"MAIL FROM:<a@b.example>", Verb::kMail},
      {"RCPT TO:<a@b.example>", Verb::kRcpt},
      {"DATA", Verb::kData},
      {"RSET", Verb::kRset},
      {"NOOP", Verb::kNoop},
      {"QUIT", Verb::kQuit},
      {"VRFY user", Verb::kVrfy},
      {"EXPN list", Verb::kExpn},
      {"HELP", Verb::kHelp},
      {"STARTTLS", Verb::kStartTls},
      {"AUTH PLAIN", Verb::kAuth},
      {"BDAT 10 LAST", Verb::kBdat},
      {"ETRN example.com", Verb::kEtrn},
      {"TURN", Verb::kTurn},
      {"XCLIENT ADDR=1.2.3.4", Verb::kXclient},
      {"XFORWARD ADDR=1.2.3.4", Verb::kXforward},
  };
  auto lower = [](std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  auto mixed = [](std::string s) {
    // Alternate case in the verb only (arguments such as "FROM:" are tested separately).
    for (std::size_t i = 0; i < s.size() && s[i] != ' '; i += 2) {
      s[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[i])));
    }
    return s;
  };
  for (const auto& tc : base) {
    for (const std::string& line : {tc.line, lower(tc.line), mixed(tc.line)}) {
      const ParseResult r = parseCommand(line);
      const auto* c = std::get_if<Command>(&r);
      ASSERT_NE(c, nullptr) << escape(line) << ": got " << describe(r) << ", want a "
                            << verbName(tc.want) << " command";
      EXPECT_EQ(c->verb, tc.want) << escape(line) << ": got verb " << verbName(c->verb) << ", want "
                                  << verbName(tc.want);
    }
    EXPECT_EQ(verbName(tc.want), tc.line.substr(0, tc.line.find(' ')))
        << "verbName must give the canonical upper-case verb";
  }
  EXPECT_EQ(verbName(Verb::kUnknown), "UNKNOWN");
}

TEST(SmtpParser, ArgumentIsTrimmed) {
  const struct {
    std::string line;
    std::string want;
  } cases[] = {
      {"EHLO  client.example  ", "client.example"},
      {"EHLO\tclient.example\t", "client.example"},
      {"HELO a b c", "a b c"},
      {"NOOP hello there", "hello there"},
      {"VRFY  <user@example.com>", "<user@example.com>"},
      {"HELP MAIL", "MAIL"},
      {"DATA   ", ""},
      {"QUIT\t", ""},
  };
  for (const auto& tc : cases) {
    const ParseResult r = parseCommand(tc.line);
    const auto* c = std::get_if<Command>(&r);
    ASSERT_NE(c, nullptr) << escape(tc.line) << ": got " << describe(r);
    EXPECT_EQ(c->argument, tc.want) << escape(tc.line) << ": got argument " << escape(c->argument)
                                    << ", want " << escape(tc.want);
  }
}

// ---- MAIL / RCPT paths ----

struct PathCase {
  PathCase(std::string l, std::string a, bool null = false, bool utf8 = false, std::string p = "")
      : line(std::move(l)),
        address(std::move(a)),
        nullPath(null),
        nonAscii(utf8),
        params(std::move(p)) {}
  std::string line;
  std::string address;
  bool nullPath;
  bool nonAscii;
  std::string params;  // the params' wire forms, space separated
};

void expectPath(const PathCase& tc) {
  const ParseResult r = parseCommand(tc.line);
  const auto* c = std::get_if<Command>(&r);
  ASSERT_NE(c, nullptr) << escape(tc.line) << ": got " << describe(r) << ", want address "
                        << escape(tc.address);
  EXPECT_EQ(c->address, tc.address) << escape(tc.line) << ": got address " << escape(c->address)
                                    << ", want " << escape(tc.address);
  EXPECT_EQ(c->nullPath, tc.nullPath)
      << escape(tc.line) << ": got nullPath " << c->nullPath << ", want " << tc.nullPath;
  EXPECT_EQ(c->nonAscii, tc.nonAscii)
      << escape(tc.line) << ": got nonAscii " << c->nonAscii << ", want " << tc.nonAscii;
  EXPECT_EQ(paramsWire(*c), tc.params)
      << escape(tc.line) << ": got params [" << paramsWire(*c) << "], want [" << tc.params << "]";
}

TEST(SmtpParser, MailPathForms) {
  const std::vector<PathCase> cases = {
      {"MAIL FROM:<>", "", true},
      {"MAIL FROM:<> SIZE=100", "", true, false, "SIZE=100"},
      {"MAIL FROM:<alice@example.com>", "alice@example.com"},
      {"mail from:<alice@example.com>", "alice@example.com"},
      {"Mail From:<Alice@Example.COM>", "Alice@Example.COM"},
      // Space after the colon: tolerated, as Postfix does.
      {"MAIL FROM: <alice@example.com>", "alice@example.com"},
      {"MAIL FROM:   <alice@example.com>", "alice@example.com"},
      {"MAIL FROM: <>", "", true},
      // Unbracketed: tolerated.
      {"MAIL FROM:alice@example.com", "alice@example.com"},
      {"MAIL FROM:alice@example.com SIZE=5", "alice@example.com", false, false, "SIZE=5"},
      // RFC 5321 4.1.2 / C: source routes are accepted and ignored.
      {"MAIL FROM:<@a.example:alice@example.com>", "alice@example.com"},
      {"MAIL FROM:<@a.example,@b.example:x@y.example>", "x@y.example"},
      // Quoted local parts (RFC 5321 4.1.2 Quoted-string).
      {"MAIL FROM:<\"john doe\"@example.com>", "\"john doe\"@example.com"},
      {"MAIL FROM:<\"a>b\"@example.com>", "\"a>b\"@example.com"},
      {"MAIL FROM:<\"a\\\"b\"@example.com>", "\"a\\\"b\"@example.com"},
      {"MAIL FROM:<\"a@b\"@example.com>", "\"a@b\"@example.com"},
      // Address literals (RFC 5321 4.1.3).
      {"MAIL FROM:<a@[192.0.2.1]>", "a@[192.0.2.1]"},
      {"MAIL FROM:<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]"},
      // Atext specials and a dot-string.
      {"MAIL FROM:<first.last+tag@sub.example.com>", "first.last+tag@sub.example.com"},
      {"MAIL FROM:<!#$%&'*+-/=?^_`{|}~@example.com>", "!#$%&'*+-/=?^_`{|}~@example.com"},
      // UTF-8 (RFC 6531): parsed, flagged as needing SMTPUTF8.
      {"MAIL FROM:<j\xc3\xb6s\xc3\xa9@ex\xc3\xa4mple.com> SMTPUTF8",
       "j\xc3\xb6s\xc3\xa9@ex\xc3\xa4mple.com", false, true, "SMTPUTF8"},
      {"MAIL FROM:<\"j\xc3\xb6 s\"@example.com>", "\"j\xc3\xb6 s\"@example.com", false, true},
      {"MAIL FROM:<user@\xe4\xbe\x8b\xe5\xad\x90.example>", "user@\xe4\xbe\x8b\xe5\xad\x90.example",
       false, true},
  };
  for (const auto& tc : cases) expectPath(tc);
}

TEST(SmtpParser, RcptPathForms) {
  const std::vector<PathCase> cases = {
      {"RCPT TO:<bob@example.org>", "bob@example.org"},
      {"rcpt to:<bob@example.org>", "bob@example.org"},
      {"RCPT TO: <bob@example.org>", "bob@example.org"},
      {"RCPT TO:bob@example.org", "bob@example.org"},
      // RFC 5321 4.5.1: <postmaster> without a domain must be accepted.
      {"RCPT TO:<postmaster>", "postmaster"},
      {"RCPT TO:<Postmaster>", "Postmaster"},
      {"RCPT TO:<POSTMASTER>", "POSTMASTER"},
      {"RCPT TO:<postmaster@example.org>", "postmaster@example.org"},
      {"RCPT TO:<@hosta.int,@jkl.org:userc@d.bar.org>", "userc@d.bar.org"},
      {"RCPT TO:<\"quoted user\"@example.org>", "\"quoted user\"@example.org"},
      {"RCPT TO:<u@[IPv6:::1]>", "u@[IPv6:::1]"},
      {"RCPT TO:<u@[10.0.0.1]>", "u@[10.0.0.1]"},
      {"RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org",
       "bob@example.org", false, false, "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org"},
      {"RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@example.org>", "\xe7\x94\xa8\xe6\x88\xb7@example.org",
       false, true},
  };
  for (const auto& tc : cases) expectPath(tc);
}

// ---- errors: code and enhanced code ----

struct ErrCase {
  std::string line;
  int code;
  std::string enhanced;
};

void expectError(const ErrCase& tc) {
  const ParseResult r = parseCommand(tc.line);
  const auto* reply = std::get_if<Reply>(&r);
  ASSERT_NE(reply, nullptr) << escape(tc.line) << ": got " << describe(r) << ", want " << tc.code
                            << " " << tc.enhanced;
  EXPECT_EQ(reply->code(), tc.code) << escape(tc.line) << ": got " << reply->summary() << ", want "
                                    << tc.code << " " << tc.enhanced;
  EXPECT_EQ(reply->enhanced(), tc.enhanced) << escape(tc.line) << ": got " << reply->summary()
                                            << ", want " << tc.code << " " << tc.enhanced;
}

TEST(SmtpParser, SyntaxErrors) {
  const std::vector<ErrCase> cases = {
      // Unknown commands.
      {"", 500, "5.5.2"},
      {"FOO", 500, "5.5.2"},
      {"FOO bar", 500, "5.5.2"},
      {"MAILFROM:<a@b.example>", 500, "5.5.2"},
      {" MAIL FROM:<a@b.example>", 500, "5.5.2"},
      // EHLO/HELO need a name.
      {"EHLO", 501, "5.5.4"},
      {"EHLO ", 501, "5.5.4"},
      {"EHLO \t ", 501, "5.5.4"},
      {"HELO", 501, "5.5.4"},
      {"helo", 501, "5.5.4"},
      // DATA, RSET, QUIT, STARTTLS take no argument.
      {"DATA x", 501, "5.5.4"},
      {"RSET now", 501, "5.5.4"},
      {"QUIT bye", 501, "5.5.4"},
      {"STARTTLS please", 501, "5.5.4"},
      // MAIL syntax.
      {"MAIL", 501, "5.5.4"},
      {"MAIL FROM:", 501, "5.5.4"},
      {"MAIL FROM: ", 501, "5.5.4"},
      {"MAIL FROM <a@b.example>", 501, "5.5.4"},
      {"MAIL TO:<a@b.example>", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example>x", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example>> SIZE=1", 501, "5.5.4"},
      {"MAIL FROM:<\"open@b.example>", 501, "5.5.4"},
      // MAIL address errors: 501 5.1.7 (bad sender address syntax, RFC 3463).
      {"MAIL FROM:<a>", 501, "5.1.7"},
      {"MAIL FROM:<postmaster>", 501, "5.1.7"},
      {"MAIL FROM:<a@>", 501, "5.1.7"},
      {"MAIL FROM:<@b.example>", 501, "5.1.7"},
      {"MAIL FROM:<a@b..example>", 501, "5.1.7"},
      {"MAIL FROM:<a@.example>", 501, "5.1.7"},
      {"MAIL FROM:<a@b.example.>", 501, "5.1.7"},
      {"MAIL FROM:<a b@c.example>", 501, "5.1.7"},
      {"MAIL FROM:<a(b)@c.example>", 501, "5.1.7"},
      {"MAIL FROM:<a@b!.example>", 501, "5.1.7"},
      {"MAIL FROM:<a@[192.0.2.1>", 501, "5.1.7"},
      {"MAIL FROM:<a@[]>", 501, "5.1.7"},
      {"MAIL FROM:<a@[1[2]>", 501, "5.1.7"},
      {"MAIL FROM:<\"a\"b\"@c.example>", 501, "5.5.4"},
      {"MAIL FROM:<\"a\\\"@c.example>", 501, "5.5.4"},
      {"MAIL FROM:<@a.example,@b.example>", 501, "5.1.7"},
      {"MAIL FROM:<a@" + repeat('l', 64) + ".example>", 501, "5.1.7"},
      // RCPT errors: 501 5.1.3 (bad destination address syntax).
      {"RCPT", 501, "5.5.4"},
      {"RCPT TO:", 501, "5.5.4"},
      {"RCPT FROM:<a@b.example>", 501, "5.5.4"},
      {"RCPT TO:<a@b.example", 501, "5.5.4"},
      {"RCPT TO:<>", 501, "5.1.3"},
      {"RCPT TO: <>", 501, "5.1.3"},
      {"RCPT TO:<postmistress>", 501, "5.1.3"},
      {"RCPT TO:<a@>", 501, "5.1.3"},
      {"RCPT TO:<a@b..example>", 501, "5.1.3"},
      {"RCPT TO:<@b.example>", 501, "5.1.3"},
  };
  for (const auto& tc : cases) expectError(tc);
}

TEST(SmtpParser, ControlCharactersAre500) {
  // RFC 5321 2.3.8 / 4.1.1: commands are printable US-ASCII (tab tolerated as a separator).
  for (int c = 0; c < 0x20; ++c) {
    if (c == '\t') continue;
    for (const std::string& prefix : {std::string("NOOP a"), std::string("MAIL FROM:<a"),
                                      std::string(""), std::string("EHLO x")}) {
      std::string line = prefix;
      line.push_back(static_cast<char>(c));
      line += prefix.rfind("MAIL", 0) == 0 ? "@b.example>" : "b";
      expectError({line, 500, "5.5.2"});
    }
  }
  expectError(
      {"NOOP a\x7f"
       "b",
       500, "5.5.2"});
  expectError({std::string("NOOP\0", 5), 500, "5.5.2"});
  expectError({std::string("\0NOOP", 5), 500, "5.5.2"});
  // The NUL reply says so (admins read logs).
  const ParseResult r = parseCommand(std::string("HELO a\0b", 8));
  ASSERT_TRUE(std::holds_alternative<Reply>(r));
  EXPECT_NE(std::get<Reply>(r).text().find("NUL"), std::string::npos)
      << "got " << std::get<Reply>(r).summary() << ", want a text naming the NUL";
  // Tab is a separator, not an error.
  EXPECT_TRUE(std::holds_alternative<Command>(parseCommand("NOOP\ta\tb")));
}

// ---- RFC 5321 4.5.3.1 limits: exactly at and one over ----

struct LimitCase {
  LimitCase(std::string n, std::string l, bool good, int c = 0, std::string e = "")
      : name(std::move(n)), line(std::move(l)), ok(good), code(c), enhanced(std::move(e)) {}
  std::string name;
  std::string line;
  bool ok;
  int code;
  std::string enhanced;
};

TEST(SmtpParser, SizeLimits) {
  const std::string lp64 = repeat('l', 64);
  const std::string lp65 = repeat('l', 65);
  // <local@domain> = 256 octets: local 64 + "@" + domain 189 + brackets 2.
  const std::string path256 = lp64 + "@" + domainOf(189);
  const std::string path257 = lp64 + "@" + domainOf(190);
  const std::vector<LimitCase> cases = {
      {"local-part 64 (MAIL)", "MAIL FROM:<" + lp64 + "@example.com>", true},
      {"local-part 65 (MAIL)", "MAIL FROM:<" + lp65 + "@example.com>", false, 501, "5.1.7"},
      {"local-part 64 (RCPT)", "RCPT TO:<" + lp64 + "@example.com>", true},
      {"local-part 65 (RCPT)", "RCPT TO:<" + lp65 + "@example.com>", false, 501, "5.1.3"},
      {"quoted local-part 64", "RCPT TO:<\"" + repeat('q', 62) + "\"@example.com>", true},
      {"quoted local-part 65", "RCPT TO:<\"" + repeat('q', 63) + "\"@example.com>", false, 501,
       "5.1.3"},
      {"path 256 (MAIL)", "MAIL FROM:<" + path256 + ">", true},
      {"path 257 (MAIL)", "MAIL FROM:<" + path257 + ">", false, 501, "5.1.7"},
      {"path 256 (RCPT)", "RCPT TO:<" + path256 + ">", true},
      {"path 257 (RCPT)", "RCPT TO:<" + path257 + ">", false, 501, "5.1.3"},
      {"unbracketed path 256", "MAIL FROM:" + path256, true},
      {"unbracketed path 257", "MAIL FROM:" + path257, false, 501, "5.1.7"},
      // The path limit counts the source route too (it is part of the path on the wire).
      {"path 257 with route", "RCPT TO:<@r.example:" + lp64 + "@" + domainOf(179) + ">", false, 501,
       "5.1.3"},
      // A domain over 255 octets is over the path limit as well.
      {"domain 256", "RCPT TO:<a@" + domainOf(256) + ">", false, 501, "5.1.3"},
      // Domain limit 255, seen in EHLO/HELO.
      {"EHLO name 255", "EHLO " + domainOf(255), true},
      {"EHLO name 256", "EHLO " + domainOf(256), false, 501, "5.5.4"},
      {"HELO name 256", "HELO " + domainOf(256), false, 501, "5.5.4"},
      // A DNS label is at most 63 octets (RFC 1035 2.3.4).
      {"label 63", "RCPT TO:<a@" + repeat('l', 63) + ".example>", true},
      {"label 64", "RCPT TO:<a@" + repeat('l', 64) + ".example>", false, 501, "5.1.3"},
      // Command line 512 octets including CRLF: 510 octets of content.
      {"line 510 (NOOP)", "NOOP " + repeat('x', 505), true},
      {"line 511 (NOOP)", "NOOP " + repeat('x', 506), false, 500, "5.5.2"},
      {"line 510 (MAIL)", "MAIL FROM:<a@b.example> X-PAD=" + repeat('p', 510 - 30), true},
      {"line 511 (MAIL)", "MAIL FROM:<a@b.example> X-PAD=" + repeat('p', 511 - 30), false, 500,
       "5.5.2"},
      {"line 2000", repeat('x', 2000), false, 500, "5.5.2"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.name);
    if (tc.name.rfind("line 510", 0) == 0) {
      ASSERT_EQ(tc.line.size(), 510u) << "test table: the line must be 510 octets";
    }
    if (tc.name.rfind("line 511", 0) == 0) {
      ASSERT_EQ(tc.line.size(), 511u) << "test table: the line must be 511 octets";
    }
    const ParseResult r = parseCommand(tc.line);
    if (tc.ok) {
      EXPECT_TRUE(std::holds_alternative<Command>(r))
          << tc.name << ": got " << describe(r) << ", want a command";
    } else {
      expectError({tc.line, tc.code, tc.enhanced});
    }
  }
  ASSERT_EQ(path256.size() + 2, 256u);
  ASSERT_EQ(path257.size() + 2, 257u);
}

// ---- ESMTP parameters ----

TEST(SmtpParser, EsmtpParameters) {
  const std::vector<PathCase> good = {
      {"MAIL FROM:<a@b.example> SIZE=0", "a@b.example", false, false, "SIZE=0"},
      {"MAIL FROM:<a@b.example> SIZE=10240000", "a@b.example", false, false, "SIZE=10240000"},
      {"MAIL FROM:<a@b.example> size=12", "a@b.example", false, false, "SIZE=12"},
      {"MAIL FROM:<a@b.example> SIZE=" + repeat('9', 20), "a@b.example", false, false,
       "SIZE=" + repeat('9', 20)},
      {"MAIL FROM:<a@b.example> BODY=7BIT", "a@b.example", false, false, "BODY=7BIT"},
      {"MAIL FROM:<a@b.example> BODY=8BITMIME", "a@b.example", false, false, "BODY=8BITMIME"},
      {"MAIL FROM:<a@b.example> body=8bitmime", "a@b.example", false, false, "BODY=8bitmime"},
      {"MAIL FROM:<a@b.example> SMTPUTF8", "a@b.example", false, false, "SMTPUTF8"},
      {"MAIL FROM:<a@b.example> smtputf8", "a@b.example", false, false, "SMTPUTF8"},
      // Unknown parameters are relayed verbatim (keyword upper-cased, value untouched).
      {"MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ314159+2Bx", "a@b.example", false, false,
       "RET=HDRS ENVID=QQ314159+2Bx"},
      {"MAIL FROM:<a@b.example> x-custom=MiXeD", "a@b.example", false, false, "X-CUSTOM=MiXeD"},
      {"MAIL FROM:<a@b.example> FLAG", "a@b.example", false, false, "FLAG"},
      {"MAIL FROM:<a@b.example>  SIZE=1   BODY=7BIT  ", "a@b.example", false, false,
       "SIZE=1 BODY=7BIT"},
      {"MAIL FROM:<a@b.example> SIZE=1\tBODY=7BIT", "a@b.example", false, false,
       "SIZE=1 BODY=7BIT"},
      {"MAIL FROM:<a@b.example> AUTH=<>", "a@b.example", false, false, "AUTH=<>"},
      {"MAIL FROM:<a@b.example> X=\xc3\xa9", "a@b.example", false, false, "X=\xc3\xa9"},
      {"RCPT TO:<a@b.example> NOTIFY=NEVER", "a@b.example", false, false, "NOTIFY=NEVER"},
      // SIZE and BODY are MAIL parameters; on RCPT they are relayed like any unknown one.
      {"RCPT TO:<a@b.example> SIZE=abc", "a@b.example", false, false, "SIZE=abc"},
  };
  for (const auto& tc : good) expectPath(tc);

  const std::vector<ErrCase> bad = {
      {"MAIL FROM:<a@b.example> SIZE", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> SIZE=", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> SIZE=10k", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> SIZE=-1", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> SIZE=+1", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> SIZE=1.5", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> SIZE=" + repeat('9', 21), 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> BODY", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> BODY=9BIT", 501, "5.5.4"},
      // RFC 3030: we do not offer BINARYMIME.
      {"MAIL FROM:<a@b.example> BODY=BINARYMIME", 555, "5.5.4"},
      {"MAIL FROM:<a@b.example> body=binarymime", 555, "5.5.4"},
      // RFC 6531 3.4: SMTPUTF8 takes no value, and is a MAIL parameter.
      {"MAIL FROM:<a@b.example> SMTPUTF8=yes", 501, "5.5.4"},
      {"RCPT TO:<a@b.example> SMTPUTF8", 501, "5.5.4"},
      // Duplicates, case-insensitively.
      {"MAIL FROM:<a@b.example> SIZE=1 SIZE=2", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> SIZE=1 size=1", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> RET=HDRS ret=FULL", 501, "5.5.4"},
      {"RCPT TO:<a@b.example> NOTIFY=NEVER NOTIFY=NEVER", 501, "5.5.4"},
      // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") (RFC 5321 4.1.2).
      {"MAIL FROM:<a@b.example> SI_ZE=1", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> -X=1", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> X.Y=1", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> =1", 501, "5.5.4"},
      {"MAIL FROM:<a@b.example> X:Y", 501, "5.5.4"},
      // esmtp-value excludes "=" and SP.
      {"MAIL FROM:<a@b.example> X=a=b", 501, "5.5.4"},
      {"RCPT TO:<a@b.example> X=", 501, "5.5.4"},
  };
  for (const auto& tc : bad) expectError(tc);

  // At most 16 parameters.
  std::string sixteen = "MAIL FROM:<a@b.example>";
  for (int i = 0; i < 16; ++i) sixteen += " P" + std::to_string(i) + "=v";
  EXPECT_TRUE(std::holds_alternative<Command>(parseCommand(sixteen)))
      << "16 parameters: got " << describe(parseCommand(sixteen)) << ", want a command";
  expectError({sixteen + " P16=v", 501, "5.5.4"});
}

TEST(SmtpParser, ParamLookupAndWire) {
  const ParseResult r = parseCommand("MAIL FROM:<a@b.example> size=42 Smtputf8 x-y=Z");
  const auto* c = std::get_if<Command>(&r);
  ASSERT_NE(c, nullptr) << describe(r);
  ASSERT_NE(c->param("SIZE"), nullptr);
  EXPECT_EQ(c->param("SIZE")->value, "42");
  EXPECT_TRUE(c->param("SIZE")->hasValue);
  ASSERT_NE(c->param("SMTPUTF8"), nullptr);
  EXPECT_FALSE(c->param("SMTPUTF8")->hasValue);
  EXPECT_EQ(c->param("SMTPUTF8")->wire(), "SMTPUTF8");
  EXPECT_EQ(c->param("X-Y")->wire(), "X-Y=Z");
  EXPECT_EQ(c->param("size"), nullptr) << "lookup is by the upper-cased keyword";
  EXPECT_EQ(c->param("BODY"), nullptr);
}

// ---- BDAT ----

TEST(SmtpParser, BdatChunk) {
  const struct {
    std::string line;
    std::uint64_t size;
    bool last;
  } good[] = {
      {"BDAT 1000", 1000, false}, {"BDAT 0 LAST", 0, true},
      {"bdat 5 last", 5, true},   {"BDAT 5  LAST", 5, true},
      {"BDAT 7 MORE", 7, false},  {"BDAT 9999999999999999999", 9999999999999999999ULL, false},
  };
  for (const auto& tc : good) {
    const ParseResult r = parseCommand(tc.line);
    const auto* c = std::get_if<Command>(&r);
    ASSERT_NE(c, nullptr) << escape(tc.line) << ": got " << describe(r);
    EXPECT_EQ(c->chunkSize, tc.size)
        << escape(tc.line) << ": got chunkSize " << c->chunkSize << ", want " << tc.size;
    EXPECT_EQ(c->lastChunk, tc.last)
        << escape(tc.line) << ": got lastChunk " << c->lastChunk << ", want " << tc.last;
  }
  for (const char* line :
       {"BDAT", "BDAT x", "BDAT -1", "BDAT +1", "BDAT 1x LAST", "BDAT 12345678901234567890"}) {
    expectError({line, 501, "5.5.4"});
  }
}

// ---- canonical lines ----

TEST(SmtpParser, CanonicalLinesRoundTrip) {
  const struct {
    std::string line;
    std::string want;
  } cases[] = {
      {"MAIL FROM:<a@b.example>", "MAIL FROM:<a@b.example>"},
      {"mail from: <a@b.example>  size=10  body=8bitmime",
       "MAIL FROM:<a@b.example> SIZE=10 BODY=8bitmime"},
      {"MAIL FROM:a@b.example", "MAIL FROM:<a@b.example>"},
      {"MAIL FROM:<>", "MAIL FROM:<>"},
      {"MAIL FROM:<@r1.example,@r2.example:a@b.example>", "MAIL FROM:<a@b.example>"},
      {"MAIL FROM:<\"x y\"@b.example> SMTPUTF8", "MAIL FROM:<\"x y\"@b.example> SMTPUTF8"},
      {"rcpt to:<c@d.example> notify=never", "RCPT TO:<c@d.example> NOTIFY=never"},
      {"RCPT TO:<postmaster>", "RCPT TO:<postmaster>"},
      {"RCPT TO:<u@[IPv6:2001:db8::1]>", "RCPT TO:<u@[IPv6:2001:db8::1]>"},
  };
  for (const auto& tc : cases) {
    const ParseResult r = parseCommand(tc.line);
    const auto* c = std::get_if<Command>(&r);
    ASSERT_NE(c, nullptr) << escape(tc.line) << ": " << describe(r);
    const std::string got = envelopeCommandLine(*c);
    EXPECT_EQ(got, tc.want) << escape(tc.line) << ": got " << escape(got) << ", want "
                            << escape(tc.want);
    // The canonical line re-parses to the same envelope.
    const ParseResult again = parseCommand(got);
    const auto* c2 = std::get_if<Command>(&again);
    ASSERT_NE(c2, nullptr) << escape(got) << ": got " << describe(again);
    EXPECT_EQ(c2->address, c->address);
    EXPECT_EQ(c2->nullPath, c->nullPath);
    EXPECT_EQ(paramsWire(*c2), paramsWire(*c));
  }
}

TEST(SmtpParser, RouteWithoutMailboxIsNotTheNullPath) {
  // RFC 5321 4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">". "<@a:>" has a route and no mailbox:
  // it is not "<>" and must not become the null sender.
  expectError({"MAIL FROM:<@a.example:>", 501, "5.1.7"});
  expectError({"RCPT TO:<@a.example:>", 501, "5.1.3"});
}

TEST(SmtpParser, UnbracketedAddressLiteralRoundTrips) {
  // Whatever the parser accepts, the canonical line we send upstream must mean the same thing.
  // dcontent (%d33-90 / %d94-126) admits '>' and '"', which break "<...>" when we add brackets.
  for (const char* line : {"MAIL FROM:a@[x>y]", "MAIL FROM:a@[\"]"}) {
    const ParseResult r = parseCommand(line);
    const auto* c = std::get_if<Command>(&r);
    if (c == nullptr) continue;  // rejecting it is fine too
    const std::string canon = envelopeCommandLine(*c);
    const ParseResult again = parseCommand(canon);
    const auto* c2 = std::get_if<Command>(&again);
    ASSERT_NE(c2, nullptr) << escape(line) << " -> " << escape(canon) << ": got " << describe(again)
                           << ", want the same address";
    EXPECT_EQ(c2->address, c->address);
  }
}

// ---- scanLine ----

TEST(ScanLine, Table) {
  using S = LineScan::Status;
  const struct {
    std::string name;
    std::string input;
    std::size_t max;
    S status;
    std::string line;
    std::size_t consumed;
  } cases[] = {
      {"CRLF line", "NOOP\r\n", 512, S::kLine, "NOOP", 6},
      {"first of two", "NOOP\r\nQUIT\r\n", 512, S::kLine, "NOOP", 6},
      {"empty line", "\r\n", 512, S::kLine, "", 2},
      {"bare LF", "NOOP\n", 512, S::kBareLf, "NOOP", 5},
      {"bare LF empty", "\n", 512, S::kBareLf, "", 1},
      {"bare LF before CRLF", "A\nB\r\n", 512, S::kBareLf, "A", 2},
      {"need more", "NOOP", 512, S::kNeedMore, "", 0},
      {"need more after CR", "NOOP\r", 512, S::kNeedMore, "", 0},
      {"CR alone is not a line end", "NO\rOP", 512, S::kNeedMore, "", 0},
      {"CR CR LF keeps the CR", "A\r\r\n", 512, S::kLine, "A\r", 4},
      {"nothing", "", 512, S::kNeedMore, "", 0},
      {"510 + CRLF", repeat('x', 510) + "\r\n", 512, S::kLine, repeat('x', 510), 512},
      {"511 + LF", repeat('x', 511) + "\n", 512, S::kBareLf, repeat('x', 511), 512},
      {"511 + CRLF", repeat('x', 511) + "\r\n", 512, S::kTooLong, "", 0},
      {"511 unterminated", repeat('x', 511), 512, S::kNeedMore, "", 0},
      {"511 + CR", repeat('x', 511) + "\r", 512, S::kTooLong, "", 0},
      {"512 unterminated", repeat('x', 512), 512, S::kTooLong, "", 0},
      {"600 unterminated", repeat('x', 600), 512, S::kTooLong, "", 0},
      {"custom limit at", "ab\r\n", 4, S::kLine, "ab", 4},
      {"custom limit over", "abc\r\n", 4, S::kTooLong, "", 0},
      {"custom limit need more", "abc", 4, S::kNeedMore, "", 0},
  };
  auto name = [](S s) {
    switch (s) {
      case S::kNeedMore:
        return "need-more";
      case S::kLine:
        return "line";
      case S::kBareLf:
        return "bare-lf";
      case S::kTooLong:
        return "too-long";
    }
    return "?";
  };
  for (const auto& tc : cases) {
    const LineScan r = scanLine(tc.input, tc.max);
    EXPECT_EQ(r.status, tc.status)
        << tc.name << ": got " << name(r.status) << ", want " << name(tc.status);
    if (tc.status == S::kLine || tc.status == S::kBareLf) {
      EXPECT_EQ(r.line, tc.line) << tc.name << ": got " << escape(r.line) << ", want "
                                 << escape(tc.line);
      EXPECT_EQ(r.consumed, tc.consumed)
          << tc.name << ": got consumed " << r.consumed << ", want " << tc.consumed;
    }
  }
  EXPECT_EQ(scanLine(repeat('x', 512)).status, LineScan::Status::kTooLong)
      << "the default limit is kMaxCommandLine";
}

TEST(ScanLine, ALineWithACrInsideIsRejectedByTheParser) {
  const LineScan s = scanLine("NOOP a\rb\r\n");
  ASSERT_EQ(s.status, LineScan::Status::kLine);
  expectError({std::string(s.line), 500, "5.5.2"});
}

}  // namespace
}  // namespace portcullis
