// Fuzz target: parseProxyHeader (PROXY protocol v1/v2 from a load balancer). Invariants: never
// crash; a result never claims more octets than it was given, nor more than the protocol's
// bounds (107 for v1, 1 KiB for v2); kNeedMore is never answered for a prefix that a longer
// input would turn into an error at a shorter length (monotonic: a prefix of an accepted header
// is kNeedMore or kError, never a different kOk); an accepted v4/v6 header re-encodes (v1 and
// v2) to something that parses back to the same addresses.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "proxy/net/proxy_protocol.h"

namespace {

using portcullis::ProxyHeader;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const ProxyHeader h = portcullis::parseProxyHeader(in);
  if (h.status != ProxyHeader::Status::kOk) return 0;
  require(h.consumed > 0 && h.consumed <= size, "consumed within the input");
  require(h.version == 1 ? h.consumed <= 107 : h.consumed <= 1024, "consumed within the bound");
  // Every strict prefix is incomplete or an error, never another accepted header.
  for (std::size_t cut = 0; cut < h.consumed; ++cut) {
    const ProxyHeader p = portcullis::parseProxyHeader(in.substr(0, cut));
    require(p.status != ProxyHeader::Status::kOk, "a strict prefix is not a header");
  }
  if (h.local) return 0;
  for (const auto& encoded : {portcullis::proxyV1Header(h.source, h.destination),
                              portcullis::proxyV2Header(h.source, h.destination)}) {
    const ProxyHeader back = portcullis::parseProxyHeader(encoded);
    require(back.status == ProxyHeader::Status::kOk, "our own header parses");
    require(back.consumed == encoded.size(), "our own header is consumed whole");
    require(back.source.toString() == h.source.toString(), "source survives a round trip");
    require(back.destination.toString() == h.destination.toString(),
            "destination survives a round trip");
  }
  return 0;
}
