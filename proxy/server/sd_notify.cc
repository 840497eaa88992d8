// sd_notify. See sd_notify.h.

#include "proxy/server/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace portcullis {

bool sdNotify(std::string_view state, std::string* error) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || *path == '\0') return true;
  const std::string_view name(path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if ((name.front() != '/' && name.front() != '@') || name.size() >= sizeof addr.sun_path) {
    *error = "NOTIFY_SOCKET is not an absolute or abstract socket name";
    return false;
  }
  std::memcpy(addr.sun_path, name.data(), name.size());
  if (name.front() == '@') addr.sun_path[0] = '\0';  // the abstract namespace
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  const ssize_t sent = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                              reinterpret_cast<const sockaddr*>(&addr), length);
  const int saved = errno;
  close(fd);
  if (sent != static_cast<ssize_t>(state.size())) {
    *error = std::string("sendto ") + path + ": " + std::strerror(saved);
    return false;
  }
  return true;
}

}  // namespace portcullis
