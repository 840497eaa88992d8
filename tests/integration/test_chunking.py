#!/usr/bin/env python3
"""Messages to a real Postfix (3.4+ offers CHUNKING) go as one BDAT LAST (RFC 3030).

Each message arrives byte for byte: the delivered Maildir file is Postfix's own trace headers
followed by exactly what the client sent (LF line ends, as Maildir stores them): lines starting
with '.', a lone '.' line, a last line the client's library had to end, 8 MB. Postfix's
per-connection command counts (its "disconnect from" line) show BDAT was used, and DATA with
`upstream.chunking: off`, and BDAT over STARTTLS to the MTA too. A pipelining client with
RCPTs that portcullis refuses itself gets one reply per command, in order, and only the others
reach Postfix.
"""

import os
import re
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HarnessTestCase, Portcullis, Postfix, RawClient,  # noqa: E402
                     make_certs, make_message)

RCPT = "user@test.local"
SENDER = "sender@client.test"
# Postfix's own lines on top of the delivered message: nothing else may differ.
POSTFIX_HEADERS = re.compile(rb"\A(?:Return-Path: [^\n]*\n|Delivered-To: [^\n]*\n|"
                             rb"X-Original-To: [^\n]*\n|"
                             rb"Received: [^\n]*\n(?:[ \t][^\n]*\n)*)+")


# With a Date: Postfix adds nothing inside the client's header block.
DATE = {"Date": "Thu, 03 Dec 2026 12:00:00 +0000"}


def message(subject, **kwargs):
    return make_message(SENDER, RCPT, subject=subject, headers=DATE, **kwargs)


def lf(data):
    return data.replace(b"\r\n", b"\n")


class ChunkingTest(HarnessTestCase):
    # One Postfix (offering STARTTLS too) for the class: starting one is most of the time.
    @classmethod
    def setUpClass(cls):
        cls.certs = make_certs()
        cls.pf = Postfix(tls_certs=cls.certs)
        cls.pf.start()

    @classmethod
    def tearDownClass(cls):
        cls.pf.stop()
        cls.certs.remove()

    def setUp(self):
        for path in self.pf.message_files():
            os.unlink(path)

    def send(self, pc, msg, source):
        with smtplib.SMTP("127.0.0.1", pc.port, local_hostname="client.test", timeout=60,
                          source_address=(source, 0)) as s:
            self.assertEqual(s.sendmail(SENDER, [RCPT], msg), {})

    def assert_delivered_exactly(self, delivered, sent):
        m = POSTFIX_HEADERS.match(delivered)
        self.assertIsNotNone(m, delivered[:300])
        self.assertEqual(delivered[m.end():], sent)

    def commands_of(self, source):
        """Postfix's command counts for the connection that carried `source` (via XCLIENT)."""
        m = self.pf.wait_for_log(rf"disconnect from \S*\[{re.escape(source)}\] (.*)$", 15)
        return m.group(1)

    def test_bdat_delivers_every_message_byte_for_byte(self):
        # pool_size 0: each session QUITs its MTA connection, so Postfix logs its counts. The
        # header a filter adds goes ahead of the client's bytes, and is counted too.
        pc = self.start(Portcullis(upstream=self.pf, config={
            "upstream": {"pool_size": 0},
            "filters": [{"name": "header_checks", "rules": [
                {"match": "^Subject:", "action": "add_header", "header": "X-Checked: yes"}]}]}))
        dots = message("dots", body=".leading dot\r\n..two dots\r\n.\r\nend\r\n")
        # smtplib ends a message that lacks a final CRLF before its dot; so does Postfix's copy.
        unended = message("unended", body="first\r\nlast line, no CRLF")
        self.assertFalse(unended.endswith(b"\n"))
        big = message("big", size=8 * 1024 * 1024)
        cases = [("127.0.0.21", dots, dots), ("127.0.0.22", unended, unended + b"\r\n"),
                 ("127.0.0.23", big, big)]
        for source, msg, expected in cases:
            with self.subTest(source=source):
                self.send(pc, msg, source)
                [delivered] = self.pf.messages(1, timeout=30)
                os.unlink(self.pf.message_files()[0])
                self.assert_delivered_exactly(delivered, b"X-Checked: yes\n" + lf(expected))
                counts = self.commands_of(source)
                self.assertRegex(counts, r"\bbdat=1\b")
                self.assertNotRegex(counts, r"\bdata=")

    def test_chunking_off_sends_data(self):
        pc = self.start(Portcullis(upstream=self.pf, config={
            "upstream": {"pool_size": 0, "chunking": "off"}}))
        msg = message("off", body=".leading dot\r\n.\r\nend\r\n")
        self.send(pc, msg, "127.0.0.24")
        [delivered] = self.pf.messages(1, timeout=15)
        self.assert_delivered_exactly(delivered, lf(msg))
        counts = self.commands_of("127.0.0.24")
        self.assertRegex(counts, r"\bdata=1\b")
        self.assertNotRegex(counts, r"\bbdat=")

    def test_bdat_over_starttls_to_the_mta(self):
        # CHUNKING is learned again from the EHLO inside TLS (RFC 3207 4.2).
        pc = self.start(Portcullis(upstream=self.pf, config={
            "upstream": {"tls": "require", "pool_size": 0}}))
        msg = message("tls", body=".dot\r\nbody\r\n")
        self.send(pc, msg, "127.0.0.25")
        [delivered] = self.pf.messages(1, timeout=15)
        self.assert_delivered_exactly(delivered, lf(msg))
        self.assertRegex(delivered, rb"by upstream\.test\.local \(Postfix\) with ESMTPS ")
        self.assertRegex(self.commands_of("127.0.0.25"), r"\bstarttls=1\b.*\bbdat=1\b")

    def test_pipelined_client_with_locally_refused_rcpts(self):
        # One segment: MAIL, RCPT, a RCPT refused by portcullis itself (non-ASCII without
        # SMTPUTF8), RCPT, a RCPT past the recipients filter's limit, DATA. Each gets its own
        # reply, in order; the refused ones never reach Postfix; the message reaches the others.
        pc = self.start(Portcullis(upstream=self.pf, config={
            "upstream": {"pool_size": 0}, "limits": {"max_recipients": 2}}))
        with RawClient("127.0.0.1", pc.port, source_address=("127.0.0.26", 0)) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertIn("PIPELINING", c.cmd("EHLO client.test")[1])
            c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<one@test.local>\r\n"
                   "RCPT TO:<d\u00e9j\u00e0@test.local>\r\nRCPT TO:<two@test.local>\r\n"
                   "RCPT TO:<three@test.local>\r\nDATA\r\n".encode())
            replies = c.read_replies(6)
            self.assertEqual([code for code, _ in replies], [250, 250, 553, 250, 452, 354],
                             replies)
            c.send(message("pipelined") + b".\r\nQUIT\r\n")
            self.assertEqual([code for code, _ in c.read_replies(2)], [250, 221])
        delivered = self.pf.messages(2, timeout=15)
        self.assertEqual(sorted(re.search(rb"Delivered-To: (\S+)", m).group(1) for m in delivered),
                         [b"one@test.local", b"two@test.local"])
        counts = self.commands_of("127.0.0.26")
        self.assertRegex(counts, r"\brcpt=2\b")
        self.assertRegex(counts, r"\bbdat=1\b")


if __name__ == "__main__":
    unittest.main()
