// net_util: "ADDRESS:PORT" parsing in every accepted form, sockaddr round trips, and CIDR
// matching for IPv4 and IPv6 at the edge prefixes.

#include "proxy/base/net_util.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace portcullis {
namespace {

TEST(ParseSocketAddress, Forms) {
  const struct {
    std::string in;
    bool ok;
    int family;
    std::string host;
    std::uint16_t port;
    std::string text;
  } cases[] = {
      {"127.0.0.1:2525", true, AF_INET, "127.0.0.1", 2525, "127.0.0.1:2525"},
      {"0.0.0.0:25", true, AF_INET, "0.0.0.0", 25, "0.0.0.0:25"},
      {"192.0.2.1:65535", true, AF_INET, "192.0.2.1", 65535, "192.0.2.1:65535"},
      {"[::1]:25", true, AF_INET6, "::1", 25, "[::1]:25"},
      {"[::]:25", true, AF_INET6, "::", 25, "[::]:25"},
      {"[2001:db8::1]:587", true, AF_INET6, "2001:db8::1", 587, "[2001:db8::1]:587"},
      {"[::ffff:192.0.2.7]:25", true, AF_INET6, "192.0.2.7", 25, "192.0.2.7:25"},
      {"localhost:25", true, AF_INET, "127.0.0.1", 25, "127.0.0.1:25"},
      {":25", true, AF_INET, "0.0.0.0", 25, "0.0.0.0:25"},
      {"*:25", true, AF_INET, "0.0.0.0", 25, "0.0.0.0:25"},
      {"127.0.0.1", false, 0, "", 0, ""},
      {"127.0.0.1:", false, 0, "", 0, ""},
      {"127.0.0.1:0", false, 0, "", 0, ""},
      {"127.0.0.1:65536", false, 0, "", 0, ""},
      {"127.0.0.1:-1", false, 0, "", 0, ""},
      {"127.0.0.1:25x", false, 0, "", 0, ""},
      {"127.0.0.1: 25", false, 0, "", 0, ""},
      {"::1:25", false, 0, "", 0, ""},
      {"[::1]", false, 0, "", 0, ""},
      {"[::1]25", false, 0, "", 0, ""},
      {"[::1:25", false, 0, "", 0, ""},
      {"mx.example.com:25", false, 0, "", 0, ""},
      {"256.0.0.1:25", false, 0, "", 0, ""},
      {"", false, 0, "", 0, ""},
      {":", false, 0, "", 0, ""},
      // inet_pton reads a C string: a NUL must not cut the host short.
      {std::string("127.0.0.1\0junk:25", 17), false, 0, "", 0, ""},
  };
  for (const auto& tc : cases) {
    const auto a = parseSocketAddress(tc.in);
    ASSERT_EQ(a.has_value(), tc.ok)
        << "\"" << tc.in << "\": got " << (a ? a->toString() : std::string("nullopt")) << ", want "
        << (tc.ok ? tc.text : std::string("nullopt"));
    if (!a) continue;
    EXPECT_EQ(a->family(), tc.family) << tc.in;
    EXPECT_EQ(a->host(), tc.host) << tc.in << ": got host " << a->host();
    EXPECT_EQ(a->port(), tc.port) << tc.in << ": got port " << a->port();
    EXPECT_EQ(a->toString(), tc.text) << tc.in << ": got " << a->toString();
    EXPECT_EQ(a->length, tc.family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
  }
}

TEST(ClientCountKey, IPv4AsIsIPv6ByPrefix) {
  const struct {
    std::string address;
    int prefix;
    std::string want;
  } cases[] = {
      {"192.0.2.1", 64, "192.0.2.1"},
      {"192.0.2.1", 1, "192.0.2.1"},  // the prefix is for IPv6 only
      {"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
      {"2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"},
      {"2001:DB8:1:2::1", 64, "2001:db8:1:2::/64"},  // canonical text (RFC 5952: lower case)
      {"2001:0db8:0001:0002:0000:0000:0000:0001", 64, "2001:db8:1:2::/64"},
      {"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"},
      {"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
      {"2001:db8:1:ff:3:4:5:6", 56, "2001:db8:1::/56"},
      {"2001:db8:1:1ff:3:4:5:6", 56, "2001:db8:1:100::/56"},
      {"2001:db8:1:2:3:4:5:6", 63, "2001:db8:1:2::/63"},
      {"2001:db8:1:3:3:4:5:6", 63, "2001:db8:1:2::/63"},  // a bit inside the last nibble
      {"ffff::1", 1, "8000::/1"},
      {"::1", 64, "::/64"},
      {"::ffff:192.0.2.7", 64, "192.0.2.7"},  // an IPv4 client on a dual-stack socket
      {"2001:db8::1", 0, "::/1"},             // clamped into 1..128
      {"2001:db8::1", 200, "2001:db8::1/128"},
      {"not-an-address", 64, "not-an-address"},
      {"", 64, ""},
  };
  for (const auto& tc : cases) {
    const std::string got = clientCountKey(tc.address, tc.prefix);
    EXPECT_EQ(got, tc.want) << "clientCountKey(\"" << tc.address << "\", " << tc.prefix
                            << "): got \"" << got << "\", want \"" << tc.want << "\"";
  }
  // Two hosts in one /64 share a key; the next /64 does not.
  EXPECT_EQ(clientCountKey("2001:db8:0:1::a", 64), clientCountKey("2001:db8:0:1::b", 64));
  EXPECT_NE(clientCountKey("2001:db8:0:1::a", 64), clientCountKey("2001:db8:0:2::a", 64));
}

TEST(SocketAddress, HostAndWildcard) {
  const struct {
    std::string in;
    std::string host;
    bool wildcard;
  } cases[] = {
      {"0.0.0.0:25", "0.0.0.0", true},
      {"[::]:25", "::", true},
      {"127.0.0.1:25", "127.0.0.1", false},
      {"255.255.255.255:25", "255.255.255.255", false},
      {"10.20.0.9:25", "10.20.0.9", false},
      {"192.168.100.200:25", "192.168.100.200", false},
      {"[::1]:25", "::1", false},
      {"[::ffff:0.0.0.0]:25", "0.0.0.0", false},  // mapped, not the IPv6 wildcard
  };
  for (const auto& tc : cases) {
    const auto a = parseSocketAddress(tc.in);
    ASSERT_TRUE(a.has_value()) << tc.in;
    EXPECT_EQ(a->host(), tc.host) << tc.in << ": got " << a->host() << ", want " << tc.host;
    EXPECT_EQ(a->isWildcard(), tc.wildcard) << tc.in << ": got wildcard=" << a->isWildcard();
  }
}

TEST(ParseSocketAddress, FromSockaddr) {
  sockaddr_in in4{};
  in4.sin_family = AF_INET;
  in4.sin_port = htons(2525);
  ASSERT_EQ(inet_pton(AF_INET, "198.51.100.7", &in4.sin_addr), 1);
  const auto a = fromSockaddr(reinterpret_cast<const sockaddr*>(&in4), sizeof in4);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->toString(), "198.51.100.7:2525");

  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(25);
  ASSERT_EQ(inet_pton(AF_INET6, "2001:db8::25", &in6.sin6_addr), 1);
  const auto b = fromSockaddr(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->toString(), "[2001:db8::25]:25");

  sockaddr un{};
  un.sa_family = AF_UNIX;
  EXPECT_FALSE(fromSockaddr(&un, sizeof un));
  EXPECT_FALSE(fromSockaddr(nullptr, 0));
  EXPECT_FALSE(fromSockaddr(reinterpret_cast<const sockaddr*>(&in4), sizeof(sockaddr_storage) + 1));
}

TEST(Cidr, ParseAndContains) {
  const struct {
    std::string cidr;
    std::string addr;
    bool want;
  } cases[] = {
      {"10.0.0.0/8", "10.0.0.0", true},
      {"10.0.0.0/8", "10.255.255.255", true},
      {"10.0.0.0/8", "11.0.0.0", false},
      {"10.0.0.0/8", "9.255.255.255", false},
      {"172.16.0.0/12", "172.31.255.255", true},
      {"172.16.0.0/12", "172.32.0.0", false},
      {"172.16.0.0/12", "172.15.255.255", false},
      {"192.0.2.0/31", "192.0.2.1", true},
      {"192.0.2.0/31", "192.0.2.2", false},
      {"192.0.2.1", "192.0.2.1", true},
      {"192.0.2.1", "192.0.2.2", false},
      {"192.0.2.1/32", "192.0.2.1", true},
      {"192.0.2.1/32", "192.0.2.0", false},
      {"0.0.0.0/0", "255.255.255.255", true},
      {"0.0.0.0/0", "0.0.0.0", true},
      {"0.0.0.0/0", "::1", false},
      {"10.1.2.3/8", "10.9.9.9", true},  // host bits in the network are ignored
      {"10.0.0.0/8", "::ffff:10.1.2.3", false},
      {"10.0.0.0/8", "not-an-address", false},
      {"10.0.0.0/8", "", false},
      {"::/0", "2001:db8::1", true},
      {"::/0", "::", true},
      {"::/0", "10.0.0.1", false},
      {"::1", "::1", true},
      {"::1/128", "::1", true},
      {"::1/128", "::2", false},
      {"::/127", "::1", true},
      {"::/127", "::2", false},
      {"2001:db8::/32", "2001:db8:ffff:ffff::1", true},
      {"2001:db8::/32", "2001:db9::", false},
      {"2001:db8::/33", "2001:db8:7fff::1", true},
      {"2001:db8::/33", "2001:db8:8000::1", false},
      {"fe80::/10", "febf::1", true},
      {"fe80::/10", "fec0::1", false},
  };
  for (const auto& tc : cases) {
    const auto c = Cidr::parse(tc.cidr);
    ASSERT_TRUE(c) << tc.cidr;
    EXPECT_EQ(c->contains(tc.addr), tc.want)
        << tc.cidr << " contains " << tc.addr << ": got " << !tc.want << ", want " << tc.want;
  }
  for (const char* bad : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8x",
                          "10.0.0/8", "::/129", "2001:db8::/x", "example.com/8", "10.0.0.0/ 8"}) {
    EXPECT_FALSE(Cidr::parse(bad)) << "\"" << bad << "\": got a CIDR, want nullopt";
  }
}

TEST(Cidr, ContainsSocketAddress) {
  const auto c = Cidr::parse("10.0.0.0/8");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->contains(*parseSocketAddress("10.1.2.3:25")));
  EXPECT_FALSE(c->contains(*parseSocketAddress("11.1.2.3:25")));
  // A client on a dual-stack listener arrives as ::ffff:a.b.c.d and is matched as IPv4.
  EXPECT_TRUE(c->contains(*parseSocketAddress("[::ffff:10.1.2.3]:25")));
  const auto v6 = Cidr::parse("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(*parseSocketAddress("[2001:db8::1]:25")));
  EXPECT_FALSE(v6->contains(*parseSocketAddress("10.1.2.3:25")));
}

}  // namespace
}  // namespace portcullis
