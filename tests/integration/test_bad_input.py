#!/usr/bin/env python3
"""A hostile client in front of portcullis and a REAL Postfix (FakeSmtp where the exact bytes
that reach the MTA matter): over-long lines, NUL, bare LF/CR, the SMTP smuggling payloads,
talking before the greeting, BDAT, commands out of sequence, identity commands, error
limits, the EHLO offer, size and recipient limits, dot-stuffing, and the spool.

Every reply checked here is portcullis's own, so the code AND the enhanced code are asserted.

Run: python3 tests/integration/test_bad_input.py -v   (root, loopback-only netns: tests/run.sh)
"""

import os
import re
import socket
import stat
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (DEFAULT_CAPS, DaemonTestCase, FakeSmtp, Portcullis, Postfix,  # noqa: E402
                     RawClient, dot_stuff, wait_until)

HOSTNAME = "portcullis.test.local"
SENDER = "sender@client.test"
RCPT = "user@test.local"

SMUGGLE_TAIL = (b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@test.local>\r\nDATA\r\n"
                b"evil\r\n.\r\n")
# The classic payload and its variants: each must be ONE message that is refused whole.
SMUGGLING = {
    "lf-dot-lf": b"Subject: x\r\n\r\nhello\n.\n" + SMUGGLE_TAIL,
    "crlf-dot-lf": b"Subject: x\r\n\r\nhello\r\n.\n" + SMUGGLE_TAIL,
    "lf-dot-crlf": b"Subject: x\r\n\r\nhello\n.\r\n" + SMUGGLE_TAIL,
    "cr-dot-crlf": b"Subject: x\r\n\r\nhello\r.\r\n" + SMUGGLE_TAIL,
    "bare-cr-mid-line": b"Subject: x\r\n\r\nhel\rlo\r\n" + SMUGGLE_TAIL,
    "cr-cr-lf": b"Subject: x\r\n\r\nhello\r\r\n" + SMUGGLE_TAIL,
    "crlf-dot-cr-cr-lf": b"Subject: x\r\n\r\nhello\r\n.\r\r\n" + SMUGGLE_TAIL,
    "lf-in-header": b"Subject: x\nX-Evil: y\r\n\r\nhello\r\n" + SMUGGLE_TAIL,
}
FORBIDDEN_KEYWORDS = {"CHUNKING", "XCLIENT", "XFORWARD", "AUTH", "STARTTLS", "BINARYMIME",
                      "ETRN"}



def make_body(size):
    filler = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    head = (f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: size {size}\r\n"
            f"Message-ID: <{time.time_ns()}@client.test>\r\n\r\n").encode()
    return head + filler * max(0, (size - len(head)) // len(filler))



class BadInputCase(DaemonTestCase):
    # -- fixtures ------------------------------------------------------------------------

    def portcullis(self, backend, config=None, wait_probe=True, env=None):
        base = {"hostname": HOSTNAME, "dns": {"reverse_lookup": False},
                "upstream": {"pool_size": 0, "probe_interval": "1h"}}
        if isinstance(backend, FakeSmtp):
            base["upstream"]["identity"] = "none"
        for section, values in (config or {}).items():
            if isinstance(values, dict):
                base.setdefault(section, {}).update(values)
            else:
                base[section] = values
        pc = self.start_daemon(Portcullis(upstream=backend, config=base, env=env,
                                   keep_on_failure=self._keep_on_failure))
        if wait_probe:
            pc.wait_for_log(r"event=upstream-probe result=ok")
        return pc

    def postfix(self, **kwargs):
        return self.start(Postfix(**kwargs))

    def measured_portcullis(self, backend):
        """A daemon whose resident memory tracks what it holds. Under AddressSanitizer every
        freed buffer sits in a 256 MB quarantine, so a stream passing through grows VmRSS by its
        own size although nothing is kept; a 1 MB quarantine makes growth mean retention."""
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = ":".join(filter(None, (
            env.get("ASAN_OPTIONS"), "quarantine_size_mb=1", "thread_local_quarantine_size_kb=64")))
        return self.portcullis(backend, env=env)

    def fake(self, **kwargs):
        fake = self.start(FakeSmtp(**kwargs))
        return fake

    def client(self, pc, ehlo=True, timeout=10):
        c = RawClient("127.0.0.1", pc.port, timeout=timeout)
        self.addCleanup(c.close)
        self.assertReply(c.read_reply(), 220)
        if ehlo:
            self.assertReply(c.cmd("EHLO client.test"), 250)
        return c

    # -- assertions ----------------------------------------------------------------------

    def assertReply(self, reply, code, enhanced=None, text=None):
        got_code, lines = reply
        self.assertEqual(got_code, code, f"reply {reply}")
        if enhanced is not None:
            self.assertTrue(lines and lines[0].split(" ", 1)[0] == enhanced,
                            f"expected enhanced code {enhanced} in {reply}")
        if text is not None:
            self.assertIn(text, " ".join(lines), f"reply {reply}")

    def assertNoMoreReplies(self, c, wait=0.5):
        self.assertEqual(c.pending(wait), b"", "unexpected extra reply bytes")

    def envelope(self, c, rcpts=(RCPT,)):
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        for r in rcpts:
            self.assertReply(c.cmd(f"RCPT TO:<{r}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)

    def assertHeldLessThan(self, pc, rss_before_kb, limit_kb):
        grown = int(pc.status("VmRSS").split()[0]) - rss_before_kb
        self.assertLess(grown, limit_kb, f"VmRSS grew by {grown} kB")

    def assertSessionWorks(self, pc):
        """A fresh session gets through MAIL/RCPT/DATA and delivers."""
        self.assertTrue(pc.alive(), "portcullis died")
        with RawClient("127.0.0.1", pc.port, timeout=15) as c:
            self.assertReply(c.read_reply(), 220)
            self.assertReply(c.cmd("EHLO next.client.test"), 250)
            self.envelope(c)
            c.send(dot_stuff(make_body(500)))
            self.assertReply(c.read_reply(), 250)
            self.assertReply(c.cmd("QUIT"), 221)
        self.assertTrue(pc.alive(), "portcullis died")

    def ehlo_keywords(self, reply):
        code, lines = reply
        self.assertEqual(code, 250)
        return {line.split(" ", 1)[0].upper(): line for line in lines[1:]}

    # -- Postfix's view ------------------------------------------------------------------

    @staticmethod
    def pf_disconnects(pf):
        """Postfix smtpd's per-session command counters ("ehlo=2 mail=1 ... commands=6")."""
        out = []
        for line in pf.log_text().splitlines():
            m = re.search(r"postfix/smtpd\[\d+\]: disconnect from \S+ (.*)$", line)
            if m:
                out.append(dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv))
        return out

    def assertPostfixGotNoMessage(self, pf, settle=1.0):
        time.sleep(settle)
        self.assertEqual(pf.messages(0), [])
        self.assertEqual(pf.queued(), [])
        log = pf.log_text()
        self.assertNotIn("evil", log)
        self.assertNotRegex(log, r"postfix/qmgr\[\d+\]: \w+: from=<")
        for d in self.pf_disconnects(pf):
            self.assertNotIn("data", d, f"Postfix got DATA: {d}")
            self.assertLessEqual(int(d.get("mail", "0").split("/")[-1]), 1, d)

    def spool_files(self, pc):
        d = pc.config["spool"]["directory"]
        return sorted(os.path.join(d, n) for n in os.listdir(d))


class LineLimitTest(BadInputCase):
    def test_line_too_long(self):
        pf = self.postfix()
        pc = self.portcullis(pf)
        c = self.client(pc)
        c.send(b"NOOP " + b"x" * 600 + b"\r\n")
        self.assertReply(c.read_reply(), 500, "5.5.2", "line too long")
        self.assertNoMoreReplies(c)  # the rest of the line is skipped, not parsed
        self.assertReply(c.cmd("NOOP"), 250)
        # The same for a MAIL line: never executed, never relayed.
        c.send(b"MAIL FROM:<" + b"a" * 600 + b"@client.test>\r\n")
        self.assertReply(c.read_reply(), 500, "5.5.2")
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 503, "5.5.1")
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertSessionWorks(pc)

    def test_line_length_boundary(self):
        pf = self.postfix()
        pc = self.portcullis(pf)
        c = self.client(pc)
        # RFC 5321 4.5.3.1.4: 512 octets including the CRLF is the longest command line.
        line = b"NOOP " + b"x" * (510 - 5)
        self.assertEqual(len(line + b"\r\n"), 512)
        self.assertReply(c.cmd(line), 250)
        self.assertReply(c.cmd(line + b"x"), 500, "5.5.2", "line too long")
        self.assertNoMoreReplies(c)
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertReply(c.cmd("QUIT"), 221)

    def test_line_that_ends_within_the_bound_is_skipped(self):
        # Over 512 octets, but the LF comes within 1024 (the LF included): 500 5.5.2, the line
        # is dropped whole and the session goes on.
        pf = self.postfix()
        pc = self.portcullis(pf)
        c = self.client(pc)
        line = b"NOOP " + b"x" * (1024 - 2 - 5)
        self.assertEqual(len(line + b"\r\n"), 1024)
        self.assertReply(c.cmd(line), 500, "5.5.2", "line too long")
        self.assertNoMoreReplies(c)
        self.assertReply(c.cmd("NOOP"), 250)
        # One octet more: 1024 octets without a LF. Not an SMTP client: 5.5.6 and close.
        self.assertReply(c.cmd(line + b"x"), 500, "5.5.6", "line too long")
        c.expect_closed()

    def test_command_line_without_lf_closes_at_once(self):
        # 2000 octets and no LF at all: answered and closed when the bound (1024) is passed,
        # not after the command timeout (60 s here; the client gives up after 10 s).
        pf = self.postfix()
        pc = self.portcullis(pf, {"timeouts": {"command": "60s"}})
        c = self.client(pc, timeout=10)
        c.send(b"MAIL FROM:<" + b"a" * 1989)
        self.assertReply(c.read_reply(), 500, "5.5.6", "line too long")
        c.expect_closed()
        pc.wait_for_sessions(1)
        [summary] = pc.sessions()
        self.assertEqual(summary["closed_by"], "server")
        self.assertIn("MAIL:500", summary["commands"])
        for d in self.pf_disconnects(pf):
            self.assertNotIn("mail", d, f"Postfix got MAIL: {d}")
        self.assertSessionWorks(pc)

    def test_eight_megabytes_without_newline(self):
        pf = self.postfix()
        pc = self.measured_portcullis(pf)
        c = self.client(pc)
        rss_before_kb = int(pc.status("VmRSS").split()[0])
        blob = b"x" * (8 * 1024 * 1024)

        def sender():
            try:
                c.sock.sendall(blob)
            except OSError:
                pass  # portcullis closes before the blob is through: expected

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        self.assertReply(c.read_reply(timeout=20), 500, "5.5.6")
        c.expect_closed(timeout=20)
        t.join(30)
        self.assertFalse(t.is_alive(), "the sender is still blocked")
        # The blob is not kept: the daemon holds far less than what was sent (under ASan a
        # few hundred kB of allocator noise come and go, so the margin is wide).
        self.assertHeldLessThan(pc, rss_before_kb, 4 * 1024)
        self.assertSessionWorks(pc)

    def test_nul_in_command(self):
        pf = self.postfix()
        pc = self.portcullis(pf)
        c = self.client(pc)
        self.assertReply(c.cmd(b"MAIL FROM:<a\x00b@x>"), 500, "5.5.2")
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 503, "5.5.1")  # MAIL never happened
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertSessionWorks(pc)

    def test_bare_lf_command(self):
        pf = self.postfix()
        pc = self.portcullis(pf)
        c = self.client(pc)
        c.send(b"NOOP\n")
        self.assertReply(c.read_reply(), 500, "5.5.2", "bare <LF>")
        c.send(f"MAIL FROM:<{SENDER}>\n".encode())
        self.assertReply(c.read_reply(), 500, "5.5.2", "bare <LF>")
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 503, "5.5.1")  # not executed
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertReply(c.cmd("QUIT"), 221)


class DataLineLengthTest(BadInputCase):
    """RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF. limits.
    max_line_length (998 by default; 0: no limit) refuses a message with a longer line after
    its dot, 554 5.6.0, and the MTA gets no DATA."""

    HEAD = (f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: long line\r\n\r\n").encode()

    def test_eight_megabytes_without_crlf_is_refused(self):
        pf = self.postfix()
        pc = self.measured_portcullis(pf)
        c = self.client(pc, timeout=60)
        self.envelope(c)
        rss_before_kb = int(pc.status("VmRSS").split()[0])
        c.send(self.HEAD + b"y" * (8 * 1024 * 1024) + b"\r\n.\r\n")
        self.assertReply(c.read_reply(), 554, "5.6.0", "line longer than 998")
        self.assertNoMoreReplies(c)
        # The 8 MB line is neither kept nor spooled whole: growth stays well under its size.
        self.assertHeldLessThan(pc, rss_before_kb, 4 * 1024)
        self.assertReply(c.cmd("QUIT"), 221)
        c.expect_closed()
        pc.wait_for_sessions(1)
        self.assertPostfixGotNoMessage(pf)
        pc.wait_for_log(r"event=reject from=<\S+> to=\S+ helo=\S+ client=\S+ "
                        r"stage=end_of_message code=554 dsn=5\.6\.0 filter=portcullis "
                        r"reason=\"line longer than limits\.max_line_length 998\"")

    def test_line_length_boundary(self):
        pf = self.postfix()
        pc = self.portcullis(pf)
        c = self.client(pc)
        # 998 octets: delivered. A dot-stuffed line of 998 (999 on the wire) too: the added dot
        # is not counted. 999 octets: refused.
        for line, want in ((b"z" * 998, 250), (b"." + b"." * 998, 250), (b"z" * 999, 554)):
            with self.subTest(length=len(line)):
                self.envelope(c)
                c.send(self.HEAD + line + b"\r\n.\r\n")
                self.assertEqual(c.read_reply()[0], want)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(len(pf.messages(2, timeout=15)), 2)
        time.sleep(1.0)
        self.assertEqual(len(pf.messages(0)), 2)

    def test_zero_disables_the_limit(self):
        pf = self.postfix()
        pc = self.portcullis(pf, {"limits": {"max_line_length": 0}})
        c = self.client(pc)
        self.envelope(c)
        c.send(self.HEAD + b"w" * 2000 + b"\r\n.\r\n")
        self.assertReply(c.read_reply(), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        [stored] = pf.messages(1, timeout=15)
        self.assertIn(b"w" * 2000, stored)


class SmugglingTest(BadInputCase):
    def _smuggle(self, pc, payload):
        c = self.client(pc)
        self.envelope(c)
        c.send(payload)
        self.assertReply(c.read_reply(), 554, "5.5.2", "bare <CR> or <LF>")
        self.assertNoMoreReplies(c)  # exactly one reply for the whole payload
        self.assertReply(c.cmd("QUIT"), 221)
        c.expect_closed()

    def test_smuggling_into_postfix(self):
        pf = self.postfix()
        pc = self.portcullis(pf)
        for name, payload in SMUGGLING.items():
            with self.subTest(variant=name):
                self._smuggle(pc, payload)
        pc.wait_for_sessions(len(SMUGGLING))
        wait_until(lambda: len(self.pf_disconnects(pf)) >= len(SMUGGLING) + 2, 10,
                   what="Postfix sessions to end")
        self.assertPostfixGotNoMessage(pf)
        # Postfix saw each envelope exactly once (portcullis relays MAIL/RCPT as they come).
        self.assertEqual(sum(int(d.get("mail", "0").split("/")[-1])
                             for d in self.pf_disconnects(pf)), len(SMUGGLING))
        self.assertSessionWorks(pc)

    def test_smuggling_bytes_at_the_mta(self):
        fake = self.fake()
        pc = self.portcullis(fake)
        for name, payload in SMUGGLING.items():
            with self.subTest(variant=name):
                self._smuggle(pc, payload)
        fake.wait_closed()
        self.assertEqual(fake.bodies(), [])
        for s in fake.session_objects():
            self.assertNotIn("DATA", s.commands)
            self.assertNotIn(b"evil", bytes(s.received))
            self.assertNotIn(b"victim", bytes(s.received))
        self.assertEqual(len([c for c in fake.commands() if c.startswith("MAIL")]),
                         len(SMUGGLING))


class SplitInputTest(BadInputCase):
    """The DATA framer keeps its state across reads: the same bytes, one octet per segment."""

    def _send_slowly(self, c, data):
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            c.sock.sendall(data[i:i + 1])
            time.sleep(0.002)

    def test_byte_by_byte(self):
        fake = self.fake()
        pc = self.portcullis(fake)
        message = (b"Subject: slow\r\n\r\n.\r\n..\r\n.x\r\nline\r\n\r\n.\r\nend\r\n")
        c = self.client(pc)
        self.envelope(c)
        self._send_slowly(c, dot_stuff(message))
        self.assertReply(c.read_reply(), 250)
        self.assertEqual(fake.bodies(), [dot_stuff(message)[:-3]])
        for name in ("crlf-dot-lf", "cr-dot-crlf", "crlf-dot-cr-cr-lf"):
            with self.subTest(variant=name):
                self.envelope(c)
                self._send_slowly(c, SMUGGLING[name])
                self.assertReply(c.read_reply(), 554, "5.5.2")
                self.assertNoMoreReplies(c)
        self.assertReply(c.cmd("QUIT"), 221)
        fake.wait_closed()
        self.assertEqual(len(fake.bodies()), 1)
        self.assertNotIn(b"evil", b"".join(fake.sessions()))


class GreetingTest(BadInputCase):
    def test_command_before_greeting(self):
        fake = self.fake()
        pc = self.portcullis(fake, {"timeouts": {"greeting_delay": "500ms"}})
        fake.wait_closed()  # the capability probe is over
        before = fake.connection_count()
        c = RawClient("127.0.0.1", pc.port, timeout=10)
        self.addCleanup(c.close)
        c.send(b"EHLO x\r\n")
        self.assertReply(c.read_reply(), 554, "5.5.1")
        c.expect_closed()
        pc.wait_for_log(r"event=pregreet")
        time.sleep(0.3)
        self.assertEqual(fake.connection_count(), before, "the MTA saw the pregreet session")
        # A patient client is served.
        c2 = self.client(pc)
        self.assertReply(c2.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        self.assertReply(c2.cmd("QUIT"), 221)
        self.assertEqual(fake.connection_count(), before + 1)


class CommandTest(BadInputCase):
    def test_bdat_not_offered_and_chunk_skipped(self):
        pf = self.postfix()
        pc = self.portcullis(pf)
        c = self.client(pc, ehlo=False)
        self.assertNotIn("CHUNKING", self.ehlo_keywords(c.cmd("EHLO client.test")))
        chunk = b"MAIL FROM:<x@y>\r\nRCPT TO:<user@test.local>\r\nRSET\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        self.assertReply(c.read_reply(), 502, "5.5.1")
        self.assertNoMoreReplies(c)  # the chunk's "commands" got no replies: not executed
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 503, "5.5.1")  # no MAIL happened
        self.assertReply(c.cmd("QUIT"), 221)
        c.expect_closed()
        time.sleep(0.3)
        for d in self.pf_disconnects(pf):
            self.assertNotIn("mail", d)  # Postfix never saw the chunk's MAIL

    def test_quit_closes_after_its_reply_even_with_input_behind_it(self):
        # The 221 leaves with our FIN (one segment); a command pipelined after QUIT (RFC 2920:
        # QUIT ends a group) is neither answered nor forwarded, and the 221 is not lost to it.
        fake = self.fake()
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        c.send(b"QUIT\r\nRSET\r\nNOOP\r\n")
        self.assertReply(c.read_reply(), 221, "2.0.0")
        c.expect_closed()  # nothing after the 221: no reply to RSET or NOOP
        pc.wait_for_log(r"event=session .*QUIT:221 .*closed_by=client quit=yes")
        fake.wait_closed()
        self.assertNotIn(b"NOOP", b"".join(fake.sessions()))

    def test_protocol_errors(self):
        pf = self.postfix()
        pc = self.portcullis(pf, {"limits": {"max_errors": 50}})
        c = self.client(pc, ehlo=False)
        self.assertReply(c.cmd("MAIL FROM:<a@b>"), 503, "5.5.1")
        self.assertReply(c.cmd("RCPT TO:<x@y>"), 503, "5.5.1")
        self.assertReply(c.cmd("EHLO"), 501, "5.5.4")
        self.assertReply(c.cmd("EHLO client.test"), 250)
        self.assertReply(c.cmd("FOO"), 500, "5.5.2")
        self.assertReply(c.cmd("FOO bar baz"), 500, "5.5.2")
        self.assertReply(c.cmd("RCPT TO:<x@y>"), 503, "5.5.1")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")
        self.assertReply(c.cmd("MAIL FROM:"), 501, "5.5.4")
        self.assertReply(c.cmd("MAIL FROM:<a@b> SIZE=abc"), 501, "5.5.4")
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")  # no accepted recipient
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 503, "5.5.1")  # nested MAIL
        self.assertReply(c.cmd("AUTH PLAIN AGFAYg=="), 502, "5.5.1")
        self.assertReply(c.cmd("EXPN staff"), 502, "5.5.1")
        self.assertReply(c.cmd("XCLIENT ADDR=203.0.113.66 NAME=spoofed.example"), 502, "5.5.1")
        self.assertReply(c.cmd("XFORWARD ADDR=203.0.113.66 NAME=spoofed.example"), 502, "5.5.1")
        self.assertReply(c.cmd(f"VRFY {RCPT}"), 252)
        self.assertReply(c.cmd("HELP"), 214)
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 250)  # the transaction is intact
        self.assertReply(c.cmd("RSET"), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        c.expect_closed()
        wait_until(lambda: len(self.pf_disconnects(pf)) >= 3, 10, what="Postfix session end")
        log = pf.log_text()
        self.assertNotIn("203.0.113.66", log)
        self.assertNotIn("spoofed", log)
        for d in self.pf_disconnects(pf):
            for verb in ("vrfy", "expn", "auth", "xforward", "help", "data"):
                self.assertNotIn(verb, d, f"Postfix got {verb}: {d}")

    def test_identity_and_probing_commands_never_reach_the_mta(self):
        fake = self.fake()
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)  # the MTA connection is open
        for line, code in (("XCLIENT ADDR=203.0.113.66 NAME=spoofed.example", 502),
                           ("XFORWARD ADDR=203.0.113.66", 502), ("AUTH LOGIN", 502),
                           ("EXPN staff", 502)):
            self.assertReply(c.cmd(line), code, "5.5.1")
        self.assertReply(c.cmd(f"VRFY {RCPT}"), 252)
        self.assertReply(c.cmd("HELP"), 214)
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        c.expect_closed()
        fake.wait_closed()
        raw = b"".join(fake.sessions())
        for word in (b"XCLIENT", b"XFORWARD", b"AUTH", b"EXPN", b"VRFY", b"HELP",
                     b"203.0.113.66", b"spoofed"):
            self.assertNotIn(word, raw.upper())
        tx = [s for s in fake.session_objects() if any(x.startswith("MAIL") for x in s.commands)]
        self.assertEqual(len(tx), 1)
        self.assertEqual(tx[0].commands[:3], ["EHLO portcullis.test.local",
                                              f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RCPT}>"])

    def test_too_many_errors(self):
        pf = self.postfix()
        pc = self.portcullis(pf, {"limits": {"max_errors": 3}})
        c = self.client(pc)
        for _ in range(3):
            self.assertReply(c.cmd("FOO"), 500, "5.5.2")
        try:
            c.send(b"NOOP\r\n")
        except OSError:
            pass  # already closed: the 421 is still in our receive buffer
        self.assertReply(c.read_reply(), 421, "4.7.0")
        c.expect_closed()
        self.assertSessionWorks(pc)


class EhloOfferTest(BadInputCase):
    def _check_offer(self, pc, size):
        c = self.client(pc, ehlo=False)
        offer = self.ehlo_keywords(c.cmd("EHLO client.test"))
        for keyword in ("PIPELINING", "SIZE", "ENHANCEDSTATUSCODES", "8BITMIME"):
            self.assertIn(keyword, offer)
        self.assertEqual(offer["SIZE"], f"SIZE {size}")
        for keyword in FORBIDDEN_KEYWORDS:
            self.assertNotIn(keyword, offer, f"EHLO offers {keyword}: {offer}")
        self.assertFalse(any(k.startswith("AUTH=") for k in offer), offer)
        self.assertReply(c.cmd("QUIT"), 221)

    def test_ehlo_offer_in_front_of_postfix(self):
        pf = self.postfix()
        pc = self.portcullis(pf, {"limits": {"max_message_size": 20000000}})
        self._check_offer(pc, 20000000)

    def test_ehlo_offer_in_front_of_a_generous_mta(self):
        fake = self.fake(ehlo_caps=DEFAULT_CAPS + [
            "CHUNKING", "BINARYMIME", "AUTH PLAIN LOGIN", "AUTH=PLAIN", "STARTTLS",
            "XFORWARD NAME ADDR PROTO HELO", "ETRN", "DSN"])
        pc = self.portcullis(fake, {"limits": {"max_message_size": 20000000}})
        self._check_offer(pc, 20000000)


class LimitTest(BadInputCase):
    def test_message_size(self):
        pf = self.postfix()
        pc = self.portcullis(pf, {"limits": {"max_message_size": 20000}})
        c = self.client(pc, ehlo=False)
        self.assertEqual(self.ehlo_keywords(c.cmd("EHLO client.test"))["SIZE"], "SIZE 20000")
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}> SIZE=50000"), 552, "5.3.4")
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 503, "5.5.1")
        self.envelope(c)
        message = make_body(30000)
        self.assertGreater(len(message), 29000)
        c.send(dot_stuff(message))
        self.assertReply(c.read_reply(), 552, "5.3.4")
        self.assertReply(c.cmd("QUIT"), 221)
        c.expect_closed()
        pc.wait_for_sessions(1)
        self.assertPostfixGotNoMessage(pf)

    def test_message_size_boundary(self):
        fake = self.fake()
        pc = self.portcullis(fake, {"limits": {"max_message_size": 20000}})
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}> SIZE=20000"), 250)
        self.assertReply(c.cmd("RSET"), 250)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}> SIZE=20001"), 552, "5.3.4")
        for size, want in ((20000, 250), (20001, 552)):
            with self.subTest(size=size):
                # Padded in short lines: one line of the whole gap would be over the 998-octet
                # line limit (limits.max_line_length) and refused for that instead.
                message = make_body(19000)
                while size - len(message) > 100:
                    message += b"y" * 78 + b"\r\n"
                message += b"y" * (size - len(message) - 2) + b"\r\n"
                self.assertEqual(len(message), size)
                self.envelope(c)
                c.send(dot_stuff(message))
                self.assertEqual(c.read_reply()[0], want)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(len(fake.bodies()), 1)
        self.assertEqual(len(fake.bodies()[0]), 20000)

    def test_recipient_limit(self):
        pf = self.postfix()
        pc = self.portcullis(pf, {"limits": {"max_recipients": 2}})
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        self.assertReply(c.cmd("RCPT TO:<a@test.local>"), 250)
        self.assertReply(c.cmd("RCPT TO:<b@test.local>"), 250)
        self.assertReply(c.cmd("RCPT TO:<c@test.local>"), 452, "4.5.3")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_body(800)))
        self.assertReply(c.read_reply(), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        delivered = pf.emails(2, timeout=15)
        self.assertEqual(sorted(m["Delivered-To"] for m in delivered),
                         ["a@test.local", "b@test.local"])
        time.sleep(1.0)
        self.assertEqual(len(pf.messages(0)), 2)
        log = pf.log_text()
        self.assertRegex(log, r"to=<a@test\.local>")
        self.assertRegex(log, r"to=<b@test\.local>")
        self.assertNotIn("c@test.local", log)


class DataTest(BadInputCase):
    LINES = [b".", b"..", b". ", b". x", b".leading", b"...", b"no dot", b".\t", b""]

    def _message(self):
        head = (f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: dots\r\n"
                f"Message-ID: <{time.time_ns()}@client.test>\r\n\r\n").encode()
        return head + b"\r\n".join(self.LINES) + b"\r\nend\r\n"

    def test_dot_stuffing_round_trip_postfix(self):
        pf = self.postfix()
        pc = self.portcullis(pf)
        c = self.client(pc)
        self.envelope(c)
        message = self._message()
        c.send(dot_stuff(message))
        self.assertReply(c.read_reply(), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        [stored] = pf.messages(1, timeout=15)
        body = stored.split(b"\n\n", 1)[1]  # Maildir files have LF line ends
        self.assertEqual(body, message.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n"))

    def test_dot_stuffing_on_the_wire(self):
        fake = self.fake()
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.envelope(c)
        message = self._message()
        c.send(dot_stuff(message))
        self.assertReply(c.read_reply(), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(fake.bodies(), [dot_stuff(message)[:-3]])


class SpoolTest(BadInputCase):
    SPOOL = {"spool": {"memory_limit": 4096}}

    def assertSpoolEmpty(self, pc):
        wait_until(lambda: not self.spool_files(pc), 5, what="the spool directory to be empty")

    def test_big_message_via_file_spool_postfix(self):
        pf = self.postfix()
        pc = self.portcullis(pf, self.SPOOL)
        c = self.client(pc)
        self.envelope(c)
        message = make_body(100 * 1024)
        c.send(dot_stuff(message))
        self.assertReply(c.read_reply(), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        [stored] = pf.messages(1, timeout=15)
        self.assertEqual(stored.split(b"\n\n", 1)[1],
                         message.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n"))
        pc.wait_for_sessions(1)
        self.assertSpoolEmpty(pc)

    def test_spool_file_during_transaction(self):
        fake = self.fake(delays_ms={".": 1500})
        pc = self.portcullis(fake, self.SPOOL)
        c = self.client(pc)
        self.assertEqual(self.spool_files(pc), [])
        self.envelope(c)
        message = make_body(100 * 1024)
        c.send(dot_stuff(message))
        files = wait_until(lambda: self.spool_files(pc), 5, what="a spool file")
        self.assertEqual(len(files), 1, files)
        self.assertTrue(os.path.basename(files[0]).startswith("portcullis-spool-"), files)
        self.assertEqual(stat.S_IMODE(os.stat(files[0]).st_mode), 0o600)
        self.assertReply(c.read_reply(), 250)  # the MTA answers 1.5 s after our dot
        self.assertSpoolEmpty(pc)
        self.assertEqual(fake.bodies(), [dot_stuff(message)[:-3]])
        self.assertReply(c.cmd("QUIT"), 221)

    def test_no_spool_file_left_after_reject(self):
        fake = self.fake()
        pc = self.portcullis(fake, {"spool": {"memory_limit": 4096},
                                    "limits": {"max_message_size": 20000}})
        c = self.client(pc)
        self.envelope(c)
        c.send(dot_stuff(make_body(30000)))
        self.assertReply(c.read_reply(), 552, "5.3.4")
        self.assertSpoolEmpty(pc)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(fake.bodies(), [])

    def test_no_spool_file_left_after_client_disconnect(self):
        fake = self.fake()
        pc = self.portcullis(fake, self.SPOOL)
        c = self.client(pc)
        self.envelope(c)
        c.send(make_body(50 * 1024))  # no final dot
        wait_until(lambda: self.spool_files(pc), 5, what="a spool file")
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        pc.wait_for_sessions(1)
        self.assertSpoolEmpty(pc)
        self.assertEqual(fake.bodies(), [])
        self.assertTrue(pc.alive())
        self.assertSessionWorks(pc)
        self.assertSpoolEmpty(pc)


if __name__ == "__main__":
    unittest.main()
