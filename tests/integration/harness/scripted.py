"""ScriptedServer: the loopback TCP server under every scripted misbehaving scanner
(FakeClamd, FakeSpamd, FakeRspamd).

It accepts on a free 127.0.0.1 port, serves each connection from its own thread with the
behaviour set when it was accepted (set_reply() changes it for the next connections), records
what each connection sent (record(), recorded()), counts connections, and closes every one of
them at stop(). A subclass implements _serve(conn, behaviour); the connection is closed after
it returns.
"""

import socket
import threading

from .ports import free_port
from .process import Fixture


def read_request(conn):
    """A request head ending in an empty line, then as many body bytes as its Content-Length
    says (SPAMC's "Content-length" and HTTP's alike): (first line, [(name, value)...], head
    text, body). None when the client closed before the head ended."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return None
        data += more
    head, body = data.split(b"\r\n\r\n", 1)
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    headers = []
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        more = conn.recv(65536)
        if not more:
            break
        body += more
    return lines[0], headers, text, body


def stall(conn):
    """Answer nothing until the client gives up (or 120 s pass)."""
    conn.settimeout(120)
    conn.recv(1)


class ScriptedServer(Fixture):
    def __init__(self, *, behaviour, port=None):
        super().__init__()
        self.host = "127.0.0.1"
        self.port = port or free_port(udp=False)
        self._behaviour = behaviour
        self._lock = threading.Lock()
        self._recorded = []
        self._accepted = 0
        self._sock = None
        self._conns = []

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def set_behaviour(self, behaviour):
        with self._lock:
            self._behaviour = behaviour

    def record(self, item):
        with self._lock:
            self._recorded.append(item)

    def recorded(self):
        with self._lock:
            return list(self._recorded)

    def connections(self):
        with self._lock:
            return self._accepted

    def _start(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, self.port))
        self._sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _stop(self):
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._accepted += 1
                self._conns.append(conn)
                behaviour = self._behaviour
            threading.Thread(target=self._run, args=(conn, behaviour), daemon=True).start()

    def _run(self, conn, behaviour):
        try:
            self._serve(conn, behaviour)
        except (OSError, EOFError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _serve(self, conn, behaviour):
        raise NotImplementedError
