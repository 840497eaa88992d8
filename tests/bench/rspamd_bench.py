#!/usr/bin/env python3
"""The driver of tests/bench/rspamd_bench.sh (see there): starts the fixtures from the
integration harness, runs smtp-source against both paths in interleaved rounds, and prints
rates, CPU per message and the scan latency portcullis adds on top of rspamd's own."""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from harness import Portcullis, Postfix, Rspamd, SmtpSink, Unbound  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import proc_times  # noqa: E402


def pids_named(*names):
    """Every process of this PID namespace whose command is one of `names`."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in names:
            out.append(int(pid))
    return out


def cpu_seconds(pids, children=False):
    """utime+stime of `pids` (plus their reaped children's with children=True), in seconds."""
    total = 0
    for pid in pids:
        times = proc_times(pid)
        if times:
            total += sum(times) if children else times[0] + times[1]
    return total


POSTFIX = ("master", "smtpd", "anvil", "proxymap", "trivial-rewrite", "cleanup", "qmgr",
           "pickup", "postlogd", "tlsmgr", "scache")


def groups(pc, sink):
    return {
        "portcullis": lambda: cpu_seconds([pc.proc.pid]),
        "postfix": lambda: cpu_seconds(pids_named(*POSTFIX), children=True),
        "rspamd": lambda: cpu_seconds(pids_named("rspamd"), children=True),
        "sink": lambda: cpu_seconds([sink.proc.pid]),
    }


def queue_empty(pf):
    """True when Postfix has delivered everything it accepted."""
    for sub in ("incoming", "active", "deferred", "maildrop"):
        d = os.path.join(pf.dir, "queue", sub)
        for _, _, files in os.walk(d):
            if files:
                return False
    return True


def run_source(port, args, meters, drain=None):
    before = {name: read() for name, read in meters.items()}
    t0 = time.monotonic()
    r0 = os.times()
    cmd = ["smtp-source", "-s", str(args.sessions), "-m", str(args.messages), "-l",
           str(args.size), "-f", "bench@client.test", "-t", "sink@bench.test",
           f"127.0.0.1:{port}"]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1800)
    t1 = time.monotonic()
    r1 = os.times()
    if done.returncode != 0:
        raise RuntimeError(f"smtp-source to {port} failed: {done.stdout[-2000:]}")
    if drain is not None:  # the CPU of delivering what was accepted counts too
        deadline = time.monotonic() + 300
        while not drain() and time.monotonic() < deadline:
            time.sleep(0.2)
    cpu = {name: (read() - before[name]) * 1e6 / args.messages for name, read in meters.items()}
    cpu["source"] = ((r1.children_user + r1.children_system)
                     - (r0.children_user + r0.children_system)) * 1e6 / args.messages
    return args.messages / (t1 - t0), cpu


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def rounds(args, pc, pf, rspamd, meters, mark, rspamd_mark):
    """--rounds interleaved rounds at args.sessions, then the latency of their scans."""
    ratios = []
    for rnd in range(1, args.rounds + 1):
        p_rate, p_cpu = run_source(pc.port, args, meters)
        m_rate, m_cpu = run_source(pf.port, args, meters, drain=lambda: queue_empty(pf))
        ratios.append(p_rate / m_rate)
        print(f"sessions={args.sessions} round={rnd} portcullis={p_rate:.0f} msg/s "
              f"milter={m_rate:.0f} msg/s ratio={ratios[-1]:.2f}")
        print(f"  cpu_us_per_msg: portcullis[source={p_cpu['source']:.0f} "
              f"portcullis={p_cpu['portcullis']:.0f} rspamd={p_cpu['rspamd']:.0f} "
              f"sink={p_cpu['sink']:.0f}] milter[source={m_cpu['source']:.0f} "
              f"postfix={m_cpu['postfix']:.0f} rspamd={m_cpu['rspamd']:.0f} "
              f"sink={m_cpu['sink']:.0f}]", flush=True)
    print(f"sessions={args.sessions} median_ratio={statistics.median(ratios):.2f} "
          f"({args.rounds} rounds: {' '.join(f'{r:.2f}' for r in ratios)})")
    ours, theirs, added = [], [], []
    errors = 0
    for line in pc.log_text()[mark:].splitlines():
        if "event=scan filter=rspamd" not in line:
            continue
        if "scan=error" in line:
            errors += 1
            continue
        t = re.search(r" time=(\d+)ms", line)
        r = re.search(r" rspamd_time=(\d+)ms", line)
        if t and r:
            ours.append(int(t.group(1)))
            theirs.append(int(r.group(1)))
            added.append(int(t.group(1)) - int(r.group(1)))
    print(f"scans={len(ours)} errors={errors}")
    for name, v in (("portcullis event=scan time", ours), ("rspamd time_real", theirs),
                    ("added by portcullis", added)):
        print(f"  {name}: p50={percentile(v, 50)}ms p99={percentile(v, 99)}ms")
    rejected = len(re.findall(r"milter-reject|reject: END-OF-MESSAGE", pf.log_text()))
    print(f"postfix milter rejects/tempfails seen: {rejected}")
    # rspamd logs one line per scan, with the worker that ran it: both paths really scan.
    tasks = re.findall(r"\((normal|rspamd_proxy)\)[^\n]*rspamd_task_write_log",
                       rspamd.log_text()[rspamd_mark:])
    print(f"rspamd scans logged: normal={tasks.count('normal')} "
          f"rspamd_proxy={tasks.count('rspamd_proxy')}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", default="1 10",
                    help="parallel sessions, a list: one set of rounds per count")
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--binary", default=os.path.join(REPO, "build", "portcullis"))
    args = ap.parse_args()
    binary = os.path.realpath(args.binary)

    fixtures = []

    def start(f):
        fixtures.append(f)
        return f.start()

    try:
        sink = start(SmtpSink(dump=False, verbose=False))
        dns = start(Unbound(zones_text=""))
        # The proxy worker in milter mode scanning itself (rspamd's "self-scan" set-up), as
        # many processes as the normal worker the filter talks to.
        rspamd = start(Rspamd(dns=dns, workers=args.workers, proxy_config=(
            "milter = yes;\ntimeout = 120s;\n"
            'upstream "local" {\n  default = yes;\n  self_scan = yes;\n}\n')))
        # smtpd_milters do not see the content of a before-queue proxy filter's mail
        # (Postfix's MILTER_README), so the milter path is Postfix's own queue: smtpd + milter,
        # cleanup, qmgr, then smtp to the same sink (relayhost); drained before each reading.
        pf = start(Postfix(relayhost=f"[127.0.0.1]:{sink.port}", extra_main_cf={
            "smtpd_milters": f"inet:127.0.0.1:{rspamd.proxy_port}",
            "milter_protocol": "6",
            "milter_default_action": "tempfail",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "default_destination_concurrency_limit": "20",
        }))
        pc = start(Portcullis(binary=binary, upstream=sink, config={
            "upstream": {"identity": "none"},
            "log": {"level": "info"},
            "limits": {"max_connections": 2000, "max_connections_per_ip": 2000},
            "filters": [{"name": "rspamd", "url": rspamd.url,
                         "max_connections": 4 * args.workers, "max_queue": 10000}],
        }))
        meters = groups(pc, sink)
        print(f"rspamd_bench: {args.messages} messages of {args.size} bytes per run, "
              f"{args.sessions} sessions, {args.workers} rspamd worker(s) per path, "
              f"binary={binary}", flush=True)
        # Warm-up, not counted: rspamd compiles its expressions lazily on the first scans.
        warm = argparse.Namespace(**vars(args))
        warm.messages = min(200, args.messages)
        warm.sessions = 5
        run_source(pc.port, warm, meters)
        run_source(pf.port, warm, meters, drain=lambda: queue_empty(pf))
        for sessions in [int(x) for x in str(args.sessions).split()]:
            run = argparse.Namespace(**vars(args))
            run.sessions = sessions
            mark = len(pc.log_text())
            rspamd_mark = len(rspamd.log_text())
            rounds(run, pc, pf, rspamd, meters, mark, rspamd_mark)
    finally:
        for f in reversed(fixtures):
            try:
                f.stop()
            except Exception as exc:  # keep stopping the rest
                print(f"rspamd_bench: stopping {f!r}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
