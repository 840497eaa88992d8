#!/usr/bin/env python3
"""portcullis against the floor of any pooled SMTP relay on this machine (not a test).

    sudo tests/bench/floor.py [--rounds 5] [--messages 10000] [--sessions 20]
                              [--binary build/portcullis]

Paths, each ending at the same smtp-sink, in interleaved rounds whose order rotates:
    direct          smtp-source → smtp-sink
    portcullis      the binary, no filters, log.level info, workers: 1
    portcullis-w2   the same with workers: 2
    floor           tests/bench/floor_relay.cc: the system calls portcullis makes for a message
                    (accept4, epoll add, MAIL and RCPT on a pooled MTA connection, DATA at the
                    dot, QUIT with the FIN) and nothing else: no filter, no log, no allocation,
                    its own epoll loop, no EPOLL_CTL_DEL
    floor-del       the floor with an EPOLL_CTL_DEL before each close, as libevent does
    floor-p2        two floor relays on one port (SO_REUSEPORT), as workers: 2 has two loops

Per path: CPU per message (user and system time of its processes, /proc, median over rounds)
and that divided by smtp-sink's own on the direct path (the figure of merit of compare.sh);
then the ratios that answer three questions: how far portcullis is above the floor, what the
EPOLL_CTL_DEL costs, and whether a second loop costs more per message for a relay that shares
nothing (then it is the machine, not portcullis's sharing).

As root it re-runs itself inside a loopback-only network + PID namespace. Needs postfix
(smtp-source, smtp-sink), c++ and a build.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (plain_config, proc_times, reexec_in_loopback_namespace,  # noqa: E402
                      smtp_source)
from compare import FloorRelay  # noqa: E402
from harness import Portcullis, SmtpSink  # noqa: E402
from harness.ports import free_port  # noqa: E402

def user_sys(root):
    """(user, system) CPU seconds of `root` and its live children (floor-p2's second relay)."""
    pids = [root] + [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(root)], capture_output=True, text=True).stdout.split()]
    user = system = 0
    for pid in pids:
        times = proc_times(pid)
        if times:
            user += times[0] + times[2]
            system += times[1] + times[3]
    return user, system


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--messages", type=int, default=10000)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--binary", default=os.path.join(REPO, "build", "portcullis"))
    args = p.parse_args()
    args.binary = os.path.abspath(args.binary)
    reexec_in_loopback_namespace("floor")
    fixtures = []
    try:
        sink = SmtpSink(dump=False, verbose=False, max_concurrency=2000, backlog=2000,
                        hostname="sink.bench.test").start()
        fixtures.append(sink)
        paths = [("direct", sink.port, lambda: sink.proc.pid)]
        for name, workers in (("portcullis", 1), ("portcullis-w2", 2)):
            pc = Portcullis(binary=args.binary, upstream=sink.address,
                            config=plain_config(free_port(), workers=workers)).start()
            fixtures.append(pc)
            paths.append((name, pc.port, lambda pc=pc: pc.pid))
        for name, extra in (("floor", ()), ("floor-del", ("--epoll-del",)),
                            ("floor-p2", ("--processes", "2"))):
            fl = FloorRelay(sink.port, extra).start()
            fixtures.append(fl)
            paths.append((name, fl.port, lambda fl=fl: fl.proc.pid))
        for _, port, _ in paths:  # pools filled, caches warm
            smtp_source(port, 500, args.sessions)
        cpu = {name: [] for name, _, _ in paths}
        for r in range(args.rounds):
            shift = r % len(paths)
            for name, port, pid in paths[shift:] + paths[:shift]:
                u0, s0 = user_sys(pid())
                smtp_source(port, args.messages, args.sessions)
                time.sleep(0.2)  # the last closes
                u1, s1 = user_sys(pid())
                per = [(u1 - u0) * 1e6 / args.messages, (s1 - s0) * 1e6 / args.messages]
                cpu[name].append(per)
                print(f"round={r + 1} path={name} cpu_us_per_msg={sum(per):.0f} "
                      f"user={per[0]:.0f} sys={per[1]:.0f}", flush=True)
    finally:
        for f in reversed(fixtures):
            f.stop()

    def med(name, i=None):
        return statistics.median(sum(x) if i is None else x[i] for x in cpu[name])

    sink_direct = med("direct")
    print(f"\n{args.rounds} rounds of {args.messages:,} messages of 10 KiB, {args.sessions} "
          f"sessions, one connection per message; medians over rounds\n")
    print("| path | CPU µs/msg | user | system | ÷ smtp-sink's CPU/msg on direct |")
    print("|---|---|---|---|---|")
    for name, _, _ in paths:
        label = "direct (smtp-sink's own)" if name == "direct" else name
        print(f"| {label} | {med(name):.0f} | {med(name, 0):.0f} | {med(name, 1):.0f} | "
              f"{med(name) / sink_direct:.2f} |")
    print()
    print(f"portcullis ÷ floor: {med('portcullis') / med('floor'):.2f}")
    print(f"floor-del ÷ floor (the EPOLL_CTL_DEL): {med('floor-del') / med('floor'):.2f}")
    print(f"floor-p2 ÷ floor (a second loop, nothing shared): "
          f"{med('floor-p2') / med('floor'):.2f}")
    print(f"portcullis-w2 ÷ portcullis (workers: 2): "
          f"{med('portcullis-w2') / med('portcullis'):.2f}")


if __name__ == "__main__":
    main()
