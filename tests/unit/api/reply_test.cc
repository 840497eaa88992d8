// Reply: strict make(), the forgiving transient/permanent/positive constructors, parseNegative,
// the wire form, withCode, isEnhancedStatusCode and sanitizeText (DESIGN invariant 6).

#include "portcullis/reply.h"

#include <gtest/gtest.h>

#include "tests/support/test_text.h"

#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis {
namespace {

using testing::escape;

// True when `s` is well-formed UTF-8 (RFC 3629): no stray continuation bytes, no truncated or
// overlong sequences, nothing above U+10FFFF, no surrogates.
bool validUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// ---- make ----

TEST(Reply, MakeValidatesCodeEnhancedAndText) {
  const struct {
    std::string name;
    int code;
    std::string enhanced;
    std::vector<std::string> lines;
    bool ok;
  } cases[] = {
      {"250 no enhanced", 250, "", {"Ok"}, true},
      {"250 2.0.0", 250, "2.0.0", {"Ok"}, true},
      {"200 lowest", 200, "", {"x"}, true},
      {"559 highest", 559, "5.0.0", {"x"}, true},
      {"354 intermediate", 354, "", {"go ahead"}, true},
      {"421 4.3.2", 421, "4.3.2", {"bye"}, true},
      {"554 5.7.1 multi", 554, "5.7.1", {"a", "b", "c"}, true},
      {"empty lines become one empty line", 250, "", {}, true},
      {"UTF-8 text", 550, "5.1.1", {"Benutzer unbekannt: M\xc3\xbcller"}, true},
      {"199: first digit 1", 199, "", {"x"}, false},
      {"100", 100, "", {"x"}, false},
      {"600", 600, "", {"x"}, false},
      {"999", 999, "", {"x"}, false},
      {"099", 99, "", {"x"}, false},
      {"0", 0, "", {"x"}, false},
      {"-250", -250, "", {"x"}, false},
      {"260: second digit 6", 260, "", {"x"}, false},
      {"471: second digit 7", 471, "", {"x"}, false},
      {"590: second digit 9", 590, "", {"x"}, false},
      {"550 with class-4 enhanced", 550, "4.7.1", {"x"}, false},
      {"450 with class-5 enhanced", 450, "5.7.1", {"x"}, false},
      {"250 with class-5 enhanced", 250, "5.0.0", {"x"}, false},
      {"354 with enhanced", 354, "3.0.0", {"x"}, false},
      {"malformed enhanced", 550, "5.7", {"x"}, false},
      {"enhanced with text", 550, "5.7.1 x", {"x"}, false},
      {"CR in text", 550, "5.7.1", {"a\rb"}, false},
      {"LF in text", 550, "5.7.1", {"a\nb"}, false},
      {"CRLF injection", 250, "", {"ok\r\n250 fake"}, false},
      {"NUL in text", 550, "", {std::string("a\0b", 3)}, false},
      {"tab in text", 550, "", {"a\tb"}, false},
      {"DEL in text", 550, "", {"a\x7f"}, false},
      {"control in second line", 250, "", {"ok", "bad\x01"}, false},
      // 512 = "550-" + "5.7.1 " + text + CRLF: 500 octets of text fit, 501 do not.
      {"text 500 fits", 550, "5.7.1", {std::string(500, 't')}, true},
      {"text 501 too long", 550, "5.7.1", {std::string(501, 't')}, false},
      {"no enhanced code: text 506 fits", 550, "", {std::string(506, 't')}, true},
      {"no enhanced code: text 507 too long", 550, "", {std::string(507, 't')}, false},
      {"64 lines", 250, "", std::vector<std::string>(64, "l"), true},
      {"65 lines", 250, "", std::vector<std::string>(65, "l"), false},
  };
  for (const auto& tc : cases) {
    const auto r = Reply::make(tc.code, tc.enhanced, tc.lines);
    EXPECT_EQ(r.has_value(), tc.ok)
        << tc.name << ": got " << (r ? "a reply " + r->summary() : std::string("nullopt"))
        << ", want " << (tc.ok ? "a reply" : "nullopt");
    if (r) {
      EXPECT_EQ(r->code(), tc.code);
      EXPECT_EQ(r->enhanced(), tc.enhanced);
      EXPECT_EQ(r->lines().size(), std::max<std::size_t>(1, tc.lines.size()));
    }
  }
}

TEST(Reply, Predicates) {
  const struct {
    int code;
    bool positive, transient, permanent, closes;
  } cases[] = {
      {220, true, false, false, false}, {250, true, false, false, false},
      {354, true, false, false, false}, {421, false, true, false, true},
      {450, false, true, false, false}, {451, false, true, false, false},
      {550, false, false, true, false}, {554, false, false, true, false},
  };
  for (const auto& tc : cases) {
    const Reply r = *Reply::make(tc.code, "", {"x"});
    EXPECT_EQ(r.isPositive(), tc.positive) << tc.code;
    EXPECT_EQ(r.isTransient(), tc.transient) << tc.code;
    EXPECT_EQ(r.isPermanent(), tc.permanent) << tc.code;
    EXPECT_EQ(r.isNegative(), tc.transient || tc.permanent) << tc.code;
    EXPECT_EQ(r.closesConnection(), tc.closes) << tc.code << ": only 421 closes (RFC 5321 3.8)";
  }
}

// ---- isEnhancedStatusCode ----

TEST(Reply, EnhancedStatusCodeSyntax) {
  const struct {
    std::string in;
    bool want;
  } cases[] = {
      {"2.0.0", true},     {"4.4.2", true},     {"5.7.1", true},     {"5.1.10", true},
      {"5.999.999", true}, {"4.10.100", true},  {"3.0.0", false},    {"1.0.0", false},
      {"6.0.0", false},    {"5.1000.1", false}, {"5.1.1000", false}, {"5.01.1", false},
      {"5.1.01", false},   {"5.7", false},      {"5..1", false},     {"5.7.", false},
      {".7.1", false},     {"5.7.1 ", false},   {" 5.7.1", false},   {"5.7.1a", false},
      {"x.7.1", false},    {"5-7-1", false},    {"", false},         {"5.7.1.1", false},
      {"5.a.1", false},    {"55.7.1", false},
  };
  for (const auto& tc : cases) {
    EXPECT_EQ(isEnhancedStatusCode(tc.in), tc.want)
        << escape(tc.in) << ": got " << !tc.want << ", want " << tc.want;
  }
}

// ---- forgiving constructors ----

TEST(Reply, ForgivingConstructorsCoerce) {
  enum class Ctor { kTransient, kPermanent, kPositive };
  const struct {
    std::string name;
    Ctor ctor;
    int code;
    std::string enhanced;
    std::string text;
    int wantCode;
    std::string wantEnhanced;
    std::string wantText;
  } cases[] = {
      {"transient as given", Ctor::kTransient, 452, "4.5.3", "Too many recipients", 452, "4.5.3",
       "Too many recipients"},
      {"transient 421 kept", Ctor::kTransient, 421, "4.7.0", "bye", 421, "4.7.0", "bye"},
      {"transient given 550", Ctor::kTransient, 550, "5.7.1", "x", 451, "4.0.0", "x"},
      {"transient given 250", Ctor::kTransient, 250, "2.0.0", "x", 451, "4.0.0", "x"},
      {"transient given 460", Ctor::kTransient, 460, "4.0.0", "x", 451, "4.0.0", "x"},
      {"transient given 999", Ctor::kTransient, 999, "", "x", 451, "4.0.0", "x"},
      {"transient class mismatch", Ctor::kTransient, 450, "5.7.1", "x", 450, "4.0.0", "x"},
      {"transient malformed enhanced", Ctor::kTransient, 450, "4.7", "x", 450, "4.0.0", "x"},
      {"transient no enhanced", Ctor::kTransient, 450, "", "x", 450, "4.0.0", "x"},
      {"transient empty text", Ctor::kTransient, 451, "4.3.0", "", 451, "4.3.0", "Try again later"},
      {"transient control-only text", Ctor::kTransient, 451, "4.3.0", "\r\n\x01", 451, "4.3.0",
       "Try again later"},
      {"permanent as given", Ctor::kPermanent, 554, "5.7.1", "Service unavailable", 554, "5.7.1",
       "Service unavailable"},
      {"permanent given 450", Ctor::kPermanent, 450, "4.7.1", "x", 550, "5.0.0", "x"},
      {"permanent given 199", Ctor::kPermanent, 199, "", "x", 550, "5.0.0", "x"},
      {"permanent given 570", Ctor::kPermanent, 570, "5.7.1", "x", 550, "5.7.1", "x"},
      {"permanent empty text", Ctor::kPermanent, 550, "5.7.1", "", 550, "5.7.1", "Rejected"},
      {"permanent sanitises CRLF", Ctor::kPermanent, 550, "5.7.1", "listed\r\n250 ok", 550, "5.7.1",
       "listed 250 ok"},
      {"permanent sanitises controls", Ctor::kPermanent, 550, "5.7.1",
       "a\x01\x7f"
       "b\tc",
       550, "5.7.1", "ab c"},
      {"positive 250", Ctor::kPositive, 250, "2.1.0", "Ok", 250, "2.1.0", "Ok"},
      {"positive 221", Ctor::kPositive, 221, "2.0.0", "Bye", 221, "2.0.0", "Bye"},
      {"positive 354 has no enhanced", Ctor::kPositive, 354, "2.0.0", "End data", 354, "",
       "End data"},
      {"positive given 550", Ctor::kPositive, 550, "5.0.0", "x", 250, "2.0.0", "x"},
      {"positive given 199", Ctor::kPositive, 199, "", "x", 250, "2.0.0", "x"},
      {"positive empty text", Ctor::kPositive, 250, "2.0.0", "", 250, "2.0.0", "Ok"},
  };
  for (const auto& tc : cases) {
    const Reply r = tc.ctor == Ctor::kTransient   ? Reply::transient(tc.code, tc.enhanced, tc.text)
                    : tc.ctor == Ctor::kPermanent ? Reply::permanent(tc.code, tc.enhanced, tc.text)
                                                  : Reply::positive(tc.code, tc.enhanced, tc.text);
    const std::string want = std::to_string(tc.wantCode) +
                             (tc.wantEnhanced.empty() ? "" : " " + tc.wantEnhanced) + " " +
                             tc.wantText;
    EXPECT_EQ(r.code(), tc.wantCode) << tc.name << ": got " << r.summary() << ", want " << want;
    EXPECT_EQ(r.enhanced(), tc.wantEnhanced)
        << tc.name << ": got " << r.summary() << ", want " << want;
    EXPECT_EQ(r.text(), tc.wantText) << tc.name << ": got " << r.summary() << ", want " << want;
  }
}

TEST(Reply, ForgivingConstructorsTruncateLongText) {
  const Reply r = Reply::permanent(550, "5.7.1", std::string(5000, 'x'));
  EXPECT_LE(r.wire().size(), Reply::kMaxLineLength)
      << "got a wire line of " << r.wire().size() << " octets, want <= 512";
  EXPECT_GT(r.text().size(), 400u) << "truncated, not dropped";
}

TEST(Reply, PositiveNeverFailsOnAnIllegalSuccessCode) {
  // The contract: the forgiving constructors never fail. 260 and 399 are in 2xx/3xx but are
  // not legal codes (second digit > 5).
  for (const int code : {260, 299, 399, 370}) {
    const Reply r = Reply::positive(code, "", "x");
    EXPECT_EQ(r.code(), 250) << "positive(" << code << "): got " << r.summary() << ", want 250";
  }
}

// ---- parseNegative ----

TEST(Reply, ParseNegative) {
  const struct {
    std::string in;
    bool ok;
    int code;
    std::string enhanced;
    std::string text;
  } cases[] = {
      {"550 5.7.1 Message content rejected", true, 550, "5.7.1", "Message content rejected"},
      {"451 4.7.1 Try again", true, 451, "4.7.1", "Try again"},
      {"554 Go away", true, 554, "", "Go away"},
      {"421 4.3.2", true, 421, "4.3.2", ""},
      {"550", true, 550, "", ""},
      {"550   5.7.1 spaced", true, 550, "5.7.1", "spaced"},
      {"550 5.7.1 caf\xc3\xa9", true, 550, "5.7.1", "caf\xc3\xa9"},
      {"250 Ok", false, 0, "", ""},
      {"354 go", false, 0, "", ""},
      {"199 x", false, 0, "", ""},
      {"600 x", false, 0, "", ""},
      {"460 x", false, 0, "", ""},
      {"-50 x", false, 0, "", ""},
      {"55", false, 0, "", ""},
      {"", false, 0, "", ""},
      {"5x0 x", false, 0, "", ""},
      {"550-5.7.1 continuation", false, 0, "", ""},
      {"550x", false, 0, "", ""},
      {"550 4.7.1 class mismatch", false, 0, "", ""},
      {"450 5.7.1 class mismatch", false, 0, "", ""},
      {"550 5.7.1 a\r\nb", false, 0, "", ""},
      {"550 5.7.1 a\x01", false, 0, "", ""},
      {"550 5.7.1 " + std::string(600, 'x'), false, 0, "", ""},
  };
  for (const auto& tc : cases) {
    const auto r = Reply::parseNegative(tc.in);
    ASSERT_EQ(r.has_value(), tc.ok)
        << escape(tc.in) << ": got " << (r ? r->summary() : std::string("nullopt")) << ", want "
        << (tc.ok ? "a reply" : "nullopt");
    if (!r) continue;
    EXPECT_EQ(r->code(), tc.code) << escape(tc.in) << ": got " << r->summary();
    EXPECT_EQ(r->enhanced(), tc.enhanced) << escape(tc.in) << ": got " << r->summary();
    EXPECT_EQ(r->text(), tc.text) << escape(tc.in) << ": got " << r->summary();
  }
}

// ---- wire / summary / withCode ----

TEST(Reply, Wire) {
  const struct {
    std::string name;
    int code;
    std::string enhanced;
    std::vector<std::string> lines;
    std::string want;
  } cases[] = {
      {"one line", 250, "", {"Ok"}, "250 Ok\r\n"},
      {"one line enhanced", 550, "5.7.1", {"No"}, "550 5.7.1 No\r\n"},
      {"empty text", 250, "", {""}, "250 \r\n"},
      {"empty text enhanced", 250, "2.0.0", {""}, "250 2.0.0\r\n"},
      {"multi-line",
       250,
       "",
       {"mx.example", "PIPELINING", "SIZE 100"},
       "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n"},
      // RFC 2034 3: the enhanced code is repeated on every line.
      {"multi-line enhanced",
       554,
       "5.7.1",
       {"Rejected", "see https://example/x"},
       "554-5.7.1 Rejected\r\n554 5.7.1 see https://example/x\r\n"},
      {"multi-line enhanced empty middle",
       451,
       "4.3.0",
       {"a", "", "c"},
       "451-4.3.0 a\r\n451-4.3.0\r\n451 4.3.0 c\r\n"},
  };
  for (const auto& tc : cases) {
    const Reply r = *Reply::make(tc.code, tc.enhanced, tc.lines);
    EXPECT_EQ(r.wire(), tc.want) << tc.name << ": got " << escape(r.wire()) << ", want "
                                 << escape(tc.want);
  }
  EXPECT_EQ(Reply::make(554, "5.7.1", {"a", "b"})->summary(), "554 5.7.1 a | b");
  EXPECT_EQ(Reply::make(250, "", {"Ok"})->summary(), "250 Ok");
}

TEST(Reply, WithCode) {
  const Reply base = *Reply::make(554, "5.7.1", {"listed"});
  const struct {
    int to;
    int want;
  } cases[] = {{550, 550}, {552, 552}, {554, 554}, {451, 554}, {250, 554}, {560, 554}, {0, 554}};
  for (const auto& tc : cases) {
    const Reply r = base.withCode(tc.to);
    EXPECT_EQ(r.code(), tc.want) << "withCode(" << tc.to << "): got " << r.code() << ", want "
                                 << tc.want << " (same class only)";
    EXPECT_EQ(r.enhanced(), "5.7.1");
    EXPECT_EQ(r.text(), "listed");
  }
}

// ---- sanitizeText ----

TEST(SanitizeText, Table) {
  const struct {
    std::string in;
    std::size_t max;
    std::string want;
  } cases[] = {
      {"plain text", 100, "plain text"},
      {"  leading and trailing  ", 100, "leading and trailing"},
      {"a\r\nb", 100, "a b"},
      {"a\r\n250 injected", 100, "a 250 injected"},
      {"a \t\r\n b", 100, "a b"},
      {std::string("a\0b", 3), 100, "ab"},
      {"a\x01\x02\x1f\x7f"
       "b",
       100, "ab"},
      {"\x1b[31mred\x1b[0m", 100, "[31mred[0m"},
      {"caf\xc3\xa9", 100, "caf\xc3\xa9"},
      {"", 100, ""},
      {"abc", 0, ""},
      {"abcdef", 3, "abc"},
      {"ab cd", 3, "ab"},
      {"ab cd", 4, "ab c"},
      {"ab    cd", 5, "ab cd"},
      // Truncation never leaves half a UTF-8 sequence.
      {"a\xc3\xa9", 2, "a"},
      {"a\xc3\xa9", 3, "a\xc3\xa9"},
      {"\xe2\x82\xac\xe2\x82\xac", 5, "\xe2\x82\xac"},
      {"\xe2\x82\xac\xe2\x82\xac", 4, "\xe2\x82\xac"},
      {"\xe2\x82\xac", 2, ""},
      {"\xf0\x9f\x98\x80", 3, ""},
      {"x\xf0\x9f\x98\x80", 4, "x"},
      {"x\xf0\x9f\x98\x80", 5, "x\xf0\x9f\x98\x80"},
  };
  for (const auto& tc : cases) {
    const std::string got = sanitizeText(tc.in, tc.max);
    EXPECT_EQ(got, tc.want) << escape(tc.in) << " max " << tc.max << ": got " << escape(got)
                            << ", want " << escape(tc.want);
  }
}

TEST(SanitizeText, RandomInputNeverLeavesControlsOrHalfSequences) {
  // Random mixes of ASCII, controls and well-formed UTF-8: for every max, the output is at most
  // max octets, has no control characters, no whitespace at either end, and is valid UTF-8.
  std::mt19937 rng(20240611);
  const std::vector<std::string> atoms = {"a",
                                          "Z",
                                          " ",
                                          "\t",
                                          "\r\n",
                                          "\n",
                                          "\x01",
                                          "\x7f",
                                          std::string(1, '\0'),
                                          "\xc3\xa9",
                                          "\xe2\x82\xac",
                                          "\xf0\x9f\x98\x80",
                                          "~",
                                          "."};
  for (int iter = 0; iter < 2000; ++iter) {
    std::string in;
    const int n = static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) in += atoms[rng() % atoms.size()];
    for (std::size_t max = 0; max <= in.size() + 1; ++max) {
      const std::string got = sanitizeText(in, max);
      ASSERT_LE(got.size(), max) << escape(in) << " max " << max << ": got " << escape(got);
      ASSERT_TRUE(validUtf8(got)) << escape(in) << " max " << max << ": got " << escape(got)
                                  << ", want valid UTF-8";
      for (const char ch : got) {
        const auto c = static_cast<unsigned char>(ch);
        ASSERT_TRUE(c >= 0x20 && c != 0x7f)
            << escape(in) << " max " << max << ": got " << escape(got) << ", want no controls";
      }
      if (!got.empty()) {
        ASSERT_NE(got.front(), ' ') << escape(in) << ": got " << escape(got);
      }
    }
  }
}

TEST(SanitizeText, NoTrailingSpaceWhenATruncatedSequenceIsDropped) {
  // sanitizeText never ends on a space it added (reply.cc: "if (out.size() + 1 >= max) break"),
  // except when the UTF-8 clean-up removes the half character that followed the space.
  const std::string got = sanitizeText("ab \xc3\xa9", 4);
  EXPECT_EQ(got, "ab") << "got " << escape(got);
}

TEST(SanitizeText, DropsBytesThatAreNotUtf8) {
  // The contract (reply.h): anything outside printable ASCII / UTF-8 is replaced with nothing.
  const struct {
    std::string in;
    std::string want;
  } cases[] = {
      {"a\xff"
       "b",
       "ab"},
      {"a\xfe"
       "b",
       "ab"},
      {"a\x80"
       "b",
       "ab"},
      {"a\xc3"
       "b",
       "ab"},
      {"\xc3\xa9\xa9x", "\xc3\xa9x"},
  };
  for (const auto& tc : cases) {
    const std::string got = sanitizeText(tc.in, 100);
    EXPECT_EQ(got, tc.want) << escape(tc.in) << ": got " << escape(got) << ", want "
                            << escape(tc.want);
    EXPECT_TRUE(validUtf8(got)) << escape(got);
  }
}

}  // namespace
}  // namespace portcullis
