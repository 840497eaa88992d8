"""smtp-sink (from the postfix package) as a fast, fault-injecting backend.

    sink = SmtpSink(quit_silently=["."]).start()      # -q .  close without reply after the dot
    sink.messages(1)    [SinkMessage(client_addr, helo, mail, rcpts, data), ...] from -d dumps
    sink.commands()     every command line it received ("ehlo x", "XCLIENT ...", ".") from -v
    sink.sessions()     the same, grouped per connection

Fault options map onto smtp-sink flags (command names: CONNECT HELO EHLO MAIL RCPT DATA . RSET
NOOP QUIT ...): quit_silently → -q, reply_421 → -Q, soft_reject → -r, hard_reject → -f,
delay={"DATA": 2} → -W DATA:2 (whole seconds). extra_args passes anything else. As root it runs
with -u nobody, so the dump dir is owned by nobody. -v logs each command line as received
(smtplib sends "mail FROM:<a@b>" in lower case); dump files use LF line ends.
"""

import collections
import os
import re
import time

from .ports import free_port, wait_listening
from .process import WAIT, ManagedProcess, ProcessFixture, require_program, tail, wait_until

SinkMessage = collections.namedtuple("SinkMessage", "client_addr helo mail rcpts data raw path")

_LOG_LINE = re.compile(r"^\S*smtp-sink: (.*)$")
_VERBS = {"helo", "ehlo", "lhlo", "mail", "rcpt", "data", ".", "rset", "noop", "quit", "vrfy",
          "xclient", "xforward", "starttls", "auth", "etrn", "help", "bdat"}


class SmtpSink(ProcessFixture):
    name = "smtp-sink"

    def __init__(self, *, port=None, quit_silently=(), reply_421=(), soft_reject=(),
                 hard_reject=(), delay=None, dump=True, verbose=True,
                 hostname="sink.test.local", backlog=1000, max_concurrency=1000,
                 extra_args=(), start_timeout=10.0):
        super().__init__()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.args = ["-h", hostname, "-m", str(max_concurrency)]
        for flag, cmds in (("-q", quit_silently), ("-Q", reply_421), ("-r", soft_reject),
                           ("-f", hard_reject)):
            if cmds:
                self.args += [flag, ",".join([cmds] if isinstance(cmds, str) else cmds)]
        for cmd, secs in (delay or {}).items():
            self.args += ["-W", f"{cmd}:{int(secs)}"]
        self.args += list(extra_args)
        self.dump = dump
        self.verbose = verbose
        self.backlog = backlog
        self.start_timeout = start_timeout
        self.dump_dir = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def _start(self):
        binary = require_program("smtp-sink")
        tmp = self.make_tmpdir()
        argv = [binary]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        if self.verbose:
            argv.append("-v")
        if self.dump:
            self.dump_dir = os.path.join(tmp, "dump")
            os.makedirs(self.dump_dir, exist_ok=True)
            if os.geteuid() == 0:
                os.chown(self.dump_dir, 65534, 65534)
            argv += ["-d", os.path.join(self.dump_dir, "msg.")]
        argv += self.args + [f"{self.host}:{self.port}", str(self.backlog)]
        self.proc = ManagedProcess(argv, os.path.join(tmp, "smtp-sink.log"))
        try:
            wait_listening(self.port, self.start_timeout, alive=self.proc.alive)
        except Exception as exc:
            raise RuntimeError(f"smtp-sink did not start: {exc}\n{tail(self.log_text())}")

    def commands(self):
        """Command lines received, in order, over all connections (needs verbose=True)."""
        return [c for s in self.sessions() for c in s]

    def sessions(self):
        """Command lines per connection, from the -v log (connect ... disconnect)."""
        out, current = [], None
        for line in self.log_text().splitlines():
            m = _LOG_LINE.match(line)  # "/usr/sbin/smtp-sink: <text>"
            if not m:
                continue
            body = m.group(1)
            if body.startswith("connect ("):
                current = []
                out.append(current)
            elif body == "disconnect":
                current = None
            elif current is not None and body.split(" ", 1)[0].lower() in _VERBS:
                current.append(body)
        return out

    def message_files(self):
        if not self.dump_dir or not os.path.isdir(self.dump_dir):
            return []
        paths = [os.path.join(self.dump_dir, n) for n in os.listdir(self.dump_dir)]
        return sorted(paths, key=lambda p: (os.path.getmtime(p), p))

    def messages(self, count=1, timeout=WAIT):
        """Dumped transactions, oldest first; waits for at least `count` of them."""
        if count:
            try:
                wait_until(lambda: len(self._complete_files()) >= count, timeout,
                           what=f"{count} message(s) at smtp-sink")
            except TimeoutError as exc:
                raise AssertionError(f"{exc}; log:\n{tail(self.log_text())}") from None
        return [self._parse(p) for p in self._complete_files()]

    def _complete_files(self):
        # smtp-sink writes a dump as data arrives and ends it with an empty line at ".". A file
        # that ends in an empty line and did not grow over a short pause is complete.
        sizes = {}
        for p in self.message_files():
            try:
                with open(p, "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            if raw.endswith(b"\n\n") and b"\nReceived: " in raw:
                sizes[p] = len(raw)
        if sizes:
            time.sleep(0.03)
        return [p for p, n in sizes.items() if _size(p) == n]

    @staticmethod
    def _parse(path):
        with open(path, "rb") as f:
            raw = f.read()
        head, rest = raw.split(b"\nReceived: ", 1)
        fields = collections.defaultdict(list)
        for line in head.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(": ")
            fields[key].append(value)
        # The Received: header is three lines: "from ...", "\tby ...", "\t<date>".
        lines = rest.split(b"\n")
        data = b"\n".join(lines[3:])
        if data.endswith(b"\n\n"):
            data = data[:-1]  # the dump's own trailing empty line
        return SinkMessage(
            client_addr=(fields.get("X-Client-Addr") or [None])[0],
            helo=(fields.get("X-Helo-Args") or [None])[0],
            mail=(fields.get("X-Mail-Args") or [None])[0],
            rcpts=fields.get("X-Rcpt-Args", []),
            data=data, raw=raw, path=path)


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return -1
