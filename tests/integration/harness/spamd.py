"""SpamAssassin's spamd, privately on loopback, and FakeSpamd, a scripted misbehaving one.

Spamd runs Debian's spamd (SpamAssassin 4) in the foreground on a free TCP port of 127.0.0.1
and a unix socket in its temp dir, with -L (local tests only: no DNSBL, URIBL, Razor, Pyzor
or other network lookups), the packaged rules (/usr/share/spamassassin, never sa-update's), a
private site config dir (a copy of the packaged .pre plugin lists and an empty local.cf, so
the system's local.cf never applies) and a private home. It never touches the network or the
system's spamd service. GTUBE scores about 1000.

    spamd = Spamd().start()
    spamd.address        "127.0.0.1:PORT"          (portcullis' `address`)
    spamd.unix_address   "unix:/tmp/.../spamd.sock"
    spamd.check(b"...")  the raw SYMBOLS reply for those bytes

FakeSpamd speaks just enough SPAMC/1.5 to misbehave on purpose:

    fake = FakeSpamd(reply=b"SPAMD/1.1 0 EX_OK\\r\\n...")  # sent after the message is read
    fake = FakeSpamd(reply=None)                          # read everything, never answer
    fake.requests()    (head, message) of each connection: the request head and its bytes
    fake.connections() how many connections were accepted
    fake.set_reply(...) changes the behaviour for the next connections
"""

import glob
import os
import pwd
import shutil
import socket
import threading
import time

from .ports import free_port
from .process import Fixture, ManagedProcess, ProcessFixture, require_program, tail

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def spamc(address, data, command=b"SYMBOLS", user=None, timeout=10.0):
    """One SPAMC/1.5 request to ("host", port) or a unix path; returns the raw reply bytes."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    head = command + b" SPAMC/1.5\r\n"
    if command != b"PING":
        head += b"Content-length: %d\r\n" % len(data)
    if user:
        head += b"User: " + user.encode() + b"\r\n"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address)
        s.sendall(head + b"\r\n" + (data if command != b"PING" else b""))
        reply = b""
        while True:
            more = s.recv(65536)
            if not more:
                break
            reply += more
    return reply


class Spamd(ProcessFixture):
    name = "spamd"

    def __init__(self, *, port=None, children=2, start_timeout=60.0):
        super().__init__()
        self.host = "127.0.0.1"
        self.port = port or free_port(udp=False)
        self.children = children
        self.start_timeout = start_timeout
        self.socket_path = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    @property
    def unix_address(self):
        return f"unix:{self.socket_path}"

    def _start(self):
        binary = require_program("spamd")
        tmp = self.make_tmpdir()
        home = os.path.join(tmp, "home")
        site = os.path.join(tmp, "site")
        os.mkdir(home)
        os.mkdir(site)
        # The packaged plugin lists (v320.pre loads the Check plugin spamd cannot scan
        # without); no local.cf of the system's.
        for pre in glob.glob("/etc/spamassassin/*.pre"):
            shutil.copy(pre, site)
        with open(os.path.join(site, "local.cf"), "w") as f:
            f.write("# portcullis test spamd: packaged rules only\n")
        argv = [binary, "-L", f"--listen={self.host}:{self.port}", "--allowed-ips=127.0.0.1",
                "-m", str(self.children), "-C", "/usr/share/spamassassin",
                f"--siteconfigpath={site}", f"--pidfile={tmp}/spamd.pid", "-s", "stderr",
                "-H", home]
        self.socket_path = os.path.join(tmp, "spamd.sock")
        argv += [f"--listen={self.socket_path}", "--socketmode=0666"]
        if os.geteuid() == 0:
            # spamd will not run its children as root: Debian's own user, as the package does.
            user = pwd.getpwnam("debian-spamd")
            os.chown(home, user.pw_uid, user.pw_gid)
            argv += ["-u", "debian-spamd"]
        self.proc = ManagedProcess(argv, os.path.join(tmp, "spamd.log"))
        deadline = time.monotonic() + self.start_timeout
        while True:
            if not self.proc.alive():
                raise RuntimeError(f"spamd exited:\n{tail(self.log_text())}")
            try:
                if spamc((self.host, self.port), b"", command=b"PING",
                         timeout=1.0).startswith(b"SPAMD/1.5 0 PONG"):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"spamd not answering:\n{tail(self.log_text())}")
            time.sleep(0.1)

    def check(self, data, command=b"SYMBOLS", timeout=30.0):
        return spamc((self.host, self.port), data, command=command, timeout=timeout)


class FakeSpamd(Fixture):
    name = "fakespamd"

    def __init__(self, *, reply=b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n"
                 b"Spam: False ; 0.0 / 5.0\r\n\r\n", port=None):
        super().__init__()
        self.host = "127.0.0.1"
        self.port = port or free_port(udp=False)
        self._reply = reply
        self._lock = threading.Lock()
        self._requests = []
        self._pong = b"SPAMD/1.5 0 PONG\r\n"  # the answer to PING (the breaker's probe)
        self._pings = 0
        self._accepted = 0
        self._sock = None
        self._conns = []

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def set_reply(self, reply):
        with self._lock:
            self._reply = reply

    def set_pong(self, pong):
        with self._lock:
            self._pong = pong

    def pings(self):
        with self._lock:
            return self._pings

    def requests(self):
        with self._lock:
            return list(self._requests)

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
                reply = self._reply
            threading.Thread(target=self._serve, args=(conn, reply), daemon=True).start()

    def _serve(self, conn, reply):
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, body = data.split(b"\r\n\r\n", 1)
            if head.startswith(b"PING "):
                with self._lock:
                    self._pings += 1
                    pong = self._pong
                conn.sendall(pong)
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(body) < length:
                more = conn.recv(65536)
                if not more:
                    break
                body += more
            with self._lock:
                self._requests.append((head.decode("latin-1"), body))
            if reply is None:
                conn.settimeout(120)
                conn.recv(1)  # a stall: answer nothing until the client gives up
                return
            conn.sendall(reply)  # then close, as spamd does
        except (OSError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
