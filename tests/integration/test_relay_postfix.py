#!/usr/bin/env python3
"""End to end through portcullis in front of a real, private Postfix on loopback.

Covers the core relay (issue 2): delivery, the real client passed with XCLIENT and logged by
Postfix, Postfix's own RCPT rejects relayed with their text, pipelining (one reply per command,
in order), the session summary line, and connection reuse with a fresh XCLIENT per session.
"""

import os
import smtplib
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HarnessTestCase, Portcullis, Postfix, RawClient,  # noqa: E402
                     free_port, ipv6_loopback_usable, make_message, wait_until)

REJECT = "550 5.1.1 <nobody@test.local>: Recipient address rejected: no such user here"


def lf(data):
    """Maildir files have LF line ends; compare in that form."""
    return data.replace(b"\r\n", b"\n")


def header(msg, name):
    for line in lf(msg).split(b"\n\n")[0].split(b"\n"):
        if line.lower().startswith(name.lower() + b": "):
            return line.split(b": ", 1)[1]
    return None


def smtp_from(address, port, source, helo="client.test"):
    """smtplib client bound to a loopback source address, so the 'real client' differs from
    portcullis's own 127.0.0.1."""
    s = smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=30,
                     source_address=(source, 0))
    return s


class RelayTest(HarnessTestCase):
    def setUp(self):
        self.pf = self.start(Postfix(reject_recipients={"nobody@test.local": REJECT}))

    def test_message_delivered_end_to_end_with_real_client_identity(self):
        pc = self.start(Portcullis(upstream=self.pf))
        body = ("line one\r\n.leading dot\r\n..two dots\r\n"
                "a line with trailing spaces   \r\n\r\nlast line\r\n")
        msg = make_message("sender@client.test", "user@test.local", subject="end to end",
                           body=body)
        with smtp_from("127.0.0.1", pc.port, "127.0.0.5", helo="client5.test") as s:
            code, _ = s.ehlo("client5.test")
            self.assertEqual(code, 250)
            refused = s.sendmail("sender@client.test", ["user@test.local"], msg)
            self.assertEqual(refused, {})
        [delivered] = self.pf.messages(1, timeout=15)
        # The body (dot-stuffed lines included) arrives byte for byte.
        self.assertEqual(lf(delivered).split(b"\n\n", 1)[1], lf(msg).split(b"\n\n", 1)[1])
        self.assertEqual(header(delivered, b"Subject"), b"end to end")
        # Postfix saw the real client (127.0.0.5), not portcullis (127.0.0.1), via XCLIENT,
        # and the client's HELO name.
        self.pf.wait_for_log(r"client=unknown\[127\.0\.0\.5\]")
        self.assertIn(b"Received: from client5.test (unknown [127.0.0.5])", lf(delivered))
        pc.wait_for_sessions(1)
        [summary] = pc.sessions()
        self.assertEqual(summary["client"], "unknown[127.0.0.5]:" + summary["client"].split(":")[-1])
        self.assertEqual(summary["helo"], "client5.test")
        self.assertEqual(summary["commands"],
                         "CONNECT:220,EHLO:250,MAIL:250,RCPT:250,DATA:354,.:250,QUIT:221")
        self.assertEqual(summary["closed_by"], "client")
        self.assertEqual(summary["quit"], "yes")
        self.assertEqual(summary["messages"], "1")

    def test_postfix_rcpt_reject_is_relayed_with_its_own_text(self):
        pc = self.start(Portcullis(upstream=self.pf))
        with RawClient("127.0.0.1", pc.port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<sender@client.test>")[0], 250)
            code, lines = c.cmd("RCPT TO:<nobody@test.local>")
            self.assertEqual(f"{code} {lines[0]}", REJECT)
            self.assertEqual(c.cmd("RCPT TO:<user@test.local>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(make_message(subject="partly rejected") + b".\r\n")
            self.assertEqual(c.read_reply()[0], 250)
            self.assertEqual(c.cmd("QUIT")[0], 221)
        [msg] = self.pf.messages(1, timeout=15)
        self.assertIn(b"Delivered-To: user@test.local", msg)
        pc.wait_for_sessions(1)
        self.assertIn("RCPT:550", pc.sessions()[0]["commands"])

    def test_pipelined_session_gets_one_reply_per_command_in_order(self):
        pc = self.start(Portcullis(upstream=self.pf))
        with RawClient("127.0.0.1", pc.port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            code, lines = c.cmd("EHLO client.test")
            self.assertIn("PIPELINING", lines)
            # One segment: MAIL, three RCPTs (the middle one rejected by Postfix), DATA.
            c.send(b"MAIL FROM:<sender@client.test>\r\n"
                   b"RCPT TO:<user@test.local>\r\n"
                   b"RCPT TO:<nobody@test.local>\r\n"
                   b"RCPT TO:<second@test.local>\r\n"
                   b"DATA\r\n")
            codes = [code for code, _ in c.read_replies(5)]
            self.assertEqual(codes, [250, 250, 550, 250, 354])
            # Message, dot, NOOP, RSET and QUIT in one segment too.
            c.send(make_message(subject="pipelined") + b".\r\nNOOP\r\nRSET\r\nQUIT\r\n")
            codes = [code for code, _ in c.read_replies(4)]
            self.assertEqual(codes, [250, 250, 250, 221])
            self.assertEqual(c.pending(), b"", "an extra reply arrived")
            c.expect_closed()
        msgs = self.pf.messages(2, timeout=15)  # one file per delivered recipient
        self.assertEqual(len(msgs), 2)
        pc.wait_for_sessions(1)
        self.assertEqual(pc.sessions()[0]["commands"],
                         "CONNECT:220,EHLO:250,MAIL:250,RCPT:250,RCPT:550,RCPT:250,DATA:354,"
                         ".:250,NOOP:250,RSET:250,QUIT:221")

    def test_two_transactions_in_one_session(self):
        pc = self.start(Portcullis(upstream=self.pf))
        with smtp_from("127.0.0.1", pc.port, "127.0.0.6") as s:
            s.sendmail("a@client.test", ["user@test.local"], make_message(subject="first"))
            s.sendmail("b@client.test", ["user@test.local"], make_message(subject="second"))
        msgs = self.pf.messages(2, timeout=15)
        subjects = sorted(header(m, b"Subject") for m in msgs)
        self.assertEqual(subjects, [b"first", b"second"])

    def test_identity_none_shows_portcullis_as_the_client(self):
        pc = self.start(Portcullis(upstream=self.pf, config={"upstream": {"identity": "none"}}))
        with smtp_from("127.0.0.1", pc.port, "127.0.0.7") as s:
            s.sendmail("a@client.test", ["user@test.local"], make_message(subject="no identity"))
        self.pf.messages(1, timeout=15)
        log = self.pf.log_text()
        self.assertNotIn("[127.0.0.7]", log)
        self.assertRegex(log, r"client=\S*\[127\.0\.0\.1\]")

    def test_connection_reuse_passes_each_clients_identity(self):
        pc = self.start(Portcullis(upstream=self.pf, config={"upstream": {"pool_size": 4}}))
        for source in ("127.0.0.21", "127.0.0.22", "127.0.0.23"):
            with smtp_from("127.0.0.1", pc.port, source) as s:
                s.sendmail("a@client.test", ["user@test.local"],
                           make_message(subject="from " + source))
        msgs = self.pf.messages(3, timeout=20)
        self.assertEqual(len(msgs), 3)
        for source in ("127.0.0.21", "127.0.0.22", "127.0.0.23"):
            self.pf.wait_for_log(r"client=unknown\[%s\]" % source.replace(".", r"\."))
        # Each message's Received header names its own client, never a previous one.
        for m in msgs:
            subject_source = header(m, b"Subject").split(b"from ")[1]
            received = header(m, b"Received")
            self.assertIn(b"[" + subject_source + b"]", received)
        # One Postfix smtpd process (one connection) carried all three: the pool was used, and
        # XCLIENT gave each message its own client.
        import re
        pids = set(re.findall(r"smtpd\[(\d+)\]: \w+: client=unknown\[127\.0\.0\.2[123]\]",
                              self.pf.log_text()))
        self.assertEqual(len(pids), 1, self.pf.log_text())

    def test_postfix_smtputf8_is_offered_and_works(self):
        pc = self.start(Portcullis(upstream=self.pf))
        with RawClient("127.0.0.1", pc.port) as c:
            c.read_reply()
            code, lines = c.cmd("EHLO client.test")
            self.assertEqual(code, 250)
            self.assertIn("SMTPUTF8", lines)  # Postfix 3.7 offers it; we pass it through
            self.assertNotIn("CHUNKING", lines)
            self.assertNotIn("XCLIENT", " ".join(lines))
            self.assertEqual(c.cmd("MAIL FROM:<jörg@client.test> SMTPUTF8")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<user@test.local>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(make_message(subject="utf8") + b".\r\n")
            self.assertEqual(c.read_reply()[0], 250)
            c.cmd("QUIT")
        self.pf.messages(1, timeout=15)

    def test_non_ascii_address_without_smtputf8_is_refused_locally(self):
        pc = self.start(Portcullis(upstream=self.pf))
        with RawClient("127.0.0.1", pc.port) as c:
            c.read_reply()
            c.cmd("EHLO client.test")
            code, lines = c.cmd("MAIL FROM:<jörg@client.test>")
            self.assertEqual((code, lines[0].split()[0]), (553, "5.6.7"))



class Ipv6ClientTest(HarnessTestCase):
    """IPv6 clients in front of Postfix. With inet_protocols = ipv4 Postfix refuses an IPv6
    address in XCLIENT (501 5.5.4 Bad ADDR syntax), so every IPv6 client would be tempfailed
    for good: the start-up probe says so and names the setting, and each refused session's log
    line does too. With both families (the demo's setting and the fixture's default) they are
    delivered under their own address. The IPv6 clients arrive through a trusted PROXY listener,
    plus over ::1 where the machine has IPv6 loopback."""

    def portcullis(self, pf):
        self.proxy_port = free_port()
        return self.start(Portcullis(upstream=pf, config={
            "listen": [f"127.0.0.1:{free_port()}",
                       {"address": f"127.0.0.1:{self.proxy_port}", "proxy_protocol": True}],
            "trusted_proxies": ["127.0.0.1/32"]}))

    def proxied_transaction(self, pc, source, subject):
        with RawClient("127.0.0.1", self.proxy_port) as c:
            c.send(f"PROXY TCP6 {source} 2001:db8:ffff::25 41000 25\r\n".encode())
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO v6.client.test")[0], 250)
            reply = c.cmd("MAIL FROM:<sender@client.test>")
            if reply[0] == 250:
                self.assertEqual(c.cmd("RCPT TO:<user@test.local>")[0], 250)
                self.assertEqual(c.cmd("DATA")[0], 354)
                c.send(make_message(subject=subject) + b".\r\n")
                reply = c.read_reply(timeout=30)
            c.cmd("QUIT")
        return reply

    def test_ipv6_client_is_passed_to_postfix_with_both_families(self):
        pf = self.start(Postfix())  # inet_protocols = all
        pc = self.portcullis(pf)
        code, _ = self.proxied_transaction(pc, "2001:db8:5::7", "over v6")
        self.assertEqual(code, 250)
        [msg] = pf.messages(1, timeout=15)
        self.assertEqual(header(msg, b"Subject"), b"over v6")
        pf.wait_for_log(r"client=unknown\[2001:db8:5::7\]")
        self.assertEqual(pc.log_lines(r"check=ipv6-xclient problem"), [])

    @unittest.skipUnless(ipv6_loopback_usable(), "no IPv6 loopback on this machine")
    def test_client_on_ipv6_loopback_is_delivered(self):
        pf = self.start(Postfix())
        port = free_port()
        pc = self.start(Portcullis(upstream=pf, config={"listen": [f"[::1]:{port}"]}))
        with smtplib.SMTP("::1", port, local_hostname="v6.client.test", timeout=30) as s:
            self.assertEqual(s.sendmail("sender@client.test", ["user@test.local"],
                                        make_message(subject="on ::1")), {})
        [msg] = pf.messages(1, timeout=15)
        self.assertEqual(header(msg, b"Subject"), b"on ::1")
        pf.wait_for_log(r"client=\S*\[::1\]")

    def test_ipv4_only_postfix_is_named_at_start_up_and_in_each_refusal(self):
        pf = self.start(Postfix(inet_protocols="ipv4"))
        pc = self.portcullis(pf)
        line = pc.wait_for_log(r"event=upstream-probe check=ipv6-xclient problem=.*").group(0)
        self.assertIn("inet_protocols = all", line)
        self.assertIn("Bad ADDR syntax", line)
        code, lines = self.proxied_transaction(pc, "2001:db8:5::8", "refused")
        self.assertEqual((code, lines[0][:6]), (451, "4.3.5 "))
        failure = pc.wait_for_log(r"event=upstream-failure verb=MAIL failure=identity.*").group(0)
        self.assertIn("inet_protocols", failure)
        # IPv4 clients are not affected.
        with smtp_from("127.0.0.1", pc.port, "127.0.0.9") as s:
            self.assertEqual(s.sendmail("sender@client.test", ["user@test.local"],
                                        make_message(subject="over v4")), {})
        [msg] = pf.messages(1, timeout=15)
        self.assertEqual(header(msg, b"Subject"), b"over v4")


class HalfCloseTest(HarnessTestCase):
    """A client's FIN after its last command (shutdown(SHUT_WR)) ends its input, not the
    session: everything it sent in full is carried out and answered before portcullis closes,
    as Postfix itself does. Only what it left unfinished is dropped."""

    def setUp(self):
        self.pf = self.start(Postfix())
        self.pc = self.start(Portcullis(upstream=self.pf))

    def client(self):
        c = RawClient("127.0.0.1", self.pc.port, timeout=15)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply()[0], 220)
        return c

    def test_whole_transaction_and_quit_then_half_close_is_delivered(self):
        c = self.client()
        msg = make_message(subject="half close")
        c.send(b"EHLO client.test\r\nMAIL FROM:<sender@client.test>\r\n"
               b"RCPT TO:<user@test.local>\r\nDATA\r\n" + msg + b".\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        codes = [code for code, _ in c.read_replies(6)]
        self.assertEqual(codes, [250, 250, 250, 354, 250, 221])
        c.expect_closed()
        [delivered] = self.pf.messages(1, timeout=15)
        self.assertEqual(header(delivered, b"Subject"), b"half close")
        self.pc.wait_for_sessions(1)
        [summary] = self.pc.sessions()
        self.assertEqual(summary["commands"],
                         "CONNECT:220,EHLO:250,MAIL:250,RCPT:250,DATA:354,.:250,QUIT:221")
        self.assertEqual(summary["messages"], "1")
        self.assertEqual(summary["quit"], "yes")

    def test_pipelined_commands_without_quit_then_half_close_are_answered(self):
        # MAIL and RCPT wait for Postfix while the FIN is already read; RSET and NOOP follow.
        c = self.client()
        c.send(b"EHLO client.test\r\nMAIL FROM:<sender@client.test>\r\n"
               b"RCPT TO:<user@test.local>\r\nRSET\r\nNOOP\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        codes = [code for code, _ in c.read_replies(5)]
        self.assertEqual(codes, [250, 250, 250, 250, 250])
        c.expect_closed()
        self.pc.wait_for_sessions(1)
        [summary] = self.pc.sessions()
        self.assertEqual(summary["commands"],
                         "CONNECT:220,EHLO:250,MAIL:250,RCPT:250,RSET:250,NOOP:250")
        self.assertEqual(summary["closed_by"], "client")
        self.assertEqual(summary["quit"], "no")

    def test_unfinished_line_at_half_close_is_dropped(self):
        c = self.client()
        c.send(b"EHLO client.test\r\nMAIL FROM:<sender@client.test>\r\nNOO")
        c.sock.shutdown(socket.SHUT_WR)
        codes = [code for code, _ in c.read_replies(2)]
        self.assertEqual(codes, [250, 250])
        c.expect_closed()  # no reply to the partial "NOO"
        self.pc.wait_for_sessions(1)
        self.assertEqual(self.pc.sessions()[0]["reason"], "client disconnected mid-command")

    def test_unfinished_data_at_half_close_is_not_delivered(self):
        c = self.client()
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<sender@client.test>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<user@test.local>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message(subject="never ends") + b"QUIT\r\n")  # no final dot
        c.sock.shutdown(socket.SHUT_WR)
        c.expect_closed()
        self.pc.wait_for_sessions(1)
        self.assertEqual(self.pc.sessions()[0]["messages"], "0")
        # Postfix opened a queue file at MAIL; it removes it once its smtpd has seen our QUIT,
        # which may be just after our session ended. Then nothing was delivered either.
        wait_until(lambda: self.pf.queued() == [], 10, what="Postfix to drop the open queue file")
        self.pf.wait_for_log(r"disconnect from .* mail=1 rcpt=1 quit=1")  # no DATA sent
        self.assertEqual(self.pf.messages(0), [])


if __name__ == "__main__":
    unittest.main()
