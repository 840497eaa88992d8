// Privilege drop and pid file. See privileges.h.

#include "proxy/server/privileges.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace portcullis {
namespace {

std::string errnoText() { return std::strerror(errno); }

std::vector<char> lookupBuffer(int name) {
  const long size = sysconf(name);
  return std::vector<char>(static_cast<std::size_t>(size > 0 ? size : 16384));
}

std::string lookupFailure(const std::string& what, const std::string& name, int rc) {
  return "no such " + what + " \"" + name + "\"" +
         (rc != 0 ? " (" + std::string(std::strerror(rc)) + ")" : "");
}

}  // namespace

std::optional<RunAs> resolveRunAs(const std::string& user, const std::string& group,
                                  std::string* error) {
  RunAs out{user, group, 0, 0};
  std::vector<char> buf = lookupBuffer(_SC_GETPW_R_SIZE_MAX);
  passwd pw{};
  passwd* foundUser = nullptr;
  const int rc = getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &foundUser);
  if (foundUser == nullptr) {
    *error = lookupFailure("user", user, rc);
    return std::nullopt;
  }
  out.uid = pw.pw_uid;
  out.gid = pw.pw_gid;
  std::vector<char> gbuf = lookupBuffer(_SC_GETGR_R_SIZE_MAX);
  struct group gr {};
  struct group* foundGroup = nullptr;
  if (group.empty()) {
    // The user's primary group, by name for the log when it has one.
    if (getgrgid_r(out.gid, &gr, gbuf.data(), gbuf.size(), &foundGroup) == 0 &&
        foundGroup != nullptr) {
      out.group = gr.gr_name;
    } else {
      out.group = std::to_string(out.gid);
    }
    return out;
  }
  const int grc = getgrnam_r(group.c_str(), &gr, gbuf.data(), gbuf.size(), &foundGroup);
  if (foundGroup == nullptr) {
    *error = lookupFailure("group", group, grc);
    return std::nullopt;
  }
  out.gid = gr.gr_gid;
  return out;
}

bool canBecome(const RunAs& target, std::string* error) {
  if (geteuid() == 0) return true;
  if (getuid() == target.uid && geteuid() == target.uid && getgid() == target.gid &&
      getegid() == target.gid) {
    return true;
  }
  *error = "portcullis runs as uid " + std::to_string(geteuid()) + ", not root: it cannot become " +
           target.user + ":" + target.group + " (start it as root, or as that user)";
  return false;
}

bool handOver(const std::string& path, const RunAs& target, std::string* error) {
  if (geteuid() != 0) return true;
  if (chown(path.c_str(), target.uid, target.gid) != 0) {
    *error = "cannot give " + path + " to " + target.user + ": " + errnoText();
    return false;
  }
  return true;
}

bool dropPrivileges(const RunAs& target, std::string* error) {
  if (geteuid() != 0) return canBecome(target, error);
  // Groups first: after setuid() the process may no longer change them.
  if (setgroups(1, &target.gid) != 0) {
    *error = "setgroups: " + errnoText();
    return false;
  }
  if (setresgid(target.gid, target.gid, target.gid) != 0) {
    *error = "setresgid: " + errnoText();
    return false;
  }
  if (setresuid(target.uid, target.uid, target.uid) != 0) {
    *error = "setresuid: " + errnoText();
    return false;
  }
  // Trust, then verify: every id is the target's, and root cannot be had back.
  uid_t ruid = 0;
  uid_t euid = 0;
  uid_t suid = 0;
  gid_t rgid = 0;
  gid_t egid = 0;
  gid_t sgid = 0;
  gid_t groups[2] = {};
  const int ngroups = getgroups(2, groups);
  if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0 ||
      ruid != target.uid || euid != target.uid || suid != target.uid || rgid != target.gid ||
      egid != target.gid || sgid != target.gid || ngroups != 1 || groups[0] != target.gid) {
    *error = "the ids after the drop are not " + target.user + ":" + target.group + "'s";
    return false;
  }
  if (target.uid != 0 && setuid(0) == 0) {
    *error = "setuid(0) still succeeds after the drop";
    return false;
  }
  return true;
}

bool writePidFile(const std::string& path, std::string* error) {
  // Written next to its final name and renamed over it, so a reader never sees half a pid.
  const std::string temp = path + ".tmp";
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    *error = "cannot create " + temp + ": " + errnoText();
    return false;
  }
  const std::string text = std::to_string(getpid()) + "\n";
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const bool closed = close(fd) == 0;
  if (!written || !closed || rename(temp.c_str(), path.c_str()) != 0) {
    *error = "cannot write " + path + ": " + errnoText();
    unlink(temp.c_str());
    return false;
  }
  return true;
}

}  // namespace portcullis
