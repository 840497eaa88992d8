#pragma once
// helo: placeholder, being written.

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

class HeloFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "helo"; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
