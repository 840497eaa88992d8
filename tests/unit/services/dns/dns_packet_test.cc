// dns_packet: name validation, the header/question match that guards against forged answers
// (RFC 5452), query encoding, and answer parsing (CNAME chains, each record type, negative TTLs).

#include "proxy/services/dns/dns_packet.h"

#include <gtest/gtest.h>

#include "tests/unit/services/dns/dns_wire_builder.h"

namespace portcullis {
namespace {

using dnstest::encode;
using dnstest::rrA;
using dnstest::rrAaaa;
using dnstest::rrCname;
using dnstest::rrMx;
using dnstest::rrPtr;
using dnstest::rrSoa;
using dnstest::rrTxt;
using dnstest::WireMessage;

std::string show(const std::optional<std::string>& v) { return v ? "\"" + *v + "\"" : "nullopt"; }

TEST(DnsPacket, NormalizeQueryName) {
  struct Case {
    std::string in;
    std::optional<std::string> want;
  };
  const std::string label63(63, 'a');
  // 4 labels of 63 + dots = 255 chars of text: 257 octets on the wire, too long.
  const std::string tooLong = label63 + "." + label63 + "." + label63 + "." + label63;
  // 3*64 + 61 = 253 chars: 255 octets on the wire, the maximum.
  const std::string longest = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'b');
  const Case cases[] = {
      {"Example.TEST", "example.test"},
      {"example.test.", "example.test"},
      {"2.0.0.127.dnsbl.test", "2.0.0.127.dnsbl.test"},
      {"_dmarc.example.test", "_dmarc.example.test"},
      {"a-b.test", "a-b.test"},
      {"test", "test"},
      {label63 + ".test", label63 + ".test"},
      {longest, longest},
      {tooLong, std::nullopt},
      {std::string(64, 'a') + ".test", std::nullopt},
      {"", std::nullopt},
      {".", std::nullopt},
      {"a..b", std::nullopt},
      {".a", std::nullopt},
      {"a.b..", std::nullopt},
      {"with space.test", std::nullopt},
      {"back\\slash.test", std::nullopt},
      {"semi;colon.test", std::nullopt},
      {std::string("nul\0byte.test", 13), std::nullopt},
      {"caf\xc3\xa9.test", std::nullopt},
  };
  for (const auto& c : cases) {
    const auto got = normalizeQueryName(c.in);
    EXPECT_EQ(got, c.want) << "normalizeQueryName(\"" << c.in << "\"): got " << show(got)
                           << " want " << show(c.want);
  }
}

TEST(DnsPacket, NameToWire) {
  const std::vector<std::uint8_t> want{1, 'a', 2, 'b', 'c', 0};
  EXPECT_EQ(nameToWire("a.bc"), want);
}

TEST(DnsPacket, MatchAnswer) {
  const DnsExpectation expect{0x1234, nameToWire("host.test"), 1};
  WireMessage good;
  good.id = 0x1234;
  good.qname = "host.test";
  good.answer.push_back(rrA("host.test", "127.0.0.2"));

  struct Case {
    std::string what;
    std::vector<std::uint8_t> bytes;
    DnsMatch want;
  };
  std::vector<Case> cases;
  cases.push_back({"exact", encode(good), DnsMatch::kMatch});
  {
    WireMessage m = good;
    m.qname = "HoSt.TeSt";  // RFC 5452 9.3 (0x20): names compare case-insensitively
    cases.push_back({"case differs", encode(m), DnsMatch::kMatch});
  }
  {
    WireMessage m = good;
    m.id = 0x1235;
    cases.push_back({"wrong id", encode(m), DnsMatch::kWrongId});
  }
  {
    WireMessage m = good;
    m.qname = "other.test";
    cases.push_back({"wrong name", encode(m), DnsMatch::kWrongQuestion});
  }
  {
    WireMessage m = good;
    m.qname = "host.test.evil";
    cases.push_back({"longer name", encode(m), DnsMatch::kWrongQuestion});
  }
  {
    WireMessage m = good;
    m.qtype = 16;
    cases.push_back({"wrong type", encode(m), DnsMatch::kWrongQuestion});
  }
  {
    WireMessage m = good;
    m.qclass = 3;
    cases.push_back({"wrong class", encode(m), DnsMatch::kWrongQuestion});
  }
  {
    WireMessage m = good;
    m.qdcount = 2;
    cases.push_back({"two questions", encode(m), DnsMatch::kWrongQuestion});
  }
  {
    WireMessage m = good;
    m.qr = false;
    cases.push_back({"a query, not a response", encode(m), DnsMatch::kNotAResponse});
  }
  {
    auto bytes = encode(good);
    bytes.resize(11);
    cases.push_back({"short header", bytes, DnsMatch::kMalformed});
  }
  {
    auto bytes = encode(good);
    bytes.resize(12 + 5);  // cut inside the question name
    cases.push_back({"cut question", bytes, DnsMatch::kMalformed});
  }
  {
    auto bytes = encode(good);
    bytes[12] = 0xc0;  // a compression pointer where the question name starts
    cases.push_back({"pointer in question", bytes, DnsMatch::kMalformed});
  }
  {
    auto bytes = encode(good);
    bytes[2] |= 0x28;  // opcode 5 (UPDATE)
    cases.push_back({"opcode", bytes, DnsMatch::kNotAResponse});
  }
  for (const auto& c : cases) {
    bool tc = true;
    const DnsMatch got = matchAnswer(c.bytes.data(), c.bytes.size(), expect, &tc);
    EXPECT_EQ(got, c.want) << c.what << ": got " << static_cast<int>(got) << " want "
                           << static_cast<int>(c.want);
    if (c.want == DnsMatch::kMatch) {
      EXPECT_FALSE(tc) << c.what << ": TC reported on an untruncated answer";
    }
  }
  WireMessage truncated = good;
  truncated.tc = true;
  const auto bytes = encode(truncated);
  bool tc = false;
  EXPECT_EQ(matchAnswer(bytes.data(), bytes.size(), expect, &tc), DnsMatch::kMatch);
  EXPECT_TRUE(tc);
}

TEST(DnsPacket, BuildQuery) {
  std::vector<std::uint8_t> wire;
  ASSERT_TRUE(buildQuery("mx.test", DnsType::kMx, 0xbeef, &wire));
  const auto q = dnstest::decodeQuery(wire);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->id, 0xbeef);
  EXPECT_EQ(q->name, "mx.test");
  EXPECT_EQ(q->type, 15);
  EXPECT_TRUE(q->hasOpt) << "EDNS0 OPT record expected (RFC 6891)";
  EXPECT_EQ(wire[2] & 0x01, 0x01) << "RD must be set: we ask a recursive resolver";
  EXPECT_EQ(wire[2] & 0x80, 0x00) << "QR must be clear in a query";
}

struct ParseCase {
  std::string what;
  WireMessage msg;
  std::string qname;
  DnsType type;
  DnsStatus wantStatus;
  std::vector<std::string> wantValues;
  std::optional<std::uint32_t> wantTtl;
};

TEST(DnsPacket, ParseAnswer) {
  auto msg = [](std::string qname, std::uint16_t qtype, std::vector<dnstest::WireRr> answer,
                std::uint8_t rcode = 0, std::vector<dnstest::WireRr> authority = {}) {
    WireMessage m;
    m.id = 1;
    m.qname = std::move(qname);
    m.qtype = qtype;
    m.answer = std::move(answer);
    m.rcode = rcode;
    m.authority = std::move(authority);
    return m;
  };
  const ParseCase cases[] = {
      {"two A",
       msg("l.test", 1, {rrA("l.test", "127.0.0.10", 60), rrA("l.test", "127.0.0.11", 30)}),
       "l.test",
       DnsType::kA,
       DnsStatus::kOk,
       {"127.0.0.10", "127.0.0.11"},
       30},
      {"AAAA",
       msg("h.test", 28, {rrAaaa("h.test", "::1")}),
       "h.test",
       DnsType::kAaaa,
       DnsStatus::kOk,
       {"::1"},
       60},
      {"PTR lowercased, no trailing dot",
       msg("1.0.0.127.in-addr.arpa", 12, {rrPtr("1.0.0.127.in-addr.arpa", "Client.TEST.")}),
       "1.0.0.127.in-addr.arpa",
       DnsType::kPtr,
       DnsStatus::kOk,
       {"client.test"},
       60},
      {"MX",
       msg("mx.test", 15, {rrMx("mx.test", 10, "Mail.MX.test")}),
       "mx.test",
       DnsType::kMx,
       DnsStatus::kOk,
       {"mail.mx.test"},
       60},
      {"TXT strings joined",
       msg("t.test", 16, {rrTxt("t.test", {"Listed ", "in ", "dnsbl"}), rrTxt("t.test", {"b"})}),
       "t.test",
       DnsType::kTxt,
       DnsStatus::kOk,
       {"Listed in dnsbl", "b"},
       60},
      {"owner case differs",
       msg("l.test", 1, {rrA("L.TEST", "127.0.0.2")}),
       "l.test",
       DnsType::kA,
       DnsStatus::kOk,
       {"127.0.0.2"},
       60},
      {"CNAME chain followed, min TTL",
       msg("a.test", 1,
           {rrCname("a.test", "b.test", 20), rrCname("b.test", "c.test", 40),
            rrA("c.test", "127.0.0.3", 50)}),
       "a.test",
       DnsType::kA,
       DnsStatus::kOk,
       {"127.0.0.3"},
       20},
      {"record off the chain ignored",
       msg("a.test", 1, {rrA("evil.test", "6.6.6.6")}),
       "a.test",
       DnsType::kA,
       DnsStatus::kNoData,
       {},
       std::nullopt},
      {"other type only -> NODATA",
       msg("a.test", 1, {rrTxt("a.test", {"x"})}),
       "a.test",
       DnsType::kA,
       DnsStatus::kNoData,
       {},
       std::nullopt},
      {"CNAME loop terminates",
       msg("a.test", 1, {rrCname("a.test", "b.test"), rrCname("b.test", "a.test")}),
       "a.test",
       DnsType::kA,
       DnsStatus::kNoData,
       {},
       std::nullopt},
      {"NXDOMAIN with SOA: min(TTL, MINIMUM)",
       msg("nx.test", 1, {}, 3, {rrSoa("test", 300, 45)}),
       "nx.test",
       DnsType::kA,
       DnsStatus::kNxDomain,
       {},
       45},
      {"NODATA with SOA",
       msg("a.test", 28, {}, 0, {rrSoa("test", 20, 600)}),
       "a.test",
       DnsType::kAaaa,
       DnsStatus::kNoData,
       {},
       20},
      {"NXDOMAIN without SOA",
       msg("nx.test", 1, {}, 3),
       "nx.test",
       DnsType::kA,
       DnsStatus::kNxDomain,
       {},
       std::nullopt},
      {"SERVFAIL",
       msg("a.test", 1, {}, 2),
       "a.test",
       DnsType::kA,
       DnsStatus::kServFail,
       {},
       std::nullopt},
      {"REFUSED",
       msg("a.test", 1, {}, 5),
       "a.test",
       DnsType::kA,
       DnsStatus::kServFail,
       {},
       std::nullopt},
  };
  for (const auto& c : cases) {
    const auto bytes = encode(c.msg);
    const auto got = parseAnswer(bytes.data(), bytes.size(), c.qname, c.type);
    ASSERT_TRUE(got) << c.what << ": did not parse";
    EXPECT_EQ(got->result.status, c.wantStatus)
        << c.what << ": got " << dnsStatusName(got->result.status) << " want "
        << dnsStatusName(c.wantStatus);
    std::vector<std::string> values;
    for (const auto& r : got->result.records) {
      values.push_back(r.value);
      EXPECT_EQ(r.type, c.type) << c.what;
    }
    EXPECT_EQ(values, c.wantValues) << c.what;
    EXPECT_EQ(got->ttl, c.wantTtl)
        << c.what << ": got ttl " << (got->ttl ? std::to_string(*got->ttl) : "nullopt");
  }
}

TEST(DnsPacket, ParseAnswerDetailsAndMx) {
  WireMessage m;
  m.qname = "mx.test";
  m.qtype = 15;
  m.answer.push_back(rrMx("mx.test", 20, "b.mx.test"));
  m.answer.push_back(rrMx("mx.test", 10, "a.mx.test"));
  auto bytes = encode(m);
  auto got = parseAnswer(bytes.data(), bytes.size(), "mx.test", DnsType::kMx);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->result.records.size(), 2u);
  EXPECT_EQ(got->result.records[0].preference, 20);
  EXPECT_EQ(got->result.records[1].preference, 10);
  EXPECT_EQ(got->result.detail, "rcode=NOERROR");

  m.rcode = 5;
  m.answer.clear();
  bytes = encode(m);
  got = parseAnswer(bytes.data(), bytes.size(), "mx.test", DnsType::kMx);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->result.detail, "rcode=REFUSED");
}

TEST(DnsPacket, ParseAnswerRejectsGarbage) {
  WireMessage m;
  m.qname = "a.test";
  m.answer.push_back(rrA("a.test", "127.0.0.2"));
  auto bytes = encode(m);
  bytes.resize(bytes.size() - 2);  // the A record's RDATA is cut
  EXPECT_FALSE(parseAnswer(bytes.data(), bytes.size(), "a.test", DnsType::kA));

  auto badA = rrA("a.test", "127.0.0.2");
  badA.rdata.pop_back();  // a 3-byte A record
  m.answer = {badA};
  bytes = encode(m);
  EXPECT_FALSE(parseAnswer(bytes.data(), bytes.size(), "a.test", DnsType::kA));

  const std::uint8_t junk[] = {1, 2, 3};
  EXPECT_FALSE(parseAnswer(junk, sizeof(junk), "a.test", DnsType::kA));
}

}  // namespace
}  // namespace portcullis
