#!/usr/bin/env python3
"""The command line and the config file: --check-config, --version, --help, flags overriding
the file, built-in defaults with no file at all, and one clear error line (exit 2) naming the
key for every kind of bad config.
"""

import os
import socket
import sys
import tempfile
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
