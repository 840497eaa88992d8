#!/usr/bin/env python3
"""Limits, timeouts and process life: connection limits (421 4.7.0, no MTA connection),
the per-command deadline, the DATA block timeout and minimum data rate, SIGTERM draining,
and what the summary line says about sessions that were cut off.
"""

import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (FakeSmtp, HarnessTestCase, Portcullis, Postfix, RawClient,  # noqa: E402
                     make_message, wait_until)


def greet(c):
    code, _ = c.read_reply()
    return code


class ConnectionLimitTest(HarnessTestCase):
    def test_per_ip_limit_refuses_with_421_and_opens_no_upstream(self):
        mta = self.start(FakeSmtp())
        pc = self.start(Portcullis(upstream=mta, config={
            "limits": {"max_connections_per_ip": 2},
            "upstream": {"identity": "none", "pool_size": 0}}))
        wait_until(lambda: mta.connection_count() >= 1, 10, what="the capability probe")
        before = mta.connection_count()
        a = RawClient("127.0.0.1", pc.port, source_address=("127.0.0.31", 0))
        b = RawClient("127.0.0.1", pc.port, source_address=("127.0.0.31", 0))
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertEqual(greet(a), 220)
        self.assertEqual(greet(b), 220)
        with RawClient("127.0.0.1", pc.port, source_address=("127.0.0.31", 0)) as c:
            code, lines = c.read_reply()
            self.assertEqual(code, 421)
            self.assertTrue(lines[0].startswith("4.7.0"), lines)
            c.expect_closed()
        # Another address is not affected.
        with RawClient("127.0.0.1", pc.port, source_address=("127.0.0.32", 0)) as d:
            self.assertEqual(greet(d), 220)
        self.assertEqual(mta.connection_count(), before, "a refused client reached the MTA")
        # Once one of the two leaves, the address may connect again.
        a.cmd("QUIT")
        a.expect_closed()
        time.sleep(0.2)
        with RawClient("127.0.0.1", pc.port, source_address=("127.0.0.31", 0)) as e:
            self.assertEqual(greet(e), 220)
        pc.wait_for_log(r"event=connection-refused client=127\.0\.0\.31:")

    def test_global_limit(self):
        pc = self.start(Portcullis(config={"limits": {"max_connections": 2}}))
        held = [RawClient("127.0.0.1", pc.port) for _ in range(2)]
        for c in held:
            self.addCleanup(c.close)
            self.assertEqual(greet(c), 220)
        with RawClient("127.0.0.1", pc.port, source_address=("127.0.0.33", 0)) as c:
            code, lines = c.read_reply()
            self.assertEqual((code, lines[0].split()[0]), (421, "4.7.0"))


class TimeoutTest(HarnessTestCase):
    def test_command_deadline_defeats_a_trickling_client(self):
        pc = self.start(Portcullis(config={"timeouts": {"command": "1s"}}))
        with RawClient("127.0.0.1", pc.port) as c:
            self.assertEqual(greet(c), 220)
            # One byte every 300 ms: activity, but the command never completes in time.
            start = time.monotonic()
            closed = False
            for ch in b"NOOP NOOP NOOP NOOP":
                try:
                    c.sock.sendall(bytes([ch]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.3)
                if c.pending(wait=0):
                    break
            code, lines = c.read_reply(timeout=10)
            self.assertEqual((code, lines[0].split()[0]), (421, "4.4.2"))
            self.assertLess(time.monotonic() - start, 10)
            c.expect_closed()
        pc.wait_for_sessions(1)
        self.assertIn("TIMEOUT:421", pc.sessions()[0]["commands"])
        self.assertEqual(pc.sessions()[0]["closed_by"], "server")
        self.assertFalse(closed)

    def test_data_block_timeout(self):
        mta = self.start(FakeSmtp())
        pc = self.start(Portcullis(upstream=mta, config={
            "timeouts": {"data_block": "1s"}, "upstream": {"identity": "none"}}))
        with RawClient("127.0.0.1", pc.port) as c:
            greet(c)
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<a@client.test>")
            c.cmd("RCPT TO:<b@test.local>")
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(b"Subject: stalled\r\n\r\npart of a body")
            code, lines = c.read_reply(timeout=10)
            self.assertEqual((code, lines[0].split()[0]), (421, "4.4.2"))
            c.expect_closed()
        self.assertEqual(mta.bodies(), [], "a partial message reached the MTA")

    def test_minimum_data_rate(self):
        mta = self.start(FakeSmtp())
        pc = self.start(Portcullis(upstream=mta, config={
            "timeouts": {"data_grace": "1s", "data_block": "30s"},
            "limits": {"min_data_rate": 1000},
            "upstream": {"identity": "none"}}))
        with RawClient("127.0.0.1", pc.port) as c:
            greet(c)
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<a@client.test>")
            c.cmd("RCPT TO:<b@test.local>")
            self.assertEqual(c.cmd("DATA")[0], 354)
            deadline = time.monotonic() + 15
            reply = None
            while time.monotonic() < deadline:
                try:
                    c.sock.sendall(b"x")  # ~5 octets/s, far below 1000
                except OSError:
                    break
                if c.pending(wait=0.2):
                    break
            reply = c.read_reply(timeout=5)
            self.assertEqual((reply[0], reply[1][0].split()[0]), (421, "4.4.2"))
            self.assertIn("data rate too low", reply[1][0])
        self.assertEqual(mta.bodies(), [])


class KeepaliveTest(HarnessTestCase):
    def test_slow_data_outlives_the_mtas_idle_timeout(self):
        # Postfix gives up on a silent client after smtpd_timeout; portcullis keeps its side of
        # the transaction alive with NOOPs while a slow client is still sending DATA.
        pf = self.start(Postfix(extra_main_cf={"smtpd_timeout": "2s"}))
        pc = self.start(Portcullis(upstream=pf, config={
            "upstream": {"keepalive_interval": "500ms"},
            "limits": {"min_data_rate": 0}}))
        with RawClient("127.0.0.1", pc.port) as c:
            greet(c)
            c.cmd("EHLO client.test")
            self.assertEqual(c.cmd("MAIL FROM:<a@client.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<user@test.local>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            msg = make_message(subject="slow but steady", size=4000)
            for i in range(0, len(msg), 400):  # ~5 s in all, more than twice smtpd_timeout
                c.send(msg[i:i + 400])
                time.sleep(0.5)
            c.send(b".\r\n")
            code, lines = c.read_reply(timeout=20)
            self.assertEqual(code, 250, lines)
            c.cmd("QUIT")
        self.assertEqual(len(pf.messages(1, timeout=15)), 1)
        self.assertNotIn("timeout after", pf.log_text())


class DrainTest(HarnessTestCase):
    def test_sigterm_lets_a_transaction_finish_and_refuses_new_work(self):
        mta = self.start(FakeSmtp())
        pc = self.start(Portcullis(upstream=mta, config={
            "upstream": {"identity": "none"}, "timeouts": {"shutdown": "10s"}}))
        busy = RawClient("127.0.0.1", pc.port)
        idle = RawClient("127.0.0.1", pc.port)
        self.addCleanup(busy.close)
        self.addCleanup(idle.close)
        greet(busy)
        greet(idle)
        busy.cmd("EHLO client.test")
        self.assertEqual(busy.cmd("MAIL FROM:<a@client.test>")[0], 250)
        self.assertEqual(busy.cmd("RCPT TO:<b@test.local>")[0], 250)
        pc.signal(signal.SIGTERM)
        # The idle session is told at once.
        code, lines = idle.read_reply(timeout=5)
        self.assertEqual((code, lines[0].split()[0]), (421, "4.3.2"))
        # No new connections.
        wait_until(lambda: not _accepts(pc.port), 5, what="the listener to close")
        # The session in a transaction may finish its message.
        self.assertEqual(busy.cmd("DATA")[0], 354)
        busy.send(make_message(subject="during drain") + b".\r\n")
        self.assertEqual(busy.read_reply()[0], 250)
        # ...and is told to go at its next command.
        code, lines = busy.cmd("MAIL FROM:<again@client.test>")
        self.assertEqual((code, lines[0].split()[0]), (421, "4.3.2"))
        self.assertEqual(pc.wait_exit(timeout=10), 0)
        self.assertEqual(len(mta.bodies()), 1)
        self.assertIn("event=drained", pc.log_text())

    def test_drain_deadline_closes_stragglers(self):
        mta = self.start(FakeSmtp())
        pc = self.start(Portcullis(upstream=mta, config={
            "upstream": {"identity": "none"}, "timeouts": {"shutdown": "1s"}}))
        with RawClient("127.0.0.1", pc.port) as c:
            greet(c)
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<a@client.test>")  # in a transaction: drain waits for it...
            pc.signal(signal.SIGTERM)
            code, lines = c.read_reply(timeout=10)  # ...until the deadline
            self.assertEqual((code, lines[0].split()[0]), (421, "4.3.2"))
        self.assertEqual(pc.wait_exit(timeout=10), 0)


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    unittest.main()
