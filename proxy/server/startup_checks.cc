// Start-up checks on the host and the process. See startup_checks.h.

#include "proxy/server/startup_checks.h"

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "proxy/net/listener.h"

namespace portcullis {

std::optional<gid_t> groupId(const std::string& name) {
  std::vector<char> buf(16384);
  group gr{};
  group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return found->gr_gid;
}

bool checkDescriptorBudget(const Config& config, rlim_t soft, std::string* error) {
  const std::size_t needed = descriptorsNeeded(config);
  if (soft == RLIM_INFINITY || needed <= soft) return true;
  *error = "limits.max_connections: " + std::to_string(config.limits.maxConnections) +
           " connections need " + std::to_string(needed) +
           " file descriptors (4 per connection + upstream.pool_size unless auto + listeners + " +
           std::to_string(kDescriptorReserve) + "), but the open-files limit is " +
           std::to_string(soft) +
           "; raise it (ulimit -n, systemd LimitNOFILE=) or lower limits.max_connections";
  return false;
}

bool checkBindable(const std::string& key, const SocketAddress& address, std::string* error) {
  const int err = bindError(address);
  if (err == 0 || err == EADDRINUSE) return true;
  *error = key + ": cannot listen on " + address.toString() + ": " + std::strerror(err) +
           (err == EADDRNOTAVAIL ? " (not an address of this host)" : "");
  return false;
}

bool checkHost(const Config& config, std::string* error) {
  for (std::size_t i = 0; i < config.listeners.size(); ++i) {
    if (!checkBindable("listen[" + std::to_string(i) + "]", config.listeners[i].address, error)) {
      return false;
    }
  }
  if (config.admin.listen && !checkBindable("admin.listen", *config.admin.listen, error)) {
    return false;
  }
  if (config.milter.listen.starts_with("unix:") && !config.milter.socketGroup.empty() &&
      !groupId(config.milter.socketGroup)) {
    *error = "milter.socket_group: no group \"" + config.milter.socketGroup +
             "\" on this host (the MTA's group: Postfix's smtpd runs as postfix)";
    return false;
  }
  if (!config.process.pidFile.empty()) {
    const std::string& path = config.process.pidFile;
    const std::string dir = path.substr(0, std::max<std::size_t>(path.rfind('/'), 1));
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      *error = "pid_file: " + dir + " is not a directory";
      return false;
    }
    if (::access(dir.c_str(), W_OK) != 0) {
      *error = "pid_file: cannot write in " + dir + ": " + std::strerror(errno);
      return false;
    }
  }
  return true;
}

}  // namespace portcullis
