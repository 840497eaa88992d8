// ehlo: what we learn from the upstream's EHLO, and the offer the client sees (our policy
// intersected with the upstream; never CHUNKING, XCLIENT, XFORWARD or AUTH).

#include "proxy/smtp/ehlo.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace portcullis {
namespace {

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : " | ") + s;
  return "[" + out + "]";
}

UpstreamCapabilities fromLines(std::vector<std::string> lines) {
  lines.insert(lines.begin(), "mta.example");
  return UpstreamCapabilities::fromEhlo(parseEhloCapabilities(*Reply::make(250, "", lines)));
}

TEST(UpstreamCapabilities, FromEhlo) {
  const UpstreamCapabilities u =
      fromLines({"PIPELINING", "SIZE 5000000", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES",
                 "STARTTLS", "xclient name addr PROTO helo", "CHUNKING", "AUTH PLAIN"});
  EXPECT_TRUE(u.known);
  EXPECT_TRUE(u.pipelining);
  EXPECT_TRUE(u.eightBitMime);
  EXPECT_TRUE(u.smtputf8);
  EXPECT_TRUE(u.dsn);
  EXPECT_TRUE(u.enhancedStatusCodes);
  EXPECT_TRUE(u.starttls);
  EXPECT_TRUE(u.xclient);
  EXPECT_TRUE(u.chunking);
  ASSERT_TRUE(u.size.has_value());
  EXPECT_EQ(*u.size, 5000000u);
  EXPECT_EQ(u.xclientAttributes, (std::vector<std::string>{"NAME", "ADDR", "PROTO", "HELO"}))
      << "got " << joined(u.xclientAttributes) << ", attributes are upper-cased";
  EXPECT_TRUE(u.hasXclientAttribute("HELO"));
  EXPECT_FALSE(u.hasXclientAttribute("LOGIN"));

  const UpstreamCapabilities none = fromLines({});
  EXPECT_TRUE(none.known);
  EXPECT_FALSE(none.pipelining || none.eightBitMime || none.smtputf8 || none.dsn ||
               none.enhancedStatusCodes || none.starttls || none.xclient || none.chunking);
  EXPECT_FALSE(none.size.has_value());
  EXPECT_FALSE(UpstreamCapabilities{}.known);

  const struct {
    std::string line;
    bool has;
    std::uint64_t size;
  } sizes[] = {{"SIZE 1", true, 1},
               {"SIZE 0", false, 0},
               {"SIZE", false, 0},
               {"SIZE abc", false, 0},
               {"SIZE -5", false, 0},
               {"size 42", true, 42},
               {"SIZE 18446744073709551616", false, 0}};
  for (const auto& tc : sizes) {
    const UpstreamCapabilities s = fromLines({tc.line});
    EXPECT_EQ(s.size.has_value(), tc.has)
        << tc.line << ": got " << (s.size ? std::to_string(*s.size) : "none") << ", want "
        << (tc.has ? std::to_string(tc.size) : "none");
    if (s.size && tc.has) {
      EXPECT_EQ(*s.size, tc.size) << tc.line;
    }
  }
}

TEST(EhloOffer, SizeLimit) {
  const struct {
    std::uint64_t ours;
    std::optional<std::uint64_t> upstream;
    std::uint64_t want;
  } cases[] = {
      {10'240'000, std::nullopt, 10'240'000},
      {10'240'000, 5'000'000, 5'000'000},
      {10'240'000, 20'000'000, 10'240'000},
      {10'240'000, 10'240'000, 10'240'000},
  };
  for (const auto& tc : cases) {
    EhloPolicy policy{"mx.example", tc.ours, false};
    UpstreamCapabilities up;
    up.known = true;
    up.size = tc.upstream;
    EXPECT_EQ(effectiveSizeLimit(policy, up), tc.want)
        << "ours " << tc.ours << " upstream " << (tc.upstream ? std::to_string(*tc.upstream) : "-");
  }
}

TEST(EhloOffer, Lines) {
  UpstreamCapabilities unknown;
  UpstreamCapabilities bare;
  bare.known = true;
  UpstreamCapabilities rich =
      fromLines({"PIPELINING", "SIZE 1000", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES",
                 "STARTTLS", "CHUNKING", "BINARYMIME", "XCLIENT NAME ADDR", "XFORWARD NAME",
                 "AUTH PLAIN", "ETRN", "VRFY"});
  const struct {
    std::string name;
    EhloPolicy policy;
    const UpstreamCapabilities* upstream;
    std::vector<std::string> want;
  } cases[] = {
      {"upstream not known yet: 8BITMIME assumed",
       {"mx.example", 10'240'000, false},
       &unknown,
       {"mx.example", "PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES", "8BITMIME"}},
      {"upstream offers nothing",
       {"mx.example", 10'240'000, false},
       &bare,
       {"mx.example", "PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES"}},
      {"rich upstream: pass-through only what we relay",
       {"mx.example", 10'240'000, false},
       &rich,
       {"mx.example", "PIPELINING", "SIZE 1000", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN",
        "SMTPUTF8"}},
      {"STARTTLS is our policy, not the upstream's",
       {"mx.example", 2048, true},
       &bare,
       {"mx.example", "PIPELINING", "SIZE 2048", "STARTTLS", "ENHANCEDSTATUSCODES"}},
  };
  for (const auto& tc : cases) {
    const Reply r = buildEhloReply(tc.policy, *tc.upstream);
    EXPECT_EQ(r.code(), 250) << tc.name;
    EXPECT_EQ(r.enhanced(), "") << tc.name << ": EHLO lines carry no enhanced code";
    EXPECT_EQ(r.lines(), tc.want) << tc.name << ": got " << joined(r.lines()) << ", want "
                                  << joined(tc.want);
    for (const char* never :
         {"CHUNKING", "BINARYMIME", "XCLIENT", "XFORWARD", "AUTH", "ETRN", "VRFY"}) {
      for (const auto& line : r.lines()) {
        EXPECT_NE(line.substr(0, line.find(' ')), never)
            << tc.name << ": offered " << never << ", which we do not implement";
      }
    }
  }
}

TEST(EhloOffer, SharedReplyFollowsEveryInput) {
  // The kept replies are the built ones, for each input they depend on, and stay right when more
  // distinct inputs come than are kept.
  UpstreamCapabilities unknown;
  UpstreamCapabilities bare;
  bare.known = true;
  UpstreamCapabilities utf8 = bare;
  utf8.smtputf8 = true;
  UpstreamCapabilities dsn = bare;
  dsn.dsn = true;
  UpstreamCapabilities small = bare;
  small.size = 1000;
  const EhloPolicy policies[] = {{"mx.example", 2048, false},
                                 {"mx.example", 2048, true},
                                 {"other.example", 2048, false},
                                 {"mx.example", 4096, false}};
  for (int round = 0; round < 3; ++round) {
    for (const EhloPolicy& p : policies) {
      for (const UpstreamCapabilities* u : {&unknown, &bare, &utf8, &dsn, &small}) {
        const Reply& shared = sharedEhloReply(p, *u);
        EXPECT_EQ(shared, buildEhloReply(p, *u)) << p.hostname << " " << p.maxMessageSize;
        // Asked again at once: the very same kept reply.
        EXPECT_EQ(&sharedEhloReply(p, *u), &shared);
      }
    }
  }
}

TEST(EhloOffer, HeloReply) {
  const Reply r = buildHeloReply({"mx.example", 100, true});
  EXPECT_EQ(r.wire(), "250 mx.example\r\n");
}

TEST(EhloOffer, SharedGreetingAndHeloFollowTheHostname) {
  EXPECT_EQ(sharedGreeting("mx.example").wire(), "220 mx.example ESMTP\r\n");
  EXPECT_EQ(sharedHeloReply("mx.example").wire(), "250 mx.example\r\n");
  EXPECT_EQ(sharedGreeting("a-much-longer-host.name.example").wire(),
            "220 a-much-longer-host.name.example ESMTP\r\n");
  EXPECT_EQ(sharedHeloReply("a-much-longer-host.name.example").wire(),
            "250 a-much-longer-host.name.example\r\n");
  EXPECT_EQ(sharedGreeting("mx.example").wire(), "220 mx.example ESMTP\r\n");  // after a reload
}

}  // namespace
}  // namespace portcullis
