"""HAProxy (mode tcp) in front of a backend, adding a PROXY protocol header.

    hap = HAProxy(backend=pc, send_proxy="v2").start()   # or "v1"; backend: fixture/"h:p"/port
    hap.port       the frontend on 127.0.0.1
    hap.stop()     SIGTERM (hard stop in -db mode), then SIGKILL to its process group

Runs `haproxy -db -f haproxy.cfg` in the foreground, no health checks (so the backend never
sees a probe connection), no chroot, no user switch. It connects to the backend from its own
127.0.0.1 source, which is what the backend's trusted_proxies must list.
"""

import os

from .ports import free_port, wait_listening
from .process import ManagedProcess, ProcessFixture, require_program, tail

_SEND_PROXY = {"v1": "send-proxy", "v2": "send-proxy-v2", None: ""}


def _backend_address(backend):
    if hasattr(backend, "address"):
        return backend.address
    if isinstance(backend, tuple):
        return f"{backend[0]}:{backend[1]}"
    if isinstance(backend, int):
        return f"127.0.0.1:{backend}"
    return str(backend)


class HAProxy(ProcessFixture):
    name = "haproxy"

    def __init__(self, *, backend, send_proxy="v2", port=None, timeout="60s",
                 start_timeout=10.0):
        """send_proxy: "v2" (send-proxy-v2), "v1" (send-proxy) or None (no header)."""
        super().__init__()
        if send_proxy not in _SEND_PROXY:
            raise ValueError(f"send_proxy must be v1, v2 or None, not {send_proxy!r}")
        self.backend = backend
        self.send_proxy = send_proxy
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.config_path = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def config_text(self):
        server = f"server pc {_backend_address(self.backend)} {_SEND_PROXY[self.send_proxy]}"
        return (
            "global\n"
            "    maxconn 1000\n"
            "defaults\n"
            "    mode tcp\n"
            "    timeout connect 5s\n"
            f"    timeout client {self.timeout}\n"
            f"    timeout server {self.timeout}\n"
            "frontend smtp_in\n"
            f"    bind {self.host}:{self.port}\n"
            "    default_backend portcullis\n"
            "backend portcullis\n"
            f"    {server.rstrip()}\n")

    def _start(self):
        binary = require_program("haproxy")
        tmp = self.make_tmpdir()
        self.config_path = os.path.join(tmp, "haproxy.cfg")
        with open(self.config_path, "w") as f:
            f.write(self.config_text())
        self.proc = ManagedProcess([binary, "-db", "-f", self.config_path],
                                   os.path.join(tmp, "haproxy.log"), cwd=tmp)
        try:
            wait_listening(self.port, self.start_timeout, alive=self.proc.alive)
        except Exception as exc:
            raise RuntimeError(f"haproxy did not start: {exc}\n{tail(self.log_text())}")
