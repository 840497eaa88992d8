#!/usr/bin/env python3
"""Limits, timeouts and process life: connection limits (421 4.7.0, no MTA connection),
the per-command deadline, the DATA block timeout and minimum data rate, SIGTERM draining,
and what the summary line says about sessions that were cut off.
"""

import os
import resource
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (FakeSmtp, HarnessTestCase, Portcullis, Postfix, RawClient,  # noqa: E402
                     free_port, make_message, wait_until)


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



class Ipv6PrefixLimitTest(HarnessTestCase):
    """Per-IP limits count an IPv6 client by its /64 (limits.ipv6_prefix_length, as Postfix 3.8
    and postscreen do): one host holds a whole /64, so counting each /128 let it fill
    max_connections alone. The clients come through a trusted PROXY listener, so their IPv6
    addresses need no network of their own (tests only talk to loopback)."""

    def clients(self, prefix_length, sources):
        mta = self.start(FakeSmtp())
        port = free_port()
        limits = {"max_connections_per_ip": 2}
        if prefix_length is not None:
            limits["ipv6_prefix_length"] = prefix_length
        pc = self.start(Portcullis(upstream=mta, config={
            "listen": [{"address": f"127.0.0.1:{port}", "proxy_protocol": True}],
            "trusted_proxies": ["127.0.0.1/32"], "limits": limits,
            "upstream": {"identity": "none", "pool_size": 0}}))
        codes = []
        for src in sources:
            c = RawClient("127.0.0.1", pc.port)
            self.addCleanup(c.close)
            family, dst = ("TCP6", "2001:db8:ffff::25") if ":" in src else ("TCP4", "192.0.2.25")
            c.send(f"PROXY {family} {src} {dst} 40000 25\r\n".encode())
            code, lines = c.read_reply()
            codes.append(code)
            if code == 421:
                self.assertTrue(lines[0].startswith("4.7.0"), lines)
        return pc, codes

    def test_one_64_counts_as_one_client_by_default(self):
        pc, codes = self.clients(None, ["2001:db8:1:2::10", "2001:db8:1:2:aaaa::11",
                                        "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:3::10",
                                        "2001:db8:1:3::11", "198.51.100.7", "198.51.100.8"])
        self.assertEqual(codes, [220, 220, 421, 220, 220, 220, 220])

    def test_prefix_length_128_counts_each_address(self):
        pc, codes = self.clients(128, ["2001:db8:1:2::10", "2001:db8:1:2::11",
                                       "2001:db8:1:2::12", "2001:db8:1:2::12",
                                       "2001:db8:1:2::12"])
        self.assertEqual(codes, [220, 220, 220, 220, 421])

    def test_prefix_length_48(self):
        pc, codes = self.clients(48, ["2001:db8:1:2::10", "2001:db8:1:3::10",
                                      "2001:db8:1:4::10", "2001:db8:2::10"])
        self.assertEqual(codes, [220, 220, 421, 220])


class DescriptorExhaustionTest(HarnessTestCase):
    """Out of file descriptors (the hardening issue's first defect: with a soft limit of 256 and
    300 idle clients the accept loop spun at 105% CPU and logged 1.75 million accept-error
    lines in 5 s). Now the listener backs off, the clients it cannot take are told 421 through
    a spare descriptor instead of hanging in the backlog, one line is logged per episode, and
    accepting resumes once descriptors free up."""

    def test_backoff_turns_clients_away_with_421_and_logs_once(self):
        pf = self.start(Postfix())
        # No reverse lookups, and one whole session before the squeeze: in the sanitizer build,
        # UBSan's vptr check tests that a vtable is readable with pipe(), so out of descriptors
        # a type it has not cached yet is reported as an invalid vptr (a false report, seen on a
        # DNS result). Warmed up, the squeezed process runs only code whose types it has seen.
        pc = self.start(Portcullis(upstream=pf, config={
            "dns": {"reverse_lookup": False},
            "limits": {"max_connections": 200, "max_connections_per_ip": 200}}))
        pc.wait_for_log(r"event=fd-limit soft=\d+")
        with RawClient("127.0.0.1", pc.port, timeout=15) as c:
            self.assertEqual(greet(c), 220)
            self.assertEqual(c.cmd("EHLO warm.test")[0], 250)
            self.assertEqual(c.cmd("QUIT")[0], 221)
        pc.wait_for_sessions(1)
        # Squeeze the running process (the start-up check refuses a config that cannot fit, so
        # only a lowered limit, or a system-wide ENFILE, gets here).
        room = 12
        limit = pc.open_fds() + room
        resource.prlimit(pc.pid, resource.RLIMIT_NOFILE, (limit, limit))
        clients = []
        for i in range(40):
            c = RawClient("127.0.0.1", pc.port, timeout=15)
            self.addCleanup(c.close)
            clients.append(c)
        replies = [c.read_reply() for c in clients]
        codes = [code for code, _ in replies]
        busy = [lines[0] for code, lines in replies if code == 421]
        self.assertEqual(codes.count(220) + codes.count(421), len(clients), codes)
        self.assertGreaterEqual(codes.count(220), 1, codes)
        self.assertLessEqual(codes.count(220), room, codes)
        self.assertGreaterEqual(len(busy), len(clients) - room, codes)
        self.assertTrue(all(b.startswith("4.3.2 ") for b in busy), busy)
        time.sleep(1.0)  # a spinning loop would log thousands of lines meanwhile
        self.assertTrue(pc.alive())
        paused = pc.log_lines(r"event=accept-paused ")
        self.assertGreaterEqual(len(paused), 1)
        self.assertLessEqual(len(paused), 3, paused)  # once per episode, never per attempt
        self.assertIn("Too many open files", paused[0])
        self.assertEqual(pc.log_lines(r"event=accept-error"), [])
        # Descriptors free up: accepting resumes and mail flows.
        for c in clients:
            c.close()
        wait_until(lambda: pc.open_fds() < limit - 4, 10, what="descriptors to be freed")
        with RawClient("127.0.0.1", pc.port, timeout=15) as c:
            self.assertEqual(greet(c), 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<sender@client.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<user@test.local>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(make_message(subject="after the squeeze") + b".\r\n")
            self.assertEqual(c.read_reply(timeout=30)[0], 250)
        [msg] = pf.messages(1, timeout=15)
        self.assertIn(b"Subject: after the squeeze", msg)
        pc.wait_for_log(r"event=accept-resumed paused_ms=\d+ backoffs=\d+ turned_away=\d+")


if __name__ == "__main__":
    unittest.main()
