// helo filter (placeholder).

#include "filters/helo/helo_filter.h"

namespace portcullis {

FilterCreator HeloFilterFactory::configure(const ConfigSection& section) const {
  section.fail("name", "the helo filter is not implemented yet");
}

}  // namespace portcullis
