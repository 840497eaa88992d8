#!/usr/bin/env python3
"""Full reload on SIGHUP (issue 13, part 2), --check-config refusing what start-up would, and
--print-config's round trip.

- A changed header_checks rule applies to the next session; a session in flight keeps the
  rules it started with.
- A broken file keeps the running config and logs exactly one `event=reload result=failed`
  line with the loader's key-path error.
- Listeners: an added one opens, a removed one closes, an unchanged one keeps its socket (same
  inode) and a client connecting to it in a loop through the reloads is never refused.
- Under load: smtp-source sends RELOAD_MESSAGES (default 2000; tests/bench/reload_load.sh runs
  10,000) through portcullis to a real Postfix while 20 reloads happen: every message arrives,
  none is refused.
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (REPO_ROOT, HarnessTestCase, Portcullis, Postfix, RawClient,  # noqa: E402
                     deep_merge, free_port, make_message, run_binary, wait_until)
from harness.process import require_program  # noqa: E402

MESSAGES = int(os.environ.get("RELOAD_MESSAGES", "2000"))


def rule(subject):
    return {"name": "header_checks", "rules": [
        {"match": f"^Subject: {subject}", "action": "reject",
         "reply": "550 5.7.1 Message content rejected"}]}


def listening_inode(port):
    """The inode of the socket listening on 127.0.0.1:port (/proc/net/tcp), or None."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and local == f"0100007F:{port:04X}":
                return inode
    return None


def refused(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


class ReloadCase(HarnessTestCase):
    def reload(self, pc, changes=None, text=None, expect="ok"):
        """Rewrite the config file (changes merged over the running dict, or `text` as is),
        SIGHUP, and return the event=reload line it produced."""
        lines = pc.reload(changes, text)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(f"event=reload result={expect}", lines[0])
        return lines[0]

    @staticmethod
    def data(c, subject):
        """MAIL, RCPT, DATA and a message on an open session; the final reply code."""
        for line, want in (("MAIL FROM:<sender@client.test>", 250),
                           ("RCPT TO:<user@test.local>", 250), ("DATA", 354)):
            code, lines = c.cmd(line)
            if code != want:
                raise AssertionError(f"{line}: {code} {lines}")
        c.send(make_message(subject=subject) + b".\r\n")
        return c.read_reply()[0]


class ReloadTest(ReloadCase):
    # One Postfix for the class: starting one per test was most of the file's time.
    @classmethod
    def setUpClass(cls):
        cls.pf = Postfix()
        cls.pf.start()

    @classmethod
    def tearDownClass(cls):
        cls.pf.stop()

    def test_changed_rule_applies_to_next_session_and_not_to_one_in_flight(self):
        pc = self.start(Portcullis(upstream=self.pf, config={"filters": [rule("old-rule")]}))
        delivered = len(self.pf.message_files())
        with RawClient("127.0.0.1", pc.port) as inflight:
            inflight.read_reply()
            inflight.cmd("EHLO client.test")
            self.assertEqual(self.data(inflight, "old-rule one"), 550)
            line = self.reload(pc, {"filters": [rule("new-rule")]})
            self.assertIn('changed=filters', line)
            # The session that started before the reload keeps the old rules...
            self.assertEqual(self.data(inflight, "old-rule two"), 550)
            self.assertEqual(self.data(inflight, "new-rule one"), 250)
            inflight.cmd("QUIT")
        # ...and the next session has the new ones.
        with RawClient("127.0.0.1", pc.port) as c:
            c.read_reply()
            c.cmd("EHLO client.test")
            self.assertEqual(self.data(c, "new-rule two"), 550)
            self.assertEqual(self.data(c, "old-rule three"), 250)
            c.cmd("QUIT")
        subjects = sorted(re.search(rb"Subject: (.*)\r?\n", m).group(1).decode()
                          for m in self.pf.messages(delivered + 2)[delivered:])
        self.assertEqual(subjects, ["new-rule one", "old-rule three"])

    def test_broken_config_keeps_the_running_one_and_logs_one_line(self):
        pc = self.start(Portcullis(upstream=self.pf, config={"filters": [rule("blocked")]}))
        good = json.dumps(pc.config)
        cases = [
            ("limits.max_message_size: expected a size",
             json.dumps(deep_merge(pc.config, {"limits": {"max_message_size": "ten"}}))),
            ("YAML syntax error at line", good.replace("{", "{ [", 1)),
            ("filters[0].name: unknown filter",
             json.dumps(deep_merge(pc.config, {"filters": [{"name": "nope"}]}))),
            ("/nonexistent/cert.pem",  # an unreadable certificate file
             json.dumps(deep_merge(pc.config, {"tls": {"cert": "/nonexistent/cert.pem"}}))),
        ]
        for want, text in cases:
            with self.subTest(want=want):
                line = self.reload(pc, text=text, expect="failed")
                self.assertRegex(line, r'error="[^"]*' + re.escape(want))
                self.assertIn('detail="keeping the running config"', line)
                with RawClient("127.0.0.1", pc.port) as c:  # the old rule still applies
                    c.read_reply()
                    c.cmd("EHLO client.test")
                    self.assertEqual(self.data(c, "blocked"), 550)
                    c.cmd("QUIT")
        # A listener that cannot be bound fails the whole reload: nothing else changes.
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            taken = squatter.getsockname()[1]
            changes = {"listen": pc.config["listen"] + [f"127.0.0.1:{taken}"],
                       "filters": [rule("other")]}
            text = json.dumps(deep_merge(pc.config, changes))
            line = self.reload(pc, text=text, expect="failed")
            self.assertIn("listen[1]: listen 127.0.0.1:%d: Address already in use" % taken, line)
        with RawClient("127.0.0.1", pc.port) as c:
            c.read_reply()
            c.cmd("EHLO client.test")
            self.assertEqual(self.data(c, "blocked"), 550)
            c.cmd("QUIT")
        # And the good file, again, reloads.
        self.reload(pc, text=good)

    def test_listeners_added_removed_and_unchanged_one_never_refuses(self):
        keep, gone, new = free_port(), free_port(), free_port()
        pc = self.start(Portcullis(upstream=self.pf, config={
            "listen": [f"127.0.0.1:{keep}", f"127.0.0.1:{gone}"]}))
        inode = listening_inode(keep)
        self.assertIsNotNone(inode)
        stop = threading.Event()
        outcomes = {"greeted": 0, "failed": []}

        def hammer():
            while not stop.is_set():
                try:
                    with RawClient("127.0.0.1", keep, timeout=10) as c:
                        code, _ = c.read_reply()
                        c.cmd("QUIT")
                    if code == 220:
                        outcomes["greeted"] += 1
                    else:
                        outcomes["failed"].append(code)
                except OSError as exc:
                    outcomes["failed"].append(repr(exc))

        t = threading.Thread(target=hammer)
        t.start()
        try:
            wait_until(lambda: outcomes["greeted"] > 0, 10, what="a first greeting")
            line = self.reload(pc, {"listen": [f"127.0.0.1:{keep}", f"127.0.0.1:{new}"]})
            self.assertIn(f"listeners_added=127.0.0.1:{new}", line)
            self.assertIn(f"listeners_removed=127.0.0.1:{gone}", line)
            self.assertIn("listeners_kept=1", line)
            self.assertTrue(refused(gone))
            self.assertFalse(refused(new))
            for i in range(10):  # more reloads while the client keeps connecting
                self.reload(pc, {"limits": {"max_errors": 5 + i % 2}})
            before = outcomes["greeted"]
            wait_until(lambda: outcomes["greeted"] > before, 10, what="greetings after reloads")
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(outcomes["failed"], [])
        self.assertEqual(listening_inode(keep), inode, "the unchanged listener was reopened")

    def test_restart_only_keys_keep_their_value_and_are_logged(self):
        pc = self.start(Portcullis(upstream=self.pf))
        spool = pc.config["spool"]["directory"]
        mark = pc.log_mark()
        line = self.reload(pc, {"spool": {"directory": spool + "-other"},
                                "log": {"level": "info"}, "limits": {"max_recipients": 3}})
        self.assertRegex(line, r'needs_restart="?spool.directory,log"?( |$)')
        self.assertIn("changed=limits", line)
        self.assertRegex(pc.log_text()[mark:],
                         r'event=reload-needs-restart keys="?spool.directory,log"? ')
        # log.level stayed at debug: debug lines still appear.
        with RawClient("127.0.0.1", pc.port) as c:
            c.read_reply()
            c.cmd("EHLO client.test")
            c.cmd("QUIT")
        pc.wait_for_sessions(1)
        self.assertRegex(pc.log_text()[mark:], r"\d debug \w+ event=")

    def test_plugin_filters_reload_and_the_plugin_list_needs_restart(self):
        fixtures = os.environ.get("PORTCULLIS_TEST_PLUGIN_DIR") or os.path.join(
            os.environ.get("PORTCULLIS_BUILD_DIR", os.path.join(REPO_ROOT, "build")), "tests",
            "plugins")
        good = os.path.join(fixtures, "good.so")
        self.assertTrue(os.path.exists(good), f"{good}: build portcullis_unit_tests first")
        pc = self.start(Portcullis(upstream=self.pf, config={
            "plugins": [{"path": good}],
            "filters": [{"name": "plugin_fixture", "reject": True}]}))

        def mail_code():
            with RawClient("127.0.0.1", pc.port) as c:
                c.read_reply()
                c.cmd("EHLO client.test")
                code = c.cmd("MAIL FROM:<sender@client.test>")[0]
                c.cmd("QUIT")
                return code

        self.assertEqual(mail_code(), 550)
        line = self.reload(pc, {"filters": [{"name": "plugin_fixture", "reject": False}]})
        self.assertIn("changed=filters", line)
        self.assertEqual(mail_code(), 250)
        # The plugin stays loaded: dropping it from the list needs a restart, and its filter
        # still resolves meanwhile.
        line = self.reload(pc, {"plugins": [],
                                "filters": [{"name": "plugin_fixture", "reject": True}]})
        self.assertIn("needs_restart=plugins", line)
        self.assertEqual(mail_code(), 550)


class ReloadUnderLoadTest(ReloadCase):
    """smtp-source → portcullis → Postfix with 20 reloads during the run: nothing lost."""

    def test_twenty_reloads_under_load_lose_nothing(self):
        smtp_source = require_program("smtp-source")
        pf = self.start(Postfix())
        extra = free_port()
        pc = self.start(Portcullis(upstream=pf, config={
            "log": {"level": "info"},
            "filters": [{"name": "header_checks", "rules": [
                {"match": "^Subject:", "action": "add_header", "header": "X-Reload-Gen: 0"}]}]}))
        started = time.monotonic()
        source = subprocess.Popen(
            [smtp_source, "-s", "10", "-m", str(MESSAGES), "-l", "1024", "-f",
             "sender@client.test", "-t", "user@test.local", "-S", "reload load",
             f"127.0.0.1:{pc.port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: len(pf.message_files()) > 0 or source.poll() is not None, 60,
                       what="the first delivered message")
            for gen in range(1, 21):
                listen = [pc.config["listen"][0]] + ([f"127.0.0.1:{extra}"] if gen % 2 else [])
                self.reload(pc, {"listen": listen, "filters": [{
                    "name": "header_checks", "rules": [
                        {"match": "^Subject:", "action": "add_header",
                         "header": f"X-Reload-Gen: {gen}"}]}]})
                time.sleep(0.05)
            self.assertIsNone(source.poll(), "smtp-source finished before the 20 reloads did: "
                              "raise RELOAD_MESSAGES so the reloads happen under load")
            out, _ = source.communicate(timeout=600)
        finally:
            if source.poll() is None:
                source.kill()
                source.wait()
        self.assertEqual(source.returncode, 0, out)
        wait_until(lambda: len(pf.message_files()) >= MESSAGES, 300,
                   what=f"{MESSAGES} delivered messages")
        elapsed = time.monotonic() - started
        files = pf.message_files()
        self.assertEqual(len(files), MESSAGES)
        gens = set()
        for path in files:
            with open(path, "rb") as f:
                m = re.search(rb"X-Reload-Gen: (\d+)", f.read())
            self.assertIsNotNone(m, path)
            gens.add(int(m.group(1)))
        log = pc.log_text()
        self.assertNotIn("event=connection-refused", log)
        self.assertEqual(len(re.findall(r"event=reload result=ok", log)), 20)
        print(f"\nreload under load: {MESSAGES} messages, 20 reloads, {len(gens)} rule "
              f"generations seen, {elapsed:.1f}s", file=sys.stderr)
        self.assertGreater(len(gens), 1)


class CheckAndPrintConfigTest(HarnessTestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="portcullis-reload-")
        self.spool = os.path.join(self.tmp, "spool")

    def config(self, **extra):
        c = {"listen": [f"127.0.0.1:{free_port()}"], "spool": {"directory": self.spool},
             "dns": {"servers": ["127.0.0.1:53"]}}
        c.update(extra)
        return c

    def test_check_config_refuses_what_start_up_would(self):
        port = free_port()
        cases = [
            ("same address twice", self.config(listen=[f"127.0.0.1:{port}", f"127.0.0.1:{port}"]),
             [], r"listen\[1\]: .*same socket as listen\[0\]"),
            ("same socket spelt twice",
             self.config(listen=[f"localhost:{port}", f"127.0.0.1:{port}"]), [],
             r"listen\[1\]: .*same socket"),
            ("wildcard overlap", self.config(listen=[f"0.0.0.0:{port}", f"127.0.0.1:{port}"]),
             [], r"listen\[1\]: .*same socket"),
            ("admin.listen on a listener", self.config(
                listen=[f"127.0.0.1:{port}"], admin={"listen": f"127.0.0.1:{port}"}), [],
             r"admin.listen: .*same socket as listen\[0\]"),
            ("admin.listen on --listen", self.config(admin={"listen": f"127.0.0.1:{port}"}),
             ["--listen", f"127.0.0.1:{port}"], r"admin.listen: .*same socket as --listen"),
            ("not an address of this host", self.config(listen=[f"192.0.2.7:{port}"]), [],
             r"listen\[0\]: cannot listen on 192.0.2.7:\d+: .*not an address of this host"),
            ("admin not an address of this host",
             self.config(admin={"listen": f"192.0.2.7:{port}"}), [],
             r"admin.listen: cannot listen on 192.0.2.7"),
            ("invalid address", self.config(listen=["mail.example.com:25"]), [],
             r"listen\[0\]: expected a numeric ADDRESS:PORT"),
            ("pid file directory", self.config(pid_file="/nonexistent/dir/portcullis.pid"), [],
             r"pid_file: /nonexistent/dir is not a directory"),
            ("milter socket group missing", self.config(milter={
                "listen": "unix:/tmp/portcullis-check.sock", "socket_group": "no-such-group"}),
             [], r"milter.socket_group: no group \"no-such-group\""),
            ("unreadable TLS file", self.config(tls={"cert": "/nonexistent/cert.pem"}), [],
             r"tls.cert: cannot load /nonexistent/cert.pem"),
        ]
        for name, config, args, want in cases:
            with self.subTest(name):
                r = run_binary(["--check-config", *args], config=config)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                lines = r.stderr.strip().splitlines()
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertRegex(lines[0], "^portcullis: config error: " + want)
                # Start-up refuses it the same way, before binding anything.
                r = run_binary(args, config=config, timeout=20)
                self.assertEqual(r.returncode, 2, r.stderr)

    def test_print_config_round_trip(self):
        certs = self.make_certs()
        with open(os.path.join(REPO_ROOT, "config", "portcullis.yaml")) as f:
            example = f.read().replace("/var/spool/portcullis", self.spool)
        examples = [example]
        for name in sorted(os.listdir(os.path.join(REPO_ROOT, "config", "examples"))):
            with open(os.path.join(REPO_ROOT, "config", "examples", name)) as f:
                examples.append(f.read().replace("/etc/portcullis/tls/fullchain.pem", certs.cert)
                                .replace("/etc/portcullis/tls/privkey.pem", certs.key)
                                .replace("/var/spool/portcullis", self.spool))
        for i, text in enumerate(examples):
            with self.subTest(example=i):
                first = run_binary(["--print-config"], config_text=text)
                self.assertEqual(first.returncode, 0, first.stderr)
                for key in ("hostname:", "listen:", "upstream:", "limits:", "timeouts:",
                                "spool:", "log:", "dns:", "filters:", "pool_size:",
                                "end_of_data:"):
                    self.assertIn(key, first.stdout)
                again = run_binary(["--print-config"], config_text=first.stdout)
                self.assertEqual(again.returncode, 0, again.stderr)
                self.assertEqual(again.stdout, first.stdout)
                check = run_binary(["--check-config"], config_text=first.stdout)
                self.assertEqual(check.returncode, 0, check.stderr)
        # -n: only what the file changes; it loads too, into the same effective config.
        text = ("limits: {max_message_size: 5M}\nspool: {directory: %s}\n"
                "dns: {servers: [\"127.0.0.1:53\"]}\n" % self.spool)
        short = run_binary(["--print-config", "-n"], config_text=text)
        self.assertEqual(short.returncode, 0, short.stderr)
        self.assertIn("max_message_size: 5M", short.stdout)
        self.assertNotIn("max_recipients", short.stdout)
        full = run_binary(["--print-config"], config_text=text)
        again = run_binary(["--print-config"], config_text=short.stdout)
        self.assertEqual(again.stdout, full.stdout)
        r = run_binary(["-n"])
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main()
