// Tests for rspamd's /checkv2 reply (filters/rspamd/rspamd_reply.h) as tables that print
// "got X, want Y": every action and its verdict, the milter block in each of its shapes, and
// hostile replies (CR/LF/NUL in texts, bad header names, huge symbol lists, deep nesting, YAML
// that is not JSON, wrong types, a missing or unknown action, over-long replies).

#include "filters/rspamd/rspamd_reply.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace portcullis {
namespace {

using namespace std::string_literals;

// The removals every continuing verdict carries (the headers only the scanner may write).
bool isStanding(const HeaderEdit& e) {
  return e.kind == HeaderEdit::Kind::kRemove && e.occurrence == 0 &&
         (e.name == "X-Spam" || e.name == "X-Spam-Score");
}

// "error WHY", or the verdict: "kind code enhanced text [+Name: value] [-Name#n] [=Name: value]".
std::string show(std::string_view body) {
  const RspamdParse p = parseRspamdReply(body);
  if (!p.reply) return "error " + p.error;
  const ScanResult r = rspamdScanResult(*p.reply);
  if (r.kind != ScanResult::Kind::kDone || !r.verdict) return "no verdict";
  const Verdict& v = *r.verdict;
  std::string out(verdictName(v.kind()));
  if (v.reply()) out += " " + v.reply()->summary();
  for (const HeaderEdit& e : v.headerEdits()) {
    if (isStanding(e)) continue;  // on every continuing verdict: its own test below
    out += e.kind == HeaderEdit::Kind::kRemove ? " -" + e.name + "#" + std::to_string(e.occurrence)
                                               : " =" + e.name + ": " + e.value;
  }
  for (const HeaderField& h : v.headers()) out += " +" + h.name + ": " + h.value;
  return out;
}

std::string reply(std::string_view action, std::string_view extra = "") {
  return R"({"is_skipped":false,"score":7.5,"required_score":15.0,"action":")" +
         std::string(action) + "\"" + std::string(extra) + "}";
}

TEST(RspamdReply, EveryAction) {
  struct Case {
    std::string body;
    std::string want;
  };
  const std::vector<Case> cases = {
      {reply("reject"), "reject 554 5.7.1 Message rejected as spam"},
      {reply("reject", R"(,"messages":{"smtp_message":"Gtube pattern"})"),
       "reject 554 5.7.1 Gtube pattern"},
      {reply("soft reject"), "tempfail 451 4.7.1 Message deferred, try again later"},
      {reply("greylist"), "tempfail 451 4.7.1 Greylisted, try again later"},
      {reply("greylist", R"(,"messages":{"smtp_message":"Try again in 5 minutes"})"),
       "tempfail 451 4.7.1 Try again in 5 minutes"},
      {reply("rewrite subject", R"(,"subject":"[SPAM] hello %s world")"),
       "continue =Subject: [SPAM] hello %s world"},
      {reply("rewrite subject"), "continue"},  // no subject given: nothing to rewrite
      {reply("add header"), "continue +X-Spam: Yes +X-Spam-Score: 7.50"},
      {reply("no action"), "continue"},
      {reply("reject", R"(,"milter":{"add_headers":{"X-A":"1"}})"),
       "reject 554 5.7.1 Message rejected as spam"},  // a refusal carries no header edits
  };
  for (const Case& c : cases) EXPECT_EQ(show(c.body), c.want) << c.body;
}

TEST(RspamdReply, MilterBlockInEveryShape) {
  struct Case {
    std::string milter;
    std::string want;
  };
  const std::vector<Case> cases = {
      {R"({"add_headers":{"X-Spamd-Bar":"+++"}})", "continue +X-Spamd-Bar: +++"},
      {R"({"add_headers":{"X-Spamd-Bar":{"value":"+++","order":0}}})",
       "continue +X-Spamd-Bar: +++"},
      {R"({"add_headers":{"X-A":["1",{"value":"2","order":1}]}})", "continue +X-A: 1 +X-A: 2"},
      {R"({"remove_headers":{"X-Spam":0,"X-Old":1,"X-Last":-1}})", "continue -X-Old#1 -X-Last#-1"},
      // rspamd's folded multi-line values are unfolded to one line.
      {R"j({"add_headers":{"X-Spamd-Result":"default: False [8.30 / 15.00];\n\tRDNS_NONE(1.00)"}})j",
       "continue +X-Spamd-Result: default: False [8.30 / 15.00]; RDNS_NONE(1.00)"},
      // Shapes we do not take are dropped, never guessed at.
      {R"({"add_headers":{"X-A":5,"X-B":{"order":1},"X-C":[[]]}})", "continue"},
      {R"({"remove_headers":{"X-A":"all","X-B":1.5,"X-C":100000,"X-D":null}})", "continue"},
      {R"({"add_headers":"X-A: 1","remove_headers":[]})", "continue"},
      {R"("nonsense")", "continue"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(show(reply("no action", R"(,"milter":)" + c.milter)), c.want) << c.milter;
  }
  // The milter block goes with the action's own headers; a header rspamd adds itself is not
  // added twice.
  EXPECT_EQ(show(reply("add header", R"(,"milter":{"add_headers":{"X-Spam":"Yes"},)"
                                     R"("remove_headers":{"X-Spam":0}})")),
            "continue +X-Spam: Yes +X-Spam-Score: 7.50");
}

TEST(RspamdReply, ContinuingVerdictsDropTheClientsOwnSpamHeaders) {
  const auto edits = [](const std::string& body) {
    const RspamdParse p = parseRspamdReply(body);
    std::string out;
    if (!p.reply) return "error " + p.error;
    const ScanResult r = rspamdScanResult(*p.reply);
    for (const HeaderEdit& e : r.verdict->headerEdits()) {
      out += " " + e.name + "#" + std::to_string(e.occurrence);
    }
    return out;
  };
  EXPECT_EQ(edits(reply("no action")), " X-Spam#0 X-Spam-Score#0");
  EXPECT_EQ(edits(reply("add header")), " X-Spam#0 X-Spam-Score#0");
  // rspamd's own removal (its milter_headers remove-spam-flag routine) is not doubled.
  EXPECT_EQ(edits(reply("no action", R"(,"milter":{"remove_headers":{"X-Spam":0,"X-X":2}})")),
            " X-Spam#0 X-X#2 X-Spam-Score#0");
  EXPECT_EQ(edits(reply("no action", R"(,"milter":{"remove_headers":{"X-Spam":1}})")),
            " X-Spam#1 X-Spam#0 X-Spam-Score#0");
  EXPECT_EQ(edits(reply("reject")), "");
}

TEST(RspamdReply, HostileTextNeverGetsThroughRaw) {
  struct Case {
    std::string body;
    std::string want;
  };
  const std::vector<Case> cases = {
      {reply("reject", R"(,"messages":{"smtp_message":"bad\r\n250 OK\u0000\u0007 done"})"),
       "reject 554 5.7.1 bad 250 OK done"},
      {reply("rewrite subject", R"(,"subject":"x\r\nBcc: victim@example.com")"),
       "continue =Subject: x Bcc: victim@example.com"},
      {reply("no action", R"(,"milter":{"add_headers":{"X-A\r\nBcc":"v","X A":"v","X:A":"v",)"
                          R"("":"v","X-Ok":"a\r\nBcc: b\u0000"}})"),
       "continue +X-Ok: a Bcc: b"},
      {reply("no action", R"(,"milter":{"remove_headers":{"Bad Name":0,"Bad:Name":0}})"),
       "continue"},
      {reply("reject", R"(,"messages":{"smtp_message":")" + std::string(5000, 'A') + "\"}"),
       "reject 554 5.7.1 " + std::string(kMaxScannerText, 'A')},
  };
  for (const Case& c : cases) EXPECT_EQ(show(c.body), c.want) << c.body;
}

TEST(RspamdReply, BoundsAndBadInput) {
  struct Case {
    std::string body;
    std::string want;
  };
  std::string deep = reply("no action", R"(,"x":)" + std::string(40, '[') + std::string(40, ']'));
  std::string fine = reply("no action", R"(,"x":)" + std::string(30, '[') + std::string(30, ']'));
  const std::vector<Case> cases = {
      {"", "error bad JSON: not a complete JSON object"},
      {"not json", "error bad JSON: not a JSON object"},
      {"<html>500</html>", "error bad JSON: not a JSON object"},
      {"[1,2]", "error bad JSON: not a JSON object"},
      {R"({"action":"reject")", "error bad JSON: not a complete JSON object"},
      {R"({"action":"reject"}})", "error bad JSON: unbalanced brackets"},
      {R"({"action":"reject"} {})", "error bad JSON: not a JSON object"},
      {R"({"action":"reject)", "error bad JSON: unterminated string"},
      {deep, "error bad JSON: nested deeper than 32"},
      {fine, "continue"},
      // YAML that is not JSON never reaches yaml-cpp.
      {R"({"action": &a "reject", "x": *a})",
       "error bad JSON: unexpected character outside a string"},
      {R"({action: reject})", "error bad JSON: unexpected token outside a string"},
      {"{\"action\":\"reject\"} # comment", "error bad JSON: not a JSON object"},
      {R"({"action": !!str "reject"})", "error bad JSON: unexpected character outside a string"},
      // Wrong types, missing and unknown actions.
      {R"({"score":1})", "error no action"},
      {R"({"action":5})", "error no action"},
      {R"({"action":null})", "error no action"},
      {R"({"action":["reject"]})", "error no action"},
      {R"({"action":"discard"})", "error unknown action \"discard\""},
      {R"({"action":"reject\r\nX"})", "error unknown action \"reject X\""},
      {R"({"action":"no action","score":"high"})", "error score is not a number"},
      {R"({"action":"no action","required_score":true})", "error required_score is not a number"},
      {R"({"action":"no action","symbols":[1,2],"messages":"x","subject":5})", "continue"},
      // yaml-cpp's own complaints come back as errors, never as exceptions; JSON's "\/" is
      // YAML 1.2's too.
      {R"({"action":"reject","messages":{"smtp_message":"a\/b"}})", "reject 554 5.7.1 a/b"},
      {R"({"action":"reject","messages":{"smtp_message":"\q"}})",
       "error bad JSON: yaml-cpp: error at line 1, column 50: unknown escape character: q"},
      {R"({"action":"reject" "x"})",
       "error bad JSON: yaml-cpp: error at line 1, column 20: "
       "end of map flow not found"},
  };
  for (const Case& c : cases) EXPECT_EQ(show(c.body), c.want) << c.body;

  const std::string huge =
      reply("no action", R"(,"pad":")" + std::string(kMaxRspamdReply, 'x') + "\"");
  EXPECT_EQ(show(huge), "error reply longer than 262144 bytes");
}

TEST(RspamdReply, SymbolsAreBoundedNamesHighestScoreFirst) {
  std::string symbols = R"({"LOW":{"score":0.1},"HIGH":{"score":9},"BAD NAME":{"score":50},)"
                        R"("MID":{"score":2},"NOSCORE":{}})";
  const RspamdParse p = parseRspamdReply(reply("add header", R"(,"symbols":)" + symbols));
  ASSERT_TRUE(p.reply) << p.error;
  EXPECT_EQ(p.reply->symbols, (std::vector<std::string>{"HIGH", "MID", "LOW", "NOSCORE"}));
  EXPECT_EQ(p.reply->symbolCount, 5U);

  std::string many = "{";
  for (int i = 0; i < 5000; ++i) {
    many += (i ? "," : "") + R"("SYMBOL_NUMBER_)"s + std::to_string(i) + R"(":{"score":1})";
  }
  many += "}";
  const RspamdParse q = parseRspamdReply(reply("reject", R"(,"symbols":)" + many));
  ASSERT_TRUE(q.reply) << q.error;
  EXPECT_EQ(q.reply->symbols.size(), kMaxRspamdSymbols);
  EXPECT_EQ(q.reply->symbolCount, 5000U);
  const ScanResult r = rspamdScanResult(*q.reply);
  ASSERT_TRUE(r.verdict);
  EXPECT_LT(r.verdict->reason().size(), 600U) << r.verdict->reason();
  EXPECT_NE(r.summary.find("symbols_total=5000"), std::string::npos) << r.summary;
}

TEST(RspamdReply, HeaderEditsAreBounded) {
  std::string adds = "{";
  for (int i = 0; i < 100; ++i)
    adds += (i ? "," : "") + R"("X-H)"s + std::to_string(i) + R"(":"v")";
  adds += "}";
  const RspamdParse p =
      parseRspamdReply(reply("no action", R"(,"milter":{"add_headers":)" + adds + "}"));
  ASSERT_TRUE(p.reply) << p.error;
  EXPECT_EQ(p.reply->addHeaders.size(), kMaxRspamdHeaderEdits);
  EXPECT_EQ(p.reply->droppedEdits, 100U - kMaxRspamdHeaderEdits);
}

TEST(RspamdReply, TheLogSummaryNamesActionScoresSymbolsAndRspamdsTime) {
  const RspamdParse p = parseRspamdReply(
      R"({"is_skipped":true,"score":150.0,"required_score":150.0,"action":"reject",)"
      R"("symbols":{"GTUBE":{"name":"GTUBE","score":0.0}},"messages":{"smtp_message":)"
      R"("Gtube pattern"},"message-id":"undef","time_real":0.000941})");
  ASSERT_TRUE(p.reply) << p.error;
  const ScanResult r = rspamdScanResult(*p.reply);
  EXPECT_EQ(
      r.summary,
      "scan=reject score=150.00 required=150.00 symbols=\"GTUBE\" skipped=yes rspamd_time=1ms");
  ASSERT_TRUE(r.verdict);
  EXPECT_EQ(r.verdict->reason(),
            "action=reject score=150.00 required=150.00 symbols=\"GTUBE\" skipped=yes "
            "rspamd_time=1ms");
}

TEST(RspamdReply, AHugeScoreIsWrittenWholeInShortForm) {
  // Any finite number parses; "%.2f" of 1e85 needs 89 characters (the fuzzer found the old
  // formatting reading past its 64-byte buffer). The log and the X-Spam-Score header get it
  // in %g form.
  const RspamdParse p = parseRspamdReply(
      R"({"is_skipped":false,"score":1e85,"required_score":-1.5e300,"action":"add header"})");
  ASSERT_TRUE(p.reply) << p.error;
  const ScanResult r = rspamdScanResult(*p.reply);
  EXPECT_EQ(r.summary.substr(0, r.summary.find(" symbols")),
            "scan=add-header score=1e+85 required=-1.5e+300");
  ASSERT_TRUE(r.verdict);
  std::string header;
  for (const HeaderField& h : r.verdict->headers()) {
    if (h.name == "X-Spam-Score") header = h.value;
  }
  EXPECT_EQ(header, "1e+85");
  EXPECT_EQ(show(reply("add header")), "continue +X-Spam: Yes +X-Spam-Score: 7.50")
      << "an ordinary score keeps two decimals";
}

TEST(RspamdReply, HeaderNames) {
  EXPECT_TRUE(isHeaderName("X-Spam"));
  EXPECT_TRUE(isHeaderName("X-Spamd-Result"));
  EXPECT_FALSE(isHeaderName(""));
  EXPECT_FALSE(isHeaderName("X Spam"));
  EXPECT_FALSE(isHeaderName("X:Spam"));
  EXPECT_FALSE(isHeaderName("X-\x7f"));
  EXPECT_FALSE(isHeaderName("X-\xc3\xa9"));
  EXPECT_FALSE(isHeaderName(std::string(kMaxRspamdHeaderName + 1, 'X')));
}

}  // namespace
}  // namespace portcullis
