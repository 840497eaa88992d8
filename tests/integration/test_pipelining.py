#!/usr/bin/env python3
"""A pipelining client's MAIL and RCPTs go on to a real Postfix as a group (RFC 2920).

A Tap between portcullis and Postfix passes every byte unchanged and holds Postfix's replies
back 0.3 s, writing down the order in which things crossed it: when portcullis waits for each
reply, a RCPT can only leave after the reply to MAIL came back; grouped, every RCPT has left
before it. Each client command still gets exactly its own reply, in order: Postfix's own for
what it answered (a refused recipient, a refused sender and the 503s after it), ours for what
portcullis refused itself, which never reaches Postfix. `upstream.pipelining: off` and a client
that does not pipeline keep one command, one reply. The MTA dying in the middle of a group,
or answering it with garbage, gives each command a 4xx and nothing is delivered.
"""

import os
import re
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (FakeSmtp, HarnessTestCase, Portcullis, Postfix,  # noqa: E402
                     RawClient, make_message)
from harness.tap import Tap  # noqa: E402

SENDER = "sender@client.test"
BAD = "nobody@test.local"
BAD_REPLY = f"550 5.1.1 <{BAD}>: Recipient address rejected: no such user"
REFUSED_SENDER = "spammer@client.test"


def group(sender, recipients, data=True):
    lines = [f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in recipients]
    return ("\r\n".join(lines + (["DATA"] if data else [])) + "\r\n").encode()


def codes(replies):
    return [code for code, _ in replies]


class PipeliningToPostfixTest(HarnessTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pf = Postfix(reject_recipients={BAD: BAD_REPLY}, extra_main_cf={
            # The sender is judged at MAIL (not at the first RCPT, Postfix's default).
            "smtpd_delay_reject": "no",
            "smtpd_sender_restrictions":
                f"check_sender_access inline:{{{{ {REFUSED_SENDER} = 550 5.7.1 sender refused }}}}"})
        cls.pf.start()

    @classmethod
    def tearDownClass(cls):
        cls.pf.stop()

    def setUp(self):
        for path in self.pf.message_files():
            os.unlink(path)
        self.tap = self.start(Tap(self.pf, delay=0.3))

    def proxy(self, **upstream):
        return self.start(Portcullis(upstream=self.tap, config={
            "upstream": {"pool_size": 0, **upstream}}))

    def sent_before_mail_reply(self):
        """What portcullis sent after MAIL and before Postfix's reply to MAIL reached it."""
        events = self.tap.events()
        text, start = b"", None
        for i, (who, data) in enumerate(events):
            if who == "client" and b"MAIL FROM:" in data:
                start = i
                text = data[data.index(b"MAIL FROM:"):]
                continue
            if start is None:
                continue
            if who == "server":
                return text
            text += data
        self.fail(f"no MAIL and reply through the tap: {events}")

    def delivered_to(self, count):
        return sorted(re.search(rb"Delivered-To: (\S+)", m).group(1).decode()
                      for m in self.pf.messages(count, timeout=20))

    def test_mail_and_rcpts_go_as_one_group(self):
        pc = self.proxy()
        with RawClient("127.0.0.1", pc.port, timeout=30) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertIn("PIPELINING", c.cmd("EHLO client.test")[1])
            # A RCPT portcullis refuses itself (non-ASCII without SMTPUTF8) sits in the group.
            c.send(group(SENDER, ["one@test.local", BAD, "d\u00e9j\u00e0@test.local",
                                  "two@test.local"]))
            replies = c.read_replies(6)
            self.assertEqual(codes(replies), [250, 250, 550, 553, 250, 354], replies)
            self.assertEqual(replies[2][1], [BAD_REPLY[4:]])
            c.send(make_message(SENDER, "one@test.local") + b".\r\nQUIT\r\n")
            self.assertEqual(codes(c.read_replies(2)), [250, 221])
        self.assertEqual(self.delivered_to(2), ["one@test.local", "two@test.local"])
        ahead = self.sent_before_mail_reply()
        self.assertEqual(re.findall(rb"RCPT TO:<([^>]*)>", ahead),
                         [b"one@test.local", BAD.encode(), b"two@test.local"], ahead)
        self.assertNotIn("déjà".encode(), b"".join(d for w, d in self.tap.events() if w == "client"))

    def test_pipelining_off_waits_for_each_reply(self):
        pc = self.proxy(pipelining="off")
        with RawClient("127.0.0.1", pc.port, timeout=30) as c:
            self.assertEqual(c.read_reply()[0], 220)
            c.cmd("EHLO client.test")
            c.send(group(SENDER, ["one@test.local", "two@test.local"]))
            self.assertEqual(codes(c.read_replies(4)), [250, 250, 250, 354])
            c.send(make_message(SENDER, "one@test.local") + b".\r\nQUIT\r\n")
            self.assertEqual(codes(c.read_replies(2)), [250, 221])
        self.assertEqual(self.sent_before_mail_reply().strip(), f"MAIL FROM:<{SENDER}>".encode())

    def test_a_client_that_does_not_pipeline_is_answered_one_by_one(self):
        pc = self.proxy()
        with smtplib.SMTP("127.0.0.1", pc.port, local_hostname="client.test", timeout=30) as s:
            self.assertEqual(s.sendmail(SENDER, ["one@test.local"],
                                        make_message(SENDER, "one@test.local")), {})
        self.assertEqual(self.delivered_to(1), ["one@test.local"])
        self.assertRegex(self.sent_before_mail_reply(), rb"\AMAIL FROM:<[^>]*> SIZE=\d+\r\n\Z")

    def test_a_refused_sender_in_a_group_and_the_next_transaction(self):
        pc = self.proxy()
        with RawClient("127.0.0.1", pc.port, timeout=30) as c:
            self.assertEqual(c.read_reply()[0], 220)
            c.cmd("EHLO client.test")
            c.send(group(REFUSED_SENDER, ["one@test.local", "two@test.local"]))
            replies = c.read_replies(4)
            # Postfix refuses MAIL and answers each RCPT 503; DATA is ours: no transaction.
            self.assertEqual(codes(replies), [550, 503, 503, 503], replies)
            self.assertIn("sender refused", replies[0][1][0])
            c.send(group(SENDER, ["two@test.local"]))
            self.assertEqual(codes(c.read_replies(3)), [250, 250, 354])
            c.send(make_message(SENDER, "two@test.local") + b".\r\nQUIT\r\n")
            self.assertEqual(codes(c.read_replies(2)), [250, 221])
        self.assertEqual(self.delivered_to(1), ["two@test.local"])


class PipeliningFaultsTest(HarnessTestCase):
    """Misbehaviour a real Postfix will not produce on demand: the scripted FakeSmtp."""

    def exchange(self, fake, recipients):
        pc = self.start(Portcullis(upstream=fake, config={"upstream": {"pool_size": 0}}))
        with RawClient("127.0.0.1", pc.port, timeout=30) as c:
            self.assertEqual(c.read_reply()[0], 220)
            c.cmd("EHLO client.test")
            c.send(group(SENDER, recipients))
            replies = []
            try:
                while True:
                    replies.append(c.read_reply())
            except ConnectionError:  # closed after the 421
                return replies

    def test_the_mta_dies_in_the_middle_of_a_group(self):
        fake = self.start(FakeSmtp(close_after={"RCPT#2"}))
        replies = self.exchange(fake, ["one@test.local", "two@test.local", "three@test.local"])
        # The transaction is lost: the RCPT that met the closed connection gets 421 and the
        # session ends, so the client retries the whole message; nothing after it is answered
        # as if accepted.
        self.assertEqual(codes(replies)[:3], [250, 250, 421], replies)
        self.assertTrue(all(code >= 400 for code in codes(replies)[2:]), replies)
        self.assertEqual(fake.bodies(), [])

    def test_garbage_in_the_middle_of_a_group(self):
        fake = self.start(FakeSmtp(replies={"RCPT#1": b"hello there\r\n"}))
        replies = self.exchange(fake, ["one@test.local", "two@test.local"])
        self.assertEqual(codes(replies)[0], 250, replies)
        self.assertEqual(replies[1][0], 421, replies)
        self.assertIn("invalid reply from mail server", replies[1][1][0])
        self.assertTrue(all(code >= 400 for code in codes(replies)[1:]), replies)
        self.assertEqual(fake.bodies(), [])


if __name__ == "__main__":
    unittest.main()
