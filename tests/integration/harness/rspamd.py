"""rspamd, privately on loopback, and FakeRspamd, a scripted misbehaving HTTP server.

Rspamd runs Debian's rspamd 3.x in the foreground with the packaged /etc/rspamd plus the
project's own local config (tests/integration/rspamd/, copied into a temp dir as
LOCAL_CONFDIR), with DBDIR, RUNDIR and LOGDIR in that temp dir too. Every worker listens on a
private 127.0.0.1 port (normal, controller, proxy; the fuzzy worker stays off, as packaged);
its DNS goes to a private unbound that refuses everything (`local-zone: "." refuse`), so no
name is ever looked up anywhere else and a lookup fails at once; no redis; no map updates
(rspamd_update off); no fuzzy storage. As root it runs as Debian's _rspamd user. Ready when
GET /ping answers "pong".

    rspamd = Rspamd().start()
    rspamd.url             "http://127.0.0.1:PORT"   (portcullis' `url`)
    rspamd.check(b"...", headers={"IP": "192.0.2.1"})   the /checkv2 reply as a dict
    rspamd.proxy_port      the rspamd_proxy worker's port
    Rspamd(proxy_config='self_scan = true; ...')   extra lines for the proxy worker (the bench)

The test config forces actions on purpose: PORTCULLIS-TEST-ADD-HEADER in a message scores 60
(`add header`), PORTCULLIS-TEST-REWRITE-SUBJECT 110 (`rewrite subject`, "[SPAM] %s"); GTUBE is
`reject`; a plain message stays under 50 (`no action`).

FakeRspamd speaks just enough HTTP/1.1 to misbehave on purpose:

    fake = FakeRspamd()                                            # "no action" to everything
    fake = FakeRspamd(reply=http_reply({"action": "reject"}))      # raw bytes, then close
    fake = FakeRspamd(reply=lambda body: ...)                      # bytes made from the body
    fake = FakeRspamd(reply=None)                                  # read the request, stall
    fake.requests()     (request line, [(name, value)...], body) of each request
    fake.connections()  how many connections were accepted
    fake.pings()        how many GET /ping (the breaker's probe) it answered; set_pong(bytes)
    fake.set_reply(...) changes the behaviour for the next connections
"""

import json
import os
import pwd
import shutil
import time
import urllib.request

from .dns import Unbound
from .ports import free_port
from .process import REPO_ROOT, ManagedProcess, ProcessFixture, require_program, tail
from .scripted import ScriptedServer, read_request, stall

CONFIG_DIR = os.path.join(REPO_ROOT, "tests", "integration", "rspamd")
ADD_HEADER_WORD = "PORTCULLIS-TEST-ADD-HEADER"
REWRITE_SUBJECT_WORD = "PORTCULLIS-TEST-REWRITE-SUBJECT"
_NO_ACTION = object()  # FakeRspamd's default reply


def http_reply(body, status=200, reason="OK", headers=None):
    """A whole HTTP/1.1 reply: `body` a dict (sent as JSON) or bytes."""
    if not isinstance(body, (bytes, bytearray)):
        body = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    return head.encode() + b"\r\n" + bytes(body)


class Rspamd(ProcessFixture):
    name = "rspamd"

    def __init__(self, *, dns=None, proxy_config="", workers=None, start_timeout=180.0):
        """dns: an Unbound fixture to use (default: a private one that refuses everything).
        workers: processes of the normal and of the proxy worker each (default: packaged)."""
        super().__init__()
        self.host = "127.0.0.1"
        self.port = free_port(udp=False)
        self.controller_port = free_port(udp=False)
        self.proxy_port = free_port(udp=False)
        self.dns = dns
        self._own_dns = None
        self.proxy_config = proxy_config
        self.workers = workers
        self.start_timeout = start_timeout

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def _write(self, path, text):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def _start(self):
        binary = require_program("rspamd")
        tmp = self.make_tmpdir()
        if self.dns is None:
            self._own_dns = Unbound(zones_text="").start()
            self.dns = self._own_dns
        local = os.path.join(tmp, "local")
        shutil.copytree(CONFIG_DIR, local)
        override = os.path.join(local, "override.d")
        count = f"count = {self.workers};\n" if self.workers else ""
        # override.d (priority 10) replaces the packaged bind_socket instead of adding to it.
        self._write(os.path.join(override, "worker-normal.inc"),
                    f'bind_socket = "{self.host}:{self.port}";\n{count}')
        self._write(os.path.join(override, "worker-controller.inc"),
                    f'bind_socket = "{self.host}:{self.controller_port}";\n')
        self._write(os.path.join(override, "worker-proxy.inc"),
                    f'bind_socket = "{self.host}:{self.proxy_port}";\n{count}'
                    f'{self.proxy_config}\n')
        self._write(os.path.join(local, "local.d", "options.inc"),
                    "# Every lookup to the test's own unbound, which refuses them all.\n"
                    "dns {\n"
                    f'  nameserver = ["{self.dns.host}:{self.dns.port}"];\n'
                    "  timeout = 1s;\n  retransmits = 1;\n}\n")
        dirs = {}
        for name in ("db", "run", "log"):
            dirs[name] = os.path.join(tmp, name)
            os.mkdir(dirs[name])
        argv = [binary, "-f", "-c", "/etc/rspamd/rspamd.conf",
                f"--var=LOCAL_CONFDIR={local}", f"--var=DBDIR={dirs['db']}",
                f"--var=RUNDIR={dirs['run']}", f"--var=LOGDIR={dirs['log']}"]
        if os.geteuid() == 0:
            # rspamd refuses to run as root: Debian's own user, as the package does.
            user = pwd.getpwnam("_rspamd")
            for root, subdirs, files in os.walk(tmp):
                for name in subdirs + files:
                    os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)
            os.chown(tmp, user.pw_uid, user.pw_gid)
            argv += ["-u", "_rspamd", "-g", "_rspamd"]
        self.proc = ManagedProcess(argv, os.path.join(tmp, "rspamd.out"))
        deadline = time.monotonic() + self.start_timeout
        while True:
            if not self.proc.alive():
                raise RuntimeError(f"rspamd exited:\n{tail(self.log_text())}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1.0) as r:
                    if r.read().strip() == b"pong":
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"rspamd not answering:\n{tail(self.log_text())}")
            time.sleep(0.2)

    def _stop(self):
        try:
            super()._stop()
        finally:
            if self._own_dns:
                self._own_dns.stop()

    def check(self, data, headers=None, timeout=60.0):
        """POST /checkv2 with `data`; the reply as a dict."""
        req = urllib.request.Request(f"{self.url}/checkv2", data=data, method="POST",
                                     headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def nameservers(self):
        """The DNS servers rspamd says it uses (its log at info level)."""
        out = []
        for line in self.log_text().splitlines():
            if "nameserver" in line or "rspamd_dns_resolver" in line:
                out.append(line)
        return out


class FakeRspamd(ScriptedServer):
    name = "fakerspamd"

    def __init__(self, *, reply=_NO_ACTION, port=None):
        super().__init__(behaviour=http_reply({"action": "no action"}) if reply is _NO_ACTION
                         else reply, port=port)
        self._pong = http_reply(b"pong\r\n")
        self._pings = 0

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def set_pong(self, pong):
        """The answer to GET /ping (the breaker's probe): raw bytes."""
        with self._lock:
            self._pong = pong

    def pings(self):
        with self._lock:
            return self._pings

    def set_reply(self, reply):
        """Raw bytes to answer (then close), None to stall, or a callable(body) -> bytes."""
        self.set_behaviour(reply)

    def requests(self):
        return self.recorded()

    def _serve(self, conn, reply):
        request = read_request(conn)
        if request is None:
            return
        line, headers, _, body = request
        if line.startswith("GET /ping "):  # the breaker's probe, as rspamd answers it
            with self._lock:
                self._pings += 1
                pong = self._pong
            conn.sendall(pong)
            return
        self.record((line, headers, body))
        if callable(reply):
            reply = reply(body)
        if reply is None:
            stall(conn)
            return
        conn.sendall(reply)  # then close
