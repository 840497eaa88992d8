#!/usr/bin/env python3
"""The MTA connection pool follows the load (upstream.pool_size: auto), in front of the real
Postfix.

- 40 clients hold a transaction open at the same time (each past RCPT, so each holds its own
  MTA connection), then all finish: every message is delivered, and the pool keeps all 40
  clean connections, more than the old fixed default of 32 (the admin gauge
  portcullis_upstream_pooled_connections).
- With nothing to do, pool_idle_timeout closes them all again.
- A second wave of 40 reuses the pooled connections: Postfix sees no new connection.
- With a number (pool_size: 8) the same 40 leave at most 8 in the pool.
"""

import http.client
import os
import re
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HarnessTestCase, Portcullis, Postfix, RawClient, free_port,  # noqa: E402
                     wait_until)

CLIENTS = 40


def pooled(admin_port):
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    m = re.search(r"^portcullis_upstream_pooled_connections (\S+)$", body, re.M)
    return int(float(m.group(1)))


class PoolTest(HarnessTestCase):
    def start_pair(self, upstream_config):
        self.pf = self.start(Postfix())
        self.admin = free_port(udp=False)
        self.pc = self.start(Portcullis(upstream=self.pf, config={
            "admin": {"listen": f"127.0.0.1:{self.admin}"},
            "limits": {"max_connections_per_ip": 200},
            "upstream": upstream_config}))

    def wave(self, first):
        """CLIENTS sessions, all holding an open transaction at once, then all finishing."""
        clients = []
        try:
            for i in range(CLIENTS):
                c = RawClient(port=self.pc.port, timeout=30)
                clients.append(c)
                self.assertEqual(c.read_reply()[0], 220)
                self.assertEqual(c.cmd("EHLO client.test")[0], 250)
                self.assertEqual(c.cmd("MAIL FROM:<pool@client.test>")[0], 250)
                self.assertEqual(c.cmd(f"RCPT TO:<user+{first + i}@test.local>")[0], 250)
            for i, c in enumerate(clients):
                self.assertEqual(c.cmd("DATA")[0], 354)
                c.send(f"Subject: pool {first + i}\r\n\r\nbody\r\n.\r\n".encode())
                self.assertEqual(c.read_reply()[0], 250)
                self.assertEqual(c.cmd("QUIT")[0], 221)
        finally:
            for c in clients:
                c.close()

    def connections_from_portcullis(self):
        return len(re.findall(r"postfix/smtpd\[\d+\]: connect from", self.pf.log_text()))

    def test_auto_pool_grows_past_32_trims_when_idle_and_is_reused(self):
        self.start_pair({"pool_idle_timeout": "3s", "probe_interval": "1h"})
        self.wave(0)
        self.pf.messages(CLIENTS, timeout=60)
        self.assertEqual(wait_until(lambda: pooled(self.admin) == CLIENTS and CLIENTS, 10,
                                    what="all 40 clean connections pooled"), CLIENTS)
        # A second wave takes the pooled connections: Postfix sees no new connection.
        before = self.connections_from_portcullis()
        self.wave(CLIENTS)
        self.pf.messages(2 * CLIENTS, timeout=60)
        self.assertEqual(self.connections_from_portcullis(), before)
        # Idle: pool_idle_timeout closes them all.
        wait_until(lambda: pooled(self.admin) == 0, 20, what="the idle pool trimmed to 0")

    def test_a_number_caps_the_pool(self):
        self.start_pair({"pool_size": 8, "probe_interval": "1h"})
        self.wave(0)
        self.pf.messages(CLIENTS, timeout=60)
        wait_until(lambda: pooled(self.admin) == 8, 10, what="8 pooled")
        self.assertEqual(pooled(self.admin), 8)


if __name__ == "__main__":
    unittest.main()
