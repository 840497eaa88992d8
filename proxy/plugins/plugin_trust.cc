// plugin_trust. See plugin_trust.h.

#include "proxy/plugins/plugin_trust.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace portcullis {
namespace {

std::string octalMode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Why `st` (of `what`, e.g. "directory /usr/lib/x") cannot be trusted; empty if it can.
std::string untrusted(const struct stat& st, const std::string& what, uid_t user) {
  if (st.st_uid != 0 && st.st_uid != user) {
    return what + " is owned by uid " + std::to_string(st.st_uid) + ", not by root or uid " +
           std::to_string(user);
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return what + " is writable by group or others (mode " + octalMode(st.st_mode) + ")";
  }
  return {};
}

}  // namespace

std::optional<TrustedFile> checkPluginFile(const std::string& path, uid_t user, std::string* why) {
  const std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr),
                                                         &std::free);
  if (!real) {
    *why = std::string("cannot open: ") + std::strerror(errno);
    return std::nullopt;
  }
  TrustedFile out{real.get()};
  struct stat st {};
  if (::stat(out.realPath.c_str(), &st) != 0) {
    *why = std::string("cannot stat: ") + std::strerror(errno);
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    *why = "is not a regular file";
    return std::nullopt;
  }
  const std::string shown = out.realPath == path ? "the file" : "the file " + out.realPath;
  if (std::string bad = untrusted(st, shown, user); !bad.empty()) {
    *why = std::move(bad);
    return std::nullopt;
  }
  const std::string dir = out.realPath.substr(0, std::max<std::size_t>(out.realPath.rfind('/'), 1));
  if (::stat(dir.c_str(), &st) != 0) {
    *why = "cannot stat directory " + dir + ": " + std::strerror(errno);
    return std::nullopt;
  }
  if (std::string bad = untrusted(st, "its directory " + dir, user); !bad.empty()) {
    *why = std::move(bad);
    return std::nullopt;
  }
  return out;
}

}  // namespace portcullis
