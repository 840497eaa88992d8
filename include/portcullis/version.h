#pragma once
// Versions of the filter API and of the daemon. The API version is what a filter was compiled
// against (these constants) or what the daemon implements (apiVersion()): the plugin loader
// refuses a plugin built for any other API version, release or compiler (portcullis/plugin.h).
// The project version is the daemon's release ("0.2.0"), from CMake's project(VERSION). Pure
// data; no I/O.

#include <string_view>

namespace portcullis {

// Major: bumped on any incompatible change to include/portcullis/. Minor: additions only.
inline constexpr int kApiVersionMajor = 1;
// 1.1: header edits, Verdict::withReason. 1.2: HttpClient, MessageReader::bytes.
// 1.3: SessionView::authenticatedUser. 1.4: Counter counts per thread (add() and value() out of
// line; the same source, a different binary layout). 1.5: Filter::hooks (FilterWithHooks), the
// stages the chain calls a filter at.
inline constexpr int kApiVersionMinor = 5;

struct ApiVersion {
  int major = 0;
  int minor = 0;
};

// The API version the running daemon implements (the constants above, as the daemon saw them).
ApiVersion apiVersion();
// The daemon's release version, e.g. "0.2.0".
std::string_view projectVersion();

}  // namespace portcullis
