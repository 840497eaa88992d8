#!/usr/bin/env python3
"""The clamd filter end to end (issue 11): portcullis in front of a real Postfix, scanning at
end-of-message with a real clamd (a private database with one signature, EICAR's) or with
FakeClamd when the scanner must misbehave (down, stalling, garbage, hostile names).

Every refused message must never reach Postfix; every scanner failure follows on_error
(451 4.7.1 by default, delivered with on_error: continue); portcullis keeps running; the
circuit breaker opens after its failures and closes again after open_for.
"""

import base64
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (EICAR, Clamd, FakeClamd, HarnessTestCase, Portcullis, Postfix,  # noqa: E402
                     RawClient, free_port, make_message)

EICAR_NAME = "Eicar-Test-Signature.UNOFFICIAL"


def eicar_body():
    """A multipart message body with EICAR as a base64 attachment, and its boundary header."""
    encoded = base64.b64encode(EICAR).decode()
    body = ("--XX\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
            "--XX\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=eicar.com\r\n\r\n"
            f"{encoded}\r\n--XX--\r\n")
    headers = {"MIME-Version": "1.0", "Content-Type": "multipart/mixed; boundary=XX"}
    return body, headers


def send(pc, subject="clamd", body="hello\r\n", headers=None, size=None):
    """One message through portcullis; returns the end-of-data reply (code, lines)."""
    with RawClient("127.0.0.1", pc.port, timeout=30) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<sender@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<user@test.local>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        msg = make_message("sender@client.test", "user@test.local", subject=subject,
                           body=body, headers=headers, size=size)
        c.send(msg + b".\r\n")
        reply = c.read_reply(timeout=30)
        c.cmd("QUIT")
        return reply


def send_eicar(pc, subject="eicar"):
    body, headers = eicar_body()
    return send(pc, subject=subject, body=body, headers=headers)


class ClamdTest(HarnessTestCase):
    def setUp(self):
        self.pf = self.start(Postfix())

    def portcullis(self, **clamd):
        spec = {"name": "clamd"}
        spec.update(clamd)
        return self.start(Portcullis(upstream=self.pf, config={"filters": [spec]}))

    def delivered_subjects(self, count):
        return [m["Subject"] for m in self.pf.emails(count)]

    def assert_not_delivered(self, subject):
        for path in self.pf.message_files():
            with open(path, "rb") as f:
                self.assertNotIn(f"Subject: {subject}".encode(), f.read())


class RealClamdTest(ClamdTest):
    def setUp(self):
        super().setUp()
        self.clamd = self.start(Clamd(stream_max_length="64K"))

    def test_eicar_rejected_and_never_reaches_postfix(self):
        pc = self.portcullis(address=self.clamd.address)
        code, lines = send_eicar(pc, subject="infected")
        self.assertEqual(code, 554)
        self.assertTrue(lines[0].startswith("5.7.1 Message rejected: virus found"), lines)
        # The reject line names the scanner and the virus; the client only gets the short text.
        self.assertNotIn("Eicar", " ".join(lines))
        pc.wait_for_log(r"event=verdict stage=end_of_message filter=clamd verdict=reject "
                        r"code=554 .*virus=.*" + re.escape(EICAR_NAME))
        pc.wait_for_log(r"event=scan filter=clamd scan=found virus=\\?\"?" + re.escape(EICAR_NAME))
        pc.wait_for_log(r"event=session .*verdicts=\"clamd@end_of_message:reject:554\[virus=.*"
                        + re.escape(EICAR_NAME) + r".*time=\d+ms\]")
        # A clean message afterwards arrives, and only it.
        self.assertEqual(send(pc, subject="after")[0], 250)
        self.assertEqual(self.delivered_subjects(1), ["after"])
        self.assert_not_delivered("infected")

    def test_eicar_rejected_over_unix_socket(self):
        pc = self.portcullis(address=self.clamd.unix_address)
        self.assertEqual(send_eicar(pc)[0], 554)
        self.assertEqual(self.pf.message_files(), [])

    def test_clean_message_delivered(self):
        pc = self.portcullis(address=self.clamd.address)
        self.assertEqual(send(pc, subject="clean")[0], 250)
        self.assertEqual(self.delivered_subjects(1), ["clean"])
        pc.wait_for_log(r"event=scan filter=clamd scan=clean size=\d+")
        pc.wait_for_log(r"event=session .*verdicts=\"?clamd@end_of_message:continue"
                        r"\[scan=clean time=\d+ms\]")

    def test_over_stream_max_length_tempfails_by_default(self):
        pc = self.portcullis(address=self.clamd.address)
        code, lines = send(pc, subject="big", size=200_000)
        self.assertEqual(code, 451)
        self.assertTrue(lines[0].startswith("4.7.1 "), lines)
        pc.wait_for_log(r"event=scan filter=clamd scan=error error=\"INSTREAM size limit")
        self.assertEqual(self.pf.message_files(), [])
        self.assertTrue(pc.alive())

    def test_over_stream_max_length_delivered_with_on_error_continue(self):
        pc = self.portcullis(address=self.clamd.address, on_error="continue")
        self.assertEqual(send(pc, subject="big", size=200_000)[0], 250)
        self.assertEqual(self.delivered_subjects(1), ["big"])

    def test_over_max_size_not_scanned(self):
        # EICAR inside a message over max_size: not scanned, so delivered, and logged.
        pc = self.portcullis(address=self.clamd.address, max_size=200)
        self.assertEqual(send_eicar(pc, subject="unscanned")[0], 250)
        self.assertEqual(self.delivered_subjects(1), ["unscanned"])
        pc.wait_for_log(r"event=scan filter=clamd scan=skipped-size size=\d+ max_size=200")

    def test_observe_mode_logs_but_delivers(self):
        pc = self.portcullis(address=self.clamd.address, mode="observe")
        self.assertEqual(send_eicar(pc, subject="observed")[0], 250)
        self.assertEqual(self.delivered_subjects(1), ["observed"])
        pc.wait_for_log(r"event=observe stage=end_of_message filter=clamd verdict=reject")


class FakeClamdTest(ClamdTest):
    def test_scanner_down_follows_on_error(self):
        down = f"127.0.0.1:{free_port(udp=False)}"  # nothing listens there
        pc = self.portcullis(address=down)
        code, lines = send(pc, subject="down")
        self.assertEqual((code, lines[0][:6]), (451, "4.7.1 "))
        pc.wait_for_log(r"event=scan filter=clamd scan=error error=\"error: Connection refused")
        self.assertTrue(pc.alive())
        self.assertEqual(self.pf.message_files(), [])

    def test_scanner_down_delivered_with_on_error_continue(self):
        down = f"127.0.0.1:{free_port(udp=False)}"
        pc = self.portcullis(address=down, on_error="continue")
        self.assertEqual(send(pc, subject="down")[0], 250)
        self.assertEqual(self.delivered_subjects(1), ["down"])

    def test_stalling_scanner_times_out(self):
        fake = self.start(FakeClamd(reply=None))
        pc = self.portcullis(address=fake.address, timeout="1s")
        code, lines = send(pc, subject="stall")
        self.assertEqual((code, lines[0][:6]), (451, "4.7.1 "))
        pc.wait_for_log(r"event=scan filter=clamd scan=error error=\"timeout after 1000ms")
        # The scanner got the whole message, de-framed, before it stalled.
        self.assertIn(b"Subject: stall", fake.streams()[0])
        self.assertTrue(pc.alive())

    def test_garbage_reply_follows_on_error(self):
        fake = self.start(FakeClamd(reply=b"\x00\xffHELLO garbage\r\n", close=True))
        pc = self.portcullis(address=fake.address)
        self.assertEqual(send(pc, subject="garbage")[0], 451)
        pc.wait_for_log(r"event=scan filter=clamd scan=error error=")
        self.assertTrue(pc.alive())

    def test_closed_without_reply_follows_on_error(self):
        fake = self.start(FakeClamd(reply=b"", close=True))
        pc = self.portcullis(address=fake.address)
        self.assertEqual(send(pc, subject="closed")[0], 451)
        pc.wait_for_log(r"scan=error error=\"closed without a reply\"")

    def test_hostile_virus_name_is_sanitised(self):
        name = b"Evil\rName\x01\x1b[31m\x7f" + b"A" * 500
        fake = self.start(FakeClamd(reply=b"stream: " + name + b" FOUND\0"))
        pc = self.portcullis(address=fake.address)
        code, lines = send(pc, subject="hostile")
        self.assertEqual(code, 554)
        line = pc.wait_for_log(r"event=scan filter=clamd scan=found virus=\"[^\"]*\"").group(0)
        # CR became a space; the other control characters are gone.
        self.assertIn("Evil Name[31mAAA", line)
        pc.wait_for_sessions(1)  # every line of the session is in the log
        for bad in ("\r", "\x01", "\x1b", "\x7f"):
            self.assertNotIn(bad, pc.log_text())
        virus = re.search(r'virus="([^"]*)"', line).group(1)
        self.assertLessEqual(len(virus), 200)

    def test_queue_full_is_an_error(self):
        # One scan at a time and no queue: while a stalled scan holds the only connection, a
        # second message fails at once under on_error.
        fake = self.start(FakeClamd(reply=None))
        pc = self.portcullis(address=fake.address, timeout="5s", max_connections=1, max_queue=0)
        first = RawClient("127.0.0.1", pc.port, timeout=30)
        self.addCleanup(first.close)
        first.read_reply()
        for line in ("EHLO a.test", "MAIL FROM:<a@client.test>", "RCPT TO:<user@test.local>",
                     "DATA"):
            first.cmd(line)
        first.send(make_message(subject="holder") + b".\r\n")
        # Wait until the fake has the first scan.
        deadline = time.monotonic() + 10
        while not fake.streams() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(fake.streams()), 1)
        self.assertEqual(send(pc, subject="second")[0], 451)
        pc.wait_for_log(r"scan=error error=\"queue full")
        self.assertEqual(first.read_reply()[0], 451)  # the holder times out in its turn
        self.assertEqual(fake.connections(), 1)

    def test_circuit_breaker_opens_and_closes(self):
        fake = self.start(FakeClamd(reply=b"garbage\0", close=True))
        pc = self.portcullis(address=fake.address,
                             circuit_breaker={"failures": 2, "window": "1m", "open_for": "2s"})
        self.assertEqual(send(pc, subject="f1")[0], 451)
        self.assertEqual(send(pc, subject="f2")[0], 451)
        pc.wait_for_log(r"event=scanner-circuit-open filter=clamd open_for=2000ms")
        # Open: skipped under on_error without a connection.
        self.assertEqual(send(pc, subject="skipped")[0], 451)
        pc.wait_for_log(r"scan=error error=\"circuit open\"")
        self.assertEqual(fake.connections(), 2)
        # After open_for clamd gets a PING first; no PONG, no scan, still open.
        fake.set_pong(b"UNKNOWN COMMAND\0")
        time.sleep(2.5)
        self.assertEqual(send(pc, subject="still down")[0], 451)
        pc.wait_for_log(r"event=scanner-probe filter=clamd result=failed error=\"unexpected reply")
        self.assertEqual((fake.connections(), fake.pings(), len(fake.streams())), (3, 1, 2))
        # The scanner recovers; after open_for PONG closes it and the message is scanned.
        fake.set_pong(b"PONG\0")
        fake.set_reply(b"stream: OK\0")
        time.sleep(2.5)
        self.assertEqual(send(pc, subject="recovered")[0], 250)
        pc.wait_for_log(r"event=scanner-probe filter=clamd result=ok")
        pc.wait_for_log(r"event=scanner-circuit-closed filter=clamd")
        self.assertEqual((fake.connections(), fake.pings()), (5, 2))
        self.assertEqual(self.delivered_subjects(1), ["recovered"])
        self.assertEqual(len(pc.log_lines(r"event=scanner-circuit-open")), 1)
        self.assertEqual(len(pc.log_lines(r"event=scanner-circuit-closed")), 1)

    def test_bad_address_refused_at_config_load(self):
        pc = Portcullis(upstream=self.pf, config={"filters": [{"name": "clamd",
                                                                "address": "clamd.example:3310"}]},
                        expect_exit=2, wait_ready=False)
        self.start(pc)
        self.assertEqual(pc.wait_exit(), 2)
        self.assertIn("filters[0].address", pc.log_text())


if __name__ == "__main__":
    unittest.main()
