"""The portcullis daemon under test, with a generated config in a temp dir.

    pc = Portcullis(upstream=pf, config={"limits": {"max_recipients": 2}}).start()
    pc.port                        first listener's port
    pc.wait_for_log(r"event=listening")
    pc.wait_for_sessions(1)        parsed `event=session` summary lines (dicts)
    pc.reload({"limits": ...})     rewrite the config, SIGHUP, wait; the event=reload lines
    pc.stop()                      SIGTERM; asserts exit code 0 and no sanitizer report

The config is the test defaults deep-merged with `config` (dicts merge, everything else
replaces) and written as JSON into portcullis.yaml (JSON is YAML). Defaults: listen on a free
127.0.0.1 port, spool in the temp dir, log.level debug, timeouts.shutdown 5s,
upstream.connect_timeout 30s, dns.servers on an unused loopback port so the system resolver is
never used. The binary is $PORTCULLIS_BIN, else <repo>/build/portcullis.
Readiness means every configured listen port is in LISTEN state (/proc/net/tcp), so no probe
connection ever shows up as a session.
"""

import copy
import json
import os
import re
import signal
import subprocess

from .ports import free_port, split_hostport, wait_listening
from .process import (REPO_ROOT, WAIT, Fixture, ManagedProcess, read_text, tail, wait_for_regex,
                      wait_until)

SANITIZER_REPORT = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|WARNING: ThreadSanitizer|"
    r"runtime error: |"
    r"SUMMARY: UndefinedBehaviorSanitizer")

_KV = re.compile(r'([A-Za-z0-9_.\-]+)=("(?:[^"\\]|\\.)*"|\S*)')


def default_binary():
    return os.environ.get("PORTCULLIS_BIN") or os.path.join(REPO_ROOT, "build", "portcullis")


def parse_kv(line):
    """Parse a key=value log line. Quoted values are unquoted (backslash escapes kept simple).
    The session id (first token, which has no '=') is returned under "id"."""
    out = {}
    for key, value in _KV.findall(line):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[key] = value
    m = re.search(r"(?:^|\s)([0-9a-fA-F]{6,})\s+(?:\S+=)", line)
    if m and "id" not in out:
        out["id"] = m.group(1)
    return out


def deep_merge(base, override):
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        elif value is None:
            out.pop(key, None)  # None deletes a default
        else:
            out[key] = copy.deepcopy(value)
    return out


def _address_of(upstream):
    if upstream is None:
        return None
    if hasattr(upstream, "address"):
        return upstream.address
    if isinstance(upstream, tuple):
        return f"{upstream[0]}:{upstream[1]}"
    if isinstance(upstream, int):
        return f"127.0.0.1:{upstream}"
    return str(upstream)


def run_binary(args, binary=None, timeout=30.0, config=None, config_text=None, env=None):
    """Run the binary to completion (e.g. --version, --check-config) and return a
    CompletedProcess with text stdout/stderr. config/config_text are written to a temp file
    and passed with --config."""
    import tempfile
    binary = binary or default_binary()
    with tempfile.TemporaryDirectory(prefix="portcullis-run-") as tmp:
        argv = [binary]
        if config is not None or config_text is not None:
            path = os.path.join(tmp, "portcullis.yaml")
            with open(path, "w") as f:
                f.write(config_text if config_text is not None else json.dumps(config, indent=2))
            argv += ["--config", path]
        return subprocess.run(argv + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, env=env)


class Portcullis(Fixture):
    name = "portcullis"

    def __init__(self, *, upstream=None, config=None, config_text=None, binary=None,
                 args=(), expect_exit=0, start_timeout=20.0, wait_ready=True, env=None,
                 stop_timeout=20.0, keep_on_failure=True):
        """upstream: a fixture with .address (Postfix, SmtpSink, FakeSmtp), "host:port", a
        (host, port) tuple or a port; default is an unused loopback port.
        config: dict merged over the defaults (a None value deletes a default key).
        config_text: the exact config file text instead (defaults not applied; `port` is then
        parsed from its first listen address if it can be).
        expect_exit: exit code stop() asserts (None: do not check).
        keep_on_failure: keep the temp dir (config, log) when stop() finds a problem."""
        super().__init__()
        self.binary = binary or default_binary()
        self.upstream = upstream
        self.user_config = config or {}
        self.config_text = config_text
        self.args = list(args)
        self.expect_exit = expect_exit
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.wait_ready = wait_ready
        self.keep_on_failure = keep_on_failure
        self.env = env
        self.proc = None
        self.config = None
        self.config_path = None
        self.log_path = None
        self.returncode = None
        self.listen_ports = []

    # -- configuration -------------------------------------------------------------------

    def default_config(self, tmp):
        return {
            "hostname": "portcullis.test.local",
            "listen": [f"127.0.0.1:{free_port()}"],
            "upstream": {
                "address": _address_of(self.upstream) or f"127.0.0.1:{free_port()}",
                "identity": "xclient",
                # Three times the default: twice in CI, on a loaded machine, a MAIL that opens the
                # connection to Postfix went unanswered for 10 s (cause not found). A test of
                # the timeout itself sets its own.
                "connect_timeout": "30s",
            },
            "spool": {"directory": os.path.join(tmp, "spool")},
            "log": {"level": "debug"},
            # Drain for at most 5 s, well inside stop()'s 20 s, so a lingering client cannot
            # turn a clean SIGTERM into a kill.
            "timeouts": {"shutdown": "5s"},
            # Never the system resolver: an unused loopback port unless a test sets one.
            "dns": {"servers": [f"127.0.0.1:{free_port()}"], "timeout": "2s"},
        }

    @staticmethod
    def _listen_ports(config):
        ports = []
        for entry in (config or {}).get("listen", []) or []:
            address = entry.get("address") if isinstance(entry, dict) else entry
            try:
                ports.append(split_hostport(str(address))[1])
            except (ValueError, TypeError):
                pass
        # Milter mode: "inet:PORT@127.0.0.1" is a listen port too.
        m = re.match(r"inet:(\d+)@", str(((config or {}).get("milter") or {}).get("listen", "")))
        if m:
            ports.append(int(m.group(1)))
        return ports

    @property
    def port(self):
        return self.listen_ports[0] if self.listen_ports else None

    @property
    def host(self):
        return "127.0.0.1"

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------

    def _start(self):
        if not os.access(self.binary, os.X_OK):
            raise FileNotFoundError(
                f"portcullis binary {self.binary} not found; build it (cmake --build --preset "
                "default) or set PORTCULLIS_BIN")
        tmp = self.make_tmpdir()
        self.config_path = os.path.join(tmp, "portcullis.yaml")
        self.log_path = os.path.join(tmp, "portcullis.log")
        if self.config_text is not None:
            text = self.config_text
            self.config = None
            self.listen_ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)[:1]]
        else:
            self.config = deep_merge(self.default_config(tmp), self.user_config)
            spool = self.config.get("spool", {}).get("directory")
            if spool:
                os.makedirs(spool, exist_ok=True)
            text = json.dumps(self.config, indent=2) + "\n"
            self.listen_ports = self._listen_ports(self.config)
        with open(self.config_path, "w") as f:
            f.write(text)
        env = dict(os.environ if self.env is None else self.env)
        self.proc = ManagedProcess([self.binary, "--config", self.config_path, *self.args],
                                   self.log_path, env=env, cwd=tmp)
        if not self.wait_ready:
            return
        try:
            for port in self.listen_ports:
                wait_listening(port, self.start_timeout, alive=self.proc.alive)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"portcullis did not start ({exc}); exit={self.proc.returncode()}"
                               f"\nconfig:\n{text}\nlog:\n{tail(self.log_text(), 60)}") from None

    def _stop(self):
        if not self.proc:
            return
        rc, killed = self.proc.terminate(timeout=self.stop_timeout)
        self.returncode = rc
        log = self.log_text()
        problems = []
        if killed:
            problems.append(f"did not exit within {self.stop_timeout}s of SIGTERM (killed)")
        elif self.expect_exit is not None and rc != self.expect_exit:
            problems.append(f"exit code {rc}, expected {self.expect_exit}")
        if SANITIZER_REPORT.search(log):
            problems.append("sanitizer report in log")
        if problems:
            self.keep = self.keep or self.keep_on_failure
            raise AssertionError(f"portcullis: {'; '.join(problems)}\nlog ({self.log_path}):\n"
                                 + tail(log, 80))

    def alive(self):
        return bool(self.proc and self.proc.alive())

    def signal(self, sig=signal.SIGHUP):
        self.proc.proc.send_signal(sig)

    def reload(self, changes=None, text=None, timeout=WAIT):
        """Rewrites the config file (`changes` merged over the running config, or `text` as
        is), sends SIGHUP and waits for the reload's summary line (each other worker's own
        lines, with worker=, come before it); returns every event=reload line it produced."""
        if text is None:
            self.config = deep_merge(self.config, changes or {})
            text = json.dumps(self.config, indent=2) + "\n"
        with open(self.config_path, "w") as f:
            f.write(text)
        mark = self.log_mark()
        self.signal(signal.SIGHUP)
        self.wait_for_log(r"event=reload result=\w+ (?!worker=).*\n", timeout=timeout, since=mark)
        return [l for l in self.log_text()[mark:].splitlines() if "event=reload " in l]

    def wait_exit(self, timeout=20.0):
        """Wait for the process to exit by itself; return its exit code."""
        wait_until(lambda: not self.alive(), timeout, what="portcullis to exit")
        return self.proc.returncode()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def status(self, field):
        """A field of /proc/PID/status, e.g. status("VmHWM") → "12345 kB"."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
        return None

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    # -- logs ----------------------------------------------------------------------------

    def log_text(self):
        return read_text(self.log_path) if self.log_path else ""

    def log_mark(self):
        """Current log length; pass as since= to only look at what comes after."""
        return len(self.log_text())

    def wait_for_log(self, regex, timeout=WAIT, since=0):
        return wait_for_regex(lambda: self.log_text()[since:], regex, timeout, "portcullis log")

    def log_lines(self, pattern=None):
        lines = self.log_text().splitlines()
        return [l for l in lines if pattern is None or re.search(pattern, l)]

    def session_lines(self):
        """The `event=session` summary lines, one per closed session, in order."""
        return [l for l in self.log_text().splitlines() if "event=session" in l]

    def sessions(self):
        """Summary lines parsed into dicts (client, helo, commands, stage, closed_by, quit...)."""
        return [parse_kv(l) for l in self.session_lines()]

    def wait_for_sessions(self, count=1, timeout=WAIT):
        try:
            wait_until(lambda: len(self.session_lines()) >= count, timeout,
                       what=f"{count} event=session line(s)")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; log:\n{tail(self.log_text())}") from None
        return self.sessions()
