#!/usr/bin/env python3
"""STARTTLS, implicit TLS, upstream TLS, PROXY protocol in and out, client identity commands and
certificate reload (issue 4), with real clients and peers on loopback.

Clients: swaks, openssl s_client, Python smtplib/ssl and raw sockets. Peers: the harness
Postfix (plain, with STARTTLS, and its PROXY-protocol smtpd), FakeSmtp (records every byte,
injects bytes after its STARTTLS 220) and HAProxy (send-proxy / send-proxy-v2) in front of
portcullis. Certificates are generated per test by make_certs() in a temp dir.

Run: cd tests/integration && unshare -n bash -c 'ip link set lo up;
     PORTCULLIS_BIN=/work/main/build/portcullis python3 test_tls_proxy.py -v'
"""

import os
import queue
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (DEFAULT_CAPS, FakeSmtp, HAProxy, HarnessTestCase,  # noqa: E402
                     Portcullis, Postfix, RawClient, free_port, make_message, parse_kv)
from harness.process import require_program  # noqa: E402

SENDER = "sender@client.test"
RCPT = "user@test.local"


def lf(data):
    return data.replace(b"\r\n", b"\n")


def head(msg):
    """The header block of a delivered message (LF line ends), unfolded."""
    return re.sub(rb"\n[ \t]+", b" ", lf(msg).split(b"\n\n", 1)[0])


def no_verify_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_portcullis_config(certs, listen=None, **tls):
    cfg = {"tls": {"cert": certs.cert, "key": certs.key, **tls}}
    if listen is not None:
        cfg["listen"] = listen
    return cfg


def client_xclients(fake):
    """The XCLIENT lines the MTA got for clients; on a PROXY listener (it may carry IPv6 clients)
    portcullis also checks at start-up that the MTA takes an IPv6 address (RFC 3849's
    2001:db8::1), on a connection of its own."""
    return [l for l in fake.commands()
            if l.upper().startswith("XCLIENT") and "ADDR=IPV6:2001:db8::1 " not in l]


def raw_transaction(c, subject="raw", mail_from=SENDER, rcpt=RCPT):
    """MAIL, RCPT, DATA, message on an open (greeted, EHLO'd) RawClient; returns the codes."""
    codes = [c.cmd(f"MAIL FROM:<{mail_from}>")[0]]
    if codes[-1] != 250:
        return codes
    codes.append(c.cmd(f"RCPT TO:<{rcpt}>")[0])
    codes.append(c.cmd("DATA")[0])
    if codes[-1] != 354:
        return codes
    c.send(make_message(mail_from, rcpt, subject=subject) + b".\r\n")
    codes.append(c.read_reply(timeout=30)[0])
    return codes


def starttls(c, context=None, server_hostname=None):
    """Replace a RawClient's socket with a TLS one (handshake done); the buffer must be empty."""
    assert c.buf == b"", f"plaintext left over before the handshake: {c.buf!r}"
    ctx = context or no_verify_context()
    c.sock = ctx.wrap_socket(c.sock, server_hostname=server_hostname)
    return c.sock


class LineProcess:
    """A child (openssl s_client) driven through stdin, its stdout read line by line."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.out = []
        self.err = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.out.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _read_err(self):
        self.err = self.proc.stderr.read()

    def send(self, text):
        self.proc.stdin.write(text.encode() if isinstance(text, str) else text)
        self.proc.stdin.flush()

    def reply(self, timeout=15.0):
        """One SMTP reply: (code, [lines])."""
        deadline = time.monotonic() + timeout
        lines = []
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no reply from s_client; stdout={b''.join(self.out)!r} "
                                     f"stderr={self.err!r}") from None
            if line is None:
                raise AssertionError(f"s_client exited; stdout={b''.join(self.out)!r} "
                                     f"stderr={self.err!r}")
            m = re.match(rb"^(\d{3})([ -])(.*?)\r?\n$", line)
            if not m:
                continue  # s_client's own chatter (verify errors etc.)
            lines.append(m.group(3).decode())
            if m.group(2) == b" ":
                return int(m.group(1)), lines

    def cmd(self, line, timeout=15.0):
        self.send(line + "\n")  # -crlf turns LF into CRLF
        return self.reply(timeout)

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass


# ---------------------------------------------------------------------------------------------
# TLS from clients to portcullis, Postfix behind it
# ---------------------------------------------------------------------------------------------

class ClientTlsTest(HarnessTestCase):
    def setUp(self):
        self.certs = self.make_certs()
        self.pf = self.start(Postfix())

    def test_swaks_starttls_delivered_with_esmtps_received_header(self):
        swaks = require_program("swaks")
        pc = self.start(Portcullis(upstream=self.pf, config=tls_portcullis_config(self.certs)))
        r = subprocess.run(
            [swaks, "--server", "127.0.0.1", "--port", str(pc.port), "--tls",
             "--local-interface", "127.0.0.46", "--helo", "swaks.client.test",
             "--from", SENDER, "--to", RCPT, "--header", "Subject: swaks over starttls",
             "--timeout", "30"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("<-  220 2.0.0 Ready to start TLS", r.stdout)
        self.assertRegex(r.stdout, r"=== TLS started with cipher TLSv1\.[23]")
        self.assertRegex(r.stdout, r"<~  250 2\.0\.0 Ok: (\d+ bytes )?queued as")
        [msg] = self.pf.messages(1, timeout=15)
        # Postfix saw the real client through XCLIENT, not portcullis's 127.0.0.1.
        self.pf.wait_for_log(r"client=\S*\[127\.0\.0\.46\]")
        hdr = head(msg)
        self.assertRegex(hdr, rb"Received: from swaks\.client\.test \(\S+ \[127\.0\.0\.46\]\) by "
                              rb"\S+ \(portcullis\) with ESMTPS \(version=TLSv1\.[23] cipher=\S+ "
                              rb"bits=\d+\)")
        self.assertIn(b"Subject: swaks over starttls", hdr)
        [s] = pc.wait_for_sessions(1)
        self.assertRegex(s["tls"], r"^TLSv1\.[23]$")
        self.assertTrue(s.get("tls_cipher"), s)
        self.assertIn("STARTTLS:220", s["commands"])

    def test_openssl_s_client_starttls_sends_a_message(self):
        openssl = require_program("openssl")
        pc = self.start(Portcullis(upstream=self.pf, config=tls_portcullis_config(self.certs)))
        p = LineProcess([openssl, "s_client", "-starttls", "smtp", "-connect",
                         f"127.0.0.1:{pc.port}", "-quiet", "-crlf", "-CAfile",
                         self.certs.ca_cert, "-verify_return_error", "-verify_hostname",
                         "localhost"])
        self.addCleanup(p.close)
        # s_client did greeting, EHLO and STARTTLS itself; after the handshake: a fresh EHLO.
        code, lines = p.cmd("EHLO sclient.test")
        self.assertEqual(code, 250)
        self.assertNotIn("STARTTLS", lines)
        self.assertEqual(p.cmd(f"MAIL FROM:<{SENDER}>")[0], 250)
        self.assertEqual(p.cmd(f"RCPT TO:<{RCPT}>")[0], 250)
        self.assertEqual(p.cmd("DATA")[0], 354)
        p.send(lf(make_message(subject="via s_client")).decode() + ".\n")
        code, lines = p.reply(30)
        self.assertEqual(code, 250, lines)
        self.assertEqual(p.cmd("QUIT")[0], 221)
        [msg] = self.pf.messages(1, timeout=15)
        self.assertIn(b"Subject: via s_client", msg)
        self.assertRegex(head(msg), rb"Received: from sclient\.test .* \(portcullis\) with ESMTPS "
                                    rb"\(version=TLSv1\.[23] ")

    def test_smtplib_starttls_sends_a_message_and_logs_tls(self):
        pc = self.start(Portcullis(upstream=self.pf, config=tls_portcullis_config(self.certs)))
        with smtplib.SMTP("127.0.0.1", pc.port, local_hostname="py.client.test", timeout=30,
                          source_address=("127.0.0.47", 0)) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("starttls"))
            code, text = s.starttls(context=self.certs.client_context())
            self.assertEqual((code, text), (220, b"2.0.0 Ready to start TLS"))
            self.assertEqual(s.sock.version(), "TLSv1.3")  # min 1.2; both ends can do 1.3
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            self.assertEqual(s.sendmail(SENDER, [RCPT], make_message(subject="smtplib tls")), {})
        [msg] = self.pf.messages(1, timeout=15)
        self.assertRegex(head(msg), rb"Received: from py\.client\.test \(\S+ \[127\.0\.0\.47\]\) "
                                    rb"by \S+ \(portcullis\) with ESMTPS \(version=TLSv1\.3 ")
        self.pf.wait_for_log(r"client=\S*\[127\.0\.0\.47\]")
        [s] = pc.wait_for_sessions(1)
        self.assertEqual(s["tls"], "TLSv1.3")
        self.assertRegex(s["tls_cipher"], r"^TLS_")
        self.assertTrue(s["client"].startswith("unknown[127.0.0.47]"), s)
        tls = [parse_kv(l) for l in pc.log_lines(r"event=tls ")]
        self.assertEqual(len(tls), 1, tls)
        self.assertEqual(tls[0]["protocol"], "TLSv1.3")
        self.assertEqual(tls[0]["resumed"], "no")
        self.assertTrue(tls[0]["cipher"])

    def test_no_received_header_when_disabled(self):
        pc = self.start(Portcullis(upstream=self.pf, config=tls_portcullis_config(
            self.certs, received_header=False)))
        with smtplib.SMTP("127.0.0.1", pc.port, local_hostname="py.client.test",
                          timeout=30) as s:
            s.starttls(context=self.certs.client_context())
            s.sendmail(SENDER, [RCPT], make_message(subject="no trace header"))
        [msg] = self.pf.messages(1, timeout=15)
        self.assertNotIn(b"(portcullis) with ESMTPS", lf(msg))

    def test_no_received_header_without_tls(self):
        pc = self.start(Portcullis(upstream=self.pf, config=tls_portcullis_config(self.certs)))
        with smtplib.SMTP("127.0.0.1", pc.port, local_hostname="py.client.test",
                          timeout=30) as s:
            s.sendmail(SENDER, [RCPT], make_message(subject="plain"))
        [msg] = self.pf.messages(1, timeout=15)
        self.assertNotIn(b"(portcullis)", lf(msg))
        [s] = pc.wait_for_sessions(1)
        self.assertEqual(s["tls"], "no")

    def test_implicit_tls_openssl_reads_greeting_after_handshake(self):
        openssl = require_program("openssl")
        port = free_port()
        pc = self.start(Portcullis(upstream=self.pf, config=tls_portcullis_config(
            self.certs, listen=[{"address": f"127.0.0.1:{port}", "tls": "implicit"}])))
        p = LineProcess([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-quiet",
                         "-crlf", "-CAfile", self.certs.ca_cert, "-verify_return_error"])
        self.addCleanup(p.close)
        code, lines = p.reply()
        self.assertEqual(code, 220, lines)
        code, lines = p.cmd("EHLO implicit.test")
        self.assertEqual(code, 250)
        self.assertNotIn("STARTTLS", lines)  # already TLS
        self.assertEqual(p.cmd("STARTTLS")[0], 503)
        self.assertEqual(p.cmd("QUIT")[0], 221)
        [s] = pc.wait_for_sessions(1)
        self.assertRegex(s["tls"], r"^TLSv1\.[23]$")

    def test_implicit_tls_plaintext_client_gets_no_greeting(self):
        port = free_port()
        pc = self.start(Portcullis(upstream=self.pf, config=tls_portcullis_config(
            self.certs, listen=[{"address": f"127.0.0.1:{port}", "tls": "implicit"}])))
        with RawClient("127.0.0.1", port) as c:
            self.assertEqual(c.pending(0.5), b"", "plaintext before the handshake")
            c.send(b"EHLO plain.test\r\n")
            self.assertNotIn(b"250", c.pending(1.0))
        pc.wait_for_log(r"event=tls-handshake-failed|event=session")

    def test_implicit_tls_smtplib_ssl_sends_a_message(self):
        port = free_port()
        pc = self.start(Portcullis(upstream=self.pf, config=tls_portcullis_config(
            self.certs, listen=[{"address": f"127.0.0.1:{port}", "tls": "implicit"}])))
        with smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="ssl.client.test", timeout=30,
                              context=self.certs.client_context(),
                              source_address=("127.0.0.48", 0)) as s:
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            self.assertEqual(s.sendmail(SENDER, [RCPT], make_message(subject="smtps")), {})
        [msg] = self.pf.messages(1, timeout=15)
        self.assertRegex(head(msg), rb"Received: from ssl\.client\.test \(\S+ \[127\.0\.0\.48\]\) "
                                    rb"by \S+ \(portcullis\) with ESMTPS \(version=TLSv1\.[23] ")
        self.pf.wait_for_log(r"client=\S*\[127\.0\.0\.48\]")
        [s] = pc.wait_for_sessions(1)
        self.assertRegex(s["tls"], r"^TLSv1\.[23]$")
        self.assertNotIn("STARTTLS", s["commands"])

    def test_implicit_tls_session_resumption(self):
        port = free_port()
        pc = self.start(Portcullis(upstream=self.pf, config=tls_portcullis_config(
            self.certs, listen=[{"address": f"127.0.0.1:{port}", "tls": "implicit"}])))
        ctx = self.certs.client_context()
        session = None
        reused = []
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                    self.assertTrue(s.recv(1024).startswith(b"220"))  # also reads the tickets
                    s.sendall(b"QUIT\r\n")
                    s.recv(1024)
                    reused.append(s.session_reused)
                    session = s.session
        self.assertEqual(reused, [False, True, True])
        pc.wait_for_sessions(3)
        self.assertEqual([parse_kv(l)["resumed"] for l in pc.log_lines(r"event=tls ")],
                         ["no", "yes", "yes"])

    def test_tls_require_refuses_mail_before_starttls(self):
        pc = self.start(Portcullis(upstream=self.pf, config=tls_portcullis_config(
            self.certs, require=True)))
        with RawClient("127.0.0.1", pc.port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            code, lines = c.cmd("EHLO require.test")
            self.assertEqual(code, 250)
            self.assertIn("STARTTLS", lines)
            code, lines = c.cmd(f"MAIL FROM:<{SENDER}>")
            self.assertEqual(code, 530, lines)
            self.assertTrue(lines[0].startswith("5.7.0"), lines)
            self.assertEqual(c.cmd("STARTTLS")[0], 220)
            starttls(c, self.certs.client_context(), "localhost")
            self.assertEqual(c.cmd("EHLO require.test")[0], 250)
            self.assertEqual(raw_transaction(c, subject="required tls"), [250, 250, 354, 250])
            self.assertEqual(c.cmd("QUIT")[0], 221)
        [msg] = self.pf.messages(1, timeout=15)
        self.assertIn(b"Subject: required tls", msg)
        [s] = pc.wait_for_sessions(1)
        self.assertIn("MAIL:530", s["commands"])


# ---------------------------------------------------------------------------------------------
# STARTTLS command injection and client identity commands (FakeSmtp records what it got)
# ---------------------------------------------------------------------------------------------

class ClientInjectionTest(HarnessTestCase):
    def setUp(self):
        self.certs = self.make_certs()
        self.fake = self.start(FakeSmtp())

    def portcullis(self, **tls):
        cfg = tls_portcullis_config(self.certs, **tls)
        cfg["upstream"] = {"pool_size": 0}  # every session on its own MTA connection
        return self.start(Portcullis(upstream=self.fake, config=cfg))

    def test_command_pipelined_after_starttls_is_discarded(self):
        pc = self.portcullis()
        with RawClient("127.0.0.1", pc.port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO x")[0], 250)
            c.send(b"STARTTLS\r\nRSET\r\n")  # one send: RSET must not run, in clear or in TLS
            code, lines = c.read_reply()
            self.assertEqual((code, lines), (220, ["2.0.0 Ready to start TLS"]))
            self.assertEqual(c.pending(0.5), b"", "plaintext reply after the 220 (RSET ran)")
            starttls(c, self.certs.client_context(), "localhost")
            self.assertEqual(c.pending(0.5), b"", "a reply was waiting after the handshake")
            code, lines = c.cmd("NOOP")
            self.assertEqual(code, 250)
            self.assertEqual(c.pending(0.5), b"", "more than one reply to NOOP")
            code, lines = c.cmd("MAIL FROM:<a@b>")  # EHLO state forgotten after TLS
            self.assertEqual(code, 503, lines)
            self.assertTrue(lines[0].startswith("5.5.1"), lines)
            code, lines = c.cmd("EHLO x")
            self.assertEqual(code, 250)
            self.assertNotIn("STARTTLS", lines)
            code, lines = c.cmd("STARTTLS")
            self.assertEqual(code, 503, lines)
            self.assertTrue(lines[0].startswith("5.5.1"), lines)
            self.assertEqual(raw_transaction(c, subject="after injection"), [250, 250, 354, 250])
            self.assertEqual(c.cmd("QUIT")[0], 221)
        [s] = pc.wait_for_sessions(1)
        self.assertEqual(s["commands"].split(",")[:8],
                         ["CONNECT:220", "EHLO:250", "STARTTLS:220", "NOOP:250", "MAIL:503",
                          "EHLO:250", "STARTTLS:503", "MAIL:250"])
        self.assertNotIn("RSET", s["commands"])
        self.fake.wait_closed()
        for session in self.fake.sessions():
            self.assertNotIn(b"RSET", session.upper())
        self.assertEqual(len(self.fake.bodies()), 1)

    def test_starttls_pipelined_in_one_segment_with_ehlo(self):
        pc = self.portcullis()
        with RawClient("127.0.0.1", pc.port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            c.send(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n")
            self.assertEqual(c.read_reply()[0], 250)
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.pending(0.5), b"")
            starttls(c, self.certs.client_context(), "localhost")
            self.assertEqual(c.pending(0.5), b"")
            self.assertEqual(c.cmd("QUIT")[0], 221)
        [s] = pc.wait_for_sessions(1)
        self.assertNotIn("MAIL", s["commands"])
        self.assertFalse([l for l in self.fake.commands() if "evil" in l])

    def test_starttls_without_tls_configured_is_502(self):
        pc = self.start(Portcullis(upstream=self.fake))
        with RawClient("127.0.0.1", pc.port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            code, lines = c.cmd("EHLO x")
            self.assertNotIn("STARTTLS", lines)
            code, lines = c.cmd("STARTTLS")
            self.assertEqual(code, 502, lines)
            self.assertTrue(lines[0].startswith("5.5.1"), lines)
            self.assertEqual(c.cmd("NOOP")[0], 250)  # still plaintext, still usable

    def test_client_xclient_and_xforward_are_refused_never_forwarded(self):
        pc = self.portcullis()
        with RawClient("127.0.0.1", pc.port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            code, lines = c.cmd("EHLO x")
            self.assertFalse([l for l in lines if l.upper().startswith(("XCLIENT", "XFORWARD"))],
                             lines)
            for line in ("XCLIENT ADDR=198.51.100.9 NAME=spoofed.example",
                         "XFORWARD ADDR=198.51.100.9 NAME=spoofed.example"):
                code, lines = c.cmd(line)
                self.assertEqual(code, 502, (line, lines))
                self.assertTrue(lines[0].startswith("5.5.1"), lines)
            # Same inside a transaction, and pipelined after MAIL.
            c.send(f"MAIL FROM:<{SENDER}>\r\nXCLIENT ADDR=198.51.100.9\r\n"
                   f"RCPT TO:<{RCPT}>\r\n".encode())
            self.assertEqual([r[0] for r in c.read_replies(3)], [250, 502, 250])
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(make_message(subject="identity") + b".\r\n")
            self.assertEqual(c.read_reply()[0], 250)
            self.assertEqual(c.cmd("QUIT")[0], 221)
        self.fake.wait_closed()
        seen = b"".join(self.fake.sessions())
        self.assertNotIn(b"198.51.100.9", seen)
        self.assertNotIn(b"spoofed", seen)
        self.assertNotIn(b"XFORWARD", seen.upper())
        # portcullis's own XCLIENT carries the real client.
        xclients = [l for l in self.fake.commands() if l.upper().startswith("XCLIENT")]
        self.assertTrue(xclients)
        self.assertTrue(all("ADDR=127.0.0.1" in l for l in xclients), xclients)


# ---------------------------------------------------------------------------------------------
# STARTTLS from portcullis to the MTA
# ---------------------------------------------------------------------------------------------

class UpstreamTlsTest(HarnessTestCase):
    def setUp(self):
        self.certs = self.make_certs()

    def _upstream_injection(self, one_segment):
        if one_segment:  # the 220 and the injected reply in one send, so in one read
            kwargs = {"replies": {"STARTTLS": b"220 2.0.0 Ready to start TLS\r\n250 injected\r\n"}}
        else:  # sent right after the 220: in the same read or arriving as a bad TLS record
            kwargs = {"after_starttls": b"250 injected\r\n"}
        fake = self.start(FakeSmtp(ehlo_caps=DEFAULT_CAPS + ["STARTTLS"],
                                   tls_context=self.certs.server_context(), **kwargs))
        pc = self.start(Portcullis(upstream=fake, config={
            "upstream": {"tls": "opportunistic", "pool_size": 0}}))
        outcomes = []
        for i in range(3):
            with RawClient("127.0.0.1", pc.port) as c:
                self.assertEqual(c.read_reply()[0], 220)
                self.assertEqual(c.cmd("EHLO client.test")[0], 250)
                codes = raw_transaction(c, subject=f"upstream tls {i}")
                c.cmd("QUIT")
                transcript = b"".join(d for who, d in c.transcript if who == "S")
            self.assertNotIn(b"injected", transcript.lower(), c.format_transcript())
            if codes[0] == 250:
                self.assertEqual(codes, [250, 250, 354, 250], c.format_transcript())
            else:
                self.assertEqual(codes[0] // 100, 4, c.format_transcript())
                self.assertFalse(one_segment, "the 220's own read was not simply discarded: "
                                 + c.format_transcript() + "\n" + pc.log_text()[-1500:])
            outcomes.append(codes)
        pc.wait_for_sessions(3)
        fake.wait_closed()
        for s in fake.session_objects():
            cmds = [l.split(" ", 1)[0].upper() for l in s.commands]
            if "MAIL" in cmds:
                self.assertTrue(s.tls, cmds)
                self.assertIn("STARTTLS", cmds)
                self.assertLess(cmds.index("STARTTLS"), cmds.index("MAIL"), cmds)
                # EHLO again after TLS, then XCLIENT, then EHLO.
                after = cmds[cmds.index("STARTTLS") + 1:]
                self.assertEqual(after[:3], ["EHLO", "XCLIENT", "EHLO"], cmds)
        return outcomes

    def test_upstream_reply_injected_after_starttls_220_never_reaches_client(self):
        outcomes = self._upstream_injection(one_segment=False)
        print(f"\n  upstream injection (separate send) outcomes: {outcomes}", file=sys.stderr)

    def test_upstream_reply_injected_in_starttls_220_read_is_discarded(self):
        outcomes = self._upstream_injection(one_segment=True)
        print(f"\n  upstream injection (same send) outcomes: {outcomes}", file=sys.stderr)

    def test_upstream_opportunistic_tls_to_fake_mta(self):
        fake = self.start(FakeSmtp(ehlo_caps=DEFAULT_CAPS + ["STARTTLS"],
                                   tls_context=self.certs.server_context()))
        pc = self.start(Portcullis(upstream=fake, config={
            "upstream": {"tls": "opportunistic", "pool_size": 0}}))
        with RawClient("127.0.0.1", pc.port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
            self.assertEqual(raw_transaction(c, subject="fake tls"), [250, 250, 354, 250],
                             c.format_transcript())
            self.assertEqual(c.cmd("QUIT")[0], 221)
        fake.wait_closed()
        [s] = [s for s in fake.session_objects() if any(l.upper().startswith("MAIL")
                                                        for l in s.commands)]
        self.assertTrue(s.tls)
        cmds = [l.split(" ", 1)[0].upper() for l in s.commands]
        self.assertEqual(cmds[:6], ["EHLO", "STARTTLS", "EHLO", "XCLIENT", "EHLO", "MAIL"], cmds)
        self.assertEqual(len(fake.bodies()), 1)

    # Regression: this used to crash (a failure while reading the MTA's reply freed the input
    # buffer the read loop was still using).
    def test_upstream_tls_require_without_starttls_offer_is_451(self):
        fake = self.start(FakeSmtp())  # DEFAULT_CAPS: no STARTTLS
        pc = self.start(Portcullis(upstream=fake, keep_on_failure=False, config={
            "upstream": {"tls": "require", "pool_size": 0}}))
        try:
            with RawClient("127.0.0.1", pc.port) as c:
                self.assertEqual(c.read_reply()[0], 220)
                self.assertEqual(c.cmd("EHLO client.test")[0], 250)
                code, lines = c.cmd(f"MAIL FROM:<{SENDER}>")
                self.assertEqual(code, 451, lines)
                self.assertEqual(c.cmd("QUIT")[0], 221)
        finally:
            pc.stop()  # inside the test: a crash fails this test (and the expectedFailure)
        fake.wait_closed()
        cmds = [l.split(" ", 1)[0].upper() for l in fake.commands()]
        self.assertNotIn("MAIL", cmds)
        self.assertNotIn("XCLIENT", cmds)  # no identity sent in clear either

    def test_upstream_tls_require_to_postfix_with_starttls_delivers(self):
        pf = self.start(Postfix(tls_certs=self.certs))
        pc = self.start(Portcullis(upstream=pf, config={"upstream": {"tls": "require"}}))
        with smtplib.SMTP("127.0.0.1", pc.port, local_hostname="client49.test", timeout=30,
                          source_address=("127.0.0.49", 0)) as s:
            self.assertEqual(s.sendmail(SENDER, [RCPT], make_message(subject="tls upstream")),
                             {})
        [msg] = pf.messages(1, timeout=15)
        self.assertIn(b"Subject: tls upstream", msg)
        pf.wait_for_log(r"Anonymous TLS connection established from \S*\[127\.0\.0\.1\]")
        pf.wait_for_log(r"client=\S*\[127\.0\.0\.49\]")  # XCLIENT, inside TLS
        # Postfix's own Received line records that it got the message over TLS.
        self.assertRegex(head(msg), rb"by upstream\.test\.local \(Postfix\) with ESMTPS ")
        # The client did not use TLS, so portcullis adds no ESMTPS trace header.
        self.assertNotIn(b"(portcullis)", lf(msg))

    def test_upstream_tls_opportunistic_to_postfix_without_starttls_delivers_in_clear(self):
        pf = self.start(Postfix())
        pc = self.start(Portcullis(upstream=pf, config={"upstream": {"tls": "opportunistic"}}))
        with smtplib.SMTP("127.0.0.1", pc.port, local_hostname="client.test", timeout=30) as s:
            self.assertEqual(s.sendmail(SENDER, [RCPT], make_message(subject="clear")), {})
        [msg] = pf.messages(1, timeout=15)
        self.assertNotIn(b"using TLS", lf(msg))


# ---------------------------------------------------------------------------------------------
# PROXY protocol in (HAProxy in front) and out (identity to Postfix)
# ---------------------------------------------------------------------------------------------

class ProxyProtocolTest(HarnessTestCase):
    def proxied_portcullis(self, mta, trusted=("127.0.0.1/32",), **extra):
        port = free_port()
        cfg = {"listen": [{"address": f"127.0.0.1:{port}", "proxy_protocol": True}],
               "trusted_proxies": list(trusted)}
        cfg.update(extra)
        return self.start(Portcullis(upstream=mta, config=cfg))

    def _haproxy_to_postfix(self, version):
        pf = self.start(Postfix())
        pc = self.proxied_portcullis(pf)
        hap = self.start(HAProxy(backend=pc, send_proxy=version))
        with smtplib.SMTP("127.0.0.1", hap.port, local_hostname="behind-haproxy.test",
                          timeout=30, source_address=("127.0.0.44", 0)) as s:
            self.assertEqual(s.sendmail(SENDER, [RCPT],
                                        make_message(subject=f"haproxy {version}")), {})
        [msg] = pf.messages(1, timeout=15)
        pf.wait_for_log(r"client=\S*\[127\.0\.0\.44\]")
        self.assertIn(b"(unknown [127.0.0.44])", lf(msg))  # Postfix's Received: line
        [s] = pc.wait_for_sessions(1)
        self.assertTrue(s["client"].startswith("unknown[127.0.0.44]:"), s)
        [hdr] = [parse_kv(l) for l in pc.log_lines(r"event=proxy-header ")]
        self.assertEqual(hdr["version"], version[1])
        self.assertTrue(hdr["client"].startswith("127.0.0.44:"), hdr)

    def test_haproxy_send_proxy_v2_real_client_reaches_postfix(self):
        self._haproxy_to_postfix("v2")

    def test_haproxy_send_proxy_v1_real_client_reaches_postfix(self):
        self._haproxy_to_postfix("v1")

    def test_proxy_header_from_untrusted_source_is_closed(self):
        pc = self.proxied_portcullis(None, trusted=("127.0.0.2/32",))
        with RawClient("127.0.0.1", pc.port) as c:
            try:
                c.send(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n")
            except OSError:
                pass  # already closed: fine
            c.expect_closed()
        pc.wait_for_log(r"event=proxy-refused source=127\.0\.0\.1")
        self.assertFalse(pc.log_lines(r"event=proxy-header "))
        self.assertNotIn("203.0.113.9", pc.log_text())

    def test_malformed_proxy_header_from_trusted_source_is_closed(self):
        pc = self.proxied_portcullis(None, trusted=("127.0.0.0/8",))
        bad = [b"PROXY TCP4 1.2.3.4\r\n",
               b"\x00\x01\x02garbage\xff\xfe\r\n",
               b"EHLO client.test\r\n",  # a client that skipped the header
               b"PROXY TCP4 999.2.3.4 127.0.0.1 40000 25\r\n",
               # v2 signature, TCP4 with a 4-byte address block (needs 12)
               b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04" + b"\x7f\x00\x00\x01",
               # v2 signature, version 3
               b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + b"\x7f\x00\x00\x01" * 3]
        for data in bad:
            mark = pc.log_mark()
            with RawClient("127.0.0.1", pc.port) as c:
                c.send(data)
                try:
                    c.expect_closed()
                except AssertionError as exc:
                    raise AssertionError(f"{data!r}: {exc}") from None
            pc.wait_for_log(r"event=proxy-header-error", since=mark)
        self.assertFalse(pc.log_lines(r"event=proxy-header "))

    def test_no_proxy_header_in_time_is_closed(self):
        if os.environ.get("PORTCULLIS_FAST_TESTS") == "1":
            self.skipTest("waits 10 s")
        pc = self.proxied_portcullis(None, trusted=("127.0.0.0/8",))
        with RawClient("127.0.0.1", pc.port) as c:
            self.assertEqual(c.pending(1.0), b"")  # no greeting while waiting for the header
            c.expect_closed(timeout=20)
        [s] = pc.wait_for_sessions(1)

    def test_proxy_v1_unknown_keeps_connection_address(self):
        fake = self.start(FakeSmtp())
        pc = self.proxied_portcullis(fake, trusted=("127.0.0.0/8",),
                                     upstream={"pool_size": 0})
        with RawClient("127.0.0.1", pc.port, source_address=("127.0.0.51", 0)) as c:
            c.send(b"PROXY UNKNOWN\r\n")
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO x")[0], 250)
            self.assertEqual(raw_transaction(c), [250, 250, 354, 250])
            self.assertEqual(c.cmd("QUIT")[0], 221)
        [s] = pc.wait_for_sessions(1)
        self.assertTrue(s["client"].startswith("unknown[127.0.0.51]"), s)
        xclients = client_xclients(fake)
        self.assertTrue(xclients and all("ADDR=127.0.0.51" in l for l in xclients), xclients)

    def test_proxy_v1_header_and_smtp_in_one_segment(self):
        fake = self.start(FakeSmtp())
        pc = self.proxied_portcullis(fake, trusted=("127.0.0.0/8",),
                                     upstream={"pool_size": 0})
        with RawClient("127.0.0.1", pc.port) as c:
            # A client that talks before the greeting is a pregreet; the header itself is not.
            c.send(b"PROXY TCP4 192.0.2.77 127.0.0.1 41000 25\r\n")
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO x")[0], 250)
            self.assertEqual(raw_transaction(c), [250, 250, 354, 250])
            self.assertEqual(c.cmd("QUIT")[0], 221)
        [s] = pc.wait_for_sessions(1)
        self.assertTrue(s["client"].startswith("unknown[192.0.2.77]:41000"), s)
        xclients = client_xclients(fake)
        self.assertTrue(xclients and all("ADDR=192.0.2.77" in l for l in xclients), xclients)

    def _identity_to_postfix(self, identity):
        pf = self.start(Postfix())
        pc = self.start(Portcullis(config={"upstream": {
            "address": f"127.0.0.1:{pf.proxy_port}", "identity": identity}}))
        with smtplib.SMTP("127.0.0.1", pc.port, local_hostname="client45.test", timeout=30,
                          source_address=("127.0.0.45", 0)) as s:
            self.assertEqual(s.sendmail(SENDER, [RCPT],
                                        make_message(subject=f"identity {identity}")), {})
        [msg] = pf.messages(1, timeout=15)
        pf.wait_for_log(r"postfix/proxy/smtpd\[\d+\]: connect from \S*\[127\.0\.0\.45\]")
        pf.wait_for_log(r"client=\S*\[127\.0\.0\.45\]")
        self.assertIn(b"[127.0.0.45]", lf(msg))
        self.assertNotIn("proxy protocol", pf.log_text().lower().replace(
            "smtpd_upstream_proxy_protocol", ""))  # no "bad proxy protocol" warnings

    def test_identity_proxy_v2_to_postfix(self):
        self._identity_to_postfix("proxy-v2")

    def test_identity_proxy_v1_to_postfix(self):
        self._identity_to_postfix("proxy-v1")

    def test_haproxy_v2_then_identity_proxy_v2_chain(self):
        """HAProxy → portcullis → Postfix's PROXY smtpd: the client survives both hops."""
        pf = self.start(Postfix())
        pc = self.proxied_portcullis(None, upstream={"address": f"127.0.0.1:{pf.proxy_port}",
                                                     "identity": "proxy-v2"})
        hap = self.start(HAProxy(backend=pc, send_proxy="v2"))
        with smtplib.SMTP("127.0.0.1", hap.port, local_hostname="chain.test", timeout=30,
                          source_address=("127.0.0.52", 0)) as s:
            self.assertEqual(s.sendmail(SENDER, [RCPT], make_message(subject="chain")), {})
        pf.messages(1, timeout=15)
        pf.wait_for_log(r"postfix/proxy/smtpd\[\d+\]: connect from \S*\[127\.0\.0\.52\]")


# ---------------------------------------------------------------------------------------------
# PROXY header and ClientHello in one segment (implicit TLS behind a load balancer)
# ---------------------------------------------------------------------------------------------

def proxy_v1_header(src=("192.0.2.61", 41061), dst=("127.0.0.1", 465)):
    return f"PROXY TCP4 {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode()


def proxy_v2_header(src=("192.0.2.62", 41062), dst=("127.0.0.1", 465)):
    body = (socket.inet_aton(src[0]) + socket.inet_aton(dst[0])
            + src[1].to_bytes(2, "big") + dst[1].to_bytes(2, "big"))
    # Signature, version 2 / PROXY, TCP over IPv4, address block length.
    return b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x11" + len(body).to_bytes(2, "big") + body


def greeting_with_hello_in_header_segment(port, header, timeout=10.0):
    """Connect, send `header` and the TLS ClientHello in ONE send(), finish the handshake over
    memory BIOs and return the first reply line read through TLS."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = no_verify_context().wrap_bio(inc, out, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        assert hello, "no ClientHello produced"
        sock.sendall(header + hello)

        def pump():
            pending = out.read()
            if pending:
                sock.sendall(pending)
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("portcullis closed the connection")
            inc.write(data)

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        buf = b""
        while b"\r\n" not in buf:
            try:
                buf += tls.read(65536)
            except ssl.SSLWantReadError:
                pump()
        out.read()
        return buf.split(b"\r\n", 1)[0]


class ProxyImplicitTlsTest(HarnessTestCase):
    """Regression: bytes after the PROXY header were drained as if they were pipelined before a
    STARTTLS, so a ClientHello that came in the same segment was lost and the handshake hung
    until the command timeout. The command timeout is short here so that the failure is a
    clear close by portcullis, not a long hang."""

    def setUp(self):
        self.certs = self.make_certs()

    def proxied_implicit_tls(self, fake):
        port = free_port()
        return self.start(Portcullis(upstream=fake, config=tls_portcullis_config(
            self.certs, listen=[{"address": f"127.0.0.1:{port}", "proxy_protocol": True,
                                 "tls": "implicit"}]) | {
            "trusted_proxies": ["127.0.0.1/32"], "timeouts": {"command": "3s"}}))

    def _one_segment(self, header, client):
        fake = self.start(FakeSmtp())
        pc = self.proxied_implicit_tls(fake)
        try:
            line = greeting_with_hello_in_header_segment(pc.port, header)
        except (ConnectionError, OSError) as exc:
            raise AssertionError(f"no greeting: {exc!r}\n{pc.log_text()[-1500:]}") from None
        self.assertTrue(line.startswith(b"220 "), line)
        [s] = pc.wait_for_sessions(1)
        self.assertRegex(s["tls"], r"^TLSv1\.[23]$")
        self.assertTrue(s["client"].startswith(f"unknown[{client}]"), s)

    def test_proxy_v1_header_and_client_hello_in_one_segment(self):
        self._one_segment(proxy_v1_header(), "192.0.2.61")

    def test_proxy_v2_header_and_client_hello_in_one_segment(self):
        self._one_segment(proxy_v2_header(), "192.0.2.62")

    def _through_haproxy(self, version):
        fake = self.start(FakeSmtp())
        pc = self.proxied_implicit_tls(fake)
        hap = self.start(HAProxy(backend=pc, send_proxy=version))
        ctx = no_verify_context()
        outcomes = []
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", hap.port), timeout=10) as raw:
                try:
                    with ctx.wrap_socket(raw) as s:
                        greeting = s.recv(1024)
                        if greeting.startswith(b"220"):
                            s.sendall(b"QUIT\r\n")
                            s.recv(1024)
                        outcomes.append(greeting[:3])
                except (OSError, ssl.SSLError) as exc:
                    outcomes.append(type(exc).__name__)
        self.assertEqual(outcomes, [b"220"] * 10, pc.log_text()[-2000:])
        pc.wait_for_sessions(10)

    def test_per_ip_limit_421_is_sent_inside_tls(self):
        # The PROXY header names a client over max_connections_per_ip. A plaintext 421 would be
        # garbage to a client that speaks TLS from its first byte: it comes after the handshake.
        fake = self.start(FakeSmtp())
        port = free_port()
        pc = self.start(Portcullis(upstream=fake, config=tls_portcullis_config(
            self.certs, listen=[{"address": f"127.0.0.1:{port}", "proxy_protocol": True,
                                 "tls": "implicit"}]) | {
            "trusted_proxies": ["127.0.0.1/32"], "limits": {"max_connections_per_ip": 1}}))
        ctx = no_verify_context()
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        raw.sendall(proxy_v1_header(src=("192.0.2.70", 41070), dst=("127.0.0.1", port)))
        held = ctx.wrap_socket(raw)
        self.addCleanup(held.close)
        self.assertTrue(held.recv(1024).startswith(b"220 "))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(proxy_v1_header(src=("192.0.2.70", 41071), dst=("127.0.0.1", port)))
            with ctx.wrap_socket(raw, suppress_ragged_eofs=False) as s:
                self.assertRegex(s.recv(1024),
                                 rb"^421 4\.7\.0 Error: too many connections from your address, "
                                 rb"try again later \[ref=[2-9A-Z]{8}\]\r\n$")
                self.assertEqual(tls_end(s), ("close_notify", b""))
        pc.wait_for_log(r"event=connection-refused client=192\.0\.2\.70:41071")

    def test_haproxy_send_proxy_v1_to_implicit_tls_ten_handshakes(self):
        self._through_haproxy("v1")

    def test_haproxy_send_proxy_v2_to_implicit_tls_ten_handshakes(self):
        self._through_haproxy("v2")


# ---------------------------------------------------------------------------------------------
# TLS close_notify on every orderly close, to the client and to the MTA
# ---------------------------------------------------------------------------------------------

def tls_end(sock, timeout=10.0):
    """How the TLS peer ended the connection, read on `sock` (wrapped with
    suppress_ragged_eofs=False): "close_notify", "eof" (FIN without close_notify), "reset" or
    "timeout"; with any bytes that came before."""
    sock.settimeout(timeout)
    extra = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ssl.SSLZeroReturnError:
            return "close_notify", extra
        except ssl.SSLEOFError:
            return "eof", extra
        except ConnectionResetError:
            return "reset", extra
        except socket.timeout:
            return "timeout", extra
        if not chunk:
            return "close_notify", extra  # b"" only after a close_notify when not suppressed
        extra += chunk


class TlsCloseNotifyTest(HarnessTestCase):
    """Regression: portcullis closed TLS connections with a bare FIN (Exim: "TLS connection was
    non-properly terminated"; Python: SSLEOFError). An orderly close sends close_notify first."""

    def setUp(self):
        self.certs = self.make_certs()

    def implicit(self, **extra):
        port = free_port()
        fake = self.start(FakeSmtp())
        cfg = tls_portcullis_config(self.certs, listen=[{"address": f"127.0.0.1:{port}",
                                                         "tls": "implicit"}])
        return self.start(Portcullis(upstream=fake, config=cfg | extra))

    def implicit_client(self, pc):
        c = RawClient("127.0.0.1", pc.port)
        c.sock = no_verify_context().wrap_socket(c.sock, suppress_ragged_eofs=False)
        return c

    def starttls_client(self, pc):
        """A RawClient past greeting, EHLO, STARTTLS and EHLO again, that sees a missing
        close_notify (ragged EOFs are errors)."""
        c = RawClient("127.0.0.1", pc.port)
        self.assertEqual(c.read_reply()[0], 220)
        self.assertEqual(c.cmd("EHLO close.test")[0], 250)
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        c.sock = no_verify_context().wrap_socket(c.sock, suppress_ragged_eofs=False)
        self.assertEqual(c.cmd("EHLO close.test")[0], 250)
        return c

    def assert_close_notify(self, c):
        self.assertEqual(c.buf, b"", c.format_transcript())
        how, extra = tls_end(c.sock)
        self.assertEqual((how, extra), ("close_notify", b""), c.format_transcript())

    def test_implicit_tls_quit_ends_with_close_notify(self):
        pc = self.implicit()
        with self.implicit_client(pc) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO close.test")[0], 250)
            self.assertEqual(c.cmd("QUIT")[0], 221)
            self.assert_close_notify(c)
        pc.wait_for_sessions(1)

    def test_starttls_quit_ends_with_close_notify(self):
        fake = self.start(FakeSmtp())
        pc = self.start(Portcullis(upstream=fake, config=tls_portcullis_config(self.certs)))
        with self.starttls_client(pc) as c:
            self.assertEqual(c.cmd("QUIT")[0], 221)
            self.assert_close_notify(c)
        pc.wait_for_sessions(1)

    def test_implicit_tls_421_too_many_errors_ends_with_close_notify(self):
        pc = self.implicit(limits={"max_errors": 2})
        with self.implicit_client(pc) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual([c.cmd("BOGUS")[0] for _ in range(2)], [500, 500])
            self.assertEqual(c.read_reply()[0], 421, c.format_transcript())  # unasked
            self.assert_close_notify(c)
        [s] = pc.wait_for_sessions(1)
        self.assertEqual(s["closed_by"], "server")

    def test_starttls_421_timeout_ends_with_close_notify(self):
        fake = self.start(FakeSmtp())
        pc = self.start(Portcullis(upstream=fake, config=tls_portcullis_config(self.certs) | {
            "timeouts": {"command": "1s"}}))
        with self.starttls_client(pc) as c:
            code, lines = c.read_reply(timeout=15)  # say nothing: the idle timeout's 421
            self.assertEqual(code, 421, lines)
            self.assert_close_notify(c)
        pc.wait_for_sessions(1)

    def test_implicit_tls_421_drain_ends_with_close_notify(self):
        pc = self.implicit()
        with self.implicit_client(pc) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO close.test")[0], 250)
            pc.signal(signal.SIGTERM)
            code, lines = c.read_reply(timeout=10)
            self.assertEqual((code, lines[0].split()[0]), (421, "4.3.2"))
            self.assert_close_notify(c)
        self.assertEqual(pc.wait_exit(timeout=10), 0)

    def _upstream_close(self, upstream_cfg):
        fake = self.start(FakeSmtp(ehlo_caps=DEFAULT_CAPS + ["STARTTLS"],
                                   tls_context=self.certs.server_context(),
                                   observe_tls_close=True))
        pc = self.start(Portcullis(upstream=fake, config={
            "upstream": {"tls": "require", **upstream_cfg}}))
        with RawClient("127.0.0.1", pc.port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
            self.assertEqual(raw_transaction(c, subject="close_notify upstream"),
                             [250, 250, 354, 250], c.format_transcript())
            self.assertEqual(c.cmd("QUIT")[0], 221)
        [s] = [s for s in fake.wait_closed(timeout=20) if s.tls]  # not the plain probe
        self.assertEqual(s.commands[-1].upper(), "QUIT", s.commands)
        self.assertEqual(s.tls_close, "close_notify", s.commands)

    def test_upstream_tls_quit_sends_close_notify_to_mta(self):
        self._upstream_close({"pool_size": 0})

    def test_upstream_tls_pool_retirement_sends_close_notify_to_mta(self):
        # Pooled after the session, then retired by the pool's idle timeout.
        self._upstream_close({"pool_size": 1, "pool_idle_timeout": "1s"})


# ---------------------------------------------------------------------------------------------
# SIGHUP certificate reload
# ---------------------------------------------------------------------------------------------

class PoolCleanTest(HarnessTestCase):
    """Every path that lets go of an MTA connection decides pooling the same way: a connection
    whose transaction the MTA still holds open (MAIL accepted, RSET not yet passed on) is never
    handed to the next client. With `identity: none` nothing resets Postfix between clients, so
    a dirty pooled connection would answer the next client's MAIL with 503 5.5.1 (nested MAIL),
    a 5xx that bounces the mail."""

    def setUp(self):
        self.certs = self.make_certs()
        self.pf = self.start(Postfix())
        self.pc = self.start(Portcullis(upstream=self.pf, config={
            **tls_portcullis_config(self.certs),
            "upstream": {"pool_size": 2, "identity": "none", "probe_interval": "1h"}}))

    def open_transaction_then_rset(self):
        c = RawClient("127.0.0.1", self.pc.port)
        self.addCleanup(c.close)
        self.assertEqual(c.read_reply()[0], 220)
        self.assertEqual(c.cmd("EHLO first.test")[0], 250)
        self.assertEqual(c.cmd(f"MAIL FROM:<{SENDER}>")[0], 250)
        self.assertEqual(c.cmd(f"RCPT TO:<{RCPT}>")[0], 250)
        self.assertEqual(c.cmd("RSET")[0], 250)  # answered by us; the MTA still holds MAIL
        return c

    def assertNextClientDelivers(self, sessions):
        self.pc.wait_for_sessions(sessions)
        with RawClient("127.0.0.1", self.pc.port) as c:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd("EHLO second.test")[0], 250)
            self.assertEqual(raw_transaction(c, subject="after the pool"), [250, 250, 354, 250])
            self.assertEqual(c.cmd("QUIT")[0], 221)
        [msg] = self.pf.messages(1, timeout=15)
        self.assertIn(b"Subject: after the pool", msg)
        self.assertNotRegex(self.pf.log_text(), r"nested MAIL")

    def test_starttls_after_rset_does_not_pool_the_open_transaction(self):
        c = self.open_transaction_then_rset()
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        starttls(c)
        self.assertEqual(c.cmd("EHLO first.test")[0], 250)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        c.expect_closed()
        self.assertNextClientDelivers(1)

    def test_quit_after_rset_does_not_pool_the_open_transaction(self):
        c = self.open_transaction_then_rset()
        self.assertEqual(c.cmd("QUIT")[0], 221)
        c.expect_closed()
        self.assertNextClientDelivers(1)

    def test_disconnect_mid_transaction_does_not_pool_it(self):
        c = RawClient("127.0.0.1", self.pc.port)
        self.assertEqual(c.read_reply()[0], 220)
        self.assertEqual(c.cmd("EHLO first.test")[0], 250)
        self.assertEqual(c.cmd(f"MAIL FROM:<{SENDER}>")[0], 250)
        self.assertEqual(c.cmd(f"RCPT TO:<{RCPT}>")[0], 250)
        c.close()
        self.assertNextClientDelivers(1)

    def test_clean_connection_is_pooled_and_reused(self):
        # The pool still works: after a delivered message (the dot ends the MTA's transaction)
        # the next client is served on the same MTA connection.
        for i in range(2):
            with RawClient("127.0.0.1", self.pc.port) as c:
                self.assertEqual(c.read_reply()[0], 220)
                self.assertEqual(c.cmd("EHLO client.test")[0], 250)
                self.assertEqual(raw_transaction(c, subject=f"pooled {i}"), [250, 250, 354, 250])
                self.assertEqual(c.cmd("QUIT")[0], 221)
                c.expect_closed()
            self.pc.wait_for_sessions(i + 1)
        self.assertEqual(len(self.pf.messages(2, timeout=15)), 2)
        # Draining closes the pool; Postfix then logs one connection that carried both.
        self.pc.signal(signal.SIGTERM)
        self.pc.wait_exit()
        self.pf.wait_for_log(r"disconnect from \S+ .*mail=2 rcpt=2 bdat=2")


class CertReloadTest(HarnessTestCase):
    def test_sighup_reloads_certificate_and_keeps_old_one_on_broken_files(self):
        a = self.make_certs(cn="cert-a.test")
        b = self.make_certs(cn="cert-b.test")
        live = self.make_certs(cn="unused.test").dir  # a temp dir removed at cleanup
        cert, key = os.path.join(live, "live.crt"), os.path.join(live, "live.key")
        shutil.copy(a.cert, cert)
        shutil.copy(a.key, key)
        port = free_port()
        fake = self.start(FakeSmtp())
        pc = self.start(Portcullis(upstream=fake, config={
            "tls": {"cert": cert, "key": key},
            "listen": [{"address": f"127.0.0.1:{port}", "tls": "implicit"}]}))

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(a.ca_cert)
        ctx.load_verify_locations(b.ca_cert)

        def peer_cn():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw) as s:
                    subject = dict(x[0] for x in s.getpeercert()["subject"])
                    greeting = s.recv(1024)
                    assert greeting.startswith(b"220"), greeting
                    s.sendall(b"QUIT\r\n")
                    s.recv(1024)
                    return subject["commonName"]

        self.assertEqual(peer_cn(), "cert-a.test")
        with open(cert, "wb") as f, open(b.cert, "rb") as src:
            f.write(src.read())
        with open(key, "wb") as f, open(b.key, "rb") as src:
            f.write(src.read())
        mark = pc.log_mark()
        pc.signal()
        pc.wait_for_log(r"event=reload result=ok", since=mark)
        self.assertEqual(peer_cn(), "cert-b.test")

        for path in (cert, key):
            with open(path, "w") as f:
                f.write("-----BEGIN GARBAGE-----\nnot a pem\n")
        mark = pc.log_mark()
        pc.signal()
        pc.wait_for_log(r"event=reload result=failed", since=mark)
        self.assertTrue(pc.alive())
        self.assertEqual(peer_cn(), "cert-b.test")
        # Mismatched pair (A's cert, B's key): refused too, B stays.
        shutil.copy(a.cert, cert)
        shutil.copy(b.key, key)
        mark = pc.log_mark()
        pc.signal()
        pc.wait_for_log(r"event=reload result=failed", since=mark)
        self.assertEqual(peer_cn(), "cert-b.test")


if __name__ == "__main__":
    unittest.main()
