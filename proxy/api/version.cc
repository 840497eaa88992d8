// version.h: the daemon side. PORTCULLIS_VERSION comes from CMake's project(VERSION).

#include "portcullis/version.h"

namespace portcullis {

ApiVersion apiVersion() { return {kApiVersionMajor, kApiVersionMinor}; }

std::string_view projectVersion() { return PORTCULLIS_VERSION; }

}  // namespace portcullis
