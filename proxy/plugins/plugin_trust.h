#pragma once
// plugin_trust: may the daemon run the code in this file? The checks Postfix makes of its own
// programs: the file is a regular file owned by root or by the user running portcullis, and
// neither it nor its directory is writable by group or others (nor is the directory owned by
// anyone else), so that nobody but those two can change or swap what gets loaded between
// this check and dlopen(). Symlinks are followed first; the checks apply to the real file.
// Synchronous file-system calls; start-up only.

#include <optional>
#include <string>

#include <sys/types.h>

namespace portcullis {

struct TrustedFile {
  std::string realPath;  // symlinks resolved: what dlopen() is given
};

// The resolved file when it passes, else nullopt with *why saying what failed ("is writable by
// group or others (mode 0664)"). `user` is the uid that may own it besides root.
std::optional<TrustedFile> checkPluginFile(const std::string& path, uid_t user, std::string* why);

}  // namespace portcullis
