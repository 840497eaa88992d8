// Table tests for the pure name helpers in resolver.h (proxy/dns/dns_names.cc).

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "portcullis/resolver.h"

namespace portcullis {
namespace {

std::string show(const std::optional<std::string>& v) { return v ? "\"" + *v + "\"" : "nullopt"; }

constexpr const char* kLoopback6 =
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0";

TEST(DnsNames, ReverseNibbles) {
  struct Case {
    std::string in;
    std::optional<std::string> want;
  };
  const Case cases[] = {
      {"192.0.2.1", "1.2.0.192"},
      {"127.0.0.2", "2.0.0.127"},
      {"0.0.0.0", "0.0.0.0"},
      {"255.255.255.255", "255.255.255.255"},
      {"::1", kLoopback6},
      {"2001:db8::567:89ab", "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"},
      {"2001:DB8::567:89AB", "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"},
      {"::ffff:192.0.2.1", "1.0.2.0.0.0.0.c.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"},
      {"", std::nullopt},
      {"1.2.3", std::nullopt},
      {"256.1.1.1", std::nullopt},
      {"1.2.3.4 ", std::nullopt},
      {" 1.2.3.4", std::nullopt},
      {"1.2.3.4.5", std::nullopt},
      {"example.test", std::nullopt},
      {"fe80::1%eth0", std::nullopt},
      {"::1::2", std::nullopt},
      {std::string(200, '1'), std::nullopt},
      {std::string("1.2.3.4\0", 8), std::nullopt},
  };
  for (const auto& c : cases) {
    const auto got = reverseNibbles(c.in);
    EXPECT_EQ(got, c.want) << "reverseNibbles(\"" << c.in << "\"): got " << show(got) << " want "
                           << show(c.want);
  }
}

TEST(DnsNames, PtrQueryName) {
  struct Case {
    std::string in;
    std::optional<std::string> want;
  };
  const Case cases[] = {
      {"192.0.2.1", "1.2.0.192.in-addr.arpa"},
      {"127.0.0.1", "1.0.0.127.in-addr.arpa"},
      {"::1", std::string(kLoopback6) + ".ip6.arpa"},
      {"not-an-ip", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& c : cases) {
    const auto got = ptrQueryName(c.in);
    EXPECT_EQ(got, c.want) << "ptrQueryName(\"" << c.in << "\"): got " << show(got) << " want "
                           << show(c.want);
  }
}

TEST(DnsNames, StatusNames) {
  struct Case {
    DnsStatus in;
    std::string_view want;
  };
  const Case cases[] = {
      {DnsStatus::kOk, "ok"},
      {DnsStatus::kNoData, "nodata"},
      {DnsStatus::kNxDomain, "nxdomain"},
      {DnsStatus::kServFail, "servfail"},
      {DnsStatus::kTimeout, "timeout"},
      {DnsStatus::kError, "error"},
      {static_cast<DnsStatus>(99), "unknown"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(dnsStatusName(c.in), c.want)
        << "dnsStatusName(" << static_cast<int>(c.in) << "): got " << dnsStatusName(c.in)
        << " want " << c.want;
  }
}

TEST(DnsNames, TypeNames) {
  struct Case {
    DnsType in;
    std::string_view want;
  };
  const Case cases[] = {
      {DnsType::kA, "A"},   {DnsType::kAaaa, "AAAA"}, {DnsType::kPtr, "PTR"},
      {DnsType::kMx, "MX"}, {DnsType::kTxt, "TXT"},   {static_cast<DnsType>(255), "unknown"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(dnsTypeName(c.in), c.want) << "dnsTypeName(" << static_cast<int>(c.in) << "): got "
                                         << dnsTypeName(c.in) << " want " << c.want;
  }
}

}  // namespace
}  // namespace portcullis
