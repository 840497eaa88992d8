#!/usr/bin/env python3
"""The admin endpoint (issue 13, part): admin.listen serves /metrics, /healthz and /readyz on the
daemon's own loop, in front of the real Postfix.

- /metrics is the Prometheus text format that `promtool check metrics` accepts, and counts what
  the test did: a header_checks reject shows as a verdict of that filter at end_of_headers, and
  the gauges show the open session and the MTA being up.
- /healthz is 200; /readyz is 200 once the MTA answered the probe, 503 after Postfix is gone
  and while draining.
- Anything but GET/HEAD on a known path, or an unknown path, is refused; the daemon keeps
  running. An admin address that is also a listener is a config error (exit 2).
"""

import http.client
import os
import re
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HarnessTestCase, Portcullis, Postfix, RawClient, free_port,  # noqa: E402
                     make_message, send_mail, wait_until)


def get(port, path, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


class AdminTest(HarnessTestCase):
    def setUp(self):
        self.pf = self.start(Postfix())
        self.admin = free_port(udp=False)
        self.pc = self.start(Portcullis(upstream=self.pf, config={
            "admin": {"listen": f"127.0.0.1:{self.admin}"},
            "upstream": {"probe_interval": "1s"},
            "filters": [{"name": "header_checks", "rules": [
                {"match": "^Subject:.*viagra", "action": "reject",
                 "reply": "550 5.7.1 Message content rejected"}]}]}))
        self.pc.wait_for_log(r"event=admin-listening address=127\.0\.0\.1:%d" % self.admin)

    def metrics(self):
        status, text = get(self.admin, "/metrics")
        self.assertEqual(status, 200)
        return text

    def test_metrics_pass_promtool_and_count_what_happened(self):
        send_mail("127.0.0.1", self.pc.port, msg=make_message(subject="hello"))
        with self.assertRaises(Exception):
            send_mail("127.0.0.1", self.pc.port, msg=make_message(subject="cheap viagra"))
        self.assertEqual(len(self.pf.messages(1, timeout=30)), 1)
        with RawClient("127.0.0.1", self.pc.port) as c:  # one session held open
            self.assertEqual(c.read_reply()[0], 220)
            wait_until(lambda: "portcullis_sessions_active 1\n" in self.metrics(), 10,
                       what="the open session in the gauge")
            text = self.metrics()
        check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                               capture_output=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertRegex(text, r'portcullis_filter_verdicts_total\{filter="header_checks",'
                               r'stage="end_of_headers",verdict="reject",mode="enforce"\} 1\n')
        self.assertIn("# TYPE portcullis_filter_duration_seconds histogram\n", text)
        self.assertIn("portcullis_upstream_up 1\n", text)
        self.assertIn("portcullis_draining 0\n", text)

    def test_health_and_readiness(self):
        self.assertEqual(get(self.admin, "/healthz"), (200, "ok\n"))
        wait_until(lambda: get(self.admin, "/readyz")[0] == 200, 15, what="/readyz 200")
        self.assertEqual(get(self.admin, "/readyz"), (200, "ready\n"))
        self.pf.stop()  # the MTA goes away: the next probe fails
        wait_until(lambda: get(self.admin, "/readyz")[0] == 503, 15, what="/readyz 503")
        self.assertEqual(get(self.admin, "/readyz"),
                         (503, "not ready: the MTA did not answer the last probe\n"))
        self.assertIn("portcullis_upstream_up 0\n", self.metrics())
        self.assertEqual(get(self.admin, "/healthz"), (200, "ok\n"))

    def test_draining_is_not_ready(self):
        with RawClient("127.0.0.1", self.pc.port) as c:  # keeps the drain from ending at once
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<a@client.test>")[0], 250)
            self.pc.signal(signal.SIGTERM)
            self.pc.wait_for_log(r"action=drain")
            self.assertEqual(get(self.admin, "/readyz"), (503, "not ready: draining\n"))

    def test_other_requests_are_refused_and_the_daemon_lives(self):
        self.assertEqual(get(self.admin, "/nothing")[0], 404)
        self.assertNotEqual(get(self.admin, "/metrics", method="POST")[0], 200)
        self.assertNotEqual(get(self.admin, "/metrics", method="DELETE")[0], 200)
        # An over-long request line and headers are cut off, not buffered.
        conn = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=10)
        conn.putrequest("GET", "/metrics")
        conn.putheader("X-Big", "x" * 20000)
        conn.endheaders()
        try:
            status = conn.getresponse().status
        except (ConnectionError, http.client.HTTPException):
            status = None
        finally:
            conn.close()
        self.assertNotEqual(status, 200)
        self.assertEqual(get(self.admin, "/healthz"), (200, "ok\n"))
        self.assertTrue(self.pc.alive())


class AdminConfigTest(HarnessTestCase):
    def test_admin_on_a_listener_socket_is_refused(self):
        port = free_port(udp=False)
        pc = self.start(Portcullis(config={"listen": [f"127.0.0.1:{port}"],
                                           "admin": {"listen": f"127.0.0.1:{port}"},
                                           "upstream": {"address": "127.0.0.1:1"}},
                                   args=("--check-config",), expect_exit=2, wait_ready=False))
        self.assertEqual(pc.wait_exit(), 2)
        self.assertRegex(pc.log_text(), r"config error: admin\.listen: .* is the same socket as "
                                        r"listen\[0\]")


if __name__ == "__main__":
    unittest.main()
