#pragma once
// Running as an unprivileged user: portcullis binds its listeners (port 25 needs root or
// CAP_NET_BIND_SERVICE), opens its log and spool, writes its pid file, and then becomes `user:`
// (and `group:`, by default the user's primary group) for good, as Postfix's daemons do. The
// drop is checked afterwards: the real, effective and saved ids are the target's, the only
// supplementary group is the target group, and setuid(0) fails.

#include <sys/types.h>

#include <optional>
#include <string>

namespace portcullis {

struct RunAs {
  std::string user;
  std::string group;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Looks `user` (and `group`, or the user's primary group when empty) up in the passwd and group
// databases. nullopt with `error` set when either is unknown.
std::optional<RunAs> resolveRunAs(const std::string& user, const std::string& group,
                                  std::string* error);

// What this process must do before it can become `target`: nothing when it already is that user
// and group; the drop when it is root; otherwise an error (only root can change its user).
bool canBecome(const RunAs& target, std::string* error);

// Gives `path` to the target user and group (the spool directory, a log file), so the process
// can still use it after the drop. A no-op unless running as root.
bool handOver(const std::string& path, const RunAs& target, std::string* error);

// setgroups, setgid, setuid, then the check; false with `error` when any step or the check
// failed (the caller must exit: the process is in an unknown state).
bool dropPrivileges(const RunAs& target, std::string* error);

// Writes the pid and a newline to `path` (replaced atomically); false with `error`.
bool writePidFile(const std::string& path, std::string* error);

}  // namespace portcullis
