// header_checks filter (placeholder).

#include "filters/header_checks/header_checks_filter.h"

namespace portcullis {

FilterCreator HeaderChecksFilterFactory::configure(const ConfigSection& section) const {
  section.fail("name", "the header_checks filter is not implemented yet");
}

}  // namespace portcullis
