// header_util: header names, sanitised values, folding at 78 columns, and no way for outside
// text (DNSBL TXT, scanner output) to inject a line break or a new header (DESIGN invariant 6).

#include "proxy/base/header_util.h"

#include <gtest/gtest.h>

#include "tests/support/test_text.h"

#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis {
namespace {

using testing::escape;

// Splits a formatted header into its physical lines; fails the test on a bare CR or LF or a
// missing final CRLF.
std::vector<std::string> physicalLines(const std::string& h) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < h.size()) {
    const auto eol = h.find("\r\n", pos);
    if (eol == std::string::npos) {
      ADD_FAILURE() << escape(h) << ": does not end with CRLF";
      break;
    }
    const std::string line = h.substr(pos, eol - pos);
    EXPECT_EQ(line.find_first_of("\r\n"), std::string::npos)
        << escape(h) << ": bare CR or LF inside a line";
    lines.push_back(line);
    pos = eol + 2;
  }
  return lines;
}

// The invariants of one formatted header: exactly one field (every line after the first starts
// with whitespace), CRLF endings only, no control characters.
void expectOneField(const std::string& name, const std::string& h) {
  const auto lines = physicalLines(h);
  ASSERT_FALSE(lines.empty()) << escape(h);
  EXPECT_EQ(lines[0].rfind(name + ":", 0), 0u) << escape(h) << ": must start with " << name;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    ASSERT_FALSE(lines[i].empty()) << escape(h) << ": an empty line would end the header block";
    EXPECT_TRUE(lines[i][0] == ' ' || lines[i][0] == '\t')
        << escape(h) << ": line " << i << " " << escape(lines[i]) << " starts a new header field";
  }
  for (const char ch : h) {
    const auto c = static_cast<unsigned char>(ch);
    EXPECT_FALSE((c < 0x20 && c != '\r' && c != '\n') || c == 0x7f)
        << escape(h) << ": control character";
  }
}

TEST(HeaderUtil, ValidHeaderName) {
  const struct {
    std::string name;
    bool want;
  } cases[] = {
      {"X-Spam-Status", true},
      {"Received", true},
      {"X", true},
      {"x!#$%&'*+-.^_`|~", true},
      {std::string(76, 'h'), true},
      {std::string(77, 'h'), false},
      {"", false},
      {"X Spam", false},
      {"X:Spam", false},
      {"X-Spam:", false},
      {"X-\tSpam", false},
      {"X-\r\nBcc", false},
      {"X-\x7f", false},
      {"X-\xc3\xa9", false},
      {std::string("X\0Y", 3), false},
  };
  for (const auto& tc : cases) {
    EXPECT_EQ(validHeaderName(tc.name), tc.want)
        << escape(tc.name) << ": got " << !tc.want << ", want " << tc.want;
    EXPECT_EQ(formatHeader(tc.name, "v").has_value(), tc.want)
        << escape(tc.name) << ": formatHeader must refuse exactly the invalid names";
  }
}

TEST(HeaderUtil, Format) {
  const struct {
    std::string name;
    std::string value;
    std::string want;
  } cases[] = {
      {"X-Spam-Flag", "YES", "X-Spam-Flag: YES\r\n"},
      {"X-Empty", "", "X-Empty:\r\n"},
      {"X-Spaces", "  a   b\t\tc  ", "X-Spaces: a b c\r\n"},
      {"X-Ctl",
       "a\x01"
       "b\x7f"
       "c",
       "X-Ctl: abc\r\n"},
      {"X-Utf8", "caf\xc3\xa9", "X-Utf8: caf\xc3\xa9\r\n"},
      {"X-Fold",
       "aaaaaaaaaa bbbbbbbbbb cccccccccc dddddddddd eeeeeeeeee ffffffffff gggggggggg "
       "hhhhhhhhhh",
       "X-Fold: aaaaaaaaaa bbbbbbbbbb cccccccccc dddddddddd eeeeeeeeee ffffffffff\r\n"
       " gggggggggg hhhhhhhhhh\r\n"},
  };
  for (const auto& tc : cases) {
    const auto got = formatHeader(tc.name, tc.value);
    ASSERT_TRUE(got) << tc.name;
    EXPECT_EQ(*got, tc.want) << tc.name << ": got " << escape(*got) << ", want " << escape(tc.want);
  }
  const auto capped = formatHeader("X-Cap", std::string(100, 'v'), 10);
  ASSERT_TRUE(capped);
  EXPECT_EQ(*capped, "X-Cap: vvvvvvvvvv\r\n");
}

TEST(HeaderUtil, FoldsAt78) {
  std::string value;
  for (int i = 0; i < 60; ++i) value += "word" + std::to_string(i) + " ";
  const auto h = formatHeader("X-Long-Header", value);
  ASSERT_TRUE(h);
  expectOneField("X-Long-Header", *h);
  const auto lines = physicalLines(*h);
  EXPECT_GT(lines.size(), 3u);
  for (const auto& l : lines) {
    EXPECT_LE(l.size(), 78u) << escape(l) << ": over 78 octets (RFC 5322 2.1.1)";
  }
  // Unfolding (RFC 5322 2.2.3: remove the CRLFs) gives back the sanitised value.
  std::string unfolded;
  for (const auto& l : lines) unfolded += l;
  EXPECT_EQ(unfolded, "X-Long-Header: " + value.substr(0, value.size() - 1));

  // A single word longer than a line cannot be folded, and is not broken either.
  const auto word = formatHeader("X-Token", std::string(120, 't'));
  ASSERT_TRUE(word);
  EXPECT_EQ(*word, "X-Token: " + std::string(120, 't') + "\r\n");
}

TEST(HeaderUtil, LineBreakInjectionIsNeutralised) {
  const std::string attacks[] = {
      "listed\r\nBcc: victim@example.com",
      "listed\nBcc: victim@example.com",
      "listed\rBcc: victim@example.com",
      "listed\r\n\r\n<html>body injection",
      "\r\nX-Injected: 1",
      "a\r\n\tcontinued\r\nX-Injected: 2",
      "a\n\nb",
      "a\r\r\n\n\rb",
      std::string("nul\0X-Injected: 3", 17),
  };
  for (const auto& v : attacks) {
    const auto h = formatHeader("X-DNSBL", v);
    ASSERT_TRUE(h) << escape(v);
    expectOneField("X-DNSBL", *h);
    EXPECT_EQ(h->find("\nX-Injected"), std::string::npos) << escape(*h);
    EXPECT_EQ(h->find("\nBcc"), std::string::npos) << escape(*h);
  }
  // Random values full of line breaks, controls and long words keep every invariant.
  std::mt19937 rng(2822);
  const std::string alphabet = "\r\n\t \x01\x7f:abcXYZ-\xc3\xa9";
  for (int iter = 0; iter < 2000; ++iter) {
    std::string v;
    const int n = static_cast<int>(rng() % 300);
    for (int i = 0; i < n; ++i) v.push_back(alphabet[rng() % alphabet.size()]);
    const auto h = formatHeader("X-Random", v);
    ASSERT_TRUE(h);
    expectOneField("X-Random", *h);
    if (HasFailure()) {
      ADD_FAILURE() << "value " << escape(v);
      return;
    }
  }
}

}  // namespace
}  // namespace portcullis
