#!/usr/bin/env python3
"""Every session tells its whole story (issue 10), against the real Postfix and a real DNS
server (unbound serving tests/fixtures/dns/zones.conf).

For each way a session can fail, the client's reply and our log must agree: one event=reject
line with from= to= helo= client= stage= code= dsn= filter= reason=, in that order; our own
refusals carry a reference ("[ref=XXXXXXXX]") that is on that line and nowhere else; the MTA's
refusals are relayed unchanged and logged with its text. Every transaction the MAIL opened has
an event=transaction line with its envelope; the session line has from=, rcpts= and the MTA's
queue id, which is the id in Postfix's own log. `portcullis explain REF` finds the session.
"""

import os
import re
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HarnessTestCase, Portcullis, Postfix, RawClient, Unbound,  # noqa: E402
                     make_message)
from harness.portcullis import default_binary, parse_kv  # noqa: E402

DNSBL = {"name": "dnsbl", "zones": ["dnsbl.test=127.0.0.[2..11]*2"], "threshold": 2}
REF = re.compile(r"\[ref=([23456789ABCDEFGHJKMNPQRSTVWXYZ]{8})\]")
REJECT_KEYS = ["from", "helo", "client", "stage", "code", "dsn", "filter", "reason"]
UNKNOWN = "nobody@test.local"
UNKNOWN_REPLY = "550 5.1.1 <nobody@test.local>: Recipient address rejected: User unknown"


def key_order(line):
    """The keys of a line in order; quoted values are skipped whole, whatever they contain."""
    return [k for k, _ in re.findall(r'([A-Za-z0-9_.\-]+)=("(?:[^"\\]|\\.)*"|\S*)', line)]


class LogStory(HarnessTestCase):
    def setUp(self):
        self.dns = self.start(Unbound())
        # Clients other than 127.0.0.1 are outside mynetworks: Postfix refuses to relay for them.
        self.pf = self.start(Postfix(
            reject_recipients={UNKNOWN: UNKNOWN_REPLY},
            extra_main_cf={"mynetworks": "127.0.0.1/32",
                           "smtpd_relay_restrictions":
                               "permit_mynetworks, reject_unauth_destination"}))

    def portcullis(self, filters=(), upstream=None, **extra):
        config = {"dns": {"servers": [self.dns.address]}, "filters": list(filters),
                  "upstream": {"pool_size": 0}}
        config.update(extra)
        return self.start(Portcullis(upstream=upstream or self.pf, config=config))

    # -- helpers ------------------------------------------------------------------------

    def rejects(self, pc):
        return [l for l in pc.log_lines(r"event=reject ")]

    def the_reject(self, pc, *, stage, code, filter, ref=None, sender=None, to=None):
        """Exactly one reject line; it has every field, in order, with these values."""
        lines = self.rejects(pc)
        self.assertEqual(len(lines), 1, "\n".join(lines) or pc.log_text())
        line = lines[0]
        kv = parse_kv(line)
        order = key_order(line)
        self.assertEqual(order[0], "event")
        present = [k for k in order if k in REJECT_KEYS + ["to"]]
        want = [k for k in ["from", "to"] + REJECT_KEYS[1:] if k in present]
        self.assertEqual(present, want, line)
        for k in REJECT_KEYS:
            self.assertIn(k, kv, f"{k}= missing: {line}")
        self.assertEqual((kv["stage"], kv["code"], kv["filter"]), (stage, str(code), filter), line)
        self.assertTrue(kv["reason"], line)
        self.assertRegex(kv["client"], r"^\S+\[127\.0\.0\.\d+\]:\d+$")
        if sender is not None:
            self.assertEqual(kv["from"], sender, line)
        if to is not None:
            self.assertEqual(kv.get("to"), to, line)
        if ref is None:
            self.assertNotIn("ref", kv, line)
        else:
            self.assertEqual(kv["ref"], ref, line)
            self.assertIn(f"[ref={ref}]", kv["reply"])
        return kv

    def ref_of(self, lines):
        m = REF.search(lines[-1])
        self.assertIsNotNone(m, f"no reference in {lines}")
        return m.group(1)

    def explain(self, pc, *args):
        r = subprocess.run([default_binary(), "explain", *args, "--log", pc.log_path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def client(self, pc, source="127.0.0.1"):
        c = RawClient("127.0.0.1", pc.port, source_address=(source, 0))
        self.addCleanup(c.close)
        return c

    def envelope(self, c, mail="sender@mx.test", rcpts=("user@test.local",)):
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        self.assertEqual(c.cmd(f"MAIL FROM:<{mail}>")[0], 250)
        return [c.cmd(f"RCPT TO:<{r}>") for r in rcpts]

    # -- failures portcullis decides ----------------------------------------------------

    def test_dnsbl_at_connect(self):
        pc = self.portcullis([DNSBL])
        c = self.client(pc, "127.0.0.2")
        code, lines = c.read_reply()
        self.assertEqual(code, 554)
        self.assertTrue(lines[0].startswith("5.7.1 Service unavailable; client [127.0.0.2] "
                                            "blocked using dnsbl.test"), lines)
        ref = self.ref_of(lines)
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        kv = self.the_reject(pc, stage="connect", code=554, filter="dnsbl", ref=ref, sender="")
        self.assertIn("dnsbl.test", kv["reason"])
        story = self.explain(pc, ref)
        for want in ("127.0.0.2", "connect", "554", "dnsbl", "dnsbl.test", "5.7.1"):
            self.assertIn(want, story)

    def test_dnsbl_deferred_to_rcpt_logs_the_code_the_client_got(self):
        pc = self.portcullis([dict(DNSBL, defer_to="rcpt")])
        c = self.client(pc, "127.0.0.2")
        self.assertEqual(c.read_reply()[0], 220)
        (code, lines), = self.envelope(c, rcpts=["victim@test.local"])
        self.assertEqual(code, 550)
        ref = self.ref_of(lines)
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        self.the_reject(pc, stage="rcpt", code=550, filter="dnsbl", ref=ref,
                        sender="<sender@mx.test>", to="<victim@test.local>")
        held = parse_kv(pc.log_lines(r"event=defer ")[0])
        self.assertEqual(held["code"], "550", "the defer line says what the client will get")
        t = parse_kv(pc.log_lines(r"event=transaction ")[0])
        self.assertEqual((t["from"], t["rcpts"], t["result"]), ("<sender@mx.test>", "0/1",
                                                                 "no-recipients"))
        self.assertEqual(t["to"], "<victim@test.local>:550:dnsbl")
        story = self.explain(pc, ref.lower())
        for want in ("rcpt", "550", "dnsbl", "victim@test.local", "sender@mx.test"):
            self.assertIn(want, story)

    def test_bad_helo(self):
        pc = self.portcullis([{"name": "helo"}])
        c = self.client(pc)
        c.read_reply()
        code, lines = c.cmd("EHLO localhost")
        self.assertEqual(code, 504)
        ref = self.ref_of(lines)
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        kv = self.the_reject(pc, stage="helo", code=504, filter="helo", ref=ref)
        self.assertEqual(kv["helo"], "localhost")
        self.assertIn("helo", self.explain(pc, ref))

    def test_size_at_mail(self):
        pc = self.portcullis(limits={"max_message_size": 10000})
        c = self.client(pc)
        c.read_reply()
        c.cmd("EHLO client.test")
        code, lines = c.cmd("MAIL FROM:<big@mx.test> SIZE=20000")
        self.assertEqual(code, 552)
        ref = self.ref_of(lines)
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        self.the_reject(pc, stage="mail", code=552, filter="size", ref=ref,
                        sender="<big@mx.test>")
        self.assertEqual(pc.log_lines(r"event=transaction "), [], "MAIL refused: no transaction")

    def test_size_after_the_dot(self):
        pc = self.portcullis(limits={"max_message_size": 10000})
        c = self.client(pc)
        c.read_reply()
        self.envelope(c, rcpts=["a@test.local", "b@test.local"])
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("sender@mx.test", "a@test.local", body=("x" * 70 + "\r\n") * 300) +
               b".\r\n")
        code, lines = c.read_reply()
        self.assertEqual(code, 552)
        ref = self.ref_of(lines)
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        self.the_reject(pc, stage="end_of_message", code=552, filter="size", ref=ref,
                        to="<a@test.local>,<b@test.local>")
        verdict = parse_kv(pc.log_lines(r"event=verdict .*filter=size")[0])
        self.assertEqual(verdict["stage"], "end_of_message")
        t = parse_kv(pc.log_lines(r"event=transaction ")[0])
        self.assertEqual((t["result"], t["code"], t["by"], t["rcpts"]),
                         ("refused", "552", "size", "2/2"))
        self.assertIn("end_of_message", self.explain(pc, ref))
        self.assertEqual(self.pf.messages(0), [])

    def test_timeout(self):
        pc = self.portcullis(timeouts={"command": "1s"})
        c = self.client(pc)
        c.read_reply()
        self.envelope(c)
        code, lines = c.read_reply(timeout=10)
        self.assertEqual(code, 421)
        ref = self.ref_of(lines)
        pc.wait_for_sessions(1)
        kv = self.the_reject(pc, stage="timeout", code=421, filter="portcullis", ref=ref,
                             sender="<sender@mx.test>")
        self.assertIn("after RCPT", kv["reason"])
        t = parse_kv(pc.log_lines(r"event=transaction ")[0])
        self.assertEqual(t["result"], "aborted")
        self.assertIn("timeout", self.explain(pc, ref))

    def test_mta_down(self):
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
        self.addCleanup(dead.close)
        port = dead.getsockname()[1]
        pc = self.start(Portcullis(upstream=f"127.0.0.1:{port}",
                                   config={"upstream": {"pool_size": 0}}))
        c = self.client(pc)
        c.read_reply()
        c.cmd("EHLO client.test")
        code, lines = c.cmd("MAIL FROM:<sender@mx.test>")
        self.assertEqual(code, 451)
        ref = self.ref_of(lines)
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        kv = self.the_reject(pc, stage="mail", code=451, filter="portcullis", ref=ref)
        self.assertIn("mail server", kv["reason"])
        self.assertIn("451", self.explain(pc, ref))

    def test_upstream_recovery_is_logged_at_info(self):
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        dead.close()  # nothing listens there until the second Postfix starts
        pc = self.start(Portcullis(upstream=f"127.0.0.1:{port}",
                                   config={"upstream": {"pool_size": 0}, "log": {"level": "info"}}))
        c = self.client(pc)
        c.read_reply()
        c.cmd("EHLO client.test")
        self.assertEqual(c.cmd("MAIL FROM:<sender@mx.test>")[0], 451)
        c.cmd("QUIT")
        self.start(Postfix(port=port))
        c = self.client(pc)
        c.read_reply()
        c.cmd("EHLO client.test")
        self.assertEqual(c.cmd("MAIL FROM:<sender@mx.test>")[0], 250)
        c.cmd("QUIT")
        pc.wait_for_log(r"info event=upstream-recovered .*failed_attempts=[1-9]")
        self.assertIn(f"upstream=127.0.0.1:{port}", pc.log_text())
        self.assertEqual(len(pc.log_lines(r"event=upstream-recovered")), 1)

    def test_header_discard_records_the_envelope(self):
        pc = self.portcullis([{"name": "header_checks", "rules": [
            {"match": "^X-Spam-Flag:\\s*YES", "action": "discard"}]}])
        c = self.client(pc)
        c.read_reply()
        self.envelope(c)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("sender@mx.test", "user@test.local",
                            headers={"X-Spam-Flag": "YES"}) + b".\r\n")
        self.assertEqual(c.read_reply()[0], 250)
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        self.assertEqual(self.rejects(pc), [])
        d = pc.log_lines(r"event=discard ")
        self.assertEqual(len(d), 1, pc.log_text())
        kv = parse_kv(d[0])
        self.assertEqual((kv["from"], kv["to"], kv["filter"], kv["stage"]),
                         ("<sender@mx.test>", "<user@test.local>", "header_checks",
                          "end_of_message"))
        t = parse_kv(pc.log_lines(r"event=transaction ")[0])
        self.assertEqual((t["from"], t["to"], t["result"], t["by"]),
                         ("<sender@mx.test>", "<user@test.local>:250:mta", "discarded",
                          "header_checks"))
        self.assertEqual(self.pf.messages(0), [])

    # -- failures the MTA decides: relayed unchanged, logged with its text ---------------

    def test_relay_refused_by_postfix(self):
        pc = self.portcullis()
        c = self.client(pc, "127.0.0.3")
        c.read_reply()
        (code, lines), = self.envelope(c, rcpts=["someone@elsewhere.example"])
        self.assertEqual(code, 554)
        self.assertIn("Relay access denied", lines[-1])
        self.assertIsNone(REF.search(lines[-1]), "the MTA's reply is relayed unchanged")
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        kv = self.the_reject(pc, stage="rcpt", code=554, filter="mta",
                             to="<someone@elsewhere.example>")
        self.assertIn("Relay access denied", kv["reason"])
        story = self.explain(pc, "--client", "127.0.0.3")
        self.assertIn("Relay access denied", story)

    def test_unknown_recipient_and_queued_as(self):
        pc = self.portcullis()
        c = self.client(pc)
        c.read_reply()
        replies = self.envelope(c, rcpts=["user@test.local", UNKNOWN, "other@test.local"])
        self.assertEqual([r[0] for r in replies], [250, 550, 250])
        self.assertEqual("550 " + replies[1][1][-1], UNKNOWN_REPLY)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("sender@mx.test", "user@test.local") + b".\r\n")
        code, lines = c.read_reply()
        self.assertEqual(code, 250)
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        kv = self.the_reject(pc, stage="rcpt", code=550, filter="mta", to=f"<{UNKNOWN}>")
        self.assertIn("User unknown", kv["reason"])
        qid = re.search(r"queued as (\w+)", lines[-1]).group(1)
        t = parse_kv(pc.log_lines(r"event=transaction ")[0])
        self.assertEqual(t["to"], f"<user@test.local>:250:mta,<{UNKNOWN}>:550:mta,"
                                  "<other@test.local>:250:mta")
        self.assertEqual((t["result"], t["queued_as"], t["rcpts"]), ("delivered", qid, "2/3"))
        s = pc.sessions()[0]
        self.assertEqual((s["from"], s["rcpts"], s["queued_as"]), ("<sender@mx.test>", "2/3", qid))
        # The join: Postfix's own log names the message by the same id.
        self.pf.wait_for_log(rf"\b{qid}: client=\S+\[127\.0\.0\.1\]")
        story = self.explain(pc, "--session", s["id"])
        for want in (qid, "User unknown", "user@test.local"):
            self.assertIn(want, story)

    def test_reference_can_be_turned_off(self):
        pc = self.portcullis([DNSBL], reply={"reference": False})
        c = self.client(pc, "127.0.0.2")
        code, lines = c.read_reply()
        self.assertEqual(code, 554)
        self.assertIsNone(REF.search(lines[-1]))
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        self.the_reject(pc, stage="connect", code=554, filter="dnsbl")

    def test_references_are_unique_per_reply(self):
        pc = self.portcullis()
        c = self.client(pc)
        c.read_reply()
        refs = [self.ref_of(c.cmd("BOGUS")[1]) for _ in range(5)]
        self.assertEqual(len(set(refs)), 5, refs)
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        logged = [parse_kv(l)["ref"] for l in self.rejects(pc)]
        self.assertEqual(logged, refs)
        self.assertTrue(all(parse_kv(l)["stage"] == "bogus" for l in self.rejects(pc)))

    def test_hostile_addresses_cannot_forge_log_lines(self):
        pc = self.portcullis([dict(DNSBL, defer_to="rcpt")])
        c = self.client(pc, "127.0.0.2")
        c.read_reply()
        c.cmd("EHLO client.test")
        c.cmd('MAIL FROM:<"a\\"b event=reject x"@mx.test>')
        c.cmd('RCPT TO:<"q\\" filter=mta"@test.local>')
        c.cmd("QUIT")
        pc.wait_for_sessions(1)
        line = self.rejects(pc)[0]
        kv = parse_kv(line)
        self.assertEqual(kv["filter"], "dnsbl")
        self.assertEqual(key_order(line).count("filter"), 1, line)


if __name__ == "__main__":
    unittest.main()
