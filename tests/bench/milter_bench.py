#!/usr/bin/env python3
"""Milter benchmark driver (tests/bench/milter_bench.sh runs it in a loopback namespace).

Two private Postfix instances, identical but for smtpd_milters: one calls portcullis as its
milter (header_checks with a rule that adds a header to every message, so every stage and an
smfi_addheader run), the other calls nothing. smtp-source sends the same load to each, rounds
interleaved, and each reading is messages / seconds until smtp-source has had every 250 (the
message is queued by then; both instances discard at delivery, so the queue is not measured).
--socket unix puts the milter on a unix socket instead of TCP on 127.0.0.1.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from harness import Portcullis, Postfix  # noqa: E402
from harness.ports import free_port  # noqa: E402


def run_source(port, args):
    cmd = ["smtp-source", "-s", str(args.sessions), "-m", str(args.messages), "-l",
           str(args.size), "-f", "bench@client.test", "-t", "user@test.local",
           f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1800)
    t1 = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"smtp-source to {port} failed: {done.stdout[-2000:]}")
    return args.messages / (t1 - t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--sessions", default="1 10")
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--binary", default=os.path.join(REPO, "build", "portcullis"))
    p.add_argument("--socket", choices=["inet", "unix"], default="inet")
    args = p.parse_args()

    sock_dir = None
    if args.socket == "unix":
        sock_dir = tempfile.mkdtemp(prefix="milter-bench-")
        os.chmod(sock_dir, 0o755)
        listen = f"unix:{sock_dir}/milter.sock"
        milter = listen
    else:
        port = free_port()
        listen, milter = f"inet:{port}@127.0.0.1", f"inet:127.0.0.1:{port}"
    print(f"milter socket: {milter}", flush=True)
    pc = Portcullis(binary=os.path.abspath(args.binary), config={
        "listen": [], "log": {"level": "warn"},
        "milter": {"listen": listen, "max_sessions": 256},
        "filters": [{"name": "header_checks", "rules": [
            {"match": "^Subject:.*viagra", "action": "reject"},
            {"match": "^From:", "action": "add_header", "header": "X-Checked: yes"}]}]}).start()
    fixed = {"message_size_limit": 0, "default_transport": "discard:bench",
             "virtual_transport": "discard:bench", "smtpd_milters": "",
             "non_smtpd_milters": ""}
    with_milter = Postfix(milter=milter,
                          extra_main_cf={k: v for k, v in fixed.items() if "milters" not in k})
    alone = Postfix(extra_main_cf=fixed)
    with_milter.start()
    alone.start()
    try:
        for sessions in args.sessions.split():
            args.sessions = int(sessions)
            ratios = []
            for r in range(1, args.rounds + 1):
                a = run_source(alone.port, args)
                m = run_source(with_milter.port, args)
                ratios.append(m / a)
                print(f"sessions={sessions} round={r} postfix={a:.0f} msg/s "
                      f"postfix+portcullis-milter={m:.0f} msg/s ratio={m / a:.2f}", flush=True)
            print(f"sessions={sessions} median_ratio={statistics.median(ratios):.2f} "
                  f"({args.rounds} rounds)", flush=True)
    finally:
        with_milter.stop()
        alone.stop()
        pc.stop()
        if sock_dir:
            shutil.rmtree(sock_dir, True)


if __name__ == "__main__":
    main()
