#pragma once
// dnsbl: placeholder, being written.

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

class DnsblFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "dnsbl"; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
