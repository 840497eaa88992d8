#!/usr/bin/env python3
"""The rspamd filter end to end (issue 11): portcullis in front of a real Postfix, scanning at
end-of-message with a real rspamd 3.x (the project's test config: private ports, DNS refused by
a private unbound, test rules that force `add header` and `rewrite subject`) or with
FakeRspamd when the scanner must misbehave (down, stalling, garbage, wrong status, closing
mid-reply, hostile JSON).

GTUBE is refused with 554 5.7.1 and never reaches Postfix; a clean message arrives byte for
byte as sent; `add header` arrives with X-Spam: Yes and X-Spam-Score; `rewrite subject` arrives
with rspamd's subject and the body byte for byte; rspamd's milter.remove_headers removes a
header the client forged. Every scanner failure follows on_error (451 4.7.1 by default,
delivered with on_error: continue), portcullis keeps running, and the circuit breaker opens
after its failures and closes again after open_for.
"""

import email.utils
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (ADD_HEADER_WORD, GTUBE, REWRITE_SUBJECT_WORD,  # noqa: E402
                     FakeRspamd, HarnessTestCase, Portcullis, Postfix, RawClient, Rspamd,
                     dot_stuff, free_port, http_reply, make_message)


def message(subject, body="Hello Bob,\r\n\r\nthe minutes of Tuesday's meeting are below.\r\n"
                          "See you next week.\r\n\r\nAlice\r\n", headers=None):
    h = {"Date": email.utils.formatdate(localtime=False),
         "Message-ID": email.utils.make_msgid(domain="client.test")}
    h.update(headers or {})
    return make_message("sender@client.test", "user@test.local", subject=subject, body=body,
                        headers=h)


def gtube_message(subject):
    return message(subject, body=f"This is the GTUBE test.\r\n\r\n{GTUBE}\r\n")


def send(pc, msg, rcpts=("user@test.local",)):
    """One message through portcullis; returns the end-of-data reply (code, lines)."""
    with RawClient("127.0.0.1", pc.port, timeout=90) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<sender@client.test>")[0] == 250
        for rcpt in rcpts:
            assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(dot_stuff(msg))
        reply = c.read_reply(timeout=90)
        c.cmd("QUIT")
        return reply


def split_message(raw):
    """(header block, body) of a delivered Maildir file (LF line ends)."""
    head, _, body = raw.partition(b"\n\n")
    return head, body


def lf(data):
    return data.replace(b"\r\n", b"\n")


def header_values(head, name):
    """Every value of header `name` in an LF header block, unfolded."""
    unfolded = re.sub(rb"\n[ \t]+", b" ", head)
    return [m.group(1) for m in re.finditer(rb"(?im)^" + re.escape(name.encode()) + rb": ?(.*)$",
                                            unfolded)]


class RspamdTestBase(HarnessTestCase):
    def setUp(self):
        self.pf = self.start(Postfix())

    def portcullis(self, url, config=None, **rspamd):
        spec = {"name": "rspamd", "url": url}
        spec.update(rspamd)
        cfg = {"filters": [spec]}
        cfg.update(config or {})
        return self.start(Portcullis(upstream=self.pf, config=cfg))

    def delivered(self, count=1):
        return self.pf.messages(count, timeout=30)

    def assert_nothing_delivered(self):
        time.sleep(0.5)
        self.assertEqual(self.pf.message_files(), [])


class RealRspamdTest(RspamdTestBase):
    @classmethod
    def setUpClass(cls):
        # One rspamd for the class: it compiles its rules for several seconds at start.
        cls.rspamd = Rspamd()
        cls.addClassCleanup(cls.rspamd.stop)
        cls.rspamd.start()

    def test_gtube_rejected_and_never_delivered(self):
        pc = self.portcullis(self.rspamd.url)
        code, lines = send(pc, gtube_message("gtube"))
        self.assertEqual(code, 554)
        self.assertRegex(lines[0], r"^5\.7\.1 Gtube pattern \[ref=\w+\]$")  # rspamd's text
        pc.wait_for_log(r"event=verdict stage=end_of_message filter=rspamd verdict=reject "
                        r"code=554 .*action=reject score=\d+\.\d\d required=\d+\.\d\d "
                        r"symbols=\\?\"GTUBE.*time=\d+ms")
        pc.wait_for_log(r"event=scan filter=rspamd scan=reject .*rspamd_time=\d+ms size=\d+ "
                        r"time=\d+ms")
        self.assert_nothing_delivered()

    def test_clean_message_delivered_untouched(self):
        pc = self.portcullis(self.rspamd.url)
        sent = message("clean")
        self.assertEqual(send(pc, sent)[0], 250)
        raw = self.delivered(1)[0]
        self.assertNotIn(b"X-Spam", raw)
        # Postfix prepends its own trace headers; everything after them is the message as sent.
        self.assertTrue(raw.endswith(lf(sent)), raw)
        pc.wait_for_log(r"event=scan filter=rspamd scan=no-action score=\d+\.\d\d")

    def test_add_header_reaches_the_maildir(self):
        pc = self.portcullis(self.rspamd.url)
        sent = message("tagged", body=f"Buy now {ADD_HEADER_WORD}\r\n")
        self.assertEqual(send(pc, sent)[0], 250)
        head, body = split_message(self.delivered(1)[0])
        self.assertEqual(header_values(head, "X-Spam"), [b"Yes"])
        score = header_values(head, "X-Spam-Score")
        self.assertEqual(len(score), 1, head)
        self.assertGreaterEqual(float(score[0]), 60.0)
        self.assertEqual(body, split_message(lf(sent))[1])
        pc.wait_for_log(r"event=scan filter=rspamd scan=add-header .*PORTCULLIS_TEST_ADD_HEADER")

    def test_rewrite_subject_reaches_the_maildir_body_untouched(self):
        pc = self.portcullis(self.rspamd.url)
        sent = message("Quarterly %s numbers",
                       body=f"Numbers {REWRITE_SUBJECT_WORD}\r\n.leading dot\r\n\r\nend\r\n")
        self.assertEqual(send(pc, sent)[0], 250)
        head, body = split_message(self.delivered(1)[0])
        # rspamd substitutes the subject itself ("[SPAM] %s"); a %s of the client's stays.
        self.assertEqual(header_values(head, "Subject"), [b"[SPAM] Quarterly %s numbers"])
        self.assertEqual(body, split_message(lf(sent))[1])  # byte for byte
        pc.wait_for_log(r"event=scan filter=rspamd scan=rewrite-subject ")

    def test_remove_headers_removes_what_the_client_forged(self):
        # rspamd's milter_headers (remove-spam-flag) always asks for X-Spam to go: a client's
        # own "X-Spam: No" must not reach a delivery rule. Our X-Spam-Score too.
        pc = self.portcullis(self.rspamd.url)
        sent = message("forged", headers={"X-Spam": "No", "X-Spam-Score": "-100"})
        self.assertEqual(send(pc, sent)[0], 250)
        head, body = split_message(self.delivered(1)[0])
        self.assertEqual(header_values(head, "X-Spam"), [])
        self.assertEqual(header_values(head, "X-Spam-Score"), [])
        self.assertEqual(header_values(head, "Subject"), [b"forged"])
        self.assertEqual(body, split_message(lf(sent))[1])

    def test_file_spool_is_sent_whole(self):
        # Over the spool's memory limit the message is on disk: the body goes from the file
        # (sendfile), and rspamd still sees every byte of it.
        pc = self.portcullis(self.rspamd.url, config={"spool": {"memory_limit": 4096}},
                             max_size="4M")
        lines = "".join(f"line {i} of a long and boring report\r\n" for i in range(40000))
        sent = message("big", body=lines + f"{ADD_HEADER_WORD}\r\n")
        self.assertGreater(len(sent), 1_000_000)
        self.assertEqual(send(pc, sent)[0], 250)
        head, body = split_message(self.delivered(1)[0])
        self.assertEqual(header_values(head, "X-Spam"), [b"Yes"])  # it saw the last line
        self.assertEqual(body, split_message(lf(sent))[1])
        pc.wait_for_log(rf"event=scan filter=rspamd scan=add-header .* size={len(sent)} ")

    def test_observe_mode_logs_but_delivers(self):
        pc = self.portcullis(self.rspamd.url, mode="observe")
        self.assertEqual(send(pc, gtube_message("observed"))[0], 250)
        self.assertEqual(len(self.delivered(1)), 1)
        pc.wait_for_log(r"event=observe stage=end_of_message filter=rspamd verdict=reject")

    def test_rspamd_asks_only_the_tests_own_dns(self):
        # rspamd's DNS lookups (RBLs, SPF, its map URLs) all reach the test's unbound, which
        # refuses them: "query refused", never "timed out" (a server elsewhere, or none).
        reply = self.rspamd.check(message("dns"), headers={"IP": "192.0.2.1",
                                                           "Helo": "client.test",
                                                           "From": "sender@client.test"})
        failures = [opt for sym in reply["symbols"].values() for opt in sym.get("options", [])
                    if "query" in opt]
        self.assertTrue(failures, reply["symbols"])
        for opt in failures:
            self.assertIn("query refused", opt)
        self.assertNotIn("timed out", self.rspamd.log_text())


class FakeRspamdTest(RspamdTestBase):
    def test_request_is_checkv2_with_rspamds_headers(self):
        fake = self.start(FakeRspamd())
        pc = self.portcullis(fake.url)
        sent = message("request")
        self.assertEqual(send(pc, sent, rcpts=("user@test.local", "other@test.local"))[0], 250)
        line, headers, body = fake.requests()[0]
        self.assertEqual(line, "POST /checkv2 HTTP/1.1")
        names = [n for n, _ in headers]
        got = {n: v for n, v in headers}
        self.assertEqual(got["IP"], "127.0.0.1")
        self.assertEqual(got["Helo"], "client.test")
        self.assertEqual(got["From"], "sender@client.test")
        self.assertEqual([v for n, v in headers if n == "Rcpt"],
                         ["user@test.local", "other@test.local"])
        self.assertRegex(got["Queue-Id"], r"^\S+$")
        self.assertEqual(int(got["Content-Length"]), len(sent))
        self.assertNotIn("Hostname", names)  # no verified name for 127.0.0.1 here
        self.assertNotIn("TLS-Cipher", names)
        self.assertEqual(body, sent)  # the message as the client sent it (dot-unstuffed)
        pc.wait_for_log(rf"event=scan filter=rspamd scan=no-action .*\S* time=\d+ms")
        pc.wait_for_log(re.escape(got["Queue-Id"]))  # the two logs share the id

    def test_scanner_down_follows_on_error(self):
        down = f"http://127.0.0.1:{free_port(udp=False)}"  # nothing listens there
        pc = self.portcullis(down)
        code, lines = send(pc, message("down"))
        self.assertEqual((code, lines[0][:6]), (451, "4.7.1 "))
        pc.wait_for_log(r"event=scan filter=rspamd scan=error error=\"http: ")
        self.assertTrue(pc.alive())
        self.assert_nothing_delivered()

    def test_scanner_down_delivered_with_on_error_continue(self):
        down = f"http://127.0.0.1:{free_port(udp=False)}"
        pc = self.portcullis(down, on_error="continue")
        self.assertEqual(send(pc, message("down"))[0], 250)
        self.assertEqual(len(self.delivered(1)), 1)

    def test_stalling_scanner_times_out(self):
        for on_error, want in (("tempfail", 451), ("continue", 250)):
            with self.subTest(on_error=on_error):
                fake = self.start(FakeRspamd(reply=None))
                pc = self.portcullis(fake.url, timeout="1s", on_error=on_error)
                code, lines = send(pc, message(f"stall-{on_error}"))
                self.assertEqual(code, want, lines)
                if want == 451:
                    self.assertEqual(lines[0][:6], "4.7.1 ")
                pc.wait_for_log(r"event=scan filter=rspamd scan=error error=\"timeout after "
                                r"1000ms")
                self.assertIn(b"Subject: stall", fake.requests()[0][2])
                self.assertTrue(pc.alive())
        self.assertEqual(len(self.delivered(1)), 1)

    def test_garbage_follows_on_error(self):
        cases = [
            ("not-http", b"\x00\xffHELLO garbage\r\n\r\n", r"http: "),
            ("not-json", http_reply(b"<html>oops</html>"), r"bad reply: bad JSON"),
            ("no-action", http_reply({"score": 1.0}), r"bad reply: no action"),
            ("status", http_reply({"action": "reject"}, status=500, reason="Oops"),
             r"HTTP status 500"),
            ("cut-short", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"action\":",
             r"http: "),
            ("too-long", http_reply(b"{\"x\":\"" + b"A" * 300_000 + b"\"}"), r"http: "),
            ("deep", http_reply(b"{\"action\":\"reject\",\"x\":" + b"[" * 5000 + b"]" * 5000
                                + b"}"), r"bad reply: bad JSON: nested deeper than 32"),
        ]
        for name, reply, error in cases:
            with self.subTest(name):
                fake = self.start(FakeRspamd(reply=reply))
                pc = self.portcullis(fake.url)
                code, lines = send(pc, message(f"garbage-{name}"))
                self.assertEqual((code, lines[0][:6]), (451, "4.7.1 "))
                pc.wait_for_log(r"event=scan filter=rspamd scan=error error=\"" + error)
                self.assertTrue(pc.alive())
                # Under on_error: continue the same reply lets the message through untagged.
                pc2 = self.portcullis(fake.url, on_error="continue")
                self.assertEqual(send(pc2, message(f"continued-{name}"))[0], 250)
        self.assertEqual(len(self.delivered(len(cases))), len(cases))

    def test_greylist_and_soft_reject_tempfail_with_rspamds_text(self):
        fake = self.start(FakeRspamd(reply=http_reply(
            {"action": "greylist", "score": 5.0, "required_score": 15.0,
             "messages": {"smtp_message": "Try again later, greylisted"}})))
        pc = self.portcullis(fake.url)
        code, lines = send(pc, message("grey"))
        self.assertEqual(code, 451)
        self.assertRegex(lines[0], r"^4\.7\.1 Try again later, greylisted \[ref=\w+\]$")
        fake.set_reply(http_reply({"action": "soft reject", "score": 5.0}))
        code, lines = send(pc, message("soft"))
        self.assertEqual(code, 451)
        self.assertRegex(lines[0], r"^4\.7\.1 Message deferred, try again later \[ref=\w+\]$")
        self.assert_nothing_delivered()

    def test_hostile_reply_never_reaches_a_reply_header_or_log_raw(self):
        hostile = {
            "action": "reject", "score": 20.0, "required_score": 15.0,
            "symbols": {"GOOD_ONE": {"score": 9}, "EVIL\r\nX-Injected: yes": {"score": 8},
                        "NU\u0000L": {"score": 7}, "\u001b[31m": {"score": 6}},
            "messages": {"smtp_message": "Go away\r\n250 2.0.0 Ok: queued\u0000\u001b[31m"},
        }
        fake = self.start(FakeRspamd(reply=http_reply(hostile)))
        pc = self.portcullis(fake.url)
        code, lines = send(pc, message("hostile-reject"))
        self.assertEqual(code, 554)
        self.assertEqual(len(lines), 1)
        self.assertRegex(lines[0], r"^5\.7\.1 Go away 250 2\.0\.0 Ok: queued\[31m \[ref=\w+\]$")
        tagged = {
            "action": "rewrite subject", "score": 20.0, "required_score": 15.0,
            "subject": "[SPAM]\r\nBcc: victim@example.com\u0000",
            "milter": {"add_headers": {"X-Good": "fine\r\nX-Injected: yes",
                                       "X-Bad\r\nX-Injected": "v", "X Bad": "v", "X:Bad": "v"},
                       "remove_headers": {"Bad Name": 0}},
        }
        fake.set_reply(http_reply(tagged))
        sent = message("hostile-tag")
        self.assertEqual(send(pc, sent)[0], 250)
        head, body = split_message(self.delivered(1)[0])
        self.assertEqual(header_values(head, "Subject"), [b"[SPAM] Bcc: victim@example.com"])
        self.assertEqual(header_values(head, "X-Good"), [b"fine X-Injected: yes"])
        self.assertEqual(header_values(head, "Bcc"), [])
        self.assertEqual(header_values(head, "X-Injected"), [])
        self.assertNotIn(b"X-Bad", head)
        self.assertNotIn(b"\x1b", head)
        self.assertEqual(body, split_message(lf(sent))[1])
        pc.wait_for_log(r"event=scan filter=rspamd scan=rewrite-subject .*"
                        r"dropped_header_edits=4")
        pc.wait_for_sessions(2)  # every line of both sessions is in the log
        log = pc.log_text()
        for bad in ("\r", "\x00", "\x1b", "\nX-Injected", "\n250 2.0.0"):
            self.assertNotIn(bad, log)

    def test_circuit_breaker_opens_probes_and_closes(self):
        fake = self.start(FakeRspamd(reply=b"garbage\r\n\r\n"))
        pc = self.portcullis(fake.url,
                             circuit_breaker={"failures": 2, "window": "1m", "open_for": "2s"})
        self.assertEqual(send(pc, message("f1"))[0], 451)
        self.assertEqual(send(pc, message("f2"))[0], 451)
        pc.wait_for_log(r"event=scanner-circuit-open filter=rspamd open_for=2000ms")
        self.assertEqual(send(pc, message("skipped"))[0], 451)
        pc.wait_for_log(r"scan=error error=\"circuit open\"")
        self.assertEqual(fake.connections(), 2)
        # After open_for, GET /ping asks first: a bad answer keeps it open, no scan is sent.
        fake.set_pong(http_reply(b"loading", status=503, reason="Unavailable"))
        time.sleep(2.5)
        self.assertEqual(send(pc, message("probe-failed"))[0], 451)
        pc.wait_for_log(r"event=scanner-probe filter=rspamd result=failed error=\"HTTP status "
                        r"503")
        self.assertEqual((fake.pings(), len(fake.requests())), (1, 2))
        # A good answer closes it, and the message that asked is scanned.
        fake.set_pong(http_reply(b"pong\r\n"))
        fake.set_reply(http_reply({"action": "no action", "score": 0.5}))
        time.sleep(2.5)
        self.assertEqual(send(pc, message("recovered"))[0], 250)
        pc.wait_for_log(r"event=scanner-probe filter=rspamd result=ok")
        pc.wait_for_log(r"event=scanner-circuit-closed filter=rspamd")
        self.assertEqual((fake.pings(), len(fake.requests())), (2, 3))
        self.assertEqual(len(self.delivered(1)), 1)

    def test_bad_url_refused_at_config_load(self):
        pc = Portcullis(upstream=self.pf, config={"filters": [{"name": "rspamd",
                                                                "url": "http://rspamd:11333"}]},
                        expect_exit=2, wait_ready=False)
        self.start(pc)
        self.assertEqual(pc.wait_exit(), 2)
        self.assertIn("filters[0].url", pc.log_text())


if __name__ == "__main__":
    unittest.main()
