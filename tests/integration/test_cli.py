#!/usr/bin/env python3
"""The command line and the config file: --check-config, --version, --help, flags overriding
the file, built-in defaults with no file at all, and one clear error line (exit 2) naming the
key for every kind of bad config.
"""

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (REPO_ROOT, FakeSmtp, HarnessTestCase, Portcullis, RawClient,  # noqa: E402
                     free_port, run_binary)

EXAMPLE = os.path.join(REPO_ROOT, "config", "portcullis.yaml")


class CliTest(HarnessTestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="portcullis-cli-")
        self.spool = os.path.join(self.tmp, "spool")

    def check(self, text):
        """--check-config on `text` (a spool directory we own is added if absent)."""
        if "spool:" not in text:
            text += f"\nspool: {{directory: {self.spool}}}\n"
        return run_binary(["--check-config"], config_text=text)

    def test_version_and_help(self):
        r = run_binary(["--version"])
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^portcullis \d+\.\d+\.\d+")
        r = run_binary(["--help"])
        self.assertEqual(r.returncode, 0)
        for flag in ("--config", "--listen", "--upstream", "--check-config", "--version"):
            self.assertIn(flag, r.stdout)
        r = run_binary(["--no-such-flag"])
        self.assertEqual(r.returncode, 2)

    def test_documented_example_config_is_valid(self):
        with open(EXAMPLE) as f:
            text = f.read().replace("/var/spool/portcullis", self.spool)
        r = run_binary(["--check-config"], config_text=text)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)

    def test_shipped_examples_are_valid(self):
        certs = self.make_certs()
        examples = os.path.join(REPO_ROOT, "config", "examples")
        for name in sorted(os.listdir(examples)):
            with self.subTest(example=name):
                with open(os.path.join(examples, name)) as f:
                    text = f.read()
                text = (text.replace("/etc/portcullis/tls/fullchain.pem", certs.cert)
                        .replace("/etc/portcullis/tls/privkey.pem", certs.key))
                r = self.check(text)
                self.assertEqual(r.returncode, 0, f"{name}: {r.stderr}")

    def test_tls_files_are_checked(self):
        r = self.check("tls: {cert: /nonexistent/cert.pem}")
        self.assertEqual(r.returncode, 2)
        self.assertIn("tls.cert", r.stderr)
        r = self.check("listen: [{address: \"127.0.0.1:2465\", tls: implicit}]")
        self.assertEqual(r.returncode, 2)
        self.assertIn("listen[0].tls", r.stderr)
        r = self.check("listen: [{address: \"127.0.0.1:2525\", proxy_protocol: true}]")
        self.assertEqual(r.returncode, 2)
        self.assertIn("listen[0].proxy_protocol", r.stderr)

    def test_bad_configs_name_the_key_and_exit_2(self):
        cases = [
            ("limits: {max_message_size: ten}", "limits.max_message_size"),
            ("limits: {max_mesage_size: 10}", "limits.max_mesage_size: unknown key"),
            ("timeouts: {command: 5 minutes}", "timeouts.command"),
            ("timeouts: {command: 0s}", "timeouts.command"),
            ("upstream: {identity: smtp}", "upstream.identity"),
            ("upstream: {address: mail.example.com:25}", "upstream.address"),
            ("listen: [\"127.0.0.1:99999\"]", "listen[0]"),
            ("listen: [{address: \"127.0.0.1:2525\", tls: sometimes}]", "listen[0].tls"),
            ("log: {level: loud}", "log.level"),
            ("dns: {servers: [\"not-an-ip\"]}", "dns.servers"),
            ("filters: [{name: nosuchfilter}]", "filters[0].name"),
            ("filters: [{name: size, mode: observe}]", "filters[0].mode"),
            ("filters: [{name: dnsbl, zones: [\"x.test=127.0.0.[2..300]\"]}]", "filters[0].zones"),
            ("filters: [{name: header_checks, rules: [{match: '(', action: reject}]}]",
             "filters[0].rules[0].match"),
            ("trusted_proxies: [\"10.0.0.0/99\"]", "trusted_proxies"),
            ("hostname: [a, b]", "hostname"),
            ("- just\n- a list", "must be a YAML map"),
            ("limits: {max_errors: [1", "YAML syntax error"),
        ]
        for text, want in cases:
            with self.subTest(config=text):
                r = self.check(text)
                self.assertEqual(r.returncode, 2, f"got exit {r.returncode} for {text!r}: "
                                                  f"{r.stdout}{r.stderr}")
                lines = r.stderr.strip().splitlines()
                self.assertEqual(len(lines), 1, f"want one line, got: {r.stderr!r}")
                self.assertIn(want, lines[0])
                self.assertTrue(lines[0].startswith("portcullis: config error: "), lines[0])

    # Values that passed --check-config and then broke start-up or the running daemon (hardening
    # item 10). Each must fail --check-config with one line naming the key, and starting the
    # daemon on the same file must fail the same way (exit 2, the same line), not later at
    # start-up (exit 1, "Address already in use", a key it never named) or never.
    RUNTIME_CASES = [
        ({"upstream": {"probe_interval": "0"}}, "upstream.probe_interval"),
        ({"upstream": {"probe_interval": "500ms"}}, "upstream.probe_interval"),
        ({"upstream": {"connect_timeout": "0"}}, "upstream.connect_timeout"),
        ({"upstream": {"command_timeout": "0s"}}, "upstream.command_timeout"),
        ({"upstream": {"pool_idle_timeout": "0"}}, "upstream.pool_idle_timeout"),
        ({"upstream": {"tls": "require", "tls_verify": True,
                       "ca_file": "/nonexistent/ca.pem"}},
         "upstream.ca_file"),
        ({"timeouts": {"command": "0"}}, "timeouts.command"),
        ({"dns": {"timeout": "0"}}, "dns.timeout"),
        ({"dns": {"attempts": 0}}, "dns.attempts"),
        ({"dns": {"servers": ["localhost"]}}, "dns.servers[0]"),
        ({"dns": {"servers": ["127.0.0.1:5353", "127.0.0.1:0"]}}, "dns.servers[1]"),
        ({"limits": {"ipv6_prefix_length": 0}}, "limits.ipv6_prefix_length"),
        ({"listen": ["127.0.0.1:{port}", "localhost:{port}"]}, "listen[1]"),
        ({"listen": ["127.0.0.1:{port}", {"address": "127.0.0.1:{port}", "tls": "none"}]},
         "listen[1]"),
        ({"listen": ["0.0.0.0:{port}", "127.0.0.1:{port}"]}, "listen[1]"),
        ({"listen": ["[::ffff:127.0.0.1]:{port}"]}, "listen[0]"),
    ]

    def runnable_config(self, overlay, port):
        """A config that starts (loopback DNS, a spool we own) with `overlay` merged per
        section; "{port}" in listen addresses becomes `port`."""
        cfg = {"listen": [f"127.0.0.1:{port}"],
               "upstream": {"address": "127.0.0.1:1", "probe_interval": "1h"},
               "dns": {"servers": ["127.0.0.1:9"]},
               "spool": {"directory": self.spool}}
        for section, value in overlay.items():
            if isinstance(value, dict) and isinstance(cfg.get(section), dict):
                cfg[section] = {**cfg[section], **value}
            else:
                cfg[section] = value
        cfg["listen"] = [json.loads(json.dumps(l).replace("{port}", str(port)))
                         for l in cfg["listen"]]
        return json.dumps(cfg, indent=2)

    def assert_one_config_error(self, r, key, what):
        self.assertEqual(r.returncode, 2, f"{what}: got exit {r.returncode}: {r.stdout}{r.stderr}")
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, f"{what}: want one line, got: {r.stderr!r}")
        self.assertTrue(lines[0].startswith(f"portcullis: config error: {key}: "),
                        f"{what}: got {lines[0]!r}, want it to name {key}")
        return lines[0]

    def test_check_config_fails_where_start_up_would(self):
        for overlay, key in self.RUNTIME_CASES:
            with self.subTest(config=overlay):
                text = self.runnable_config(overlay, free_port())
                checked = self.assert_one_config_error(
                    run_binary(["--check-config"], config_text=text), key, "--check-config")
                try:
                    started = run_binary([], config_text=text, timeout=5)
                except subprocess.TimeoutExpired:
                    self.fail(f"the daemon ran with {overlay}; want exit 2 naming {key}")
                self.assertEqual(self.assert_one_config_error(started, key, "start-up"), checked)

    def test_runnable_config_starts(self):
        # The battery above is only meaningful if its base config does start.
        port = free_port()
        from harness.portcullis import default_binary
        from harness.process import ManagedProcess
        from harness.ports import wait_listening
        path = os.path.join(self.tmp, "ok.yaml")
        with open(path, "w") as f:
            f.write(self.runnable_config({"listen": ["0.0.0.0:{port}", "[::]:{port}"]}, port))
        proc = ManagedProcess([default_binary(), "--config", path],
                              os.path.join(self.tmp, "ok.log"))
        self.addCleanup(proc.terminate)
        wait_listening(port, 10, alive=proc.alive)
        rc, killed = proc.terminate()
        self.assertFalse(killed)
        self.assertEqual(rc, 0, proc.log_text())

    def test_repeated_stop_signals_still_exit_cleanly(self):
        # A supervisor (or a test's teardown) that repeats SIGTERM while the daemon is already
        # tearing down must not turn the drained, clean exit into death by signal: the
        # teardown puts the default actions back. Every run here saw -15 before the fix.
        port = free_port()
        from harness.portcullis import default_binary
        from harness.ports import wait_listening
        path = os.path.join(self.tmp, "ok.yaml")
        with open(path, "w") as f:
            f.write(self.runnable_config({"listen": ["127.0.0.1:{port}"]}, port))
        for run in range(5):
            with open(os.path.join(self.tmp, f"repeat{run}.log"), "w") as log:
                proc = subprocess.Popen([default_binary(), "--config", path],
                                        stdout=log, stderr=subprocess.STDOUT)
            self.addCleanup(lambda p=proc: p.poll() is None and p.kill())
            wait_listening(port, 10, alive=lambda p=proc: p.poll() is None)
            deadline = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    break
                time.sleep(0.0003)
            self.assertEqual(proc.wait(timeout=10), 0, f"run {run}")

    # File descriptors are a budget (DESIGN.md invariant 10): the soft RLIMIT_NOFILE is raised
    # to the hard limit at start-up, and a config whose limits cannot fit in it is refused.
    def run_with_nofile(self, soft, hard, args, text):
        hard = min(hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        soft = min(soft, hard)
        path = os.path.join(self.tmp, "nofile.yaml")
        with open(path, "w") as f:
            f.write(text)
        from harness.portcullis import default_binary
        return subprocess.run(
            [default_binary(), "--config", path] + args, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=5,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))

    def test_max_connections_must_fit_the_open_files_limit(self):
        port = free_port()
        too_many = self.runnable_config({"limits": {"max_connections": 1000}}, port)
        for args in (["--check-config"], []):
            with self.subTest(args=args):
                try:
                    r = self.run_with_nofile(1024, 1024, args, too_many)
                except subprocess.TimeoutExpired:
                    self.fail("started with 1000 connections under a 1024 open-files limit")
                line = self.assert_one_config_error(r, "limits.max_connections", str(args))
                self.assertIn("4033", line)  # 4 * 1000 + pool auto (0) + 1 listener + 32
                self.assertIn("1024", line)
                self.assertIn("ulimit -n", line)
                self.assertIn("LimitNOFILE", line)
        ok = self.runnable_config({"limits": {"max_connections": 100}}, port)
        r = self.run_with_nofile(1024, 1024, ["--check-config"], ok)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_soft_open_files_limit_is_raised_at_start_up(self):
        hard = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        if hard < 1024:
            self.skipTest(f"hard open-files limit {hard} is too low for this test")
        port = free_port()
        # 100 connections need 433 descriptors (4 each, none for the pool on auto, a listener,
        # 32): more than the soft 256 we start with, so this only starts if the limit is raised.
        path = os.path.join(self.tmp, "raise.yaml")
        with open(path, "w") as f:
            f.write(self.runnable_config({"limits": {"max_connections": 100}}, port))
        log_path = os.path.join(self.tmp, "raise.log")
        from harness.portcullis import default_binary
        from harness.ports import wait_listening
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [default_binary(), "--config", path], stdin=subprocess.DEVNULL, stdout=log,
                stderr=log,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        wait_listening(port, 10, alive=lambda: proc.poll() is None)
        with open(f"/proc/{proc.pid}/limits") as f:
            row = [l for l in f if l.startswith("Max open files")][0].split()
        self.assertEqual((int(row[3]), int(row[4])), (hard, hard), row)
        proc.terminate()
        self.assertEqual(proc.wait(timeout=10), 0)
        with open(log_path) as f:
            text = f.read()
        self.assertIn(f"event=fd-limit soft={hard} hard={hard} was=256 needed=433", text)

    def test_missing_file_is_a_config_error(self):
        r = run_binary(["--check-config", "--config", "/nonexistent/portcullis.yaml"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read config file", r.stderr)

    def test_runs_with_no_file_from_flags_only(self):
        mta = self.start(FakeSmtp())
        port = free_port()
        # No --config: built-in defaults, with --listen and --upstream. The default spool
        # directory (/var/spool/portcullis) is created if missing.
        from harness.portcullis import default_binary
        from harness.process import ManagedProcess
        from harness.ports import wait_listening
        log = os.path.join(self.tmp, "noconfig.log")
        proc = ManagedProcess([default_binary(), "--listen", f"127.0.0.1:{port}",
                               "--upstream", mta.address], log)
        self.addCleanup(proc.terminate)
        wait_listening(port, 10, alive=proc.alive)
        # With no file, DNS falls back to /etc/resolv.conf, which is not on loopback: only talk
        # to this instance (its reverse lookup of us) inside a loopback-only namespace.
        if [name for _, name in socket.if_nameindex()] != ["lo"]:
            self.skipTest("not in a loopback-only network namespace (tests/run.sh provides one)")
        with RawClient("127.0.0.1", port) as c:
            code, lines = c.read_reply()
            self.assertEqual(code, 220)
            code, lines = c.cmd("EHLO client.test")
            self.assertIn("SIZE 10240000", lines)  # the built-in default limit
            c.cmd("QUIT")
        rc, killed = proc.terminate()
        self.assertFalse(killed)
        self.assertEqual(rc, 0)
        with open(log) as f:
            self.assertIn("(built-in defaults)", f.read())

    def test_flags_override_the_file(self):
        mta = self.start(FakeSmtp())
        port = free_port()
        pc = self.start(Portcullis(config={"upstream": {"address": "127.0.0.1:1"}},
                                   args=["--upstream", mta.address,
                                         "--listen", f"127.0.0.1:{port}"],
                                   wait_ready=False))
        pc.listen_ports = [port]
        from harness.ports import wait_listening
        wait_listening(port, 10, alive=pc.alive)
        with RawClient("127.0.0.1", port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            c.cmd("EHLO client.test")
            self.assertEqual(c.cmd("MAIL FROM:<a@client.test>")[0], 250)  # reached the MTA
            c.cmd("QUIT")


if __name__ == "__main__":
    unittest.main()
