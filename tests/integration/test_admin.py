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
- After real traffic through Postfix (messages relayed, a header_checks reject, an observe-mode
  would-have-rejected, three RCPTs over limits.max_recipients, an unknown verb, a session held
  open with a HELO name that is an HTML <script>, a STARTTLS handshake that completes and one
  that fails): the whole exposition passes promtool and the series that traffic must have
  moved did; a real Prometheus scrapes the endpoint on loopback and answers a query for one; headless Chromium renders /status (a PNG screenshot, and a DOM
  that shows 3 refusals at rcpt and the live session's client, its HELO as inert text); every
  PromQL expression of deploy/grafana/portcullis-dashboard.json names only series /metrics has.
"""

import http.client
import json
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HarnessTestCase, Portcullis, Postfix, RawClient, free_port,  # noqa: E402
                     make_certs, make_message, send_mail, wait_until)


def get(port, path, method="GET", with_headers=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        body = r.read().decode()
        return (r.status, body, dict(r.getheaders())) if with_headers else (r.status, body)
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
        # Read-only: any other method is 405 with an Allow header, not 501 "not implemented".
        for method in ("POST", "DELETE", "PUT", "OPTIONS", "PATCH"):
            status, body, headers = get(self.admin, "/metrics", method=method, with_headers=True)
            self.assertEqual(status, 405, method)
            self.assertEqual(headers.get("Allow"), "GET, HEAD", method)
            self.assertIn("read-only", body)
        self.assertEqual(get(self.admin, "/healthz", method="HEAD")[0], 200)
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


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(REPO, "deploy", "grafana", "portcullis-dashboard.json")
EVIL_HELO = "<script>document.title='owned'</script>"


def series_names(exposition):
    """The sample names of an exposition (histograms: with _bucket, _sum and _count)."""
    return {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            for line in exposition.splitlines() if line and not line.startswith("#")}


def sample(exposition, name, labels=""):
    """The value of one sample: `name` with exactly the label set `labels` ('a="1",b="2"')."""
    key = name + ("{" + labels + "}" if labels else "")
    for line in exposition.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {key}")


class TrafficTest(HarnessTestCase):
    """One daemon, one round of real traffic, then everything that reads what it counted."""

    @classmethod
    def setUpClass(cls):
        # Postfix and the traffic once for the class: the tests only read what it left.
        cls.tmp = tempfile.mkdtemp(prefix="portcullis-admin-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.pf = Postfix()
        cls.addClassCleanup(cls.pf.stop)
        cls.pf.start()
        cls.admin = free_port(udp=False)
        cls.certs = make_certs(directory=os.path.join(cls.tmp, "certs"))
        cls.pc = Portcullis(upstream=cls.pf, config={
            "admin": {"listen": f"127.0.0.1:{cls.admin}"},
            "tls": {"cert": cls.certs.cert, "key": cls.certs.key},
            "upstream": {"probe_interval": "1s"},
            "limits": {"max_recipients": 2},
            "filters": [
                {"name": "header_checks", "rules": [
                    {"match": "^Subject:.*viagra", "action": "reject",
                     "reply": "550 5.7.1 Message content rejected"}]},
                {"name": "header_checks", "mode": "observe", "rules": [
                    {"match": "^Subject:.*lottery", "action": "reject",
                     "reply": "550 5.7.1 Would be rejected"}]}]})
        cls.addClassCleanup(cls.pc.stop)
        cls.pc.start()
        cls.pc.wait_for_log(r"event=admin-listening address=127\.0\.0\.1:%d" % cls.admin)
        try:
            cls.traffic()
        except BaseException:
            print(f"\n----- portcullis log tail -----\n{cls.pc.log_text()[-4000:]}",
                  file=sys.stderr)
            raise

    @classmethod
    def traffic(cls):
        port = cls.pc.port
        # Two messages relayed; one of them to two recipients with three more refused at RCPT
        # (limits.max_recipients: 2; 452 4.5.3), one the observe-mode filter would have refused.
        send_mail("127.0.0.1", port, msg=make_message(subject="hello"))
        with RawClient("127.0.0.1", port) as c:
            assert c.read_reply()[0] == 220
            assert c.cmd("EHLO client.test")[0] == 250
            assert c.cmd("XYZZY")[0] == 500
            assert c.cmd("MAIL FROM:<a@client.test>")[0] == 250
            codes = [c.cmd(f"RCPT TO:<user{i}@test.local>")[0] for i in range(5)]
            assert codes == [250, 250, 452, 452, 452], codes
            assert c.cmd("DATA")[0] == 354
            c.send(make_message(subject="win the lottery") + b"\r\n.\r\n")
            assert c.read_reply()[0] == 250
            assert c.cmd("QUIT")[0] == 221
        try:
            send_mail("127.0.0.1", port, msg=make_message(subject="cheap viagra"))
            raise AssertionError("the viagra message was accepted")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 550, e
        # three deliveries: "hello", and "lottery" to its two recipients
        assert len(cls.pf.messages(3, timeout=30)) == 3
        # One STARTTLS handshake that completes, one that fails (the client sends no hello).
        with RawClient("127.0.0.1", port) as c:
            assert c.read_reply()[0] == 220
            assert c.cmd("EHLO client.test")[0] == 250
            assert c.cmd("STARTTLS")[0] == 220
            ctx = ssl.create_default_context(cafile=cls.certs.ca_cert)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
            assert c.cmd("EHLO client.test")[0] == 250
            assert c.cmd("QUIT")[0] == 221
        with RawClient("127.0.0.1", port) as c:
            assert c.read_reply()[0] == 220
            assert c.cmd("EHLO client.test")[0] == 250
            assert c.cmd("STARTTLS")[0] == 220
            c.send(b"this is not a TLS client hello\r\n" * 4)
        wait_until(lambda: "portcullis_tls_handshake_failures_total 1\n"
                   in get(cls.admin, "/metrics")[1], 10, what="the failed handshake counted")
        # Held open until the class ends: a live session whose HELO name is markup.
        cls.live = RawClient("127.0.0.1", port)
        cls.addClassCleanup(cls.live.close)
        assert cls.live.read_reply()[0] == 220
        assert cls.live.cmd("HELO " + EVIL_HELO)[0] == 250
        wait_until(lambda: "portcullis_sessions_active 1\n" in get(cls.admin, "/metrics")[1], 10,
                   what="only the held session open")

    def metrics(self):
        status, text = get(self.admin, "/metrics")
        self.assertEqual(status, 200)
        return text

    def test_the_full_exposition_passes_promtool_and_counts_the_traffic(self):
        text = self.metrics()
        check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                               capture_output=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertEqual(sample(text, "portcullis_messages_relayed_total"), 2)
        self.assertGreater(sample(text, "portcullis_relayed_bytes_total"), 200)
        self.assertEqual(sample(text, "portcullis_sessions_total", 'end="quit"'), 4)
        self.assertEqual(sample(text, "portcullis_tls_handshakes_total", 'version="TLSv1.3"'), 1)
        self.assertEqual(sample(text, "portcullis_tls_handshake_failures_total"), 1)
        self.assertEqual(sample(text, "portcullis_commands_total",
                                'verb="starttls",class="2xx"'), 2)
        self.assertEqual(sample(text, "portcullis_commands_total", 'verb="rcpt",class="4xx"'), 3)
        self.assertEqual(sample(text, "portcullis_commands_total", 'verb="rcpt",class="2xx"'), 4)
        self.assertEqual(sample(text, "portcullis_commands_total", 'verb="other",class="5xx"'), 1)
        self.assertEqual(sample(text, "portcullis_commands_total", 'verb="helo",class="2xx"'), 1)
        self.assertEqual(sample(text, "portcullis_commands_total",
                                'verb="end_of_data",class="5xx"'), 1)
        self.assertEqual(sample(text, "portcullis_commands_total", 'verb="connect",class="2xx"'), 6)
        self.assertEqual(sample(text, "portcullis_filter_verdicts_total",
                                'filter="header_checks",stage="end_of_headers",verdict="reject",'
                                'mode="enforce"'), 1)
        self.assertEqual(sample(text, "portcullis_filter_verdicts_total",
                                'filter="header_checks#2",stage="end_of_headers",'
                                'verdict="reject",mode="observe"'), 1)
        for h in ("portcullis_transaction_added_latency_seconds",
                  "portcullis_mta_reply_duration_seconds"):
            self.assertIn(f"# TYPE {h} histogram\n", text)
            self.assertEqual(sample(text, h + "_count"), 2)
            self.assertEqual(sample(text, h + "_bucket", 'le="+Inf"'), 2)
        self.assertGreater(sample(text, "portcullis_filter_duration_seconds_count",
                                  'filter="header_checks",stage="end_of_headers"'), 0)
        self.assertEqual(sample(text, "portcullis_upstream_failures_total", 'kind="connect"'), 0)
        self.assertEqual(sample(text, "portcullis_spool_bytes", 'where="memory"'), 0)
        self.assertIn("# TYPE portcullis_dns_queries_total counter\n", text)

    def test_a_real_prometheus_scrapes_the_endpoint(self):
        prom_port = free_port(udp=False)
        work = tempfile.mkdtemp(dir=self.tmp)
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    "scrape_configs:\n  - job_name: portcullis\n"
                    f"    static_configs: [{{targets: ['127.0.0.1:{self.admin}']}}]\n")
        log = open(os.path.join(work, "prometheus.log"), "w")
        self.addCleanup(log.close)
        prom = subprocess.Popen(
            ["/usr/bin/prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(work, 'data')}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (prom.terminate(), prom.wait(timeout=20)))

        def query():
            q = urllib.parse.quote('portcullis_commands_total{verb="rcpt",class="4xx"}')
            try:
                status, body = get(prom_port, f"/api/v1/query?query={q}")
            except OSError:
                return None
            if status != 200:
                return None
            result = json.loads(body)["data"]["result"]
            return result or None
        result = wait_until(query, 60, interval=0.5, what="Prometheus to have scraped a series")
        self.assertEqual(result[0]["metric"]["job"], "portcullis")
        self.assertEqual(float(result[0]["value"][1]), 3)
        status, body = get(prom_port, "/api/v1/targets")
        self.assertEqual(json.loads(body)["data"]["activeTargets"][0]["health"], "up")

    def test_status_page_in_headless_chromium(self):
        status, html = get(self.admin, "/status")
        self.assertEqual(status, 200)
        self.assertNotIn("<script", html)
        self.assertIn("&lt;script&gt;document.title=&#39;owned&#39;&lt;/script&gt;", html)
        url = f"http://127.0.0.1:{self.admin}/status"
        shot = os.path.join(self.tmp, "status.png")
        dom = chromium(self.tmp, "--dump-dom", url).stdout
        chromium(self.tmp, f"--screenshot={shot}", "--window-size=1000,900", url)
        with open(shot, "rb") as f:
            png = f.read()
        self.assertTrue(png.startswith(b"\x89PNG\r\n\x1a\n"), png[:16])
        self.assertGreater(len(png), 5000)
        # The numbers the traffic produced, as the browser built the page.
        self.assertRegex(dom, r'<tr data-stage="rcpt"><td>rcpt</td><td class="total">3</td>')
        self.assertRegex(dom, r'<tr data-stage="end_of_data"><td>end_of_data</td>'
                              r'<td class="total">1</td>')
        self.assertRegex(dom, r'<tr data-stage="mail"><td>mail</td><td class="total">0</td>')
        self.assertEqual(len(re.findall(r'<rect class="bar" data-stage="rcpt"', dom)), 1)
        self.assertIn('<span id="session-count">1</span>', dom)
        self.assertIn('<td class="client">127.0.0.1</td>', dom)
        # The HELO is text in a cell: no element was made of it, and no script ran.
        self.assertIn('<td class="helo">&lt;script&gt;document.title=\'owned\'&lt;/script&gt;'
                      '</td>', dom)
        self.assertNotIn("<script", dom)
        self.assertNotIn("<title>owned</title>", dom)
        self.assertIn("<title>portcullis status:", dom)

    def test_the_dashboard_names_only_series_the_endpoint_has(self):
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        self.assertGreaterEqual(len(exprs), 10)
        have = series_names(self.metrics())
        used = set()
        for e in exprs:
            names = set(re.findall(r"\bportcullis_[a-z0-9_]+", e))
            self.assertTrue(names, e)
            used |= names
        self.assertEqual(sorted(used - have), [], "names the dashboard uses and /metrics lacks")
        for family in ("portcullis_sessions_total", "portcullis_messages_relayed_total",
                       "portcullis_commands_total", "portcullis_filter_duration_seconds_bucket",
                       "portcullis_upstream_failures_total"):
            self.assertIn(family, used)


def chromium(tmp, *args):
    profile = tempfile.mkdtemp(dir=tmp, prefix="chromium-")
    r = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"chromium {args} exited {r.returncode}: {r.stderr[-2000:]}")
    return r


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
