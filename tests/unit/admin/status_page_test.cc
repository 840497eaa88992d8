// The /status page: escaping, the live session table, the refusal picture.

#include "proxy/admin/status_page.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace portcullis {
namespace {

TEST(StatusPage, HtmlEscapeLeavesNothingThatOpensMarkup) {
  EXPECT_EQ(htmlEscape("<script>alert(\"x\")</script>&'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;");
  EXPECT_EQ(htmlEscape(std::string("a\nb\x01"
                                   "c\x7f",
                                   6)),
            "a\xef\xbf\xbd"
            "b\xef\xbf\xbd"
            "c\xef\xbf\xbd");
  EXPECT_EQ(htmlEscape("mail.example.org"), "mail.example.org");
}

TEST(StatusPage, ShowsSessionsEscapedAndRefusalTotals) {
  StatusPageInput in;
  in.hostname = "mx<1>";
  in.sessions = {{"S1", "192.0.2.7", "<script>alert(1)</script>", "mail", 42}};
  const std::size_t rcpt = RefusalRing::stageOf("RCPT");
  in.refusals[rcpt][RefusalRing::kSlots - 1] = 3;
  in.refusals[rcpt][0] = 2;
  in.upstreamReady = true;
  const std::string page = renderStatusPage(in);
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_NE(page.find("<td class=\"helo\">&lt;script&gt;alert(1)&lt;/script&gt;</td>"),
            std::string::npos);
  EXPECT_NE(page.find("<td class=\"client\">192.0.2.7</td>"), std::string::npos);
  EXPECT_NE(page.find("<td class=\"age\">42</td>"), std::string::npos);
  EXPECT_NE(page.find("<title>portcullis status: mx&lt;1&gt;</title>"), std::string::npos);
  EXPECT_NE(page.find("<span id=\"session-count\">1</span>"), std::string::npos);
  EXPECT_NE(page.find("<tr data-stage=\"rcpt\"><td>rcpt</td><td class=\"total\">5</td><td>3</td>"),
            std::string::npos);
  EXPECT_NE(page.find("<tr data-stage=\"mail\"><td>mail</td><td class=\"total\">0</td>"),
            std::string::npos);
  // Two bars, both in the rcpt row; the tallest is the full row height.
  std::size_t bars = 0;
  for (std::size_t at = page.find("<rect class=\"bar\""); at != std::string::npos;
       at = page.find("<rect class=\"bar\"", at + 1)) {
    ++bars;
    const std::string_view bar = "<rect class=\"bar\" data-stage=\"rcpt\" x=\"";
    EXPECT_EQ(page.compare(at, bar.size(), bar), 0);
  }
  EXPECT_EQ(bars, 2U);
  EXPECT_NE(page.find("rcpt: 3 refused, 0 min ago"), std::string::npos);
  EXPECT_NE(page.find("rcpt: 2 refused, 59 min ago"), std::string::npos);
  EXPECT_NE(page.find("MTA: <b>answering</b>"), std::string::npos);
}

TEST(StatusPage, AFloodOfSessionsIsCutToABoundedTable) {
  StatusPageInput in;
  for (int i = 0; i < 250; ++i)
    in.sessions.push_back({"S" + std::to_string(i), "::1", "", "ready", i});
  const std::string page = renderStatusPage(in);
  std::size_t rows = 0;
  for (std::size_t at = page.find("<tr class=\"session\">"); at != std::string::npos;
       at = page.find("<tr class=\"session\">", at + 1)) {
    ++rows;
  }
  EXPECT_EQ(rows, 200U);
  EXPECT_NE(page.find("<span id=\"session-count\">250</span>"), std::string::npos);
  EXPECT_NE(page.find("<p>and 50 more</p>"), std::string::npos);
}

}  // namespace
}  // namespace portcullis
