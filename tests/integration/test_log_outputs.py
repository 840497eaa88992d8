#!/usr/bin/env python3
"""Log outputs (issue 10, item 4): log.output syslog/file/stderr and log.format json.

- syslog: a real rsyslogd (Debian's) on a private unix socket (SysSock.Use="off", so /dev/log
  is never touched) writes what it receives with a template showing facility, severity,
  program and pid; our lines arrive as mail.*, ident portcullis, our pid. A socket nobody reads
  (the daemon's queue full) and an absent daemon must not block the proxy: lines are dropped,
  counted, and the count is logged once a daemon takes lines again.
- file: lines are appended; after a rename (logrotate's default "create" mode) SIGUSR1 opens
  the file again by name; no line is lost. A reopen that fails keeps the old file. The
  shipped deploy/logrotate/portcullis works with the real logrotate.
- json: every line is one JSON object (strict UTF-8 even for a hostile HELO) with ts, level
  and event.
- journald: with JOURNAL_STREAM naming stderr, lines are "<N>message" with no timestamp.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (REPO_ROOT, HarnessTestCase, Portcullis, RawClient,  # noqa: E402
                     SmtpSink, default_binary, run_binary, wait_until)
from harness.process import ManagedProcess, ProcessFixture, require_program, tail  # noqa: E402

SESSION_ID_OR_CONTEXT = re.compile(r"^(?:[0-9a-f]{12}|probe)$")


class RSyslog(ProcessFixture):
    """rsyslogd in the foreground with a private config: one imuxsock socket at self.socket,
    everything to self.out as "FACILITY.SEVERITY PROGRAM[PID]|MESSAGE"."""

    name = "rsyslog"

    def __init__(self, socket_path=None):
        super().__init__()
        self.socket = socket_path
        self.out = None

    def _start(self):
        binary = require_program("rsyslogd")
        tmp = self.make_tmpdir()
        self.socket = self.socket or os.path.join(tmp, "log.sock")
        self.out = os.path.join(tmp, "messages")
        self.maillog = os.path.join(tmp, "mail.log")  # as /var/log/mail.log has it
        conf = os.path.join(tmp, "rsyslog.conf")
        with open(conf, "w") as f:
            f.write(f'''global(workDirectory="{tmp}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{self.socket}" CreatePath="on" RateLimit.Interval="0")
template(name="probe" type="string"
         string="%syslogfacility-text%.%syslogseverity-text% %programname%[%procid%]|%msg%\\n")
*.* action(type="omfile" file="{self.out}" template="probe")
mail.* action(type="omfile" file="{self.maillog}" template="RSYSLOG_TraditionalFileFormat")
''')
        self.proc = ManagedProcess(
            [binary, "-n", "-f", conf, "-i", os.path.join(tmp, "rsyslogd.pid")],
            os.path.join(tmp, "rsyslogd.log"))
        try:
            wait_until(lambda: os.path.exists(self.socket) or not self.proc.alive(), 10,
                       what="rsyslogd's socket")
        except TimeoutError:
            pass
        if not self.proc.alive() or not os.path.exists(self.socket):
            raise RuntimeError(f"rsyslogd did not start:\n{tail(self.log_text())}")

    def records(self):
        """(facility, severity, program, pid, message) per line received so far."""
        out = []
        try:
            with open(self.out, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            m = re.match(r"^(\w+)\.(\w+) (\S*)\[(\S*)\]\|\s?(.*)$", line)
            if m:
                out.append(m.groups())
        return out

    def wait_for(self, regex, timeout=10.0):
        try:
            wait_until(lambda: any(re.search(regex, r[4]) for r in self.records()), timeout,
                       what=f"{regex} in rsyslog's output")
        except TimeoutError as exc:
            got = "\n".join("|".join(r) for r in self.records())
            raise AssertionError(f"{exc}; got:\n{tail(got)}\nrsyslogd log:\n"
                                 f"{tail(self.log_text())}") from None


def explain(args, stdin=None):
    """`portcullis explain ARGS`; its output (it must find what it is asked for)."""
    r = subprocess.run([default_binary(), "explain", *args], input=stdin, capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"explain {args} exited {r.returncode}:\n{r.stdout.decode()}"
                             f"\n{r.stderr.decode()}")
    return r.stdout.decode()


def swaks(port, helo="swaks.client.test", subject="log outputs"):
    """One message through portcullis with swaks; asserts it was accepted."""
    r = subprocess.run(
        [require_program("swaks"), "--server", "127.0.0.1", "--port", str(port), "--helo", helo,
         "--from", "sender@client.test", "--to", "user@test.local", "--header",
         f"Subject: {subject}", "--timeout", "20"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"swaks failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr}")
    return r.stdout


def read_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return []


class LogOutputsTest(HarnessTestCase):
    def setUp(self):
        self.sink = self.start(SmtpSink())
        self.tmp = tempfile.mkdtemp(prefix="portcullis-logout-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def portcullis(self, log, env=None, **kwargs):
        # identity none: smtp-sink is a plain MTA stand-in here.
        return self.start(Portcullis(upstream=self.sink, env=env, config={
            "upstream": {"identity": "none"}, "log": log}, **kwargs))

    # -- syslog --------------------------------------------------------------------------

    def test_syslog_lines_reach_a_real_rsyslogd_as_mail_portcullis(self):
        rs = self.start(RSyslog())
        pc = self.portcullis({"level": "debug", "output": "syslog", "syslog_socket": rs.socket})
        swaks(pc.port)
        rs.wait_for(r"^[0-9a-f]{12} event=session ")
        records = rs.records()
        ours = [r for r in records if r[2] == "portcullis"]
        self.assertEqual(len(ours), len(records), f"lines not from ident portcullis: {records}")
        for facility, severity, program, pid, message in ours:
            self.assertEqual(facility, "mail", message)
            self.assertEqual(pid, str(pc.pid), message)
            # No timestamp or level of ours inside the message: it is the bare key=value line
            # (a session id or a context such as "probe" first, when there is one).
            self.assertRegex(message, r"^(?:\S+ )?event=", message)
        severities = {r[4].split("event=", 1)[1].split(" ", 1)[0]: r[1] for r in ours}
        self.assertEqual(severities.get("started"), "info", severities)
        self.assertEqual(severities.get("session"), "info", severities)
        self.assertIn("debug", {r[1] for r in ours}, "debug lines at severity debug")
        self.assertEqual(pc.log_text().strip(), "", "nothing on stderr with output: syslog")
        # An admin's mail.log: `portcullis explain` reads the session back from it.
        sid = [r[4].split()[0] for r in ours if " event=session " in r[4]][0]
        wait_until(lambda: f"{sid} event=session" in open(rs.maillog).read(), 10,
                   what="the session line in mail.log")
        story = explain(["--session", sid, "--log", rs.maillog])
        self.assertIn(f"Session {sid}", story)
        self.assertIn("swaks.client.test", story)

    def test_syslog_facility_is_configurable(self):
        rs = self.start(RSyslog())
        pc = self.portcullis({"level": "info", "output": "syslog", "syslog_socket": rs.socket,
                              "syslog_facility": "local3"})
        rs.wait_for(r"^event=started ")
        self.assertEqual({r[0] for r in rs.records()}, {"local3"})
        self.assertTrue(pc.alive())

    def test_syslog_absent_daemon_never_blocks_and_drops_are_counted(self):
        path = os.path.join(self.tmp, "log.sock")  # nothing there yet
        # Each line sent as it is logged (no batch that might wait until the daemon is up), so
        # that the whole first session is known to have been sent, and dropped, before it is.
        pc = self.portcullis({"level": "debug", "output": "syslog", "syslog_socket": path,
                              "flush_interval": 0})
        swaks(pc.port, subject="while no syslog daemon runs")
        rs = self.start(RSyslog(socket_path=path))
        swaks(pc.port, subject="after it started")
        rs.wait_for(r"^[0-9a-f]{12} event=session ")
        dropped = [r for r in rs.records() if "event=log-dropped" in r[4]]
        self.assertEqual(len(dropped), 1, rs.records())
        self.assertEqual(dropped[0][1], "warning")
        n = int(re.search(r"lines=(\d+)", dropped[0][4]).group(1))
        self.assertGreater(n, 5, "the start-up lines and the whole first session were dropped")

    def test_syslog_full_queue_never_blocks_and_loses_nothing(self):
        # A datagram socket nobody reads: its queue (net.unix.max_dgram_qlen, 10 by default)
        # fills within the first session. A blocking send would stall the event loop for good
        # and swaks would time out. The lines wait in portcullis's backlog and arrive, in
        # order, once the reader drains the socket (a real daemon reading slower than a burst).
        path = os.path.join(self.tmp, "full.sock")
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(stuck.close)
        stuck.bind(path)
        pc = self.portcullis({"level": "debug", "output": "syslog", "syslog_socket": path})
        for i in range(4):
            swaks(pc.port, subject=f"queue full {i}")
        stuck.settimeout(10)
        got = []
        while sum("event=session " in g for g in got) < 4:
            got.append(stuck.recv(65536).decode("utf-8", "replace"))
        self.assertGreater(len(got), 4 * 20, "a debug session logs dozens of lines")
        self.assertFalse(any("event=log-dropped" in g for g in got), "nothing dropped")
        sessions = [re.search(r"\]: (\w+) event=session ", g).group(1)
                    for g in got if "event=session " in g]
        connects = [re.search(r"\]: (\w+) event=connect ", g).group(1)
                    for g in got if "event=connect " in g]
        self.assertEqual(sessions, connects, "every session's lines, in order")
        self.assertTrue(pc.alive())

    # -- file ----------------------------------------------------------------------------

    def test_file_is_appended_and_reopened_on_sigusr1(self):
        logdir = os.path.join(self.tmp, "logs")
        os.makedirs(logdir)
        path = os.path.join(logdir, "portcullis.log")
        with open(path, "w") as f:
            f.write("an earlier line\n")  # appended to, never truncated
        pc = self.portcullis({"level": "info", "output": "file", "file": path})
        swaks(pc.port, subject="one")
        wait_until(lambda: any("event=session" in l for l in read_lines(path)), 10,
                   what="session 1 in the file")
        # logrotate (create): move the file away, then signal. Until the signal, lines still
        # go to the moved file.
        rotated = path + ".1"
        os.rename(path, rotated)
        swaks(pc.port, subject="two")
        wait_until(lambda: sum("event=session" in l for l in read_lines(rotated)) == 2, 10,
                   what="session 2 in the rotated file")
        self.assertFalse(os.path.exists(path))
        pc.signal(signal.SIGUSR1)
        wait_until(lambda: any("event=log-reopen result=ok" in l for l in read_lines(path)), 10,
                   what="event=log-reopen in the new file")
        swaks(pc.port, subject="three")
        wait_until(lambda: any("event=session" in l for l in read_lines(path)), 10,
                   what="session 3 in the new file")
        old, new = read_lines(rotated), read_lines(path)
        self.assertEqual(old[0], "an earlier line")
        self.assertEqual(sum("event=session" in l for l in old), 2)
        self.assertEqual(sum("event=session" in l for l in new), 1)
        self.assertIn("event=log-reopen result=ok", new[0])
        for line in old[1:] + new:
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} \w+ ", line)
        self.assertEqual(pc.log_text().strip(), "", "nothing on stderr with output: file")

        # A reopen that fails (a directory where the file should be) keeps writing to the file
        # it has, and says so there.
        os.rename(path, rotated)
        os.makedirs(path)
        pc.signal(signal.SIGUSR1)
        wait_until(lambda: any("event=log-reopen result=failed" in l
                               for l in read_lines(rotated)), 10,
                   what="event=log-reopen result=failed in the file still open")
        os.rmdir(path)
        pc.signal(signal.SIGUSR1)
        wait_until(lambda: any("event=log-reopen result=ok" in l for l in read_lines(path)), 10,
                   what="a later reopen succeeds")

    def test_shipped_logrotate_snippet_with_real_logrotate(self):
        # deploy/logrotate/portcullis as shipped, with the test's path and its postrotate
        # signalling our pid (the shipped one asks systemd), run by the real logrotate.
        path = os.path.join(self.tmp, "portcullis.log")
        pc = self.portcullis({"level": "info", "output": "file", "file": path})
        swaks(pc.port, subject="before rotation")
        wait_until(lambda: any("event=session" in l for l in read_lines(path)), 10,
                   what="session 1 in the file")
        with open(os.path.join(REPO_ROOT, "deploy", "logrotate", "portcullis")) as f:
            snippet = f.read()
        snippet = snippet.replace("/var/log/portcullis/portcullis.log", path)
        snippet, n = re.subn(r"(?s)postrotate\n.*?endscript",
                             f"postrotate\n        kill -USR1 {pc.pid}\n    endscript", snippet)
        self.assertEqual(n, 1, "the snippet has one postrotate script")
        conf = os.path.join(self.tmp, "logrotate.conf")
        with open(conf, "w") as f:
            f.write(snippet)
        r = subprocess.run([require_program("logrotate"), "-f", "-s",
                            os.path.join(self.tmp, "logrotate.state"), conf],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rotated = path + ".1"  # delaycompress: the first rotation stays uncompressed
        self.assertTrue(os.path.exists(rotated), os.listdir(self.tmp))
        wait_until(lambda: any("event=log-reopen result=ok" in l for l in read_lines(path)), 10,
                   what="event=log-reopen in the file logrotate created")
        swaks(pc.port, subject="after rotation")
        wait_until(lambda: any("event=session" in l for l in read_lines(path)), 10,
                   what="session 2 in the new file")
        self.assertEqual(sum("event=session" in l for l in read_lines(rotated)), 1)
        self.assertEqual(sum("event=session" in l for l in read_lines(path)), 1)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o640)

    def test_check_config_opens_the_log_file(self):
        spool = os.path.join(self.tmp, "spool")
        with open(os.path.join(self.tmp, "not-a-dir"), "w"):
            pass
        bad = os.path.join(self.tmp, "not-a-dir", "portcullis.log")
        r = run_binary(["--check-config"], config={
            "spool": {"directory": spool}, "log": {"output": "file", "file": bad}})
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("log.file", r.stderr)
        self.assertIn("not-a-dir", r.stderr)
        r = run_binary(["--check-config"], config={
            "spool": {"directory": spool}, "log": {"output": "file"}})
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("log.file", r.stderr)
        # A missing directory is created, at start-up and so by the check too.
        good = os.path.join(self.tmp, "new-dir", "portcullis.log")
        r = run_binary(["--check-config"], config={
            "spool": {"directory": spool}, "log": {"output": "file", "file": good}})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(os.path.exists(good))

    # -- json ----------------------------------------------------------------------------

    def test_json_every_line_is_an_object(self):
        pc = self.portcullis({"level": "debug", "format": "json"})
        swaks(pc.port)
        # A hostile HELO: invalid UTF-8, quotes, braces and a backslash.
        with RawClient("127.0.0.1", pc.port) as c:
            c.read_reply()
            c.cmd(b'EHLO \xff\xfe"}{\\bad\xc3')
            c.cmd("QUIT")
        wait_until(lambda: pc.log_text().count('"event":"session"') >= 2, 10,
                   what="two session lines")
        with open(pc.log_path, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8")  # strict: the output is valid UTF-8 whatever came in
        lines = [l for l in text.split("\n") if l]
        self.assertGreater(len(lines), 10)
        events = []
        for line in lines:
            obj = json.loads(line)
            self.assertIsInstance(obj, dict, line)
            self.assertEqual(list(obj)[:2], ["ts", "level"], line)
            self.assertRegex(obj["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(obj["level"], {"trace", "debug", "info", "warning", "error",
                                         "critical"})
            self.assertIn("event", obj, line)
            if "session" in obj:
                self.assertRegex(obj["session"], SESSION_ID_OR_CONTEXT)
                self.assertEqual(list(obj)[2:4], ["session", "event"], line)
            for value in obj.values():
                self.assertIsInstance(value, str, line)
            events.append(obj)
        sessions = [e for e in events if e["event"] == "session"]
        self.assertEqual(len(sessions), 2)
        self.assertEqual(sessions[0]["helo"], "swaks.client.test")
        self.assertEqual(sessions[1]["helo"], '\ufffd\ufffd"}{\\bad\ufffd')
        self.assertEqual(sessions[0]["level"], "info")
        # `portcullis explain` reads JSON lines too, here from standard input.
        story = explain(["--session", sessions[0]["session"]], stdin=raw)
        self.assertIn("swaks.client.test", story)

    # -- journald ------------------------------------------------------------------------

    def journald_portcullis(self, journal_stream):
        pc = Portcullis(upstream=self.sink, config={"upstream": {"identity": "none"},
                                                    "log": {"level": "debug"}})
        log = os.path.join(pc.make_tmpdir(), "portcullis.log")  # where its stderr will go
        open(log, "ab").close()
        st = os.stat(log)
        stream = journal_stream(st)
        pc.env = dict(os.environ, JOURNAL_STREAM=stream)
        return self.start(pc)

    def test_journald_stream_gets_priority_prefixes(self):
        pc = self.journald_portcullis(lambda st: f"{st.st_dev}:{st.st_ino}")
        swaks(pc.port)
        pc.wait_for_sessions(1)
        lines = pc.log_lines()
        for line in lines:
            self.assertRegex(line, r"^<[2-7]>(?:\S+ )?event=", line)
        self.assertTrue(any(re.match(r"^<6>event=started ", l) for l in lines), lines)
        self.assertTrue(any(re.match(r"^<6>[0-9a-f]{12} event=session ", l) for l in lines))
        self.assertTrue(any(l.startswith("<7>") for l in lines), "debug lines at priority 7")
        # journalctl -u portcullis -o cat | portcullis explain ...: the bare messages.
        sid = [l for l in lines if " event=session " in l][0][3:15]
        bare = "".join(re.sub(r"^<\d>", "", l) + "\n" for l in lines).encode()
        self.assertIn("swaks.client.test", explain(["--session", sid], stdin=bare))

    def test_other_journal_stream_keeps_text(self):
        # JOURNAL_STREAM inherited from a parent whose stderr was the journal, but ours is not.
        pc = self.journald_portcullis(lambda st: f"{st.st_dev}:{st.st_ino + 1}")
        pc.wait_for_log(r"event=started")
        for line in pc.log_lines():
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} \w+ ", line)


if __name__ == "__main__":
    unittest.main()
