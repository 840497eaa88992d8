#include "proxy/smtp/header_edit.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace portcullis {
namespace {

HeaderEdit remove(std::string name, int occurrence = 0) {
  return {HeaderEdit::Kind::kRemove, std::move(name), {}, occurrence};
}
HeaderEdit replace(std::string name, std::string value) {
  return {HeaderEdit::Kind::kReplace, std::move(name), std::move(value), 0};
}

constexpr std::string_view kBlock =
    "Received: from a\r\n"
    "\tby b\r\n"
    "X-Spam: client says no\r\n"
    "Subject: hello\r\n"
    "  world\r\n"
    "x-spam : second\r\n"
    "From: a@example.org\r\n"
    "X-SPAM: third\r\n";

TEST(HeaderEdit, NoEditsKeepTheBlockByteForByte) {
  EXPECT_EQ(editHeaderBlock(kBlock, {}).bytes, kBlock);
}

TEST(HeaderEdit, RemovalCountsFromTheTopFromTheBottomOrTakesEveryOne) {
  struct Case {
    int occurrence;
    std::vector<std::string_view> gone;  // the X-Spam lines removed
  };
  const std::vector<Case> cases = {
      {0, {"X-Spam: client says no\r\n", "x-spam : second\r\n", "X-SPAM: third\r\n"}},
      {1, {"X-Spam: client says no\r\n"}},
      {2, {"x-spam : second\r\n"}},
      {-1, {"X-SPAM: third\r\n"}},
      {-3, {"X-Spam: client says no\r\n"}},
      {4, {}},
      {-4, {}},
  };
  for (const Case& c : cases) {
    const EditedHeaderBlock e = editHeaderBlock(kBlock, {remove("X-Spam", c.occurrence)});
    std::string want(kBlock);
    for (std::string_view line : c.gone) want.erase(want.find(line), line.size());
    EXPECT_EQ(e.bytes, want) << "occurrence " << c.occurrence;
    EXPECT_EQ(e.removed, static_cast<int>(c.gone.size())) << "occurrence " << c.occurrence;
  }
}

TEST(HeaderEdit, AFoldedFieldGoesWhole) {
  const EditedHeaderBlock e = editHeaderBlock(kBlock, {remove("received"), remove("SUBJECT")});
  EXPECT_EQ(e.bytes,
            "X-Spam: client says no\r\n"
            "x-spam : second\r\n"
            "From: a@example.org\r\n"
            "X-SPAM: third\r\n");
}

TEST(HeaderEdit, ReplaceRewritesTheFirstFieldInPlaceOrAddsOnTop) {
  EditedHeaderBlock e = editHeaderBlock(kBlock, {replace("Subject", "[SPAM] hello world")});
  std::string want(kBlock);
  const std::string_view old = "Subject: hello\r\n  world\r\n";
  want.replace(want.find(old), old.size(), "Subject: [SPAM] hello world\r\n");
  EXPECT_EQ(e.bytes, want);
  EXPECT_EQ(e.replaced, 1);

  e = editHeaderBlock("From: a@example.org\r\n", {replace("Subject", "new")});
  EXPECT_EQ(e.bytes, "Subject: new\r\nFrom: a@example.org\r\n");
  EXPECT_EQ(e.added, 1);
}

TEST(HeaderEdit, ScannerTextCannotBreakOutOfTheField) {
  // Whatever a scanner puts in a value, it stays one field: no CR, LF or NUL gets through, so
  // it can neither end the header block nor start a line of its own.
  using namespace std::string_view_literals;
  const std::string hostile("x\r\n\r\n.\r\nBcc: victim@example.org\0y\x01\x7f\r"sv);
  const EditedHeaderBlock e = editHeaderBlock(kBlock, {replace("Subject", hostile)});
  const std::size_t at = e.bytes.find("Subject:");
  ASSERT_NE(at, std::string::npos);
  const std::string field = e.bytes.substr(at, e.bytes.find("\r\n", at) + 2 - at);
  EXPECT_EQ(field.find('\0'), std::string::npos);
  EXPECT_EQ(e.bytes.find("\r\n\r\n"), std::string::npos);
  EXPECT_EQ(e.bytes.find("\r\nBcc:"), std::string::npos);
}

TEST(HeaderEdit, AnInvalidNameIsSkippedAndReported) {
  const EditedHeaderBlock e =
      editHeaderBlock(kBlock, {remove("X Spam"), remove(""), replace("Sub:ject", "v")});
  EXPECT_EQ(e.bytes, kBlock);
  EXPECT_EQ(e.skipped, (std::vector<std::string>{"X Spam", "", "Sub:ject"}));
}

TEST(HeaderEdit, EditsApplyInOrder) {
  // A replacement after a removal of the same name finds nothing and adds on top.
  const EditedHeaderBlock e = editHeaderBlock(
      "Subject: a\r\nTo: b\r\n", {remove("Subject"), replace("Subject", "c"), remove("To")});
  EXPECT_EQ(e.bytes, "Subject: c\r\n");
  // And a removal after a replacement that added on top removes what it added (found by
  // fuzz_header_edit); further additions keep their order below the ones still there.
  const EditedHeaderBlock f = editHeaderBlock(
      "To: b\r\n", {replace("X-A", "1"), replace("X-B", "2"), remove("x-a"), replace("X-C", "3")});
  EXPECT_EQ(f.bytes, "X-B: 2\r\nX-C: 3\r\nTo: b\r\n");
}

}  // namespace
}  // namespace portcullis
