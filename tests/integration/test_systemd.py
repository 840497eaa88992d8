#!/usr/bin/env python3
"""portcullis under systemd (issue 13, part): the readiness protocol of Type=notify, spoken
without libsystemd, and the shipped unit's hardening.

- With $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace) portcullis sends READY=1
  with its MAINPID once its listener is bound, and STOPPING=1 when SIGTERM starts the drain.
  Without it, nothing is sent and nothing fails.
- deploy/systemd/portcullis.service passes `systemd-analyze security --offline` at an overall
  exposure of 2.0 or better ("OK"), and keeps the settings the README promises.
"""

import os
import re
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import HarnessTestCase, Portcullis, Postfix  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UNIT = os.path.join(REPO, "deploy", "systemd", "portcullis.service")


class NotifyTest(HarnessTestCase):
    def setUp(self):
        self.pf = self.start(Postfix())

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="portcullis-notify-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def listen(self, name):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind("\0" + name[1:] if name.startswith("@") else name)
        sock.settimeout(30)
        self.addCleanup(sock.close)
        return sock

    def check_ready_then_stopping(self, name):
        sock = self.listen(name)
        pc = self.start(Portcullis(upstream=self.pf, env=dict(os.environ, NOTIFY_SOCKET=name)))
        ready = sock.recv(4096).decode()
        self.assertEqual(ready.split("\n"), ["READY=1", f"MAINPID={pc.proc.pid}",
                                             "STATUS=accepting on 1 listener(s)"])
        pc.signal(signal.SIGTERM)
        self.assertEqual(sock.recv(4096).decode(), "STOPPING=1\nSTATUS=draining")
        self.assertEqual(pc.wait_exit(), 0)

    def test_ready_and_stopping_on_a_path(self):
        self.check_ready_then_stopping(os.path.join(self.tmpdir(), "notify"))

    def test_ready_and_stopping_on_an_abstract_socket(self):
        self.check_ready_then_stopping(f"@portcullis-test-{os.getpid()}")

    def test_an_unreachable_notify_socket_is_a_warning_not_a_failure(self):
        pc = self.start(Portcullis(upstream=self.pf, env=dict(
            os.environ, NOTIFY_SOCKET=os.path.join(self.tmpdir(), "nobody-listens"))))
        pc.wait_for_log(r"event=sd-notify result=failed error=\"sendto .*nobody-listens")
        self.assertTrue(pc.alive())


class UnitFileTest(unittest.TestCase):
    def test_offline_security_analysis_is_ok(self):
        out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                              UNIT], capture_output=True, text=True, timeout=60)
        level = re.search(r"Overall exposure level for portcullis\.service: (\d+\.\d)", out.stdout)
        self.assertIsNotNone(level, out.stdout + out.stderr)
        self.assertEqual(out.returncode, 0, f"exposure {level.group(1)} is above 2.0")

    def test_the_promised_settings(self):
        with open(UNIT) as f:
            text = f.read()
        for line in ["Type=notify", "DynamicUser=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                     "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "ProtectSystem=strict",
                     "StateDirectory=portcullis", "ExecReload=/bin/kill -HUP $MAINPID",
                     "NoNewPrivileges=yes"]:
            self.assertIn("\n" + line + "\n", text)


if __name__ == "__main__":
    unittest.main()
