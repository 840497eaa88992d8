#pragma once
// header_checks: placeholder, being written.

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

class HeaderChecksFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "header_checks"; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
