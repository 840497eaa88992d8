"""Test DNS: a tiny stdlib DNS client, a private unbound serving static zones, and the slow
DNS responder from tests/fixtures/dns/slowdns.py.

    ub = Unbound("tests/fixtures/dns/zones.conf").start()     # or Unbound(zones_text="...")
    ub.query("2.0.0.127.dnsbl.test", "A").answers  → [("2.0.0.127.dnsbl.test.", "A", 60, "127.0.0.2")]
    slow = SlowDns(delay_ms=1500).start();  slow.port

unbound gets only local-zone/local-data from the zones file; the harness writes the server:
header (loopback interfaces on a free port, no daemon, no chroot, no cache, `local-zone: "."
refuse`), so it never recurses anywhere. Every query this module sends goes to loopback.
"""

import collections
import os
import random
import re
import socket
import struct
import subprocess
import sys
import time

from .ports import free_port
from .process import REPO_ROOT, ManagedProcess, ProcessFixture, require_program, tail

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
QTYPE_NAMES = {v: k for k, v in QTYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

DnsResponse = collections.namedtuple("DnsResponse", "rcode rcode_name answers flags")


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("idna") if not label.isascii() else label.encode()
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def _decode_name(msg, offset):
    labels, jumped, end = [], False, offset
    for _ in range(128):
        n = msg[offset]
        if n & 0xC0 == 0xC0:
            pointer = struct.unpack("!H", msg[offset:offset + 2])[0] & 0x3FFF
            if not jumped:
                end = offset + 2
            jumped, offset = True, pointer
            continue
        if n == 0:
            if not jumped:
                end = offset + 1
            return ".".join(labels) + ".", end
        labels.append(msg[offset + 1:offset + 1 + n].decode("ascii", "replace"))
        offset += n + 1
    raise ValueError("DNS name compression loop")


def _rdata_text(msg, rtype, start, length):
    rdata = msg[start:start + length]
    if rtype == 1:
        return socket.inet_ntop(socket.AF_INET, rdata)
    if rtype == 28:
        return socket.inet_ntop(socket.AF_INET6, rdata)
    if rtype in (2, 5, 12):
        return _decode_name(msg, start)[0]
    if rtype == 15:
        return f"{struct.unpack('!H', rdata[:2])[0]} {_decode_name(msg, start + 2)[0]}"
    if rtype == 16:
        parts, i = [], 0
        while i < len(rdata):
            parts.append(rdata[i + 1:i + 1 + rdata[i]].decode("utf-8", "replace"))
            i += rdata[i] + 1
        return "".join(parts)
    return rdata.hex()


def dns_query(name, qtype="A", server=("127.0.0.1", 53), timeout=2.0, tcp=False):
    """Send one query (RD=0) to a loopback server; return DnsResponse(rcode, rcode_name,
    answers=[(name, type, ttl, text)], flags). Raises TimeoutError when nothing answers."""
    host, port = server
    if not (host.startswith("127.") or host == "::1" or host == "localhost"):
        raise ValueError(f"refusing to query non-loopback DNS server {host}")
    qid = random.randrange(65536)
    qt = QTYPES[qtype.upper()] if isinstance(qtype, str) else qtype
    query = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + _encode_name(name) + struct.pack("!HH", qt, 1)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if tcp:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect((host, port))
                s.sendall(struct.pack("!H", len(query)) + query)
                n = struct.unpack("!H", _recv_exact(s, 2))[0]
                msg = _recv_exact(s, n)
        else:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.sendto(query, (host, port))
                deadline = time.monotonic() + timeout
                while True:
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    msg, _ = s.recvfrom(65535)
                    if len(msg) >= 12 and struct.unpack("!H", msg[:2])[0] == qid:
                        break
    except socket.timeout:
        raise TimeoutError(f"no DNS answer for {name}/{qtype} from {host}:{port}") from None
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", msg[:12])
    offset = 12
    for _ in range(qd):
        offset = _decode_name(msg, offset)[1] + 4
    answers = []
    for _ in range(an):
        rname, offset = _decode_name(msg, offset)
        rtype, _, ttl, rdlen = struct.unpack("!HHIH", msg[offset:offset + 10])
        offset += 10
        answers.append((rname, QTYPE_NAMES.get(rtype, str(rtype)), ttl,
                        _rdata_text(msg, rtype, offset, rdlen)))
        offset += rdlen
    rcode = flags & 0xF
    return DnsResponse(rcode, RCODES.get(rcode, str(rcode)), answers, flags)


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("DNS server closed the TCP connection")
        data += chunk
    return data


def ipv6_loopback_usable():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Unbound(ProcessFixture):
    name = "unbound"

    def __init__(self, zones=None, *, zones_text=None, port=None, ipv6=None, verbosity=1,
                 start_timeout=10.0):
        """zones: path of a file of local-zone:/local-data: lines (default:
        tests/fixtures/dns/zones.conf). zones_text: the same lines as a string instead."""
        super().__init__()
        self.zones = zones
        self.zones_text = zones_text
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.ipv6 = ipv6_loopback_usable() if ipv6 is None else ipv6
        self.verbosity = verbosity
        self.start_timeout = start_timeout
        self.conf_path = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def _config(self, tmp):
        if self.zones_text is not None:
            zones = self.zones_text
        else:
            path = self.zones or os.path.join(REPO_ROOT, "tests", "fixtures", "dns", "zones.conf")
            with open(path) as f:
                zones = f.read()
        lines = [
            "server:",
            f"  interface: 127.0.0.1@{self.port}",
        ]
        if self.ipv6:
            lines.append(f"  interface: ::1@{self.port}")
        lines += [
            "  do-daemonize: no",
            '  chroot: ""',
            '  username: ""',
            f'  directory: "{tmp}"',
            f'  pidfile: "{tmp}/unbound.pid"',
            "  use-syslog: no",
            '  logfile: ""',
            f"  verbosity: {self.verbosity}",
            "  num-threads: 1",
            "  access-control: 127.0.0.0/8 allow",
            "  access-control: ::1/128 allow",
            '  module-config: "iterator"',
            "  outgoing-interface: 127.0.0.1",
            "  do-ip6: " + ("yes" if self.ipv6 else "no"),
            "  cache-max-ttl: 0",
            "  cache-max-negative-ttl: 0",
            '  local-zone: "." refuse',
            "  # --- zones ---",
        ]
        body = [l for l in zones.splitlines() if l.strip() != "server:"]
        return "\n".join(lines + body) + "\n"

    def _start(self):
        binary = require_program("unbound")
        tmp = self.make_tmpdir()
        self.conf_path = os.path.join(tmp, "unbound.conf")
        with open(self.conf_path, "w") as f:
            f.write(self._config(tmp))
        checkconf = require_program("unbound-checkconf")
        r = subprocess.run([checkconf, self.conf_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"unbound config rejected: {r.stdout}")
        self.proc = ManagedProcess([binary, "-d", "-c", self.conf_path],
                                   os.path.join(tmp, "unbound.log"))
        deadline = time.monotonic() + self.start_timeout
        while True:
            if not self.proc.alive():
                raise RuntimeError(f"unbound exited:\n{tail(self.log_text())}")
            try:
                self.query("localhost.", "A", timeout=0.2)  # any answer means it serves
                return
            except (TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"unbound not answering:\n{tail(self.log_text())}")

    def query(self, name, qtype="A", timeout=2.0, tcp=False):
        return dns_query(name, qtype, (self.host, self.port), timeout, tcp)


class SlowDns(ProcessFixture):
    """tests/fixtures/dns/slowdns.py --port N [--delay-ms D]; ready when it prints "ready"."""

    name = "slowdns"

    def __init__(self, *, port=None, delay_ms=None, script=None, extra_args=(),
                 start_timeout=10.0):
        super().__init__()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.delay_ms = delay_ms
        self.script = script or os.path.join(REPO_ROOT, "tests", "fixtures", "dns", "slowdns.py")
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def _start(self):
        if not os.path.exists(self.script):
            raise FileNotFoundError(f"{self.script} does not exist")
        tmp = self.make_tmpdir()
        argv = [sys.executable, "-u", self.script, "--port", str(self.port)]
        if self.delay_ms is not None:
            argv += ["--delay-ms", str(self.delay_ms)]
        # stdout goes to the log too (python -u: unbuffered), so a chatty script never blocks
        # on a full pipe; readiness is its "ready" line.
        self.proc = ManagedProcess(argv + self.extra_args, os.path.join(tmp, "slowdns.log"))
        deadline = time.monotonic() + self.start_timeout
        while not re.search(r"^ready", self.log_text(), re.MULTILINE):
            if time.monotonic() > deadline or not self.proc.alive():
                raise RuntimeError(f"slowdns not ready:\n{tail(self.log_text())}")
            time.sleep(0.02)

    def query(self, name, qtype="A", timeout=5.0):
        return dns_query(name, qtype, (self.host, self.port), timeout)
