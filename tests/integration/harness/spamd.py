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
import time

from .ports import free_port
from .process import ManagedProcess, ProcessFixture, require_program, tail
from .scripted import ScriptedServer, read_request, stall

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


class FakeSpamd(ScriptedServer):
    name = "fakespamd"

    def __init__(self, *, reply=b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n"
                 b"Spam: False ; 0.0 / 5.0\r\n\r\n", port=None):
        super().__init__(behaviour=reply, port=port)
        self._pong = b"SPAMD/1.5 0 PONG\r\n"  # the answer to PING (the breaker's probe)
        self._pings = 0

    def set_reply(self, reply):
        self.set_behaviour(reply)

    def set_pong(self, pong):
        with self._lock:
            self._pong = pong

    def pings(self):
        with self._lock:
            return self._pings

    def requests(self):
        return self.recorded()

    def _serve(self, conn, reply):
        request = read_request(conn)
        if request is None:
            return
        line, _, head, body = request
        if line.startswith("PING "):
            with self._lock:
                self._pings += 1
                pong = self._pong
            conn.sendall(pong)
            return
        self.record((head, body))
        if reply is None:
            stall(conn)
            return
        conn.sendall(reply)  # then close, as spamd does
