#!/usr/bin/env python3
"""The spamd filter end to end (issue 11): portcullis in front of a real Postfix, scanning at
end-of-message with a real spamd (SpamAssassin 4, -L, packaged rules) or with FakeSpamd when
the scanner must misbehave (down, stalling, garbage, error status, hostile symbols).

Spam (GTUBE) is tagged with X-Spam-Flag, X-Spam-Score and X-Spam-Status and arrives in the
Maildir with them; at or above reject_score it is refused with 550 5.7.1 and never reaches
Postfix; a clean message arrives byte for byte as sent. Every scanner failure follows
on_error (451 4.7.1 by default, delivered with on_error: continue), portcullis keeps running,
and the circuit breaker opens after its failures and closes again after open_for.
"""

import base64
import email.utils
import os
import re
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

try:
    import dkim
except ImportError:  # Debian's python3-dkim, under a python3 that is not Debian's own
    sys.path.append("/usr/lib/python3/dist-packages")
    import dkim

sys.path.insert(0, os.path.dirname(__file__))
from harness import (GTUBE, FakeSpamd, HarnessTestCase, Portcullis, Postfix,  # noqa: E402
                     RawClient, Spamd, free_port, make_message)


def ham_message(subject):
    """A plain message spamassassin has nothing against (with a Date, so no MISSING_DATE)."""
    return make_message("sender@client.test", "user@test.local", subject=subject,
                        body="Hello Bob,\r\n\r\nthe minutes of Tuesday's meeting are below.\r\n"
                             "See you next week.\r\n\r\nAlice\r\n",
                        headers={"Date": email.utils.formatdate(localtime=False)})


def gtube_message(subject):
    return make_message("sender@client.test", "user@test.local", subject=subject,
                        body=f"This is the GTUBE test.\r\n\r\n{GTUBE}\r\n")


def send(pc, msg):
    """One message through portcullis; returns the end-of-data reply (code, lines)."""
    with RawClient("127.0.0.1", pc.port, timeout=60) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<sender@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<user@test.local>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(msg + b".\r\n")
        reply = c.read_reply(timeout=60)
        c.cmd("QUIT")
        return reply


def split_message(raw):
    """(header block, body) of a delivered Maildir file (LF line ends)."""
    head, _, body = raw.partition(b"\n\n")
    return head, body


def lf(data):
    return data.replace(b"\r\n", b"\n")


def spamd_reply(spam, score, threshold, body):
    flag = b"True" if spam else b"False"
    return (b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: %s ; %s / %s\r\n\r\n"
            % (len(body), flag, score, threshold)) + body


class SpamdTest(HarnessTestCase):
    def setUp(self):
        self.pf = self.start(Postfix())

    def portcullis(self, **spamd):
        spec = {"name": "spamd"}
        spec.update(spamd)
        return self.start(Portcullis(upstream=self.pf, config={"filters": [spec]}))

    def delivered(self, count=1):
        return self.pf.messages(count, timeout=30)

    def assert_not_delivered(self, subject):
        for path in self.pf.message_files():
            with open(path, "rb") as f:
                self.assertNotIn(f"Subject: {subject}".encode(), f.read())


class RealSpamdTest(SpamdTest):
    def setUp(self):
        super().setUp()
        self.spamd = self.start(Spamd())

    def assert_tagged(self, raw, sent):
        head, body = split_message(raw)
        self.assertIn(b"\nX-Spam-Flag: YES\n", head)
        score = re.search(rb"\nX-Spam-Score: (\d+\.\d)\n", head)
        self.assertIsNotNone(score, head)
        self.assertGreaterEqual(float(score.group(1)), 1000.0)
        status = re.search(rb"\nX-Spam-Status: (.*(?:\n[ \t].*)*)", head)
        self.assertIsNotNone(status, head)
        # Folded by the core when long: unfold before matching.
        value = re.sub(rb"\n[ \t]+", b" ", status.group(1))
        self.assertRegex(value, rb"^Yes, score=\d+\.\d required=5\.0 tests=\S*GTUBE")
        # The body is byte for byte what the client sent.
        self.assertEqual(body, split_message(lf(sent))[1])

    def test_gtube_tagged_and_delivered_with_its_headers(self):
        pc = self.portcullis(address=self.spamd.address)
        sent = gtube_message("gtube")
        self.assertEqual(send(pc, sent)[0], 250)
        self.assert_tagged(self.delivered(1)[0], sent)
        pc.wait_for_log(r"event=scan filter=spamd scan=spam score=\d+\.\d required=5\.0 "
                        r"tests=\"[^\"]*GTUBE")
        # The session line names the scanner, its verdict, the score and the scan time.
        pc.wait_for_log(r"event=session .*verdicts=\"spamd@end_of_message:continue\[scan=spam "
                        r"score=\d+\.\d required=5\.0 tests=[^]]*time=\d+ms\]")

    def test_gtube_tagged_over_unix_socket_with_report(self):
        pc = self.portcullis(address=self.spamd.unix_address, command="report")
        sent = gtube_message("gtube-report")
        self.assertEqual(send(pc, sent)[0], 250)
        self.assert_tagged(self.delivered(1)[0], sent)

    def test_gtube_rejected_at_reject_score(self):
        pc = self.portcullis(address=self.spamd.address, reject_score=15)
        code, lines = send(pc, gtube_message("rejected"))
        self.assertEqual(code, 550)
        self.assertTrue(lines[0].startswith("5.7.1 Message rejected as spam"), lines)
        pc.wait_for_log(r"event=verdict stage=end_of_message filter=spamd verdict=reject "
                        r"code=550 .*score=\d+\.\d required=5\.0 reject_score=15\.0 "
                        r"tests=.*GTUBE.*time=\d+ms")
        # A clean message afterwards arrives, and only it.
        self.assertEqual(send(pc, ham_message("after"))[0], 250)
        self.assertEqual(len(self.delivered(1)), 1)
        self.assert_not_delivered("rejected")

    def test_clean_message_delivered_untouched(self):
        pc = self.portcullis(address=self.spamd.address, reject_score=15)
        sent = ham_message("clean")
        self.assertEqual(send(pc, sent)[0], 250)
        raw = self.delivered(1)[0]
        self.assertNotIn(b"X-Spam-", raw)
        # Postfix prepends its own trace headers; everything after them is the message as sent.
        self.assertTrue(raw.endswith(lf(sent)), raw)
        pc.wait_for_log(r"event=scan filter=spamd scan=clean score=-?\d+\.\d required=5\.0")

    def test_observe_mode_logs_but_delivers(self):
        pc = self.portcullis(address=self.spamd.address, reject_score=15, mode="observe")
        self.assertEqual(send(pc, gtube_message("observed"))[0], 250)
        self.assertEqual(len(self.delivered(1)), 1)
        pc.wait_for_log(r"event=observe stage=end_of_message filter=spamd verdict=reject")


    def test_forged_verdict_headers_go_and_a_dkim_signature_still_verifies(self):
        # The client forges spamassassin's own verdict; spamd's verdict replaces it. Only the
        # header block is rewritten: a header whose name starts with "." keeps it (our
        # dot-stuffing covers the rewritten block too) and the DKIM signature on the body and
        # the signed headers still verifies in the Maildir copy.
        with tempfile.TemporaryDirectory() as tmp:
            key = os.path.join(tmp, "key.pem")
            subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True,
                           capture_output=True)
            pub = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                                 check=True, capture_output=True).stdout
            with open(key, "rb") as f:
                private = f.read()
        unsigned = make_message(
            "sender@client.test", "user@test.local", subject="forged",
            body=f"This is the GTUBE test.\r\n.a line with a dot\r\n\r\n{GTUBE}\r\n",
            headers={"Date": email.utils.formatdate(localtime=False),
                     "X-Spam-Flag": "NO", "X-Spam-Status": "No, score=-100 forged",
                     ".Dotted": "kept"})
        signature = dkim.sign(unsigned, b"test", b"client.test", private,
                              include_headers=[b"From", b"To", b"Subject", b"Date"])
        sent = signature + unsigned
        pc = self.portcullis(address=self.spamd.address)
        stuffed = re.sub(rb"(^|\r\n)\.", rb"\1..", sent)
        self.assertEqual(send(pc, stuffed)[0], 250)
        raw = self.delivered(1)[0]
        self.assert_tagged(raw, sent)
        head, _ = split_message(raw)
        self.assertEqual(head.count(b"X-Spam-Flag:"), 1, head)
        self.assertEqual(head.count(b"X-Spam-Status:"), 1, head)
        self.assertNotIn(b"score=-100", head)
        self.assertRegex(head, rb"\n\.Dotted: kept(\n|$)")
        record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)

        def dns(name, timeout=5):
            return record if name == b"test._domainkey.client.test." else None
        self.assertTrue(dkim.verify(raw.replace(b"\n", b"\r\n"), dnsfunc=dns))
        pc.wait_for_log(r"event=header-edit removed=2 replaced=0 added=0")


class FakeSpamdTest(SpamdTest):
    def test_request_is_spamc_1_5_with_length_and_user(self):
        fake = self.start(FakeSpamd())
        pc = self.portcullis(address=fake.address, user="mailuser")
        sent = ham_message("request")
        self.assertEqual(send(pc, sent)[0], 250)
        head, body = fake.requests()[0]
        lines = head.split("\r\n")
        self.assertEqual(lines[0], "SYMBOLS SPAMC/1.5")
        self.assertIn(f"Content-length: {len(body)}", lines)
        self.assertIn("User: mailuser", lines)
        self.assertEqual(body, sent)  # the message as the client sent it (dot-unstuffed)

    def test_scanner_reads_our_trace_header_first(self):
        # DESIGN invariant 8: the scanner judges the message the MTA gets, our TLS trace
        # header on top; the length spamd is told covers it.
        certs = self.make_certs()
        fake = self.start(FakeSpamd())
        pc = self.start(Portcullis(upstream=self.pf, config={
            "filters": [{"name": "spamd", "address": fake.address}],
            "tls": {"cert": certs.cert, "key": certs.key, "received_header": True}}))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sent = ham_message("traced")
        with smtplib.SMTP("127.0.0.1", pc.port, local_hostname="client.test", timeout=30) as s:
            s.starttls(context=ctx)
            s.ehlo("client.test")
            s.sendmail("sender@client.test", ["user@test.local"], sent)
        head, body = fake.requests()[0]
        self.assertIn(f"Content-length: {len(body)}", head.split("\r\n"))
        self.assertRegex(body, rb"^Received: from client\.test \(unknown \[127\.0\.0\.1\]\) by "
                               rb"\S+\s+\(portcullis\) with ESMTPS")
        self.assertTrue(body.endswith(sent), body)
        self.assertEqual(len(self.delivered(1)), 1)

    def test_scanner_down_follows_on_error(self):
        down = f"127.0.0.1:{free_port(udp=False)}"  # nothing listens there
        pc = self.portcullis(address=down)
        code, lines = send(pc, ham_message("down"))
        self.assertEqual((code, lines[0][:6]), (451, "4.7.1 "))
        pc.wait_for_log(r"event=scan filter=spamd scan=error error=\"error: Connection refused")
        self.assertTrue(pc.alive())
        self.assertEqual(self.pf.message_files(), [])

    def test_scanner_down_delivered_with_on_error_continue(self):
        down = f"127.0.0.1:{free_port(udp=False)}"
        pc = self.portcullis(address=down, on_error="continue")
        self.assertEqual(send(pc, ham_message("down"))[0], 250)
        self.assertEqual(len(self.delivered(1)), 1)

    def test_stalling_scanner_times_out(self):
        fake = self.start(FakeSpamd(reply=None))
        pc = self.portcullis(address=fake.address, timeout="1s")
        code, lines = send(pc, ham_message("stall"))
        self.assertEqual((code, lines[0][:6]), (451, "4.7.1 "))
        pc.wait_for_log(r"event=scan filter=spamd scan=error error=\"timeout after 1000ms")
        self.assertIn(b"Subject: stall", fake.requests()[0][1])
        self.assertTrue(pc.alive())

    def test_garbage_reply_follows_on_error(self):
        fake = self.start(FakeSpamd(reply=b"\x00\xffHELLO garbage\r\n"))
        pc = self.portcullis(address=fake.address)
        self.assertEqual(send(pc, ham_message("garbage"))[0], 451)
        pc.wait_for_log(r"event=scan filter=spamd scan=error error=\"bad status line")
        self.assertTrue(pc.alive())

    def test_error_status_follows_on_error(self):
        fake = self.start(FakeSpamd(reply=b"SPAMD/1.0 76 Bad header line: (EOF)\r\n"))
        pc = self.portcullis(address=fake.address, on_error="continue")
        self.assertEqual(send(pc, ham_message("status"))[0], 250)
        pc.wait_for_log(r"scan=error error=\"spamd error 76 Bad header line: \(EOF\)\"")
        raw = self.delivered(1)[0]
        self.assertNotIn(b"X-Spam-", raw)

    def test_missing_spam_header_follows_on_error(self):
        fake = self.start(FakeSpamd(reply=b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n"))
        pc = self.portcullis(address=fake.address)
        self.assertEqual(send(pc, ham_message("nospam"))[0], 451)
        pc.wait_for_log(r"scan=error error=\"no Spam header\"")

    def test_hostile_symbols_never_reach_a_header(self):
        body = (b"GOOD_ONE,EVIL\r\nX-Injected: yes,NU\x00L,\x1b[31m," + b"A" * 5000
                + b",GOOD_TWO")
        fake = self.start(FakeSpamd(reply=spamd_reply(True, b"9.5", b"5.0", body)))
        pc = self.portcullis(address=fake.address)
        sent = ham_message("hostile")
        self.assertEqual(send(pc, sent)[0], 250)
        raw = self.delivered(1)[0]
        head, got_body = split_message(raw)
        self.assertIn(b"\nX-Spam-Status: Yes, score=9.5 required=5.0 tests=GOOD_ONE,GOOD_TWO\n",
                      head)
        self.assertNotIn(b"X-Injected", raw)
        self.assertNotIn(b"\x1b", raw)
        self.assertEqual(got_body, split_message(lf(sent))[1])
        pc.wait_for_sessions(1)  # every line of the session is in the log
        for bad in ("\r", "\x00", "\x1b"):
            self.assertNotIn(bad, pc.log_text())

    def test_over_long_reply_follows_on_error(self):
        fake = self.start(FakeSpamd(reply=spamd_reply(True, b"9.5", b"5.0", b"A," * 40000)))
        pc = self.portcullis(address=fake.address)
        self.assertEqual(send(pc, ham_message("long"))[0], 451)
        pc.wait_for_log(r"scan=error error=\"(reply longer than|bad Content-length)")
        self.assertTrue(pc.alive())

    def test_circuit_breaker_opens_and_closes(self):
        fake = self.start(FakeSpamd(reply=b"garbage\r\n"))
        pc = self.portcullis(address=fake.address,
                             circuit_breaker={"failures": 2, "window": "1m", "open_for": "2s"})
        self.assertEqual(send(pc, ham_message("f1"))[0], 451)
        self.assertEqual(send(pc, ham_message("f2"))[0], 451)
        pc.wait_for_log(r"event=scanner-circuit-open filter=spamd open_for=2000ms")
        self.assertEqual(send(pc, ham_message("skipped"))[0], 451)
        pc.wait_for_log(r"scan=error error=\"circuit open\"")
        self.assertEqual(fake.connections(), 2)
        # After open_for spamd is asked with PING first; still down, the message is not
        # scanned (only the probe connects) and the breaker stays open.
        fake.set_pong(b"SPAMD/1.5 76 Bad header line\r\n")
        time.sleep(2.5)
        self.assertEqual(send(pc, ham_message("still down"))[0], 451)
        pc.wait_for_log(r"event=scanner-probe filter=spamd result=failed error=")
        self.assertEqual((fake.connections(), fake.pings(), len(fake.requests())), (3, 1, 2))
        self.assertEqual(send(pc, ham_message("skipped again"))[0], 451)
        self.assertEqual(fake.connections(), 3)
        # Back: PONG closes the breaker and the same message is scanned.
        fake.set_pong(b"SPAMD/1.5 0 PONG\r\n")
        fake.set_reply(spamd_reply(False, b"0.1", b"5.0", b""))
        time.sleep(2.5)
        self.assertEqual(send(pc, ham_message("recovered"))[0], 250)
        pc.wait_for_log(r"event=scanner-probe filter=spamd result=ok")
        pc.wait_for_log(r"event=scanner-circuit-closed filter=spamd")
        self.assertEqual((fake.connections(), fake.pings()), (5, 2))
        self.assertEqual(len(self.delivered(1)), 1)
        self.assertEqual(len(pc.log_lines(r"event=scanner-circuit-open")), 1)

    def test_bad_user_refused_at_config_load(self):
        pc = Portcullis(upstream=self.pf, config={"filters": [{"name": "spamd",
                                                                "user": "a b"}]},
                        expect_exit=2, wait_ready=False)
        self.start(pc)
        self.assertEqual(pc.wait_exit(), 2)
        self.assertIn("filters[0].user", pc.log_text())


if __name__ == "__main__":
    unittest.main()
