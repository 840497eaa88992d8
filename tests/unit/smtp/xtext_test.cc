// xtext (RFC 3461 4) and the XCLIENT lines (Postfix XCLIENT_README): only attributes the
// upstream advertises, IPv6 with the "IPV6:" prefix, and no line over the 512-octet limit.

#include "proxy/smtp/xtext.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace portcullis {
namespace {

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += "\n  " + s;
  return out.empty() ? "(none)" : out;
}

TEST(Xtext, Encode) {
  const struct {
    std::string in;
    std::string want;
  } cases[] = {
      {"", ""},
      {"client.example", "client.example"},
      {"[UNAVAILABLE]", "[UNAVAILABLE]"},
      {"!~", "!~"},
      {"+", "+2B"},
      {"=", "+3D"},
      {" ", "+20"},
      {"a b+c=d", "a+20b+2Bc+3Dd"},
      {"\xc3\xa9", "+C3+A9"},
      {"\x7f", "+7F"},
      {"\x01", "+01"},
      {std::string(1, '\0'), "+00"},
      {"\r\n", "+0D+0A"},
      {"\xff", "+FF"},
  };
  for (const auto& tc : cases) {
    const std::string got = xtextEncode(tc.in);
    EXPECT_EQ(got, tc.want) << "xtext(" << tc.want << " decoded): got " << got << ", want "
                            << tc.want;
  }
}

UpstreamCapabilities advertising(std::vector<std::string> attrs) {
  UpstreamCapabilities u;
  u.known = true;
  u.xclient = true;
  u.xclientAttributes = std::move(attrs);
  return u;
}

XclientIdentity v4Client() {
  XclientIdentity id;
  id.name = "client.example";
  id.addr = "192.0.2.1";
  id.port = 4711;
  id.proto = "ESMTP";
  id.helo = "client.example";
  id.destAddr = "192.0.2.25";
  id.destPort = 25;
  return id;
}

TEST(XclientCommands, HonoursTheAdvertisedAttributes) {
  const std::vector<std::string> all = {"NAME", "ADDR",  "PORT",     "PROTO",
                                        "HELO", "LOGIN", "DESTADDR", "DESTPORT"};
  XclientIdentity v6 = v4Client();
  v6.addr = "2001:db8::1";
  v6.destAddr = "2001:db8::25";
  v6.ipv6 = true;
  XclientIdentity odd = v4Client();
  odd.helo = "[my helo] with=signs+";
  odd.name = "[TEMPUNAVAIL]";
  XclientIdentity sparse;
  sparse.addr = "192.0.2.9";
  const struct {
    std::string name;
    XclientIdentity id;
    std::vector<std::string> attrs;
    std::vector<std::string> want;
  } cases[] = {
      {"everything advertised",
       v4Client(),
       all,
       {"XCLIENT NAME=client.example ADDR=192.0.2.1 PORT=4711 PROTO=ESMTP HELO=client.example "
        "DESTADDR=192.0.2.25 DESTPORT=25"}},
      {"only NAME and ADDR",
       v4Client(),
       {"NAME", "ADDR"},
       {"XCLIENT NAME=client.example ADDR=192.0.2.1"}},
      {"Postfix 2.x list",
       v4Client(),
       {"NAME", "ADDR", "PROTO", "HELO"},
       {"XCLIENT NAME=client.example ADDR=192.0.2.1 PROTO=ESMTP HELO=client.example"}},
      {"IPv6 gets the IPV6: prefix",
       v6,
       {"ADDR", "DESTADDR"},
       {"XCLIENT ADDR=IPV6:2001:db8::1 DESTADDR=IPV6:2001:db8::25"}},
      {"values are xtext",
       odd,
       {"NAME", "HELO"},
       {"XCLIENT NAME=[TEMPUNAVAIL] HELO=[my+20helo]+20with+3Dsigns+2B"}},
      {"empty values are left out", sparse, all, {"XCLIENT ADDR=192.0.2.9"}},
      {"nothing advertised", v4Client(), {}, {}},
      {"unknown attributes ignored", v4Client(), {"FOO", "BAR"}, {}},
  };
  for (const auto& tc : cases) {
    const auto got = xclientCommands(tc.id, advertising(tc.attrs));
    EXPECT_EQ(got, tc.want) << tc.name << ": got" << joined(got) << "\nwant" << joined(tc.want);
  }
}

TEST(XclientCommands, SplitsLinesAtTheCommandLimit) {
  XclientIdentity id = v4Client();
  id.name = std::string(240, 'n') + ".example";
  id.helo = std::string(240, 'h') + ".example";
  const auto got = xclientCommands(
      id, advertising({"NAME", "ADDR", "PORT", "PROTO", "HELO", "DESTADDR", "DESTPORT"}));
  ASSERT_GE(got.size(), 2u) << "got" << joined(got) << "\nwant the attributes split over lines";
  std::set<std::string> attrs;
  for (const auto& line : got) {
    EXPECT_LE(line.size() + 2, 512u)
        << "a line of " << line.size() + 2 << " octets with CRLF, over the RFC 5321 limit";
    ASSERT_EQ(line.rfind("XCLIENT ", 0), 0u) << line;
    std::size_t pos = 8;
    while (pos < line.size()) {
      const auto sp = line.find(' ', pos);
      const std::string item = line.substr(pos, sp == std::string::npos ? sp : sp - pos);
      attrs.insert(item.substr(0, item.find('=')));
      pos = sp == std::string::npos ? line.size() : sp + 1;
    }
  }
  EXPECT_EQ(attrs, (std::set<std::string>{"NAME", "ADDR", "PORT", "PROTO", "HELO", "DESTADDR",
                                          "DESTPORT"}))
      << "every advertised attribute is sent exactly once, on some line";

  // An attribute that cannot fit even alone never produces an over-long line.
  XclientIdentity huge = v4Client();
  huge.helo = std::string(255, '+');  // 765 octets as xtext
  for (const auto& line : xclientCommands(huge, advertising({"ADDR", "HELO"}))) {
    EXPECT_LE(line.size() + 2, 512u) << line.substr(0, 40) << "...";
  }
}

}  // namespace
}  // namespace portcullis
