// parseHeaderBlock: unfolding, where the block ends (the way Postfix's is_header() decides),
// every header seen whatever the block's size, one header's value capped for matching, and the
// two refusals (a leading continuation line; a block over its limits). Also from a spilled
// spool, and split across read chunks.

#include "proxy/smtp/header_block.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "proxy/smtp/spool.h"

namespace portcullis {
namespace {

class StringReader final : public MessageReader {
 public:
  explicit StringReader(std::string s, std::size_t maxRead = SIZE_MAX)
      : s_(std::move(s)), maxRead_(maxRead) {}
  std::uint64_t size() const override { return s_.size(); }
  std::size_t read(std::uint64_t offset, char* buf, std::size_t n) const override {
    if (offset >= s_.size()) return 0;
    const std::size_t count = std::min({n, maxRead_, s_.size() - offset});
    std::memcpy(buf, s_.data() + offset, count);
    return count;
  }

 private:
  std::string s_;
  std::size_t maxRead_;
};

using Status = HeaderBlock::Status;

const char* statusName(Status s) {
  switch (s) {
    case Status::kOk:
      return "ok";
    case Status::kLeadingContinuation:
      return "leading-continuation";
    case Status::kTooLarge:
      return "too-large";
  }
  return "?";
}

std::string show(const std::vector<HeaderField>& h) {
  std::string out;
  for (const auto& f : h) {
    out += (out.empty() ? "" : ", ") + f.name + "=\"" +
           (f.value.size() > 40 ? f.value.substr(0, 37) + "..." : f.value) + "\"";
  }
  return "[" + out + "]";
}

TEST(HeaderBlock, Table) {
  const struct {
    std::string name;
    std::string message;
    Status status;
    std::vector<HeaderField> want;
    std::size_t bytes;
  } cases[] = {
      {"simple",
       "From: a@b.example\r\nSubject: hi\r\n\r\nbody\r\nX-Not: header\r\n",
       Status::kOk,
       {{"From", "a@b.example"}, {"Subject", "hi"}},
       32},
      {"folded (RFC 5322 2.2.3 unfolding keeps the whitespace)",
       "Subject: a\r\n b\r\n\tc\r\nTo: x\r\n\r\n",
       Status::kOk,
       {{"Subject", "a b\tc"}, {"To", "x"}},
       27},
      {"folded Received",
       "Received: from a\r\n\tby b\r\n\tfor c;\r\n date\r\n\r\n",
       Status::kOk,
       {{"Received", "from a\tby b\tfor c; date"}},
       41},
      {"no blank line, body right after",
       "From: a\r\nThis is the body\r\nX: y\r\n",
       Status::kOk,
       {{"From", "a"}},
       9},
      {"no body at all", "From: a\r\nTo: b\r\n", Status::kOk, {{"From", "a"}, {"To", "b"}}, 16},
      {"last line without CRLF still counts",
       "From: a\r\nTo: b",
       Status::kOk,
       {{"From", "a"}, {"To", "b"}},
       14},
      {"empty message", "", Status::kOk, {}, 0},
      {"empty header block", "\r\nbody\r\n", Status::kOk, {}, 0},
      {"spaces before the colon (obs-syntax)",
       "Subject :   x y  \r\n\r\n",
       Status::kOk,
       {{"Subject", "x y  "}},
       19},
      {"empty value",
       "X-Empty:\r\nX-Next: 1\r\n\r\n",
       Status::kOk,
       {{"X-Empty", ""}, {"X-Next", "1"}},
       21},
      {"colon in the value", "X: a: b\r\n\r\n", Status::kOk, {{"X", "a: b"}}, 9},
      {"colon first: the body", ":x\r\nX: y\r\n\r\n", Status::kOk, {}, 0},
      {"space inside a name: the body (as Postfix reads it)",
       "A: 1\r\nSub ject: x\r\nB: 2\r\n\r\n",
       Status::kOk,
       {{"A", "1"}},
       6},
      {"control character in a name: the body", "A\x01: x\r\nB: 2\r\n\r\n", Status::kOk, {}, 0},
      {"8-bit name: the body", "\xc3\xa9: x\r\n\r\n", Status::kOk, {}, 0},
      {"LF-only lines", "From: a\nTo: b\n\nbody\n", Status::kOk, {{"From", "a"}, {"To", "b"}}, 14},
      {"empty header block, LF only (fuzzer find: the block length underflowed)",
       "\nX: y\n",
       Status::kOk,
       {},
       0},
      {"a lone CR at the start of a line ends the block there",
       "A: 1\r\n\rB: 2\r\n\r\n",
       Status::kOk,
       {{"A", "1"}},
       6},
      {"8-bit value is kept", "X: caf\xc3\xa9\r\n\r\n", Status::kOk, {{"X", "caf\xc3\xa9"}}, 10},
      // RFC 5322 2.2.3: a continuation needs a field before it. The MTA would fold it into the
      // header in front of the message (our trace header, or its own).
      {"leading continuation (space)",
       " x\r\nSubject: y\r\n\r\n",
       Status::kLeadingContinuation,
       {},
       1},
      {"leading continuation (tab)", "\tx\r\n\r\n", Status::kLeadingContinuation, {}, 1},
      {"a line of only whitespace first",
       " \r\nSubject: y\r\n\r\n",
       Status::kLeadingContinuation,
       {},
       1},
  };
  for (const auto& tc : cases) {
    for (const std::size_t chunk : {SIZE_MAX, std::size_t{1}, std::size_t{3}}) {
      const StringReader r(tc.message, chunk);
      const HeaderBlock got = parseHeaderBlock(r, {});
      EXPECT_EQ(got.status, tc.status)
          << tc.name << " (chunk " << chunk << "): got " << statusName(got.status) << ", want "
          << statusName(tc.status);
      if (tc.status != Status::kOk) continue;
      EXPECT_EQ(got.fields, tc.want) << tc.name << " (chunk " << chunk << "): got "
                                     << show(got.fields) << ", want " << show(tc.want);
      EXPECT_EQ(got.bytes, tc.bytes) << tc.name << ": header block octets";
    }
  }
}

// The first bypass: 270 KiB of padding headers in front of the header that matters.
TEST(HeaderBlock, EveryHeaderIsSeenBehindLargePadding) {
  std::string msg;
  while (msg.size() < 270 * 1024) msg += "X-Padding: " + std::string(900, 'p') + "\r\n";
  msg += "Subject: buy viagra\r\n\r\nbody\r\n";
  const HeaderBlock got = parseHeaderBlock(StringReader(msg), {});
  ASSERT_EQ(got.status, Status::kOk);
  ASSERT_FALSE(got.fields.empty());
  EXPECT_EQ(got.fields.back(), (HeaderField{"Subject", "buy viagra"}));
  EXPECT_EQ(got.truncated, 0u);
}

// The second: the header that matters followed by 300 KB on the same line. It is kept up to
// kMaxHeaderValue (Postfix's header_size_limit), so its start is still matched.
TEST(HeaderBlock, AnOverlongHeaderIsTruncatedNotDropped) {
  const std::string msg =
      "Subject: buy viagra" + std::string(300'000, 'x') + "\r\nTo: b\r\n\r\nbody\r\n";
  const HeaderBlock got = parseHeaderBlock(StringReader(msg), {});
  ASSERT_EQ(got.status, Status::kOk);
  ASSERT_EQ(got.fields.size(), 2u) << show(got.fields);
  EXPECT_EQ(got.fields[0].name, "Subject");
  EXPECT_EQ(got.fields[0].value.size(), kMaxHeaderValue);
  EXPECT_EQ(got.fields[0].value.substr(0, 10), "buy viagra");
  EXPECT_EQ(got.fields[1], (HeaderField{"To", "b"}));
  EXPECT_EQ(got.truncated, 1u);
}

TEST(HeaderBlock, FoldedLinesCountTowardsTheValueCap) {
  std::string msg = "Subject: start";
  for (int i = 0; i < 300; ++i) msg += "\r\n " + std::string(997, 'f');
  msg += "\r\n\r\n";
  const HeaderBlock got = parseHeaderBlock(StringReader(msg), {});
  ASSERT_EQ(got.status, Status::kOk);
  ASSERT_EQ(got.fields.size(), 1u);
  EXPECT_EQ(got.fields[0].value.size(), kMaxHeaderValue);
  EXPECT_EQ(got.truncated, 1u);
}

TEST(HeaderBlock, LimitsRefuseRatherThanSkip) {
  const std::string fields = "A: 1\r\nB: 2\r\nC: 3\r\n\r\n";  // 18 octets of block
  const struct {
    std::string name;
    HeaderBlockLimits limits;
    Status want;
  } cases[] = {
      {"fits exactly", {18, 3}, Status::kOk},
      {"one octet over", {17, 3}, Status::kTooLarge},
      {"one field over", {1024, 2}, Status::kTooLarge},
  };
  for (const auto& tc : cases) {
    const HeaderBlock got = parseHeaderBlock(StringReader(fields), tc.limits);
    EXPECT_EQ(got.status, tc.want)
        << tc.name << ": got " << statusName(got.status) << ", want " << statusName(tc.want);
  }
  // A value is taken a run at a time: the limit still falls on its exact octet inside one.
  const std::string longValue = "A: " + std::string(500, 'v') + "\r\n\r\n";  // 505 of block
  EXPECT_EQ(parseHeaderBlock(StringReader(longValue), {505, 3}).status, Status::kOk);
  EXPECT_EQ(parseHeaderBlock(StringReader(longValue), {504, 3}).status, Status::kTooLarge);
  EXPECT_EQ(parseHeaderBlock(StringReader(longValue), {300, 3}).status, Status::kTooLarge);
  // ... and with no line end after the value to find it instead (the message ends in it).
  const std::string unended = "A: " + std::string(500, 'v');  // 503
  EXPECT_EQ(parseHeaderBlock(StringReader(unended), {503, 3}).status, Status::kOk);
  EXPECT_EQ(parseHeaderBlock(StringReader(unended), {502, 3}).status, Status::kTooLarge);
  EXPECT_EQ(parseHeaderBlock(StringReader(unended), {300, 3}).status, Status::kTooLarge);
}

TEST(HeaderBlock, FromASpilledSpool) {
  char tmpl[] = "/tmp/portcullis-header-block-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  {
    Spool s(8, tmpl);
    const std::string msg = "Subject: spilled\r\n over\r\nFrom: x@y.example\r\n\r\nbody\r\n";
    s.append(msg.data(), msg.size());
    ASSERT_TRUE(s.finish());
    ASSERT_FALSE(s.inMemory());
    const HeaderBlock got = parseHeaderBlock(s, {});
    const std::vector<HeaderField> want = {{"Subject", "spilled over"}, {"From", "x@y.example"}};
    EXPECT_EQ(got.fields, want) << "got " << show(got.fields) << ", want " << show(want);
  }
  ::rmdir(tmpl);
}

}  // namespace
}  // namespace portcullis
