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
import time

from .ports import free_port
from .process import ManagedProcess, ProcessFixture, require_program, tail
from .scripted import ScriptedServer, stall

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


class FakeClamd(ScriptedServer):
    name = "fakeclamd"

    def __init__(self, *, reply=b"stream: OK\0", close=False, port=None):
        super().__init__(behaviour=(reply, close), port=port)
        self._pong = b"PONG\0"  # the answer to zPING (the breaker's probe)
        self._pings = 0

    def set_reply(self, reply, close=False):
        self.set_behaviour((reply, close))

    def set_pong(self, pong):
        with self._lock:
            self._pong = pong

    def pings(self):
        with self._lock:
            return self._pings

    def streams(self):
        return self.recorded()

    @staticmethod
    def _read_exact(conn, n):
        data = b""
        while len(data) < n:
            more = conn.recv(n - len(data))
            if not more:
                raise EOFError
            data += more
        return data

    def _serve(self, conn, behaviour):
        reply, close = behaviour
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
        except struct.error:
            return
        self.record(stream)
        if reply is None:
            stall(conn)
            return
        conn.sendall(reply)
        if not close:
            stall(conn)  # like clamd, wait for the client to hang up
