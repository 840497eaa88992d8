"""Loopback ports: pick a free one, wait until something listens on one.

free_port() hands out a port that is free for both TCP and UDP on 127.0.0.1 and never hands
out the same port twice, in one test process or in two running at once (ctest -j): each port
handed out is claimed with a lock on its byte of one shared file, held until the process
exits. Without that, two test files could be given the same port, and two listeners with
SO_REUSEPORT (portcullis with `workers: 2`, HAProxy) would share it silently, each getting
some of the other's connections. wait_listening() reads /proc/net/tcp instead of connecting,
so it does not open an SMTP session that would later show up in a fixture's log or session
list.
"""

import fcntl
import os
import socket
import tempfile
import time

_handed_out = set()
_claims = None  # the shared lock file, open for the life of the process


def _claim(port):
    """Whether this process got `port`'s lock (no other test process holds it)."""
    global _claims
    if _claims is None:
        _claims = open(os.path.join(tempfile.gettempdir(), "portcullis-test-ports.lock"), "a")
    try:
        fcntl.lockf(_claims, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError:
        return False
    return True


def free_port(host="127.0.0.1", udp=True):
    """Return a port that is free on `host` for TCP (and UDP unless udp=False)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            if port in _handed_out or not _claim(port):
                continue
            if udp:
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dgram:
                        dgram.bind((host, port))
                except OSError:
                    continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found")


def wait_port(host, port, timeout=10.0):
    """Wait until a TCP connect to host:port succeeds (the connection is closed at once)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} not accepting connections after {timeout}s ({last})")


def _listening_ports():
    """Ports in LISTEN state in this network namespace, from /proc/net/tcp and tcp6."""
    ports = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A":  # 0A = TCP_LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def is_listening(port):
    return port in _listening_ports()


def wait_listening(port, timeout=10.0, alive=None):
    """Wait until some socket listens on TCP `port`. `alive` is an optional callable; when it
    returns False the wait stops early with RuntimeError (the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_listening(port):
            return
        if alive is not None and not alive():
            raise RuntimeError(f"process exited before listening on port {port}")
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def split_hostport(address):
    """'127.0.0.1:25' -> ('127.0.0.1', 25); '[::1]:25' -> ('::1', 25)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
