#!/usr/bin/env python3
"""Self-test of the integration harness: every fixture works on its own, without portcullis.

Run: python3 tests/integration/test_harness.py -v   (as root: Postfix's master runs as root)
CTest runs it as integration.test_harness, inside a loopback-only network namespace.
"""

import os
import smtplib
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (REPO_ROOT, FakeSmtp, HarnessTestCase, Portcullis, Postfix, RawClient,  # noqa: E402
                     SlowDns, SmtpSink, Unbound, dns_query, free_port, make_message, parse_kv,
                     send_mail)

STANDIN = os.path.join(os.path.dirname(__file__), "harness", "standin.py")

TEST_ZONES = """\
local-zone: "dnsbl.test." static
local-data: "2.0.0.127.dnsbl.test. 60 IN A 127.0.0.2"
local-data: '2.0.0.127.dnsbl.test. 60 IN TXT "Listed in dnsbl.test"'
local-zone: "test." static
local-data: "client.test. 60 IN A 127.0.0.1"
local-zone: "127.in-addr.arpa." static
local-data-ptr: "127.0.0.1 client.test."
"""


class PostfixTest(HarnessTestCase):
    def test_xclient_delivery_and_maillog(self):
        pf = self.start(Postfix())
        send_mail("127.0.0.1", pf.port, "sender@client.test", "user@test.local",
                  make_message(subject="xclient test"),
                  xclient={"ADDR": "203.0.113.7", "NAME": "mail.example.net"})
        [msg] = pf.messages(1, timeout=15)
        self.assertIn(b"Subject: xclient test", msg)
        self.assertIn(b"Delivered-To: user@test.local", msg)
        pf.wait_for_log(r"client=mail\.example\.net\[203\.0\.113\.7\]")
        self.assertEqual(pf.emails(1)[0]["Subject"], "xclient test")

    def test_reject_recipients_exact_reply(self):
        want = "550 5.1.1 <bad@test.local>: Recipient address rejected: no such user"
        pf = self.start(Postfix(reject_recipients={"bad@test.local": want}))
        with RawClient("127.0.0.1", pf.port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<sender@client.test>")[0], 250)
            code, lines = c.cmd("RCPT TO:<bad@test.local>")
            self.assertEqual(f"{code} {lines[0]}", want)
            self.assertEqual(c.cmd("RCPT TO:<good@test.local>")[0], 250)
            self.assertEqual(c.cmd("QUIT")[0], 221)
            c.expect_closed()

    def test_proxy_protocol_port_and_two_instances(self):
        first = self.start(Postfix())
        second = self.start(Postfix(extra_main_cf={"smtpd_banner": "$myhostname ESMTP second"}))
        self.assertNotEqual(first.port, second.port)
        with RawClient("127.0.0.1", second.proxy_port) as c:
            c.send(b"PROXY TCP4 198.51.100.9 127.0.0.1 40000 25\r\n")
            code, lines = c.read_reply()
            self.assertEqual(code, 220)
            self.assertIn("ESMTP second", lines[0])
            for line, want in (("EHLO client.test", 250), ("MAIL FROM:<a@client.test>", 250),
                               ("RCPT TO:<u@test.local>", 250), ("DATA", 354)):
                self.assertEqual(c.cmd(line)[0], want, line)
            self.assertEqual(c.cmd(make_message(subject="via proxy").rstrip(b"\r\n")
                                   + b"\r\n.")[0], 250)
            c.cmd("QUIT")
        second.wait_for_log(r"client=unknown\[198\.51\.100\.9\]")
        self.assertEqual(len(second.messages(1)), 1)
        send_mail("127.0.0.1", first.port, msg=make_message(subject="first"))
        self.assertIn(b"Subject: first", first.messages(1)[0])
        self.assertEqual(len(second.messages(0)), 1)  # nothing crossed over

    def test_stop_really_stops(self):
        pf = Postfix()
        self.addCleanup(pf.stop)
        pf.start()
        pid = pf.master_pid()
        self.assertIsNotNone(pid)
        pf.stop()
        try:
            with open(f"/proc/{pid}/stat") as f:
                self.assertEqual(f.read().split(") ", 1)[1][0], "Z")  # at most a zombie
        except FileNotFoundError:
            pass
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", pf.port), timeout=1).close()


class SmtpSinkTest(HarnessTestCase):
    def test_dump_and_commands(self):
        sink = self.start(SmtpSink())
        send_mail("127.0.0.1", sink.port, "a@client.test", ["u1@test.local", "u2@test.local"],
                  make_message(subject="to the sink"), xclient={"ADDR": "192.0.2.1"})
        [m] = sink.messages(1)
        self.assertEqual(m.mail, "<a@client.test>")
        self.assertEqual(m.rcpts, ["<u1@test.local>", "<u2@test.local>"])
        self.assertIn(b"Subject: to the sink", m.data)
        commands = sink.commands()
        self.assertTrue(any(c.startswith("XCLIENT ADDR=192.0.2.1") for c in commands), commands)
        self.assertIn(".", commands)
        self.assertEqual(len(sink.sessions()), 1)

    def test_fault_close_after_dot(self):
        sink = self.start(SmtpSink(quit_silently=["."], reply_421=["RSET"]))
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            send_mail("127.0.0.1", sink.port)


class FakeSmtpTest(HarnessTestCase):
    def session(self, fake):
        c = RawClient("127.0.0.1", fake.port, timeout=5)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply()[0], 220)
        return c

    def test_normal_transaction_is_recorded(self):
        fake = self.start(FakeSmtp())
        send_mail("127.0.0.1", fake.port, msg=b"Subject: x\r\n\r\n.leading dot\r\n",
                  xclient={"ADDR": "192.0.2.5", "NAME": "[UNAVAILABLE]"})
        [s] = fake.wait_closed()
        self.assertEqual(s.closed_by, "server")  # after QUIT
        self.assertEqual(fake.bodies(), [b"Subject: x\r\n\r\n..leading dot\r\n"])  # as on wire
        self.assertTrue(fake.commands(0)[1].startswith("XCLIENT ADDR=192.0.2.5"))
        self.assertIn(b"mail FROM:<sender@client.test>", fake.sessions()[0])

    def test_ehlo_caps_and_garbage_and_extra(self):
        fake = self.start(FakeSmtp(replies={"MAIL": b"hello\r\n", "RCPT#2": "999 bad"},
                                   extra_replies={"NOOP": b"250 unsolicited\r\n"}))
        c = self.session(fake)
        code, lines = c.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        self.assertIn("XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT", lines)
        c.send(b"MAIL FROM:<a@client.test>\r\n")
        time.sleep(0.2)
        self.assertEqual(c.pending(), b"hello\r\n")
        c.buf = b""
        self.assertEqual(c.cmd("RCPT TO:<a@test.local>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<b@test.local>")[0], 999)
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertEqual(c.read_reply()[1], ["unsolicited"])

    def test_close_after_dot_and_mid_data(self):
        fake = self.start(FakeSmtp(close_after={"."}))
        c = self.session(fake)
        for line in ("EHLO x", "MAIL FROM:<a@client.test>", "RCPT TO:<b@test.local>", "DATA"):
            c.cmd(line)
        c.send(b"Subject: y\r\n\r\nbody\r\n.\r\n")
        c.expect_closed()
        self.assertEqual(fake.bodies(), [b"Subject: y\r\n\r\nbody\r\n"])

        fake2 = self.start(FakeSmtp(close_in_data_after=10))
        c = self.session(fake2)
        for line in ("EHLO x", "MAIL FROM:<a@client.test>", "RCPT TO:<b@test.local>", "DATA"):
            c.cmd(line)
        c.send(b"0123456789abcdef\r\n")
        c.expect_closed()
        self.assertEqual(fake2.bodies(), [b"0123456789"])

    def test_delay_and_421(self):
        fake = self.start(FakeSmtp(delays_ms={"NOOP": 300},
                                   replies={"RSET": "421 4.3.2 going away"}))
        c = self.session(fake)
        t0 = time.monotonic()
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertGreaterEqual(time.monotonic() - t0, 0.29)
        self.assertEqual(c.cmd("RSET"), (421, ["4.3.2 going away"]))
        c.expect_closed()
        [s] = fake.wait_closed()
        self.assertEqual(s.closed_by, "server")

    def test_starttls_with_bytes_after_220(self):
        certs = self.make_certs()
        fake = self.start(FakeSmtp(ehlo_caps=["PIPELINING", "STARTTLS"],
                                   after_starttls=b"250 injected\r\n",
                                   tls_context=certs.server_context()))
        c = self.session(fake)
        c.cmd("EHLO x")
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        self.assertEqual(c.read_reply(), (250, ["injected"]))
        # And a well-behaved TLS client can complete the handshake against it.
        fake2 = self.start(FakeSmtp(ehlo_caps=["STARTTLS"], tls_context=certs.server_context()))
        with smtplib.SMTP("127.0.0.1", fake2.port, timeout=10) as s:
            s.ehlo("client.test")
            s.starttls(context=certs.client_context())
            self.assertEqual(s.ehlo("client.test")[0], 250)
        self.assertTrue(fake2.wait_closed()[0].tls)


class DnsTest(HarnessTestCase):
    def test_unbound_serves_zones_and_refuses_the_rest(self):
        ub = self.start(Unbound(zones_text=TEST_ZONES))
        r = ub.query("2.0.0.127.dnsbl.test", "A")
        self.assertEqual(r.rcode_name, "NOERROR")
        self.assertEqual([a[3] for a in r.answers], ["127.0.0.2"])
        self.assertEqual(ub.query("2.0.0.127.dnsbl.test", "TXT").answers[0][3],
                         "Listed in dnsbl.test")
        self.assertEqual(ub.query("1.0.0.127.in-addr.arpa", "PTR").answers[0][3], "client.test.")
        self.assertEqual(ub.query("3.0.0.127.dnsbl.test").rcode_name, "NXDOMAIN")
        self.assertEqual(ub.query("example.com").rcode_name, "REFUSED")
        self.assertEqual(dns_query("client.test", "A", ("127.0.0.1", ub.port), tcp=True)
                         .answers[0][3], "127.0.0.1")

    def test_unbound_with_project_zones_file(self):
        path = os.path.join(REPO_ROOT, "tests", "fixtures", "dns", "zones.conf")
        if not os.path.exists(path):
            self.skipTest("tests/fixtures/dns/zones.conf not written yet")
        ub = self.start(Unbound(path))
        self.assertEqual(ub.query("example.com").rcode_name, "REFUSED")
        self.assertIn("127.0.0.2", [a[3] for a in ub.query("2.0.0.127.dnsbl.test").answers])

    def test_slowdns(self):
        script = os.path.join(REPO_ROOT, "tests", "fixtures", "dns", "slowdns.py")
        if not os.path.exists(script):
            self.skipTest("tests/fixtures/dns/slowdns.py not written yet")
        slow = self.start(SlowDns(delay_ms=300))
        t0 = time.monotonic()
        slow.query("x.slow.test", "A", timeout=5)
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)


class PortcullisFixtureTest(HarnessTestCase):
    """The Portcullis fixture driven against a stand-in binary (not the real daemon)."""

    def test_config_logs_sessions_and_exit_code(self):
        pc = self.start(Portcullis(binary=STANDIN, upstream=("127.0.0.1", 10025),
                                   config={"limits": {"max_recipients": 5}}))
        self.assertEqual(pc.config["upstream"]["address"], "127.0.0.1:10025")
        self.assertEqual(pc.config["log"]["level"], "debug")
        self.assertTrue(pc.config["dns"]["servers"][0].startswith("127.0.0.1:"))
        self.assertTrue(pc.alive())
        pc.wait_for_log(rf"event=listening address=127\.0\.0\.1:{pc.port}")
        with RawClient("127.0.0.1", pc.port) as c:
            c.read_reply()
            c.cmd("EHLO client.test")
            c.cmd("QUIT")
        [s] = pc.wait_for_sessions(1)
        self.assertEqual((s["helo"], s["quit"], s["closed_by"]), ("client.test", "yes", "server"))
        self.assertEqual(s["commands"], "EHLO:250,QUIT:221")
        self.assertEqual(pc.session_lines()[0].split()[0], s["id"])
        pc.stop()
        self.assertEqual(pc.returncode, 0)

    def test_unexpected_exit_code_is_reported(self):
        pc = Portcullis(binary=STANDIN, env=dict(os.environ, STANDIN_EXIT="3"),
                        keep_on_failure=False)
        self.addCleanup(pc.stop)
        pc.start()
        with self.assertRaisesRegex(AssertionError, "exit code 3"):
            pc.stop()
        self.assertFalse(os.path.exists(pc.tmpdir))

    def test_parse_kv(self):
        kv = parse_kv('[info] 9f3a1c event=session client=127.0.0.1 commands="EHLO:250,QUIT:221"'
                      ' reason="a \\"quoted\\" word"')
        self.assertEqual(kv["id"], "9f3a1c")
        self.assertEqual(kv["commands"], "EHLO:250,QUIT:221")
        self.assertEqual(kv["reason"], 'a "quoted" word')

    def test_free_ports_do_not_repeat(self):
        ports = {free_port() for _ in range(50)}
        self.assertEqual(len(ports), 50)


if __name__ == "__main__":
    unittest.main()
