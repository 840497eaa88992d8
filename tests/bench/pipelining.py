#!/usr/bin/env python3
"""What upstream pipelining saves a pipelining client, against a real Postfix (issue 14).

A private Postfix, and two portcullis instances in front of it: upstream.pipelining auto and
off (both with the pool on auto and CHUNKING on). A client of our own, one transaction at a
time on one connection per round, sends each message the way real MTAs do: MAIL, the RCPTs and
DATA in one write, then the message, and times MAIL → the 250 after the dot. Rounds alternate
between the two instances. Reported: the median transaction time of each, their ratio, and
portcullis's CPU per message (/proc, user + system). --counts N adds one more transaction run of
N messages per instance under `strace -c -f` and reports portcullis's system calls per message
(strace slows the process: that run is not timed).

--mta-delay MS puts a Tap (tests/integration/harness/tap.py) in front of Postfix for each
instance, holding each of its replies MS ms: an MTA a network away.

Run as root (Postfix's master), inside a loopback-only namespace:
    unshare --net --pid --fork --mount-proc -- sh -c \
      'ip link set lo up; python3 tests/bench/pipelining.py [--rounds 6] [--messages 300]'
PORTCULLIS_BIN chooses the binary (default build/portcullis).
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import Portcullis, Postfix, RawClient, make_message  # noqa: E402
from harness.tap import Tap  # noqa: E402

SENDER = "sender@client.test"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def traced(pid):
    """Starts strace -c on `pid`; returns (process, output path) once it is attached."""
    out = tempfile.NamedTemporaryFile(prefix="pipelining-strace-", delete=False).name
    tracer = subprocess.Popen(["strace", "-c", "-f", "-qq", "-p", str(pid), "-o", out],
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as f:
            if re.search(r"^TracerPid:\s*[1-9]", f.read(), re.M):
                return tracer, out
        time.sleep(0.05)
    tracer.kill()
    raise RuntimeError(f"strace could not attach to {pid}")


def syscalls_per_message(tracer, out, messages):
    """Stops strace; returns {name: calls per message} with "total"."""
    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=30)
    calls = {}
    with open(out) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 5 and re.fullmatch(r"[0-9.]+", fields[0]):
                calls[fields[-1]] = int(fields[3]) / messages
    os.unlink(out)
    return calls


def run_round(port, messages, rcpts, body):
    times = []
    group = ("MAIL FROM:<%s>\r\n" % SENDER + "".join(
        f"RCPT TO:<r{i}@test.local>\r\n" for i in range(rcpts)) + "DATA\r\n").encode()
    with RawClient("127.0.0.1", port, timeout=30) as c:
        c.read_reply()
        c.cmd("EHLO client.test")
        for _ in range(messages):
            t0 = time.perf_counter()
            c.send(group)
            replies = c.read_replies(rcpts + 2)
            if [code for code, _ in replies] != [250] * (rcpts + 1) + [354]:
                raise RuntimeError(f"unexpected replies {replies}")
            c.send(body + b".\r\n")
            code, text = c.read_reply()
            if code != 250:
                raise RuntimeError(f"message refused: {code} {text}")
            times.append(time.perf_counter() - t0)
        c.cmd("QUIT")
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--rcpts", type=int, default=2)
    ap.add_argument("--mta-delay", type=float, default=0.0,
                    help="ms: each instance reaches Postfix through a Tap that holds every "
                         "reply this long (an MTA across a network; loopback has no netem)")
    ap.add_argument("--counts", type=int, default=0,
                    help="messages in one more run per instance under strace -c: portcullis's "
                         "system calls per message")
    args = ap.parse_args()
    body = make_message(SENDER, "r0@test.local", size=10 * 1024)
    with Postfix() as pf:
        paths, taps = {}, []
        for mode in ("auto", "off"):
            mta = pf
            if args.mta_delay > 0:
                mta = Tap(pf, delay=args.mta_delay / 1e3).start()
                taps.append(mta)
            paths[mode] = Portcullis(upstream=mta, config={
                "upstream": {"pipelining": mode},
                "log": {"level": "info"}}).start()
        try:
            results = {m: {"p50": [], "cpu": []} for m in paths}
            for r in range(args.rounds):
                order = list(paths) if r % 2 == 0 else list(reversed(paths))
                for mode in order:
                    pc = paths[mode]
                    before = cpu_seconds(pc.proc.proc.pid)
                    times = run_round(pc.port, args.messages, args.rcpts, body)
                    cpu = cpu_seconds(pc.proc.proc.pid) - before
                    results[mode]["p50"].append(statistics.median(times) * 1e3)
                    results[mode]["cpu"].append(cpu / args.messages * 1e6)
                    print(f"round={r + 1} pipelining={mode} txn_p50_ms="
                          f"{results[mode]['p50'][-1]:.3f} cpu_us_per_msg="
                          f"{results[mode]['cpu'][-1]:.0f}", flush=True)
            counts = {}
            if args.counts:
                for mode, pc in paths.items():
                    tracer, out = traced(pc.proc.proc.pid)
                    run_round(pc.port, args.counts, args.rcpts, body)
                    counts[mode] = syscalls_per_message(tracer, out, args.counts)
        finally:
            for pc in paths.values():
                pc.stop()
            for tap in taps:
                tap.stop()
    med = {m: {k: statistics.median(v) for k, v in res.items()} for m, res in results.items()}
    print(f"\n{args.rounds} rounds x {args.messages} messages, {args.rcpts} recipients, "
          "10 KiB, one transaction at a time, Postfix final"
          + (f", MTA replies held {args.mta_delay} ms" if args.mta_delay else ""))
    print("| upstream.pipelining | MAIL→250 after dot, median ms | portcullis CPU µs/msg |")
    print("|---|---|---|")
    for m in ("auto", "off"):
        print(f"| {m} | {med[m]['p50']:.3f} | {med[m]['cpu']:.0f} |")
    print(f"\ntime auto/off = {med['auto']['p50'] / med['off']['p50']:.2f}, "
          f"CPU auto/off = {med['auto']['cpu'] / med['off']['cpu']:.2f}")
    for mode, calls in counts.items():
        top = sorted((n for n in calls if n != "total"), key=lambda n: -calls[n])[:6]
        print(f"pipelining={mode}: {calls.get('total', 0):.1f} system calls per message ("
              + ", ".join(f"{n} {calls[n]:.1f}" for n in top) + f"; {args.counts} messages)")


if __name__ == "__main__":
    main()
