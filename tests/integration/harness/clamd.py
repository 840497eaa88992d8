"""ClamAV's clamd, privately on loopback, and FakeClamd, a scripted misbehaving one.

Clamd runs the Debian clamav-daemon binary in the foreground from its own config file, on a
free TCP port of 127.0.0.1 and a unix socket in its temp dir, with a private DatabaseDirectory
that holds one MD5 signature file (test.hdb) matching only the 68-byte EICAR test string. It
never runs freshclam and never touches the network or the system's clamav configuration.

    clamd = Clamd(stream_max_length="64K").start()
    clamd.address        "127.0.0.1:PORT"          (portcullis' `address`)
    clamd.unix_address   "unix:/tmp/.../clamd.sock"
    clamd.scan(b"...")   the reply to a zINSTREAM of those bytes, e.g. "stream: OK"

FakeClamd speaks just enough zINSTREAM to misbehave on purpose:

    fake = FakeClamd(reply=b"stream: OK\\0")   # bytes sent after the terminating chunk
    fake = FakeClamd(reply=None)              # read everything, never answer (a stall)
    fake = FakeClamd(reply=b"garbage", close=True)
    fake.streams()     the message bytes each connection streamed, de-framed
    fake.connections() how many connections were accepted
    fake.set_reply(...) changes the behaviour for the next connections
"""

import hashlib
import os
import socket
import struct
import threading
import time

from .ports import free_port
from .process import Fixture, ManagedProcess, ProcessFixture, require_program, tail

EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
EICAR_NAME = "Eicar-Test-Signature"


def instream(address, data, chunk=8192, timeout=10.0):
    """A zINSTREAM of `data` to ("host", port) or a unix path; returns the reply text."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address)
        s.sendall(b"zINSTREAM\0")
        for i in range(0, len(data), chunk):
            part = data[i:i + chunk]
            s.sendall(struct.pack(">I", len(part)) + part)
        s.sendall(struct.pack(">I", 0))
        reply = b""
        while not reply.endswith(b"\0"):
            more = s.recv(4096)
            if not more:
                break
            reply += more
    return reply.rstrip(b"\0").decode("utf-8", "replace")


class Clamd(ProcessFixture):
    name = "clamd"

    def __init__(self, *, port=None, stream_max_length="10M", start_timeout=60.0):
        super().__init__()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.stream_max_length = stream_max_length
        self.start_timeout = start_timeout
        self.socket_path = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    @property
    def unix_address(self):
        return f"unix:{self.socket_path}"

    def _start(self):
        binary = require_program("clamd")
        tmp = self.make_tmpdir()
        db = os.path.join(tmp, "db")
        os.mkdir(db)
        with open(os.path.join(db, "test.hdb"), "w") as f:
            f.write(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{EICAR_NAME}\n")
        self.socket_path = os.path.join(tmp, "clamd.sock")
        conf = os.path.join(tmp, "clamd.conf")
        with open(conf, "w") as f:
            f.write("\n".join([
                "Foreground yes",
                f"DatabaseDirectory {db}",
                f"TCPSocket {self.port}",
                f"TCPAddr {self.host}",
                f"LocalSocket {self.socket_path}",
                f"PidFile {tmp}/clamd.pid",
                f"LogFile {tmp}/clamd-own.log",
                f"StreamMaxLength {self.stream_max_length}",
                "ScanMail yes",
                "User root",
                "SelfCheck 0",
                "",
            ]))
        self.proc = ManagedProcess([binary, "-c", conf], os.path.join(tmp, "clamd.log"))
        deadline = time.monotonic() + self.start_timeout
        while True:
            if not self.proc.alive():
                raise RuntimeError(f"clamd exited:\n{tail(self.log_text())}")
            try:
                if self.scan(b"ping", timeout=1.0) == "stream: OK":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"clamd not answering:\n{tail(self.log_text())}")
            time.sleep(0.1)

    def scan(self, data, timeout=10.0):
        return instream((self.host, self.port), data, timeout=timeout)


class FakeClamd(Fixture):
    name = "fakeclamd"

    def __init__(self, *, reply=b"stream: OK\0", close=False, port=None):
        super().__init__()
        self.host = "127.0.0.1"
        self.port = port or free_port(udp=False)
        self._reply = reply
        self._close = close
        self._lock = threading.Lock()
        self._streams = []
        self._pong = b"PONG\0"  # the answer to zPING (the breaker's probe)
        self._pings = 0
        self._accepted = 0
        self._sock = None
        self._conns = []

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def set_reply(self, reply, close=False):
        with self._lock:
            self._reply = reply
            self._close = close

    def set_pong(self, pong):
        with self._lock:
            self._pong = pong

    def pings(self):
        with self._lock:
            return self._pings

    def streams(self):
        with self._lock:
            return list(self._streams)

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
                reply, close = self._reply, self._close
            threading.Thread(target=self._serve, args=(conn, reply, close), daemon=True).start()

    @staticmethod
    def _read_exact(conn, n):
        data = b""
        while len(data) < n:
            more = conn.recv(n - len(data))
            if not more:
                raise EOFError
            data += more
        return data

    def _serve(self, conn, reply, close):
        try:
            command = self._read_exact(conn, len(b"zPING\0"))
            if command == b"zPING\0":
                with self._lock:
                    self._pings += 1
                    pong = self._pong
                conn.sendall(pong)
                return
            command += self._read_exact(conn, len(b"zINSTREAM\0") - len(command))
            stream = b""
            if command == b"zINSTREAM\0":
                while True:
                    (n,) = struct.unpack(">I", self._read_exact(conn, 4))
                    if n == 0:
                        break
                    stream += self._read_exact(conn, n)
            with self._lock:
                self._streams.append(stream)
            if reply is None:
                conn.settimeout(120)
                conn.recv(1)  # a stall: answer nothing until the client gives up
                return
            conn.sendall(reply)
            if not close:
                conn.settimeout(120)
                conn.recv(1)  # like clamd, wait for the client to hang up
        except (OSError, EOFError, struct.error):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
