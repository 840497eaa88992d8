#pragma once
// What start-up would refuse that the config loader cannot see, because it depends on the
// host or the process: the open-files budget, addresses bind() would refuse, the pid file's
// directory. main runs these for --check-config and start-up alike (so the check fails exactly
// where start-up would), and the descriptor budget again on every reload. Each returns false
// with one "key: message" line in `error`. Plain system calls; no state.

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>
#include <string>

#include "proxy/config/config.h"

namespace portcullis {

// The open-files budget (DESIGN.md invariant 10): descriptorsNeeded(config) within `soft`.
bool checkDescriptorBudget(const Config& config, rlim_t soft, std::string* error);

// bind() would take `address` here: it is an address of this host (else EADDRNOTAVAIL) and we
// may use its port (else EACCES, below 1024 without CAP_NET_BIND_SERVICE). A port in use is
// not an error here: --check-config is run while the daemon holds its own ports.
bool checkBindable(const std::string& key, const SocketAddress& address, std::string* error);

// A group's id by name (getgrnam_r); nullopt when there is no such group.
std::optional<gid_t> groupId(const std::string& name);

// Every listen and admin.listen address (checkBindable), the pid_file's directory, and the
// milter socket's group.
bool checkHost(const Config& config, std::string* error);

}  // namespace portcullis
