// ClientNameLookup. See client_lookup.h.

#include "proxy/relay/client_lookup.h"

#include <arpa/inet.h>

#include <cstring>

#include "portcullis/reply.h"

namespace portcullis {
namespace {

// Compares textual addresses by value ("::1" == "0:0::1").
bool sameAddress(const std::string& a, const std::string& b) {
  unsigned char x[16] = {};
  unsigned char y[16] = {};
  if (inet_pton(AF_INET, a.c_str(), x) == 1) {
    return inet_pton(AF_INET, b.c_str(), y) == 1 && std::memcmp(x, y, 4) == 0;
  }
  if (inet_pton(AF_INET6, a.c_str(), x) == 1) {
    return inet_pton(AF_INET6, b.c_str(), y) == 1 && std::memcmp(x, y, 16) == 0;
  }
  return false;
}

}  // namespace

void ClientNameLookup::start(Resolver& resolver, const std::string& address, Done done) {
  resolver_ = &resolver;
  address_ = address;
  done_ = std::move(done);
  const auto name = ptrQueryName(address);
  if (!name) {
    auto d = std::move(done_);
    d(ReverseStatus::kNoPtr, {}, {});
    return;
  }
  lookup_ = resolver.lookup(*name, DnsType::kPtr, [this](const DnsResult& r) { onPtr(r); });
}

void ClientNameLookup::onPtr(const DnsResult& r) {
  if (!r.ok()) {
    auto d = std::move(done_);
    d(r.negative() ? ReverseStatus::kNoPtr : ReverseStatus::kTempFail, {}, {});
    return;
  }
  // PTR names come from the outside: keep only a sane hostname (DESIGN invariant 6).
  ptrName_ = sanitizeText(r.records.front().value, 253);
  const bool v6 = address_.find(':') != std::string::npos;
  lookup_ = resolver_->lookup(ptrName_, v6 ? DnsType::kAaaa : DnsType::kA,
                              [this](const DnsResult& fr) { onForward(fr); });
}

void ClientNameLookup::onForward(const DnsResult& r) {
  auto d = std::move(done_);
  if (r.ok()) {
    for (const auto& rec : r.records) {
      if (sameAddress(rec.value, address_)) {
        d(ReverseStatus::kVerified, ptrName_, ptrName_);
        return;
      }
    }
    d(ReverseStatus::kMismatch, ptrName_, {});
    return;
  }
  d(r.negative() ? ReverseStatus::kMismatch : ReverseStatus::kTempFail, ptrName_, {});
}

}  // namespace portcullis
