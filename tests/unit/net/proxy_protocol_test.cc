// PROXY protocol v1/v2 parsing and writing (proxy/proxy_protocol.h). Table-driven.

#include "proxy/net/proxy_protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace portcullis {
namespace {

using Status = ProxyHeader::Status;

std::string v2(unsigned char verCmd, unsigned char family, const std::string& body) {
  std::string out("\r\n\r\n\0\r\nQUIT\n", 12);
  out.push_back(static_cast<char>(verCmd));
  out.push_back(static_cast<char>(family));
  out.push_back(static_cast<char>(body.size() >> 8));
  out.push_back(static_cast<char>(body.size() & 0xFF));
  return out + body;
}

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

TEST(ProxyProtocol, ParsesAndRejects) {
  const std::string v4body = bytes({192, 0, 2, 1, 198, 51, 100, 2, 0xDC, 0x04, 0x00, 0x19});
  std::string v6body(16, '\0');
  v6body[15] = 1;  // ::1
  v6body += std::string(15, '\0') + "\x02" + bytes({0x04, 0x00, 0x00, 0x19});
  struct Case {
    std::string name;
    std::string input;
    Status status;
    std::string source;  // "" for local / not ok
    std::size_t consumed;
    bool local;
  } cases[] = {
      {"v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\nEHLO", Status::kOk,
       "192.0.2.1:56324", 44, false},
      {"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 1024 25\r\n", Status::kOk,
       "[2001:db8::1]:1024", 44, false},
      {"v1 unknown", "PROXY UNKNOWN\r\n", Status::kOk, "", 15, true},
      {"v1 unknown with addresses", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", Status::kOk, "", 35,
       true},
      {"v1 partial", "PROXY TCP4 192.0.2.1 198.51", Status::kNeedMore, "", 0, false},
      {"v1 prefix only", "PRO", Status::kNeedMore, "", 0, false},
      {"v1 missing field", "PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n", Status::kError, "", 0,
       false},
      {"v1 extra field", "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n", Status::kError, "", 0,
       false},
      {"v1 bad address", "PROXY TCP4 192.0.2.300 198.51.100.2 1 2\r\n", Status::kError, "", 0,
       false},
      {"v1 v6 address as TCP4", "PROXY TCP4 ::1 ::1 1 2\r\n", Status::kError, "", 0, false},
      {"v1 port too big", "PROXY TCP4 192.0.2.1 198.51.100.2 65536 25\r\n", Status::kError, "", 0,
       false},
      {"v1 leading zero port", "PROXY TCP4 192.0.2.1 198.51.100.2 025 25\r\n", Status::kError, "",
       0, false},
      // proxy-protocol.txt 2.1: numeric addresses of the declared family, decimal ports.
      {"v1 NUL then junk after the source",
       std::string("PROXY TCP4 198.51.100.9\0junk 198.51.100.2 1 25\r\n", 48), Status::kError, "",
       0, false},
      {"v1 NUL then junk after the destination",
       std::string("PROXY TCP4 198.51.100.9 198.51.100.2\0x 1 25\r\n", 45), Status::kError, "", 0,
       false},
      {"v1 NUL after the port", std::string("PROXY TCP4 198.51.100.9 198.51.100.2 1\0 25\r\n", 44),
       Status::kError, "", 0, false},
      {"v1 wildcard source", "PROXY TCP4 * 198.51.100.2 1 25\r\n", Status::kError, "", 0, false},
      {"v1 localhost source", "PROXY TCP4 localhost 198.51.100.2 1 25\r\n", Status::kError, "", 0,
       false},
      {"v1 host name", "PROXY TCP4 mx.example 198.51.100.2 1 25\r\n", Status::kError, "", 0, false},
      {"v1 empty source", "PROXY TCP4  198.51.100.2 1 25\r\n", Status::kError, "", 0, false},
      {"v1 short IPv4", "PROXY TCP4 127.1 198.51.100.2 1 25\r\n", Status::kError, "", 0, false},
      {"v1 octal-looking IPv4", "PROXY TCP4 0177.0.0.1 198.51.100.2 1 25\r\n", Status::kError, "",
       0, false},
      {"v1 IPv4 as TCP6", "PROXY TCP6 192.0.2.1 198.51.100.2 1 25\r\n", Status::kError, "", 0,
       false},
      {"v1 bracketed TCP6", "PROXY TCP6 [2001:db8::1] [2001:db8::2] 1 25\r\n", Status::kError, "",
       0, false},
      {"v1 TCP6 with a zone", "PROXY TCP6 fe80::1%eth0 fe80::2 1 25\r\n", Status::kError, "", 0,
       false},
      {"v1 TCP6 wildcard", "PROXY TCP6 * ::1 1 25\r\n", Status::kError, "", 0, false},
      {"v1 port 0", "PROXY TCP4 192.0.2.1 198.51.100.2 0 25\r\n", Status::kError, "", 0, false},
      {"v1 signed port", "PROXY TCP4 192.0.2.1 198.51.100.2 +1 25\r\n", Status::kError, "", 0,
       false},
      {"v1 port with junk", "PROXY TCP4 192.0.2.1 198.51.100.2 1x 25\r\n", Status::kError, "", 0,
       false},
      {"v1 port 65535", "PROXY TCP4 192.0.2.1 198.51.100.2 65535 25\r\n", Status::kOk,
       "192.0.2.1:65535", 44, false},
      {"v1 TCP6 v4-mapped", "PROXY TCP6 ::ffff:192.0.2.1 ::1 1024 25\r\n", Status::kOk,
       "192.0.2.1:1024", 41, false},
      {"v1 TCP6 upper case", "PROXY TCP6 2001:DB8::1 ::1 1024 25\r\n", Status::kOk,
       "[2001:db8::1]:1024", 36, false},
      {"v1 bare LF", "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n", Status::kError, "", 0, false},
      {"v1 too long", "PROXY TCP4 " + std::string(120, '1'), Status::kError, "", 0, false},
      {"not proxy at all", "EHLO client.example\r\n", Status::kError, "", 0, false},
      {"v2 tcp4", v2(0x21, 0x11, v4body) + "EHLO", Status::kOk, "192.0.2.1:56324", 28, false},
      {"v2 tcp6", v2(0x21, 0x21, v6body), Status::kOk, "[::1]:1024", 52, false},
      {"v2 local", v2(0x20, 0x00, ""), Status::kOk, "", 16, true},
      {"v2 with TLVs", v2(0x21, 0x11, v4body + bytes({0x04, 0x00, 0x01, 0x41})), Status::kOk,
       "192.0.2.1:56324", 32, false},
      {"v2 partial", v2(0x21, 0x11, v4body).substr(0, 20), Status::kNeedMore, "", 0, false},
      {"v2 bad version", v2(0x31, 0x11, v4body), Status::kError, "", 0, false},
      {"v2 bad command", v2(0x22, 0x11, v4body), Status::kError, "", 0, false},
      {"v2 udp", v2(0x21, 0x12, v4body), Status::kError, "", 0, false},
      {"v2 port 0", v2(0x21, 0x11, bytes({192, 0, 2, 1, 198, 51, 100, 2, 0, 0, 0, 25})),
       Status::kError, "", 0, false},
      {"v2 short v4 block", v2(0x21, 0x11, v4body.substr(0, 8)), Status::kError, "", 0, false},
      {"v2 too long", v2(0x21, 0x11, std::string(2000, 'x')).substr(0, 16), Status::kError, "", 0,
       false},
  };
  for (const auto& c : cases) {
    const ProxyHeader h = parseProxyHeader(c.input);
    EXPECT_EQ(h.status, c.status) << c.name << ": got status " << static_cast<int>(h.status) << " ("
                                  << h.error << "), want " << static_cast<int>(c.status);
    if (c.status != Status::kOk || h.status != Status::kOk) continue;
    EXPECT_EQ(h.consumed, c.consumed) << c.name;
    EXPECT_EQ(h.local, c.local) << c.name;
    if (!c.local) {
      EXPECT_EQ(h.source.toString(), c.source) << c.name;
    }
  }
}

TEST(ProxyProtocol, WrittenHeadersParseBack) {
  for (const auto& [src, dst] :
       {std::pair{"192.0.2.7:40000", "127.0.0.1:25"}, std::pair{"[2001:db8::7]:40000", "[::1]:25"},
        std::pair{"[::ffff:192.0.2.7]:40000", "[::1]:25"}}) {
    const auto s = *parseSocketAddress(src);
    const auto d = *parseSocketAddress(dst);
    for (const std::string& header : {proxyV1Header(s, d), proxyV2Header(s, d)}) {
      const ProxyHeader h = parseProxyHeader(header);
      ASSERT_EQ(h.status, ProxyHeader::Status::kOk) << src << ": " << h.error;
      EXPECT_EQ(h.consumed, header.size());
      EXPECT_EQ(h.source.toString(), s.toString());
      EXPECT_EQ(h.destination.toString(), d.toString());
    }
  }
  EXPECT_EQ(
      proxyV1Header(*parseSocketAddress("192.0.2.7:40000"), *parseSocketAddress("127.0.0.1:25")),
      "PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n");
}

}  // namespace
}  // namespace portcullis
