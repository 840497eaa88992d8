#!/usr/bin/env python3
"""The filter chain end to end (issue 3): portcullis in front of a real Postfix, asking a real
DNS server (unbound serving tests/fixtures/dns/zones.conf) or a deliberately slow/dead one.

Clients connect from different loopback addresses, which the test zones describe:
  127.0.0.1  PTR client.test, forward-confirmed; not listed
  127.0.0.2  listed in dnsbl.test (A 127.0.0.2 + TXT); PTR good.test (confirmed)
  127.0.0.3  PTR mismatch.test, which does not resolve back (FCrDNS fails)
  127.0.0.4  no PTR
  127.0.0.5  allowlisted in dnswl.test; PTR client5.test (confirmed)
Every verdict must land at its stage, with its code, and Postfix must never see a refused
message.
"""

import os
import re
import smtplib
import ssl
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HarnessTestCase, Portcullis, Postfix, RawClient, SlowDns,  # noqa: E402
                     Unbound, make_message, without_ref)

DNSBL = {"name": "dnsbl",
         "zones": ["dnsbl.test=127.0.0.[2..11]*2", "dnswl.test=127.0.[0..255].[1..3]*-5"],
         "threshold": 2}


def session(pc, source, helo="client.test"):
    c = RawClient("127.0.0.1", pc.port, source_address=(source, 0))
    return c


def transaction(c, mail="sender@mx.test", rcpt="user@test.local", subject="filters",
                body=None, headers=None):
    """MAIL, RCPT, DATA, message; returns the list of reply codes (stops at the first refusal)."""
    codes = []
    for line, ok in ((f"MAIL FROM:<{mail}>", 250), (f"RCPT TO:<{rcpt}>", 250), ("DATA", 354)):
        code, lines = c.cmd(line)
        codes.append((code, lines))
        if code != ok:
            return codes
    c.send(make_message(mail, rcpt, subject=subject, headers=headers,
                        body=body or "hello\r\n") + b".\r\n")
    codes.append(c.read_reply())
    return codes


class FilterE2E(HarnessTestCase):
    def setUp(self):
        self.dns = self.start(Unbound())
        self.pf = self.start(Postfix())

    def portcullis(self, filters, **extra):
        config = {"dns": {"servers": [self.dns.address]}, "filters": filters}
        for key, value in extra.items():
            config[key] = value
        return self.start(Portcullis(upstream=self.pf, config=config))

    def postfix_saw(self, address):
        return re.search(r"client=\S*\[%s\]" % re.escape(address), self.pf.log_text())

    # -- dnsbl -------------------------------------------------------------------------

    def test_dnsbl_listed_client_refused_at_connect(self):
        pc = self.portcullis([DNSBL])
        with session(pc, "127.0.0.2") as c:
            code, lines = c.read_reply()
            self.assertEqual(code, 554)
            self.assertEqual(without_ref(lines[0]),
                             "5.7.1 Service unavailable; client [127.0.0.2] blocked using "
                             "dnsbl.test; Listed in dnsbl.test, see http://dnsbl.test/q?127.0.0.2")
            # RFC 5321 3.1: after a 554 greeting, anything but QUIT gets 503.
            self.assertEqual(c.cmd("EHLO client.test")[0], 503)
            self.assertEqual(c.cmd("QUIT")[0], 221)
        pc.wait_for_sessions(1)
        s = pc.sessions()[0]
        self.assertIn("dnsbl@connect:reject:554", s["verdicts"])
        self.assertIn("dnsbl.test=127.0.0.2", s["verdicts"])  # the reason, in the summary too
        self.assertEqual(s["commands"], "CONNECT:554,EHLO:503,QUIT:221")
        self.assertIn("dnsbl.test=127.0.0.2", pc.log_text())  # the full reason is logged
        self.assertFalse(self.postfix_saw("127.0.0.2"))

    def test_dnsbl_txt_cannot_inject_reply_lines(self):
        # The TXT holds CR LF "250 2.0.0 Ok" CR LF "MAIL FROM:..." and an escape sequence; the
        # client must get exactly one single-line 554, the text sanitised (DESIGN invariant 6).
        answers = self.dns.query("12.0.0.127.dnsbl.test", "TXT").answers
        self.assertTrue(any("\r\n250 2.0.0 Ok" in a[3] for a in answers), answers)
        pc = self.portcullis([DNSBL])
        with session(pc, "127.0.0.12") as c:
            code, lines = c.read_reply()
            self.assertEqual(code, 554)
            self.assertEqual(len(lines), 1, lines)
            self.assertTrue(lines[0].startswith("5.7.1 Service unavailable; client [127.0.0.12] "
                                                "blocked using dnsbl.test; Listed"), lines)
            self.assertNotRegex(lines[0], r"[\x00-\x1f\x7f]")
            self.assertEqual(c.cmd("QUIT"), (221, ["2.0.0 Bye"]))
            c.expect_closed()
        pc.wait_for_sessions(1)  # every line of the session is in the log
        self.assertNotRegex(pc.log_text(), r"[\x00-\x08\x0b-\x1f\x7f]")
        self.assertFalse(self.postfix_saw("127.0.0.12"))

    def test_dnsbl_deferred_to_rcpt_logs_the_envelope(self):
        pc = self.portcullis([dict(DNSBL, defer_to="rcpt")])
        with session(pc, "127.0.0.2") as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
            codes = transaction(c, rcpt="victim@test.local")
            self.assertEqual(codes[0][0], 250)
            code, lines = codes[1]
            self.assertEqual(code, 550)  # 554 is not a RCPT reply: the stage default of its class
            self.assertTrue(lines[0].startswith("5.7.1 Service unavailable; client [127.0.0.2]"))
            self.assertEqual(c.cmd("DATA")[0], 503)
            c.cmd("QUIT")
        pc.wait_for_sessions(1)
        s = pc.sessions()[0]
        # Logged with the code the client got at RCPT, not connect's 554.
        self.assertIn("dnsbl@connect:reject:550(deferred)", s["verdicts"])
        self.assertIn("RCPT:550", s["commands"])
        self.assertEqual(self.pf.messages(0), [])

    def test_dnsbl_allowlisted_and_unlisted_clients_pass(self):
        pc = self.portcullis([DNSBL])
        for source in ("127.0.0.5", "127.0.0.1"):
            with session(pc, source) as c:
                self.assertEqual(c.read_reply()[0], 220, source)
                c.cmd("EHLO client.test")
                codes = transaction(c, subject="from " + source)
                self.assertEqual([code for code, _ in codes], [250, 250, 354, 250], source)
                c.cmd("QUIT")
        self.assertEqual(len(self.pf.messages(2, timeout=15)), 2)
        pc.wait_for_sessions(2)
        self.assertIn("dnsbl@connect:accept", pc.sessions()[0]["verdicts"])

    def test_dnsbl_observe_mode_delivers_and_logs_the_would_be_reject(self):
        pc = self.portcullis([dict(DNSBL, mode="observe")])
        with session(pc, "127.0.0.2") as c:
            self.assertEqual(c.read_reply()[0], 220)
            c.cmd("EHLO client.test")
            codes = transaction(c, subject="observed")
            self.assertEqual([code for code, _ in codes], [250, 250, 354, 250])
            c.cmd("QUIT")
        self.assertEqual(len(self.pf.messages(1, timeout=15)), 1)
        pc.wait_for_sessions(1)
        self.assertIn("dnsbl@connect:reject:554(observe)", pc.sessions()[0]["verdicts"])
        self.assertRegex(pc.log_text(), r"event=observe stage=connect filter=dnsbl verdict=reject")

    # -- rdns, and the verified name passed to Postfix ---------------------------------------

    def test_rdns_fcrdns(self):
        pc = self.portcullis([{"name": "rdns", "defer_to": "rcpt"}])
        with session(pc, "127.0.0.3") as c:  # PTR mismatch.test, which does not resolve back
            c.read_reply()
            c.cmd("EHLO client.test")
            codes = transaction(c)
            self.assertEqual(codes[1][0], 450)
            self.assertTrue(codes[1][1][0].startswith("4.7.25 Client host rejected: cannot find "
                                                      "your reverse hostname, [127.0.0.3]"))
            c.cmd("QUIT")
        with session(pc, "127.0.0.1") as c:  # client.test, forward-confirmed
            c.read_reply()
            c.cmd("EHLO client.test")
            self.assertEqual([code for code, _ in transaction(c)], [250, 250, 354, 250])
            c.cmd("QUIT")
        self.pf.messages(1, timeout=15)
        # XCLIENT NAME carried the verified name.
        self.pf.wait_for_log(r"client=client\.test\[127\.0\.0\.1\]")

    def test_rdns_no_ptr_permanent(self):
        pc = self.portcullis([{"name": "rdns", "require": "ptr", "permanent": True,
                               "defer_to": "rcpt"}])
        with session(pc, "127.0.0.4") as c:
            c.read_reply()
            c.cmd("EHLO client.test")
            codes = transaction(c)
            self.assertEqual((codes[1][0], codes[1][1][0].split()[0]), (550, "5.7.25"))

    # -- helo --------------------------------------------------------------------------

    def test_helo_checks(self):
        pc = self.portcullis([{"name": "helo", "require_resolvable": True}])
        cases = [
            ("EHLO [127.0.0.9]", 550, "5.7.1"),              # literal that is not the client
            ("EHLO portcullis.test.local", 550, "5.7.1"),    # our own name
            ("EHLO 192.0.2.1", 550, "5.5.2"),                # bare IP without brackets
            ("EHLO 127.0.0.1", 550, "5.7.1"),                # our own address, bare
            ("EHLO localhost", 504, "5.5.2"),                # not fully qualified
            ("EHLO nx.test", 450, "4.7.1"),                  # does not resolve
            ("EHLO client.test", 250, None),
            ("EHLO [127.0.0.1]", 250, None),                 # the client's own literal
        ]
        with session(pc, "127.0.0.1") as c:
            c.read_reply()
            for line, want_code, want_enhanced in cases:
                code, lines = c.cmd(line)
                self.assertEqual(code, want_code, f"{line}: {lines}")
                if want_enhanced:
                    self.assertEqual(lines[0].split()[0], want_enhanced, line)

    # -- sender_domain -----------------------------------------------------------------

    def test_sender_domain(self):
        pc = self.portcullis([{"name": "sender_domain"}])
        cases = [("a@nx.test", 550, "5.1.8"), ("a@nomx-noaddr.test", 550, "5.1.8"),
                 ("a@mx.test", 250, None), ("a@aonly.test", 250, None), ("", 250, None)]
        with session(pc, "127.0.0.1") as c:
            c.read_reply()
            c.cmd("EHLO client.test")
            for sender, want_code, want_enhanced in cases:
                code, lines = c.cmd(f"MAIL FROM:<{sender}>")
                self.assertEqual(code, want_code, f"{sender}: {lines}")
                if want_enhanced:
                    self.assertEqual(lines[0].split()[0], want_enhanced)
                c.cmd("RSET")

    # -- header_checks -----------------------------------------------------------------

    def test_header_checks(self):
        pc = self.portcullis([{"name": "header_checks", "rules": [
            {"match": "^Subject:.*viagra", "action": "reject",
             "reply": "550 5.7.1 Message content rejected"},
            {"match": "^X-Spam-Flag:\\s*YES", "action": "discard"},
            {"match": "^Subject: tag me", "action": "add_header", "header": "X-Checked: yes"},
        ]}])
        with session(pc, "127.0.0.1") as c:
            c.read_reply()
            c.cmd("EHLO client.test")
            codes = transaction(c, subject="cheap VIAGRA here")
            self.assertEqual(codes[-1][0], 550)
            self.assertEqual(without_ref(codes[-1][1][0]), "5.7.1 Message content rejected")
            codes = transaction(c, subject="junk", headers={"X-Spam-Flag": "YES"})
            self.assertEqual(codes[-1][0], 250)  # discard: the client hears 250...
            codes = transaction(c, subject="tag me")
            self.assertEqual(codes[-1][0], 250)
            c.cmd("QUIT")
        [delivered] = self.pf.messages(1, timeout=15)  # ...but only the tagged one arrives
        self.assertIn(b"X-Checked: yes", delivered)
        self.assertIn(b"Subject: tag me", delivered)
        pc.wait_for_sessions(1)
        verdicts = pc.sessions()[0]["verdicts"]
        self.assertIn("header_checks@end_of_headers:reject:550", verdicts)
        self.assertIn("header_checks@end_of_headers:discard", verdicts)


class HeaderBlockE2E(HarnessTestCase):
    """header_checks sees every header of the block Postfix will see, whatever its size (the
    hardening issue's bypasses: padding in front, a 300 KB line, a leading continuation line
    folding the message into our own Received: header). What cannot be judged whole is refused,
    never passed on half-checked."""

    RULES = [{"match": "^Subject:.*viagra", "action": "reject",
              "reply": "550 5.7.1 Message content rejected"},
             {"match": "^Received: from \\S+ \\(.*\\) by \\S+ \\(portcullis\\)",
              "action": "add_header", "header": "X-Saw-Our-Trace: yes"}]

    def setUp(self):
        self.pf = self.start(Postfix())

    def portcullis(self, **extra):
        # No line-length limit here: the 300 KB line must reach header_checks (with the default
        # 998 it is refused before, by the DATA line limit; test_bad_input covers that).
        return self.start(Portcullis(upstream=self.pf, config={
            "filters": [{"name": "header_checks", "rules": self.RULES}],
            "limits": {"max_line_length": 0}, **extra}))

    def send_raw(self, pc, message):
        with RawClient("127.0.0.1", pc.port, timeout=30) as c:
            c.read_reply()
            c.cmd("EHLO client.test")
            self.assertEqual(c.cmd("MAIL FROM:<sender@mx.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<user@test.local>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(message + b".\r\n")
            reply = c.read_reply(timeout=30)
            self.assertEqual(c.cmd("QUIT")[0], 221)
        return reply

    def assert_only_control_delivered(self, pc):
        self.assertEqual(self.send_raw(pc, make_message(subject="control"))[0], 250)
        [msg] = self.pf.messages(1, timeout=15)
        self.assertIn(b"Subject: control", msg)

    def test_subject_behind_270k_of_padding_headers_is_checked(self):
        pc = self.portcullis()
        pad = b"".join(b"X-Padding-%d: %s\r\n" % (i, b"p" * 900) for i in range(320))
        self.assertGreater(len(pad), 270 * 1024)
        code, lines = self.send_raw(pc, pad + b"Subject: buy viagra\r\n\r\nbody\r\n")
        self.assertEqual((code, without_ref(lines[0])), (550, "5.7.1 Message content rejected"))
        self.assert_only_control_delivered(pc)

    def test_subject_followed_by_300k_on_the_same_line_is_checked(self):
        pc = self.portcullis()
        code, lines = self.send_raw(
            pc, b"Subject: buy viagra" + b"x" * 300_000 + b"\r\nTo: <u@test.local>\r\n\r\nb\r\n")
        self.assertEqual((code, without_ref(lines[0])), (550, "5.7.1 Message content rejected"))
        pc.wait_for_log(r"event=header-truncated fields=1 limit=102400")
        self.assert_only_control_delivered(pc)

    def test_header_block_over_the_limit_is_refused_with_552(self):
        pc = self.portcullis()
        pad = b"".join(b"X-Padding-%d: %s\r\n" % (i, b"p" * 990) for i in range(1100))
        self.assertGreater(len(pad), 1024 * 1024)
        code, lines = self.send_raw(pc, pad + b"Subject: fine\r\n\r\nbody\r\n")
        self.assertEqual(code, 552)
        self.assertRegex(lines[0], r"^5\.3\.4 Error: message header too large \[ref=\w{8}\]$")
        pc.wait_for_log(r"event=reject .* stage=end_of_message code=552 dsn=5\.3\.4 "
                        r"filter=portcullis reason=\"header block over its limit\"")
        self.assert_only_control_delivered(pc)

    def test_leading_continuation_line_is_refused_in_clear(self):
        pc = self.portcullis()
        code, lines = self.send_raw(pc, b" x\r\nSubject: buy viagra\r\n\r\nbody\r\n")
        self.assertEqual(code, 554)
        self.assertEqual(without_ref(lines[0]), "5.6.0 Error: message header starts with a continuation line "
                                   "(RFC 5322 2.2.3)")
        self.assert_only_control_delivered(pc)

    def test_leading_continuation_cannot_extend_our_received_header(self):
        # With TLS, our trace header goes first; " x" would have become part of it, and the
        # Subject below a real header for Postfix but not for header_checks.
        certs = self.make_certs()
        pc = self.portcullis(tls={"cert": certs.cert, "key": certs.key,
                                  "received_header": True})
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", pc.port, local_hostname="client.test", timeout=30) as s:
            s.starttls(context=ctx)
            s.ehlo("client.test")
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                s.sendmail("sender@mx.test", ["user@test.local"],
                           b" x\r\nSubject: buy viagra\r\n\r\nbody\r\n")
            self.assertEqual(cm.exception.smtp_code, 554)
            # The trace header is the first field header_checks sees: it matched and tagged.
            s.sendmail("sender@mx.test", ["user@test.local"], make_message(subject="tls ok"))
        [msg] = self.pf.messages(1, timeout=15)
        self.assertIn(b"X-Saw-Our-Trace: yes", msg)
        unfolded = re.sub(rb"\r?\n[ \t]+", b" ", msg.split(b"\n\n", 1)[0])
        self.assertRegex(unfolded, rb"Received: from client\.test .*\(portcullis\) with ESMTPS")
        self.assertNotIn(b"viagra", msg)


class DnsDownE2E(HarnessTestCase):
    """DNS that never answers: mail still flows where the filter fails open, and is tempfailed
    where the config says so. Nothing is ever rejected permanently because DNS is down."""

    def setUp(self):
        self.slow = self.start(SlowDns(delay_ms=60000))  # answers after a minute: never, here
        self.pf = self.start(Postfix())

    def portcullis(self, filters):
        return self.start(Portcullis(upstream=self.pf, config={
            "dns": {"servers": [self.slow.address], "timeout": "300ms", "attempts": 1},
            "filters": filters}))

    def test_dnsbl_fails_open(self):
        pc = self.portcullis([DNSBL])
        with session(pc, "127.0.0.2") as c:
            self.assertEqual(c.read_reply()[0], 220)
            c.cmd("EHLO client.test")
            self.assertEqual([code for code, _ in transaction(c)], [250, 250, 354, 250])
            c.cmd("QUIT")
        self.assertEqual(len(self.pf.messages(1, timeout=15)), 1)
        pc.wait_for_log(r"event=dnsbl-lookup-failed")
        # The core's reverse lookup timed out too: Postfix hears [TEMPUNAVAIL], logs unknown.
        self.pf.wait_for_log(r"client=unknown\[127\.0\.0\.2\]")

    def test_sender_domain_tempfails(self):
        pc = self.portcullis([{"name": "sender_domain"}])
        with session(pc, "127.0.0.1") as c:
            c.read_reply()
            c.cmd("EHLO client.test")
            code, lines = c.cmd("MAIL FROM:<a@mx.test>")
            self.assertEqual((code, lines[0].split()[0]), (451, "4.1.8"))

    def test_helo_on_error_decides(self):
        for on_error, want in (("continue", 250), ("tempfail", 450)):
            pc = self.portcullis([{"name": "helo", "require_resolvable": True,
                                   "on_error": on_error}])
            with session(pc, "127.0.0.1") as c:
                c.read_reply()
                self.assertEqual(c.cmd("EHLO client.test")[0], want, on_error)
            pc.stop()

    def test_rdns_tempfails_whatever_permanent_says(self):
        pc = self.portcullis([{"name": "rdns", "permanent": True, "defer_to": "rcpt"}])
        with session(pc, "127.0.0.1") as c:
            c.read_reply()
            c.cmd("EHLO client.test")
            codes = transaction(c)
            self.assertEqual((codes[1][0], codes[1][1][0].split()[0]), (450, "4.7.25"))


if __name__ == "__main__":
    unittest.main()
