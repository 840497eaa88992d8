#pragma once
// rdns: placeholder, being written.

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

class RdnsFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "rdns"; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
