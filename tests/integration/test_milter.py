#!/usr/bin/env python3
"""Milter mode (issue 12 part 2): the real Postfix calls portcullis through libmilter
(smtpd_milters and non_smtpd_milters), and the filter chain's verdicts land where Postfix
applies them, with our text. portcullis runs milter-only (`listen: []`).

Clients reach Postfix from different loopback addresses, which tests/fixtures/dns/zones.conf
describes (127.0.0.2 is listed in dnsbl.test, 127.0.0.1 is not). Faults: portcullis gone
(Postfix applies milter_default_action) and a filter slower than Postfix's
milter_command_timeout (Postfix gives up on the milter and applies milter_default_action).
SIGTERM drains the milter's sessions like the proxy's (a transaction in flight finishes, or is
told 421 at timeouts.shutdown). A DNSBL TXT that is hostile ('%', CR LF, ESC, non-ASCII, over
500 octets) reaches the client through Postfix as one clean reply.
"""

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HarnessTestCase, Portcullis, Postfix, RawClient, SlowDns,  # noqa: E402
                     Unbound, make_message)
from harness.ports import free_port  # noqa: E402

DNSBL = {"name": "dnsbl", "zones": ["dnsbl.test=127.0.0.[2..11]*2"], "threshold": 2}
HEADER_CHECKS = {"name": "header_checks", "rules": [
    {"match": "^Subject:.*viagra", "action": "reject",
     "reply": "550 5.7.1 Message content rejected"},
    {"match": "^X-Spam-Flag:\\s*YES", "action": "discard"},
    {"match": "^Subject: tag me", "action": "add_header", "header": "X-Checked: yes"},
]}


def transaction(c, rcpt="user@test.local", subject="milter", headers=None):
    """EHLO, MAIL, RCPT, DATA, message: the list of (code, lines), up to the first refusal."""
    replies = [c.read_reply()]
    for line, ok in (("EHLO client.test", 250), ("MAIL FROM:<sender@mx.test>", 250),
                     (f"RCPT TO:<{rcpt}>", 250), ("DATA", 354)):
        replies.append(c.cmd(line))
        if replies[-1][0] != ok:
            return replies
    c.send(make_message("sender@mx.test", rcpt, subject=subject, headers=headers) + b".\r\n")
    replies.append(c.read_reply())
    return replies


class MilterTest(HarnessTestCase):
    def setUp(self):
        self.dns = self.start(Unbound())

    def start_pair(self, filters, milter=None, **postfix):
        """portcullis as a milter only, then Postfix using it."""
        port = free_port()
        config = {"listen": [], "dns": {"servers": [self.dns.address]}, "filters": filters,
                  "milter": {"listen": f"inet:{port}@127.0.0.1", **(milter or {})}}
        pc = self.start(Portcullis(config=config))
        pf = self.start(Postfix(milter=f"inet:127.0.0.1:{port}", **postfix))
        return pc, pf

    def test_one_process_serves_the_proxy_and_the_milter(self):
        """Both roles at once: a listener relaying to Postfix, and the milter Postfix calls.
        Through the proxy the message meets the chain twice (proxy, then milter), directly to
        Postfix once; both rules' headers land."""
        port = free_port()
        pf = self.start(Postfix(milter=f"inet:127.0.0.1:{port}"))
        proxy_port = free_port()
        config = {"listen": [f"127.0.0.1:{proxy_port}"], "dns": {"servers": [self.dns.address]},
                  "filters": [HEADER_CHECKS], "milter": {"listen": f"inet:{port}@127.0.0.1"}}
        pc = self.start(Portcullis(upstream=pf, config=config))
        with RawClient("127.0.0.1", proxy_port, timeout=30) as c:
            replies = transaction(c, subject="tag me")
        self.assertEqual(replies[-1][0], 250, replies)
        with self.client(pf) as c:
            replies = transaction(c, subject="tag me")
        self.assertEqual(replies[-1][0], 250, replies)
        counts = sorted(len(m.get_all("X-Checked") or []) for m in pf.emails(2))
        self.assertEqual(counts, [1, 2])
        pc.wait_for_log(r"event=session .*mode=milter")
        pc.wait_for_log(r"event=session (?!.*mode=milter).*queued_as=")

    def test_unix_socket(self):
        """milter.listen as a unix socket (what the README recommends on one host): Postfix's
        smtpd, running as its unprivileged user, can connect, and the chain applies."""
        sock_dir = tempfile.mkdtemp(prefix="portcullis-milter-")
        self.addCleanup(shutil.rmtree, sock_dir, True)
        os.chmod(sock_dir, 0o755)
        path = os.path.join(sock_dir, "milter.sock")
        config = {"listen": [], "dns": {"servers": [self.dns.address]}, "filters": [HEADER_CHECKS],
                  "milter": {"listen": f"unix:{path}"}}
        self.start(Portcullis(config=config))
        pf = self.start(Postfix(milter=f"unix:{path}"))
        with self.client(pf) as c:
            replies = transaction(c, subject="tag me")
        self.assertEqual(replies[-1][0], 250, replies)
        self.assertEqual(pf.emails(1)[0]["X-Checked"], "yes")

    def client(self, pf, source="127.0.0.1"):
        return RawClient("127.0.0.1", pf.port, timeout=30, source_address=(source, 0))

    def test_dnsbl_listed_client_refused_at_connect_with_our_text(self):
        pc, pf = self.start_pair([DNSBL])
        with self.client(pf, "127.0.0.2") as c:
            replies = transaction(c)
        code, lines = replies[-1]
        self.assertEqual(code, 554, replies)
        self.assertIn("Listed in dnsbl.test", " ".join(lines))
        pc.wait_for_log(r"event=reject .*stage=connect .*filter=dnsbl")
        self.assertEqual(pf.messages(0), [])

    def test_dnsbl_deferred_to_rcpt_refuses_the_rcpt(self):
        pc, pf = self.start_pair([{**DNSBL, "defer_to": "rcpt"}])
        with self.client(pf, "127.0.0.2") as c:
            replies = transaction(c)
        self.assertEqual([r[0] for r in replies[:3]], [220, 250, 250], replies)
        code, lines = replies[3]  # the RCPT
        self.assertEqual(code, 550, replies)
        self.assertIn("Listed in dnsbl.test", " ".join(lines))
        pc.wait_for_log(r"event=reject .*to=<user@test.local> .*stage=rcpt")

    def test_unlisted_client_delivers_and_the_queue_id_is_logged(self):
        pc, pf = self.start_pair([DNSBL])
        with self.client(pf, "127.0.0.1") as c:
            replies = transaction(c)
        self.assertEqual(replies[-1][0], 250, replies)
        queue_id = re.search(r"queued as (\w+)", " ".join(replies[-1][1])).group(1)
        self.assertEqual(len(pf.messages(1)), 1)
        pc.wait_for_log(r"event=transaction .*result=accepted .*queue_id=" + queue_id)

    def test_header_checks_reject_at_end_of_data(self):
        pc, pf = self.start_pair([HEADER_CHECKS])
        with self.client(pf) as c:
            replies = transaction(c, subject="cheap viagra")
        self.assertEqual([r[0] for r in replies], [220, 250, 250, 250, 354, 550], replies)
        self.assertIn("Message content rejected", " ".join(replies[-1][1]))
        pc.wait_for_log(r"event=reject .*stage=end_of_headers .*filter=header_checks")
        self.assertEqual(pf.messages(0), [])

    def test_added_header_is_in_the_delivered_message(self):
        pc, pf = self.start_pair([HEADER_CHECKS])
        with self.client(pf) as c:
            replies = transaction(c, subject="tag me")
        self.assertEqual(replies[-1][0], 250, replies)
        [msg] = pf.emails(1)
        self.assertEqual(msg["X-Checked"], "yes")

    def test_discard_drops_the_message(self):
        pc, pf = self.start_pair([HEADER_CHECKS])
        with self.client(pf) as c:
            replies = transaction(c, headers={"X-Spam-Flag": "YES"})
        self.assertEqual(replies[-1][0], 250, replies)  # the client is told it went
        pf.wait_for_log(r"milter-discard: END-OF-MESSAGE")
        self.assertEqual(pf.messages(0), [])
        pc.wait_for_log(r"event=discard .*filter=header_checks")

    def test_observe_mode_delivers(self):
        pc, pf = self.start_pair([{**DNSBL, "mode": "observe"}])
        with self.client(pf, "127.0.0.2") as c:
            replies = transaction(c)
        self.assertEqual(replies[-1][0], 250, replies)
        self.assertEqual(len(pf.messages(1)), 1)
        pc.wait_for_log(r"event=observe stage=connect filter=dnsbl verdict=reject")

    def test_sendmail_command_goes_through_non_smtpd_milters(self):
        pc, pf = self.start_pair([HEADER_CHECKS])
        msg = make_message("sender@mx.test", "user@test.local", subject="tag me")
        result = pf.sendmail(msg.replace(b"\r\n", b"\n"), "-f", "sender@mx.test",
                             "user@test.local")
        self.assertEqual(result.returncode, 0, result.stderr)
        [delivered] = pf.emails(1, timeout=20)
        self.assertEqual(delivered["X-Checked"], "yes")
        pc.wait_for_log(r"event=connect .*mode=milter")

    def test_portcullis_stopped_postfix_applies_milter_default_action(self):
        pc, pf = self.start_pair([DNSBL])
        pc.stop()
        with self.client(pf) as c:
            replies = transaction(c)
        # milter_default_action = tempfail: Postfix's own 451 4.7.1 for every command.
        self.assertEqual(replies[-1][0], 451, replies)
        self.assertIn("4.7.1", " ".join(replies[-1][1]))
        pf.wait_for_log(r"connect to Milter service inet:127\.0\.0\.1:\d+: Connection refused")
        self.assertEqual(pf.messages(0), [])

    def test_slow_filter_postfix_command_timeout_applies_default_action(self):
        slow = self.start(SlowDns(delay_ms=5000))
        port = free_port()
        pc = self.start(Portcullis(config={
            "listen": [], "dns": {"servers": [f"127.0.0.1:{slow.port}"], "timeout": "8s"},
            "filters": [{**DNSBL, "timeout": "10s"}],
            "milter": {"listen": f"inet:{port}@127.0.0.1", "timeout": "20s"}}))
        pf = self.start(Postfix(milter=f"inet:127.0.0.1:{port}",
                                milter_timeouts={"command": "1s"}))
        with self.client(pf) as c:
            replies = transaction(c)
        # Postfix gives up on the milter after milter_command_timeout and applies the default.
        self.assertEqual(replies[-1][0], 451, replies)
        pf.wait_for_log(r"milter inet:127\.0\.0\.1:\d+: can't read SMFIC_CONNECT reply packet "
                        r"header: Connection timed out")

    def test_slow_filter_our_deadline_tempfails_first(self):
        slow = self.start(SlowDns(delay_ms=5000))
        port = free_port()
        pc = self.start(Portcullis(config={
            "listen": [], "dns": {"servers": [f"127.0.0.1:{slow.port}"], "timeout": "8s"},
            "filters": [{**DNSBL, "timeout": "10s"}],
            "milter": {"listen": f"inet:{port}@127.0.0.1", "timeout": "1s"}}))
        pf = self.start(Postfix(milter=f"inet:127.0.0.1:{port}"))
        with self.client(pf) as c:
            replies = transaction(c)
        self.assertEqual(replies[-1][0], 451, replies)
        self.assertIn("4.3.0", " ".join(replies[-1][1]))  # our reply, not Postfix's default
        pc.wait_for_log(r"event=milter-tempfail stage=connect")

    def start_slow_sender_pair(self, shutdown):
        """A sender_domain chain on a DNS server that answers late (and logs each query), so
        that a MAIL FROM stays in flight for as long as the sender's name says (d<ms>)."""
        slow = self.start(SlowDns(delay_ms=100, extra_args=["--log-queries"]))
        port = free_port()
        pc = self.start(Portcullis(config={
            "listen": [], "dns": {"servers": [slow.address], "timeout": "8s"},
            "timeouts": {"shutdown": shutdown},
            "filters": [{"name": "sender_domain", "timeout": "20s"}],
            "milter": {"listen": f"inet:{port}@127.0.0.1", "timeout": "25s"}}))
        pf = self.start(Postfix(milter=f"inet:127.0.0.1:{port}"))
        return slow, pc, pf

    def mail_in_flight_then_sigterm(self, c, slow, pc, sender):
        self.assertEqual(c.read_reply()[0], 220)
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        c.send(f"MAIL FROM:<{sender}>\r\n")
        slow.wait_for_log(re.escape(sender.split("@")[1]))  # the mail stage is waiting on it
        pc.signal(signal.SIGTERM)

    def test_sigterm_lets_a_transaction_in_flight_finish_then_exits(self):
        """SIGTERM while the MAIL stage waits on DNS: the transaction goes on to delivery; a
        new SMTP client meanwhile is refused 421 (Postfix's milter connection is); the daemon
        exits 0 once the session is over, well before timeouts.shutdown."""
        slow, pc, pf = self.start_slow_sender_pair(shutdown="60s")
        with self.client(pf) as c:
            self.mail_in_flight_then_sigterm(c, slow, pc, "sender@d1500.slow.test")
            with self.client(pf) as late:  # while draining
                replies = [late.read_reply()]
                if replies[0][0] == 220:
                    replies.append(late.cmd("EHLO late.test"))
            # Postfix answers a milter's 421 at connect with its own 421 text, and hangs up.
            self.assertEqual(replies[-1][0], 421, replies)
            self.assertEqual(c.read_reply()[0], 250)  # the MAIL, once its lookups answered
            self.assertEqual(c.cmd("RCPT TO:<user@test.local>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(make_message("sender@d1500.slow.test", "user@test.local") + b".\r\n")
            self.assertEqual(c.read_reply()[0], 250)
            self.assertTrue(pc.alive())  # the session is still Postfix's
            c.cmd("QUIT")
        self.assertEqual(pc.wait_exit(timeout=20), 0)
        self.assertEqual(len(pf.messages(1)), 1)
        log = pc.log_text()
        self.assertRegex(log, r"event=milter-drain sessions=1")
        self.assertRegex(log, r"event=milter-refused code=421")
        self.assertRegex(log, r"event=transaction .*result=accepted .*mode=milter")
        self.assertRegex(log, r"event=milter-drained")
        self.assertNotRegex(log, r"event=milter-drain-deadline")

    def test_sigterm_deadline_tempfails_what_is_still_waiting(self):
        """A MAIL stage that outlasts timeouts.shutdown is answered 421 4.3.2 at the deadline
        (Postfix hangs up), nothing is queued, and the daemon exits 0."""
        slow, pc, pf = self.start_slow_sender_pair(shutdown="1s")
        with self.client(pf) as c:
            self.mail_in_flight_then_sigterm(c, slow, pc, "sender@d6000.slow.test")
            code, lines = c.read_reply()
            self.assertEqual(code, 421, lines)
            self.assertIn("4.3.2 Service shutting down", " ".join(lines))
        self.assertEqual(pc.wait_exit(timeout=20), 0)
        self.assertRegex(pc.log_text(), r"event=milter-drain-deadline sessions=1")
        self.assertEqual(pf.messages(0), [])

    def test_hostile_dnsbl_txt_reaches_the_client_as_one_clean_reply(self):
        """127.0.0.13's TXT (tests/fixtures/dns/zones.conf) has '%' format characters, CR LF
        with a 421 line after it, ESC, UTF-8 and a byte that is not UTF-8, and 589 octets.
        Through smfi_setreply and Postfix the client gets one single-line 554 with our enhanced
        code; the text is sanitised as on the proxy path (sanitizeText: no control characters,
        no '%', valid UTF-8 kept, the stray byte dropped, cut to whole characters); the session
        stays in step and the daemon keeps serving."""
        pc, pf = self.start_pair([DNSBL])
        with self.client(pf, "127.0.0.13") as c:
            replies = transaction(c)
            code, lines = replies[-1]
            self.assertEqual(code, 554, replies)
            self.assertEqual(len(lines), 1, lines)
            self.assertTrue(lines[0].startswith("5.7.1 Service unavailable; client [127.0.0.13] "
                                                "blocked using dnsbl.test; 100"), lines)
            self.assertNotRegex(lines[0], r"[\x00-\x1f\x7f]")
            self.assertNotIn("%", lines[0])
            self.assertNotIn("\ufffd", lines[0])  # the byte that is not UTF-8 is gone
            self.assertIn("caf\u00e9", lines[0])
            self.assertIn("421 4.3.2 bye", lines[0])  # the injected line is text in this one
            self.assertEqual(c.cmd("QUIT")[0], 221)  # no injected reply is left in the stream
        pc.wait_for_log(r"event=reject .*stage=connect .*filter=dnsbl")
        self.assertTrue(pc.alive())
        with self.client(pf, "127.0.0.1") as c:
            replies = transaction(c)
        self.assertEqual(replies[-1][0], 250, replies)
        self.assertEqual(len(pf.messages(1)), 1)

    def test_milter_tcp_connections_have_nagle_off(self):
        """The MTA's TCP connections to the milter have TCP_NODELAY (with Nagle, libmilter's
        back-to-back small writes waited for Postfix's delayed ACK: ~50 ms per message on one
        session, tests/bench/milter_bench.sh). Read on portcullis's own descriptor, borrowed
        with pidfd_getfd (root), while Postfix holds a session open."""
        pc, pf = self.start_pair([HEADER_CHECKS])
        milter_port = int(re.search(r"inet:(\d+)@", pc.config["milter"]["listen"]).group(1))
        with self.client(pf) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)  # the milter session is open
            out = subprocess.run(["ss", "-tnpH", "state", "established",
                                  f"( sport = :{milter_port} )"],
                                 capture_output=True, text=True, check=True).stdout
            fds = [int(fd) for pid, fd in re.findall(r"pid=(\d+),fd=(\d+)", out)
                   if int(pid) == pc.pid]
            self.assertEqual(len(fds), 1, out)
            libc = ctypes.CDLL(None, use_errno=True)
            pidfd = os.pidfd_open(pc.pid)
            try:
                fd = libc.syscall(438, pidfd, fds[0], 0)  # SYS_pidfd_getfd
                self.assertGreaterEqual(fd, 0, os.strerror(ctypes.get_errno()))
            finally:
                os.close(pidfd)
            with socket.socket(fileno=fd) as borrowed:
                self.assertEqual(borrowed.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
            c.cmd("QUIT")

    def test_signals_reach_the_daemon_not_libmilter(self):
        """libmilter's signal thread sigwait()s HUP/TERM/INT, which makes it a candidate for the
        daemon's signals; it must be parked instead, and only the loop's thread may take them."""
        pc, pf = self.start_pair([HEADER_CHECKS])
        task_dir = f"/proc/{pc.proc.proc.pid}/task"
        term_hup = (1 << (15 - 1)) | (1 << (1 - 1))
        waiting, unblocked = [], []
        for tid in os.listdir(task_dir):
            with open(f"{task_dir}/{tid}/wchan") as f:
                if "sigtimedwait" in f.read():
                    waiting.append(tid)
            with open(f"{task_dir}/{tid}/status") as f:
                blocked = int(re.search(r"^SigBlk:\s*([0-9a-f]+)", f.read(), re.M).group(1), 16)
            if blocked & term_hup != term_hup:
                unblocked.append(tid)
        self.assertEqual(waiting, [], "a thread sigwaits for the daemon's signals")
        self.assertEqual(unblocked, [str(pc.proc.proc.pid)], "only the loop's thread takes them")
        for _ in range(2):
            mark = len(pc.log_text())
            pc.signal()  # SIGHUP: the daemon's handler reloads, every time
            pc.wait_for_log(r"event=reload result=ok", since=mark)
        # The third reload changes a rule: the milter's next session uses it. milter.* itself is
        # set up once (libmilter), so a change there is logged as needing a restart.
        retagged = json.loads(json.dumps(HEADER_CHECKS))
        retagged["rules"][2]["header"] = "X-Checked: reloaded"
        pc.config = {**pc.config, "filters": [retagged],
                     "milter": {**pc.config["milter"], "timeout": "7s"}}
        with open(pc.config_path, "w") as f:
            f.write(json.dumps(pc.config, indent=2) + "\n")
        mark = len(pc.log_text())
        pc.signal()
        pc.wait_for_log(r"event=reload result=ok .*changed=\S*filters", since=mark)
        pc.wait_for_log(r"event=reload-needs-restart keys=milter", since=mark)
        with self.client(pf) as c:  # the milter still serves after the HUPs, with the new rule
            replies = transaction(c, subject="tag me")
        self.assertEqual(replies[-1][0], 250, replies)
        self.assertEqual(pf.emails(1)[0]["X-Checked"], "reloaded")


if __name__ == "__main__":
    unittest.main()
