// The built-in filters, one registration line each.

#include "filters/builtin_filters.h"

#include "filters/clamd/clamd_filter.h"
#include "filters/dnsbl/dnsbl_filter.h"
#include "filters/header_checks/header_checks_filter.h"
#include "filters/helo/helo_filter.h"
#include "filters/rdns/rdns_filter.h"
#include "filters/recipients/recipients_filter.h"
#include "filters/rspamd/rspamd_filter.h"
#include "filters/sender_domain/sender_domain_filter.h"
#include "filters/size/size_filter.h"
#include "filters/spamd/spamd_filter.h"
#include "portcullis/filter_registry.h"

namespace portcullis {

void registerBuiltinFilters(FilterRegistry& registry) {
  registry.add(std::make_unique<SizeFilterFactory>());
  registry.add(std::make_unique<RecipientsFilterFactory>());
  registry.add(std::make_unique<DnsblFilterFactory>());
  registry.add(std::make_unique<RdnsFilterFactory>());
  registry.add(std::make_unique<HeloFilterFactory>());
  registry.add(std::make_unique<SenderDomainFilterFactory>());
  registry.add(std::make_unique<HeaderChecksFilterFactory>());
  registry.add(std::make_unique<ClamdFilterFactory>());
  registry.add(std::make_unique<SpamdFilterFactory>());
  registry.add(std::make_unique<RspamdFilterFactory>());
}

}  // namespace portcullis
