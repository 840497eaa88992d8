// dnsbl filter (placeholder).

#include "filters/dnsbl/dnsbl_filter.h"

namespace portcullis {

FilterCreator DnsblFilterFactory::configure(const ConfigSection& section) const {
  section.fail("name", "the dnsbl filter is not implemented yet");
}

}  // namespace portcullis
