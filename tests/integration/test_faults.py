#!/usr/bin/env python3
"""A misbehaving MTA behind portcullis: down, hanging up, slow, garbage, unsolicited replies.

The invariant for every test: the client never gets 250 to its end-of-data unless the backend
said 250 to that message; backend trouble is a 4xx (never a 5xx) that arrives within a bounded
time; portcullis stays alive and serves the next session normally; and nothing the client sent
reaches the backend except as the commands and dot-transparent DATA portcullis means to send.

Run: python3 tests/integration/test_faults.py -v   (root, loopback-only netns: tests/run.sh)
"""

import os
import re
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (DaemonTestCase, FakeSmtp, Portcullis, RawClient, SmtpSink,  # noqa: E402
                     dot_stuff, free_port, wait_until)
from harness.fakesmtp import DEFAULT_CAPS  # noqa: E402

HOSTNAME = "portcullis.test.local"
SENDER = "sender@client.test"
RCPT = "user@test.local"

# What the client means; the body carries SMTP commands and leading dots that must stay data.
MESSAGE = (b"From: <sender@client.test>\r\n"
           b"To: <user@test.local>\r\n"
           b"Subject: fault test\r\n"
           b"\r\n"
           b"line one\r\n"
           b"MAIL FROM:<evil@x>\r\n"
           b"RCPT TO:<victim@test.local>\r\n"
           b"DATA\r\n"
           b".\r\n"
           b".hidden dot line\r\n"
           b"end\r\n")

# Every line portcullis itself may send to the MTA.
_UPSTREAM_LINE = re.compile(
    r"^(EHLO portcullis\.test\.local|MAIL FROM:<[^<>\s]*>( [A-Z0-9=.\-]+)*|"
    r"RCPT TO:<[^<>\s]*>( [A-Z0-9=.\-]+)*|DATA|\.|RSET|QUIT|NOOP)$")



def big_message(size):
    filler = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    return MESSAGE + filler * (size // len(filler) + 1)


class Once:
    """FakeSmtp handler: the first `times` commands `key` over ALL connections (the per-
    connection "MAIL#1" keys would hit every retry on a fresh connection too) are answered
    with `reply` (bytes raw, str + CRLF, None = no answer at all, NotImplemented = the normal
    reply) after `delay` seconds; everything else takes the normal path."""

    def __init__(self, key, reply=NotImplemented, delay=0.0, times=1):
        self.key, self.reply, self.delay, self.times = key, reply, delay, times
        self.used = 0
        self._lock = threading.Lock()

    def __call__(self, session, key, line):
        with self._lock:
            if key != self.key or self.used >= self.times:
                return NotImplemented
            self.used += 1
        if self.delay:
            time.sleep(self.delay)
        if isinstance(self.reply, str):
            return self.reply.encode() + b"\r\n"
        return self.reply


def fault_config(**overrides):
    config = {
        "hostname": HOSTNAME,
        "upstream": {"identity": "none", "command_timeout": "1s", "connect_timeout": "2s",
                     "pool_size": 0, "probe_interval": "1h"},
        "timeouts": {"end_of_data": "2s"},
        "dns": {"reverse_lookup": False},
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    return config



class FaultTestCase(DaemonTestCase):
    # -- fixtures ------------------------------------------------------------------------

    def portcullis(self, backend, wait_probe=True, **overrides):
        pc = self.start_daemon(Portcullis(upstream=backend, config=fault_config(**overrides),
                                   keep_on_failure=self._keep_on_failure))
        if wait_probe:
            # The capability probe (greeting + EHLO + QUIT) is not part of any test session.
            pc.wait_for_log(r"event=upstream-probe result=ok")
        return pc

    def client(self, pc, ehlo=True):
        c = RawClient("127.0.0.1", pc.port, timeout=10)
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
            self.assertIn(text, " ".join(lines))

    def assertTempfail(self, reply, what):
        code, _ = reply
        self.assertTrue(400 <= code < 500, f"{what}: expected a 4xx, got {reply}")

    def envelope(self, c, rcpts=(RCPT,)):
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        for r in rcpts:
            self.assertReply(c.cmd(f"RCPT TO:<{r}>"), 250)
        self.assertReply(c.cmd("DATA"), 354)

    def transaction(self, c, message=MESSAGE):
        self.envelope(c)
        c.send(dot_stuff(message))
        return c.read_reply(timeout=15)

    def assertServesNextSession(self, pc, fake=None):
        """portcullis is alive and a fresh session delivers a message end to end."""
        self.assertTrue(pc.alive(), "portcullis died")
        before = len(fake.bodies()) if fake else 0
        with RawClient("127.0.0.1", pc.port, timeout=15) as c:
            self.assertReply(c.read_reply(), 220)
            self.assertReply(c.cmd("EHLO next.client.test"), 250)
            self.assertReply(self.transaction(c), 250, "2.0.0")
            self.assertReply(c.cmd("QUIT"), 221)
            c.expect_closed()
        if fake:
            self.assertEqual(len(fake.bodies()), before + 1)
            self.assertEqual(fake.bodies()[-1], dot_stuff(MESSAGE)[:-3])
        self.assertTrue(pc.alive(), "portcullis died")

    def assertNothingSmuggled(self, fake):
        """Every line the MTA got is one portcullis means to send; the client's body text
        (its "MAIL FROM:<evil@x>" line) only ever arrives as dot-stuffed DATA."""
        for s in fake.session_objects():
            for line in s.commands:
                self.assertRegex(line, _UPSTREAM_LINE, f"unexpected line at the MTA: {line!r}")
                self.assertNotIn("evil", line)
        for body in fake.bodies():
            self.assertNotIn(b"\r\n.\r\n", body)
            for m in re.finditer(rb"evil", body):  # a body may be cut short by a hang-up
                self.assertEqual(body[m.start() - 13:m.start()], b"\r\nMAIL FROM:<")
        for raw in fake.sessions():
            # Raw bytes: each "MAIL FROM:<evil@x>" sits after a DATA and before its final dot.
            for m in re.finditer(rb"MAIL FROM:<evil@x>", raw):
                last_data = raw.rfind(b"\r\nDATA\r\n", 0, m.start())
                last_dot = raw.rfind(b"\r\n.\r\n", 0, m.start())
                self.assertGreater(last_data, last_dot, f"evil line outside DATA: {raw!r}")

    def wait_mta_connections_closed(self, fake, timeout=10):
        wait_until(lambda: all(s.closed for s in self.transaction_sessions(fake)), timeout,
                   what="portcullis to close its MTA connections")

    def transaction_sessions(self, fake):
        """FakeSmtp connections that carried a MAIL (i.e. not the capability probe)."""
        return [s for s in fake.session_objects()
                if any(c.upper().startswith("MAIL") for c in s.commands)]


class BackendDownTest(FaultTestCase):
    def test_backend_down_mail_451_session_continues(self):
        port = free_port()  # nothing listens here
        pc = self.portcullis(f"127.0.0.1:{port}", wait_probe=False)
        c = self.client(pc)
        t0 = time.monotonic()
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 451, "4.4.1")
        self.assertReply(c.cmd("RSET"), 250)
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 451, "4.4.1")
        # The transaction never opened: RCPT and DATA are out of sequence, not relayed.
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 503, "5.5.1")
        self.assertReply(c.cmd("QUIT"), 221)
        c.expect_closed()
        self.assertLess(time.monotonic() - t0, 10)
        # The backend comes back: the next session works without a restart.
        fake = self.start(FakeSmtp(port=port))
        self.assertServesNextSession(pc, fake)
        self.assertNothingSmuggled(fake)


class HangUpTest(FaultTestCase):
    def test_backend_closes_mid_data(self):
        fake = self.start(FakeSmtp(close_in_data_after=100))
        pc = self.portcullis(fake)
        c = self.client(pc)
        message = big_message(20000)
        reply = self.transaction(c, message)
        self.assertReply(reply, 451, "4.4.2")
        self.assertEqual(len(fake.bodies()), 1)
        self.assertLessEqual(len(fake.bodies()[0]), 100)
        # The session goes on; the next transaction on a fresh MTA connection works.
        fake.close_in_data_after = None
        self.assertReply(self.transaction(c), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertNothingSmuggled(fake)
        self.assertServesNextSession(pc, fake)

    def test_mta_refuses_rset_and_hangs_up_next_mail_is_answered(self):
        # Regression (found in review): the connection retired after the refused RSET ended on
        # the next loop pass and reported its loss as the session's; the fresh connection the
        # session had opened meanwhile was dropped, and MAIL never got a reply. With half-close
        # support the client's FIN then no longer reaped the session either.
        fake = self.start(FakeSmtp(replies={"RSET": "421 4.4.2 going away"}))
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 250)
        self.assertReply(c.cmd("RSET"), 250)  # ours; the MTA hears it before the next MAIL
        self.assertReply(self.transaction(c), 250)  # on a fresh MTA connection
        self.assertReply(c.cmd("QUIT"), 221)
        c.expect_closed()
        pc.wait_for_sessions(1)
        self.assertEqual(len(fake.bodies()), 1)
        self.assertNothingSmuggled(fake)

    def test_backend_closes_without_reply_after_dot(self):
        sink = self.start(SmtpSink(quit_silently=["."]))
        pc = self.portcullis(sink)
        c = self.client(pc)
        t0 = time.monotonic()
        self.assertReply(self.transaction(c), 451, "4.4.2")
        self.assertLess(time.monotonic() - t0, 10)
        # Same session: the envelope works again on a fresh connection (and fails the same).
        self.assertReply(self.transaction(c), 451, "4.4.2")
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertTrue(pc.alive())
        with RawClient("127.0.0.1", pc.port) as c2:
            self.assertReply(c2.read_reply(), 220)
            self.assertReply(c2.cmd("EHLO next.client.test"), 250)
            self.envelope(c2)
            c2.send(dot_stuff(MESSAGE))
            self.assertReply(c2.read_reply(), 451, "4.4.2")
            self.assertReply(c2.cmd("QUIT"), 221)
        # smtp-sink saw the message bytes, but never answered them: nothing was "delivered".
        self.assertFalse(any(c.lower().startswith("mail from:<evil") for c in sink.commands()))

    def test_backend_421_to_dot(self):
        sink = self.start(SmtpSink(reply_421=["."]))
        pc = self.portcullis(sink)
        c = self.client(pc)
        reply = self.transaction(c)
        self.assertTempfail(reply, "reply to the dot")
        self.assertNotEqual(reply[0], 250)
        if reply[0] == 421:
            c.expect_closed()  # 421 always closes
        else:
            self.assertReply(c.cmd("QUIT"), 221)
        self.assertTrue(pc.alive())
        with RawClient("127.0.0.1", pc.port) as c2:
            self.assertReply(c2.read_reply(), 220)
            self.assertReply(c2.cmd("EHLO next.client.test"), 250)
            self.envelope(c2)
            c2.send(dot_stuff(MESSAGE))
            self.assertTempfail(c2.read_reply(), "reply to the dot")

    def test_backend_closes_before_reply_to_mail(self):
        fake = self.start(FakeSmtp(handler=Once("MAIL", None)))
        pc = self.portcullis(fake)
        c = self.client(pc)
        # No reply at all (the FakeSmtp keeps the connection open): the command timeout.
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 451, "4.4.2")
        self.assertReply(self.transaction(c), 250)
        self.assertNothingSmuggled(fake)
        self.assertServesNextSession(pc, fake)

    def test_backend_hangs_up_at_mail(self):
        fake = self.start(FakeSmtp(close_after={"MAIL#1"}))
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 451, "4.4.2")
        fake.close_after = set()
        self.assertReply(self.transaction(c), 250)
        self.assertNothingSmuggled(fake)
        self.assertServesNextSession(pc, fake)

    def _refused_session(self, **fake_args):
        fake = self.start(FakeSmtp(**fake_args))
        pc = self.portcullis(fake, wait_probe=False)
        c = self.client(pc)
        reply = c.cmd(f"MAIL FROM:<{SENDER}>")
        self.assertTempfail(reply, "MAIL while the MTA refuses sessions")
        if reply[0] == 421:
            c.expect_closed()
        else:
            self.assertReply(reply, 451, "4.4.1")
            self.assertReply(c.cmd("RSET"), 250)
            self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(fake.bodies(), [])
        self.assertTrue(pc.alive(), "portcullis died")
        with RawClient("127.0.0.1", pc.port) as c2:  # and the next session is served
            self.assertReply(c2.read_reply(), 220)
            self.assertReply(c2.cmd("EHLO next.client.test"), 250)
            self.assertTempfail(c2.cmd(f"MAIL FROM:<{SENDER}>"), "MAIL, second session")
        self.assertTrue(pc.alive(), "portcullis died")

    # Regression: Upstream::readReplies() kept reading the stream's input evbuffer after
    # handleReply() -> openStep() had destroyed the stream on a negative greeting/EHLO reply
    # (use after free, SIGSEGV).
    def test_backend_refuses_greeting_554(self):
        self._refused_session(greeting="554 5.7.1 go away")

    # Regression: as above; a busy MTA ("421 too many connections") crashed portcullis.
    def test_backend_refuses_greeting_421(self):
        self._refused_session(greeting="421 4.3.2 too many connections, try later")

    # Regression: as above (negative reply to our EHLO).
    def test_backend_refuses_ehlo(self):
        self._refused_session(replies={"EHLO": "550 5.7.1 not you"})


class GarbageTest(FaultTestCase):
    def _garbage_to_mail(self, garbage):
        fake = self.start(FakeSmtp(handler=Once("MAIL", garbage)))
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 451, "4.3.0")
        # Not in a transaction: RCPT is out of sequence.
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 503, "5.5.1")
        # A new MAIL in the same session gets a healthy MTA reply and the message goes through.
        self.assertReply(self.transaction(c), 250, "2.0.0")
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(fake.bodies(), [dot_stuff(MESSAGE)[:-3]])
        self.assertNothingSmuggled(fake)
        self.assertServesNextSession(pc, fake)

    def test_garbage_reply_to_mail_text(self):
        self._garbage_to_mail(b"hello\r\n")

    def test_garbage_reply_to_mail_bad_code(self):
        self._garbage_to_mail(b"999 bad\r\n")

    def test_garbage_reply_to_mail_nul(self):
        self._garbage_to_mail(b"250\x00x\r\n")

    def test_garbage_reply_to_mail_bare_lf(self):
        self._garbage_to_mail(b"250 2.1.0 Ok\n")

    def test_garbage_reply_to_mail_overlong(self):
        self._garbage_to_mail(b"250 " + b"x" * 2000 + b"\r\n")

    def _bad_reply_to_rcpt(self, bad):
        fake = self.start(FakeSmtp(handler=Once("RCPT", bad)))
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        reply = c.cmd(f"RCPT TO:<{RCPT}>")
        self.assertTempfail(reply, "RCPT answered with garbage")
        # The MTA's transaction is gone with the connection: 421 and close.
        self.assertEqual(reply[0], 421, reply)
        self.assertTrue(reply[1][0].startswith("4."), reply)
        c.expect_closed()
        self.assertEqual(fake.bodies(), [])
        self.assertNothingSmuggled(fake)
        self.assertServesNextSession(pc, fake)

    # Regression: a well-formed but illegal reply (354 to RCPT) made Upstream::handleReply()
    # call fail(), which destroys the stream, and Upstream::readReplies() then read the freed
    # input evbuffer: SIGSEGV before the client's 421 was even flushed.
    def test_3xx_reply_to_rcpt(self):
        self._bad_reply_to_rcpt(b"354 what\r\n")

    def test_garbage_reply_to_rcpt(self):
        self._bad_reply_to_rcpt(b"hello\r\n")

    # Regression: the same use after free (250 instead of 354 to DATA).
    def test_2xx_reply_to_data(self):
        # DATA answered 250 instead of 354: the dot must not get a 250 out of this.
        fake = self.start(FakeSmtp(handler=Once("DATA", "250 2.0.0 Ok")))
        pc = self.portcullis(fake)
        c = self.client(pc)
        reply = self.transaction(c)
        self.assertTempfail(reply, "reply to the dot")
        self.assertEqual(fake.bodies(), [])
        self.assertNothingSmuggled(fake)
        self.assertServesNextSession(pc, fake)

    def test_unsolicited_reply_in_same_write(self):
        fake = self.start(FakeSmtp(handler=Once("MAIL", b"250 ok\r\n250 injected\r\n")))
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 451, "4.3.0")
        self.assertReply(self.transaction(c), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(len(fake.bodies()), 1)
        self.assertNothingSmuggled(fake)
        self.assertServesNextSession(pc, fake)

    def test_unsolicited_reply_after_proper_250(self):
        # 250 to MAIL, then 300 ms later an extra "250 injected" on its own: the MTA is out of
        # step, so nothing it says about this transaction can be trusted any more.
        fake = self.start(FakeSmtp(extra_replies={"MAIL#1": "250 2.0.0 injected"},
                                   extra_delays_ms={"MAIL#1": 300}))
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        time.sleep(0.8)  # the injected line arrives while portcullis waits for the client
        replies = []
        for line in (f"RCPT TO:<{RCPT}>", "DATA"):
            reply = c.cmd(line)
            replies.append(reply)
            if reply[0] >= 400:
                break
        else:
            c.send(dot_stuff(MESSAGE))
            replies.append(c.read_reply())
        self.assertTempfail(replies[-1], f"replies {replies}")
        self.assertNotIn(250, [r[0] for r in replies[2:]], replies)  # the dot never gets 250
        if replies[-1][0] == 421:
            c.expect_closed()
        self.assertEqual(fake.bodies(), [])
        self.assertNothingSmuggled(fake)
        fake.extra_replies.clear()
        self.assertServesNextSession(pc, fake)

    def test_unsolicited_reply_while_client_pipelines(self):
        # The same, but the client's RCPT is already waiting when the extra line arrives: the
        # extra line may be taken for the RCPT reply, but then the real RCPT reply is
        # unsolicited and the message must still not get a 250.
        fake = self.start(FakeSmtp(extra_replies={"MAIL#1": "250 2.0.0 injected"},
                                   extra_delays_ms={"MAIL#1": 300}))
        pc = self.portcullis(fake)
        c = self.client(pc)
        c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RCPT}>\r\n".encode())
        replies = c.read_replies(2)
        self.assertReply(replies[0], 250)
        time.sleep(0.5)
        if replies[1][0] < 400:
            reply = c.cmd("DATA")
            replies.append(reply)
            if reply[0] == 354:
                c.send(dot_stuff(MESSAGE))
                replies.append(c.read_reply())
        self.assertTempfail(replies[-1], f"replies {replies}")
        self.assertEqual(fake.bodies(), [])
        self.assertNothingSmuggled(fake)
        fake.extra_replies.clear()
        self.assertServesNextSession(pc, fake)

    def test_unsolicited_bytes_while_idle_after_greeting(self):
        # The MTA talks out of turn right after its EHLO reply (before MAIL is sent).
        fake = self.start(FakeSmtp(extra_replies={"EHLO": "250 2.0.0 injected"},
                                   extra_delays_ms={"EHLO": 200}))
        pc = self.portcullis(fake)
        c = self.client(pc)
        reply = c.cmd(f"MAIL FROM:<{SENDER}>")
        if reply[0] == 250:
            time.sleep(0.6)
            reply = c.cmd(f"RCPT TO:<{RCPT}>")
            self.assertTempfail(reply, "RCPT after an out-of-step MTA")
        else:
            self.assertTempfail(reply, "MAIL to an out-of-step MTA")
        self.assertEqual(fake.bodies(), [])
        self.assertTrue(pc.alive())
        self.assertNothingSmuggled(fake)


class SlowBackendTest(FaultTestCase):
    def test_slow_reply_to_mail(self):
        fake = self.start(FakeSmtp(handler=Once("MAIL", delay=3.0)))
        pc = self.portcullis(fake)
        c = self.client(pc)
        t0 = time.monotonic()
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 451, "4.4.2")
        self.assertLess(time.monotonic() - t0, 10)
        # The late 250 must not leak into the next transaction.
        time.sleep(2.5)
        self.assertReply(self.transaction(c), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(len(fake.bodies()), 1)
        self.assertNothingSmuggled(fake)
        self.assertServesNextSession(pc, fake)

    def test_slow_reply_to_dot(self):
        fake = self.start(FakeSmtp(handler=Once(".", delay=4.0)))
        pc = self.portcullis(fake)
        c = self.client(pc)
        t0 = time.monotonic()
        self.assertReply(self.transaction(c), 451, "4.4.2")
        self.assertLess(time.monotonic() - t0, 10)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertNothingSmuggled(fake)
        time.sleep(2.5)  # the late 250 goes to a closed connection
        self.assertServesNextSession(pc, fake)

    def test_mta_that_stops_reading_mid_message_gets_it_whole(self):
        # After its 354 the MTA reads nothing for 1.5 s through a 4 KiB receive buffer: the
        # 8 MB message fills the socket, portcullis's send() meets EAGAIN and keeps the rest
        # (it pumps the spool only while less than 256 KiB waits), then sends it on intact.
        fake = self.start(FakeSmtp(pause_after_354_ms=1500, rcvbuf=4096))
        pc = self.portcullis(fake, upstream={"command_timeout": "10s"},
                             timeouts={"end_of_data": "30s"})
        c = self.client(pc)
        line = b"x" * 78 + b"\r\n"
        message = MESSAGE + line * (8_000_000 // len(line))
        self.assertReply(self.transaction(c, message), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        bodies, wire = fake.bodies(), dot_stuff(message)[:-3]  # as it crossed, dots stuffed
        self.assertEqual(len(bodies), 1)
        # Where they part, not a diff: difflib takes minutes over 8 MB.
        differ = next((i for i, (a, b) in enumerate(zip(bodies[0], wire)) if a != b), None)
        self.assertEqual((len(bodies[0]), differ), (len(wire), None),
                         bodies[0][differ - 100:differ + 100] if differ else b"")
        self.assertNothingSmuggled(fake)

    def test_half_close_while_the_mta_answers_the_dot(self):
        # smtp-sink holds its reply to the dot for 2 s; the client's body, dot, QUIT and FIN
        # are all in by then. The MTA's 250 must still reach the client, then the 221.
        sink = self.start(SmtpSink(delay={".": 2}))
        pc = self.portcullis(sink, timeouts={"end_of_data": "20s"})
        c = self.client(pc)
        self.envelope(c)
        c.send(dot_stuff(MESSAGE) + b"QUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        self.assertReply(c.read_reply(timeout=15), 250)
        self.assertReply(c.read_reply(), 221)
        c.expect_closed()
        [msg] = sink.messages(1)
        self.assertIn(RCPT, " ".join(msg.rcpts))
        self.assertIn(b".hidden dot line", msg.data)
        pc.wait_for_sessions(1)
        [summary] = pc.sessions()
        self.assertTrue(summary["commands"].endswith(".:250,QUIT:221"), summary)
        self.assertEqual(summary["messages"], "1")

    def test_slow_greeting_for_session(self):
        fake = self.start(FakeSmtp(handler=Once("CONNECT", delay=5.0, times=2)))
        pc = self.portcullis(fake, wait_probe=False)
        c = self.client(pc)
        t0 = time.monotonic()
        # connect_timeout is 2s in fault_config: the greeting never comes in time.
        reply = c.cmd(f"MAIL FROM:<{SENDER}>", timeout=15)
        self.assertTempfail(reply, "MAIL while the MTA does not greet")
        self.assertLess(time.monotonic() - t0, 10)
        self.assertTrue(pc.alive())


    def test_ehlo_during_the_first_probe_waits_for_what_the_mta_offers(self):
        # The EHLO we answer passes SMTPUTF8 and DSN on only when the MTA offers them. A client
        # that says EHLO while the start-up probe is still out (here: the MTA takes 1.5 s to
        # answer the probe's EHLO) waits for that answer instead of getting a short offer.
        fake = self.start(FakeSmtp(ehlo_caps=DEFAULT_CAPS + ["DSN", "SMTPUTF8"],
                                   handler=Once("EHLO", delay=1.5)))
        pc = self.portcullis(fake, wait_probe=False)
        c = self.client(pc, ehlo=False)
        code, lines = c.cmd("EHLO client.test", timeout=15)
        self.assertEqual(code, 250)
        self.assertIn("SMTPUTF8", lines)
        self.assertIn("DSN", lines)
        self.assertReply(c.cmd("MAIL FROM:<j\u00f6rg@client.test> SMTPUTF8"), 250)
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertServesNextSession(pc, fake)

    def test_ehlo_during_a_silent_first_probe_is_answered_when_the_probe_gives_up(self):
        # The MTA accepts the probe's connection and never greets: the waiting EHLO is answered
        # once the probe times out (connect_timeout, 2 s here), with the offer for an MTA not
        # known yet (8BITMIME, no SMTPUTF8), and the session goes on.
        fake = self.start(FakeSmtp(ehlo_caps=DEFAULT_CAPS + ["SMTPUTF8"],
                                   handler=Once("CONNECT", None)))
        pc = self.portcullis(fake, wait_probe=False)
        c = self.client(pc, ehlo=False)
        t0 = time.monotonic()
        code, lines = c.cmd("EHLO client.test", timeout=15)
        self.assertEqual(code, 250)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertIn("8BITMIME", lines)
        self.assertNotIn("SMTPUTF8", lines)
        pc.wait_for_log(r"event=upstream-probe result=failed failure=timeout")
        self.assertReply(self.transaction(c), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertTrue(pc.alive())

    def test_ehlo_waits_for_one_probe_not_a_chain_of_them(self):
        # probe_interval (1 s) shorter than the probe's own timeout (connect_timeout 20 s): each
        # probe is superseded before it can fail. A waiting EHLO is answered when its probe is
        # superseded, with the offer for an MTA not known yet, not held while probes keep
        # replacing each other.
        fake = self.start(FakeSmtp(ehlo_caps=DEFAULT_CAPS + ["SMTPUTF8"],
                                   handler=Once("CONNECT", None, times=1000)))
        pc = self.portcullis(fake, wait_probe=False,
                             upstream={"connect_timeout": "20s", "probe_interval": "1s"})
        c = self.client(pc, ehlo=False)
        code, lines = c.cmd("EHLO client.test", timeout=8)
        self.assertEqual(code, 250)
        self.assertNotIn("SMTPUTF8", lines)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertTrue(pc.alive())


class RelayTest(FaultTestCase):
    def test_backend_rejections_relayed_verbatim(self):
        fake = self.start(FakeSmtp(replies={"RCPT#1": "550 5.1.1 no such user here",
                                            "RCPT#2": "450 4.2.0 mailbox busy, try later"},
                                   handler=Once("MAIL", "451 4.7.1 greylisted, come back later")))
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertEqual(c.cmd(f"MAIL FROM:<{SENDER}>"),
                         (451, ["4.7.1 greylisted, come back later"]))
        self.assertEqual(c.cmd(f"MAIL FROM:<{SENDER}>"), (250, ["2.1.0 Ok"]))
        self.assertEqual(c.cmd("RCPT TO:<nobody@test.local>"),
                         (550, ["5.1.1 no such user here"]))
        self.assertEqual(c.cmd("RCPT TO:<busy@test.local>"),
                         (450, ["4.2.0 mailbox busy, try later"]))
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")  # no valid recipient
        self.assertReply(c.cmd(f"RCPT TO:<{RCPT}>"), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertNothingSmuggled(fake)

    def test_backend_rejects_message_at_dot(self):
        fake = self.start(FakeSmtp(handler=Once(".", "554 5.7.1 message content rejected")))
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertEqual(self.transaction(c), (554, ["5.7.1 message content rejected"]))
        self.assertReply(self.transaction(c), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertNothingSmuggled(fake)

    def test_backend_multiline_rejection_relayed(self):
        fake = self.start(FakeSmtp(replies={
            "RCPT": b"550-5.1.1 first line of the reason\r\n550 5.1.1 second line\r\n"}))
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        self.assertEqual(c.cmd(f"RCPT TO:<{RCPT}>"),
                         (550, ["5.1.1 first line of the reason", "5.1.1 second line"]))
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertNothingSmuggled(fake)

    def test_backend_tempfails_data_then_next_transaction_resets(self):
        fake = self.start(FakeSmtp(handler=Once("DATA", "451 4.3.0 queue file write error")))
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertEqual(self.transaction(c), (451, ["4.3.0 queue file write error"]))
        self.assertReply(self.transaction(c), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        [s] = self.transaction_sessions(fake)
        # The MTA's half-open transaction is reset before the next MAIL on that connection.
        self.assertEqual(s.commands[:9], [
            "EHLO portcullis.test.local", f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RCPT}>", "DATA",
            "RSET", f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RCPT}>", "DATA", "."])
        self.assertEqual(fake.bodies(), [dot_stuff(MESSAGE)[:-3]])
        self.assertNothingSmuggled(fake)

    def test_backend_421_to_mail(self):
        fake = self.start(FakeSmtp(handler=Once("MAIL", "421 4.3.2 service shutting down")))
        pc = self.portcullis(fake)
        c = self.client(pc)
        reply = c.cmd(f"MAIL FROM:<{SENDER}>")
        self.assertTempfail(reply, "MAIL answered 421 by the MTA")
        if reply[0] == 421:
            c.expect_closed()
        else:
            self.assertReply(c.cmd("QUIT"), 221)
        self.assertNothingSmuggled(fake)
        self.assertServesNextSession(pc, fake)

    def test_early_250_with_354(self):
        # "354" and a "250" in one write: the 250 answers nothing portcullis has sent yet.
        fake = self.start(FakeSmtp(handler=Once("DATA", b"354 go ahead\r\n250 2.0.0 early\r\n")))
        pc = self.portcullis(fake)
        c = self.client(pc)
        reply = self.transaction(c)
        self.assertReply(reply, 451, "4.3.0")
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertNothingSmuggled(fake)
        self.assertServesNextSession(pc, fake)

    def test_pipelined_client_second_rcpt_rejected(self):
        fake = self.start(FakeSmtp(replies={"RCPT#2": "550 5.1.1 no such user"}))
        pc = self.portcullis(fake)
        c = self.client(pc)
        c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<a@test.local>\r\n"
               f"RCPT TO:<b@test.local>\r\nDATA\r\n".encode())
        replies = c.read_replies(4)
        self.assertEqual([r[0] for r in replies], [250, 250, 550, 354], replies)
        self.assertEqual(replies[2], (550, ["5.1.1 no such user"]))
        self.assertEqual(c.pending(0.3), b"")  # exactly four replies
        c.send(dot_stuff(MESSAGE))
        self.assertReply(c.read_reply(), 250, "2.0.0")
        self.assertReply(c.cmd("QUIT"), 221)
        c.expect_closed()
        fake.wait_closed()
        [s] = self.transaction_sessions(fake)
        self.assertEqual(s.commands[:6], ["EHLO portcullis.test.local",
                                          f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@test.local>",
                                          "RCPT TO:<b@test.local>", "DATA", "."])
        self.assertEqual(s.commands[6:], ["QUIT"][:len(s.commands) - 6])
        self.assertEqual(s.commands.count("DATA"), 1)
        self.assertEqual(fake.bodies(), [dot_stuff(MESSAGE)[:-3]])
        self.assertNothingSmuggled(fake)

    def test_pipelined_commands_after_failed_dot_are_not_smuggled(self):
        # The client pipelines a new envelope right behind its dot; the MTA hangs up at the
        # dot. The pipelined commands are portcullis's to judge, never raw bytes upstream.
        fake = self.start(FakeSmtp(handler=Once(".", None)))  # the dot is never answered
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.envelope(c)
        c.send(dot_stuff(MESSAGE) + b"MAIL FROM:<second@client.test>\r\n"
               b"RCPT TO:<user@test.local>\r\nDATA\r\n")
        replies = c.read_replies(4)
        self.assertReply(replies[0], 451, "4.4.2")
        self.assertEqual([r[0] for r in replies[1:]], [250, 250, 354], replies)
        c.send(dot_stuff(MESSAGE))
        self.assertReply(c.read_reply(), 250)
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertNothingSmuggled(fake)
        sessions = self.transaction_sessions(fake)
        self.assertEqual(len(sessions), 2)
        self.assertEqual(sessions[1].commands[1], "MAIL FROM:<second@client.test>")


class ClientBackpressureTest(FaultTestCase):
    def test_client_that_reads_no_replies_gets_every_one_in_order(self):
        # The client pipelines 600,000 NOOPs through a 4 KiB receive buffer and reads nothing
        # until it has sent them all: portcullis's replies back up (its send() meets EAGAIN),
        # it stops reading the client at 64 KiB unsent, and every reply arrives, in order,
        # once the client reads. Then the session carries a message as usual.
        fake = self.start(FakeSmtp())
        pc = self.portcullis(fake)
        count = 600_000  # 8.4 MB of replies: more than the kernel buffers (tcp_wmem max 4 MB)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", pc.port))
        sent = threading.Thread(target=sock.sendall, args=(b"NOOP\r\n" * count,))
        sent.start()
        time.sleep(3.0)  # whatever it sends meanwhile piles up
        want = b"250 2.0.0 Ok\r\n" * count
        got = bytearray()
        sock.settimeout(30)
        while not got.endswith(want):
            more = sock.recv(65536)
            if not more:
                break
            got += more
            self.assertLessEqual(len(got), len(want) + 200, "more replies than commands")
        sent.join(30)
        self.assertTrue(got.startswith(b"220 "), bytes(got[:100]))
        self.assertTrue(got.endswith(want), f"{got.count(b'250 2.0.0 Ok')} of {count} replies")
        sock.sendall(b"QUIT\r\n")
        self.assertTrue(sock.recv(1024).startswith(b"221 "))
        self.assertTrue(pc.alive())
        self.assertServesNextSession(pc, fake)


class PoolTest(FaultTestCase):
    def test_reuse_clean_connection_not_a_broken_one(self):
        fake = self.start(FakeSmtp(handler=Once("MAIL", b"hello\r\n")))
        pc = self.portcullis(fake, upstream={"pool_size": 2})
        # Session 1: garbage to MAIL; that connection must be dropped, not pooled.
        c = self.client(pc)
        self.assertReply(c.cmd(f"MAIL FROM:<{SENDER}>"), 451, "4.3.0")
        self.assertReply(c.cmd("QUIT"), 221)
        c.expect_closed()
        # Sessions 2 and 3: the second reuses the first's clean connection.
        for i in range(2):
            with RawClient("127.0.0.1", pc.port) as c2:
                self.assertReply(c2.read_reply(), 220)
                self.assertReply(c2.cmd("EHLO client.test"), 250)
                self.assertReply(self.transaction(c2), 250)
                self.assertReply(c2.cmd("QUIT"), 221)
                c2.expect_closed()
            pc.wait_for_sessions(2 + i)  # closed, its MTA connection back in the pool
        # The pool may have connected both before session 1 took one, so the FakeSmtp's
        # accept order says nothing of which connection got the garbage: tell them by use.
        sessions = self.transaction_sessions(fake)
        self.assertEqual(len(sessions), 2, [s.commands for s in sessions])
        mails = [[c for c in s.commands if c.startswith("MAIL")] for s in sessions]
        broken, clean = sorted(range(2), key=lambda i: len(mails[i]))
        self.assertEqual(mails[broken], [f"MAIL FROM:<{SENDER}>"])
        self.assertTrue(sessions[broken].closed)
        self.assertEqual(mails[clean], [f"MAIL FROM:<{SENDER}>"] * 2)
        self.assertFalse(sessions[clean].closed)  # still pooled
        self.assertEqual(len(fake.bodies()), 2)
        self.assertNothingSmuggled(fake)


    def _idle_timeout_fake(self):
        # After its 250 to the first dot the MTA times the idle connection out, as Postfix
        # smtpd does: an unsolicited 421 (the FakeSmtp keeps the socket open).
        return self.start(FakeSmtp(
            extra_replies={".#1": "421 4.4.2 fake.test.local Error: timeout exceeded"},
            extra_delays_ms={".#1": 300}))

    def test_mta_times_out_idle_connection_between_transactions(self):
        fake = self._idle_timeout_fake()
        pc = self.portcullis(fake)
        c = self.client(pc)
        self.assertReply(self.transaction(c), 250)
        self.wait_mta_connections_closed(fake)  # portcullis dropped the out-of-step MTA
        self.assertReply(self.transaction(c), 250)  # on a fresh MTA connection
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(len(self.transaction_sessions(fake)), 2)
        self.assertEqual(len(fake.bodies()), 2)
        self.assertNothingSmuggled(fake)

    def test_pooled_connection_timed_out_by_mta_is_not_reused(self):
        fake = self._idle_timeout_fake()
        pc = self.portcullis(fake, upstream={"pool_size": 2})
        for i in range(2):
            with RawClient("127.0.0.1", pc.port) as c:
                self.assertReply(c.read_reply(), 220)
                self.assertReply(c.cmd("EHLO client.test"), 250)
                self.assertReply(self.transaction(c), 250)
                self.assertReply(c.cmd("QUIT"), 221)
                c.expect_closed()
            pc.wait_for_sessions(1 + i)
            self.wait_mta_connections_closed(fake)  # the pooled connection is dropped
        self.assertEqual(len(self.transaction_sessions(fake)), 2)
        self.assertEqual(len(fake.bodies()), 2)
        self.assertNothingSmuggled(fake)

if __name__ == "__main__":
    unittest.main()
