#pragma once
// sender_domain: placeholder, being written.

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

class SenderDomainFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "sender_domain"; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
