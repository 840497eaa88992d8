"""Process and temp-dir plumbing shared by every fixture.

Fixture is the base class: start()/stop() are idempotent, fixtures work as context managers,
and every started fixture is remembered so that an atexit hook (and SIGTERM, turned into a
normal exit) stops whatever a test forgot. ManagedProcess runs one child in its own session
with stdout+stderr captured to a file, and stops it with SIGTERM then SIGKILL to its whole
process group, so no grandchild survives.

Set HARNESS_KEEP=1 to keep every fixture's temp dir for debugging; a fixture whose test failed
keeps its dir too (see testcase.HarnessTestCase).
"""

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

_live = []
_live_lock = threading.Lock()


def _stop_all():
    with _live_lock:
        fixtures = list(reversed(_live))
    for fixture in fixtures:
        try:
            fixture.stop()
        except Exception as exc:  # the process is exiting; report and keep going
            print(f"harness: cleanup of {fixture!r} failed: {exc}", file=sys.stderr)


atexit.register(_stop_all)


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds tests and runs atexit cleanup


if threading.current_thread() is threading.main_thread():
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


# How long the fixtures wait, by default, for what a passing test sees at once (a log line, a
# delivered message): long, because CI machines can be loaded far past this one, and a wait that
# is met returns at once, so passing runs do not get slower. A test that means a shorter wait
# says so.
WAIT = 30.0


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll predicate() until it returns a truthy value; return that value or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def wait_for_regex(read, regex, timeout, what):
    """Wait until re.search(regex, read()) matches; return the match. `read` returns text."""
    pattern = re.compile(regex, re.MULTILINE) if isinstance(regex, str) else regex
    deadline = time.monotonic() + timeout
    while True:
        text = read()
        match = pattern.search(text)
        if match:
            return match
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{what}: no match for {pattern.pattern!r} after {timeout}s; last lines:\n"
                + tail(text))
        time.sleep(0.05)


def require_program(name):
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)
    if not path:
        raise FileNotFoundError(f"{name} not found; run deploy/install-deps.sh")
    return path


class Fixture:
    """Base class: subclasses implement _start() and _stop()."""

    name = "fixture"

    def __init__(self):
        self.tmpdir = None
        self.keep = os.environ.get("HARNESS_KEEP") == "1"
        self._started = False

    def make_tmpdir(self):
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix=f"portcullis-{self.name}-")
            os.chmod(self.tmpdir, 0o755)  # daemons that drop privileges must traverse it
        return self.tmpdir

    def start(self):
        if self._started:
            return self
        self._started = True
        with _live_lock:
            _live.append(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if not self._started:
            return
        self._started = False
        try:
            self._stop()
        finally:
            with _live_lock:
                if self in _live:
                    _live.remove(self)
            if self.tmpdir:
                if self.keep:
                    print(f"harness: kept {self.name} dir {self.tmpdir}", file=sys.stderr)
                else:
                    shutil.rmtree(self.tmpdir, ignore_errors=True)

    def running(self):
        return self._started

    def log_text(self):
        return ""

    def _start(self):
        raise NotImplementedError

    def _stop(self):
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def __repr__(self):
        return f"<{type(self).__name__} {self.tmpdir or ''}>"


class ProcessFixture(Fixture):
    """A fixture that is one ManagedProcess (self.proc): stop, liveness and its log."""

    def __init__(self):
        super().__init__()
        self.proc = None

    def _stop(self):
        if self.proc:
            self.proc.terminate(timeout=5)

    def alive(self):
        return bool(self.proc and self.proc.alive())

    def log_text(self):
        return self.proc.log_text() if self.proc else ""

    def wait_for_log(self, regex, timeout=WAIT):
        return wait_for_regex(self.log_text, regex, timeout, f"{self.name} log")


class ManagedProcess:
    """One child process in its own session, output captured to log_path."""

    def __init__(self, argv, log_path, env=None, cwd=None, stdout_pipe=False):
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def returncode(self):
        return self.proc.poll()

    def log_text(self):
        return read_text(self.log_path)

    def terminate(self, timeout=10.0, sig=signal.SIGTERM):
        """Send `sig`, wait up to timeout, then SIGKILL the group. Returns (returncode, killed)."""
        killed = False
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
        self._kill_group()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode, killed

    def _kill_group(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
