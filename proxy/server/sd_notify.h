#pragma once
// systemd's readiness protocol (sd_notify(3), "Type=notify"), spoken directly: one datagram of
// "KEY=VALUE" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" in the
// abstract namespace). Without $NOTIFY_SOCKET it does nothing, so the daemon runs the same
// outside systemd. Never blocks; a failure is reported, never fatal.

#include <string>
#include <string_view>

namespace portcullis {

// Sends `state` (e.g. "READY=1\nSTATUS=accepting"); true when sent or when there is no
// $NOTIFY_SOCKET, false with `error` set otherwise.
bool sdNotify(std::string_view state, std::string* error);

}  // namespace portcullis
