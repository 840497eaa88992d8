#!/usr/bin/env python3
"""Userland instructions per message (not a test): portcullis under callgrind, smtp-source
through it into smtp-sink, 20 sessions, 10 KiB messages, one connection per message.

    sudo tests/bench/instructions.py [--binary build/portcullis ...] [--messages 1000]
                                     [--warmup 200] [--log-level info] [--keep DIR]

Each --binary is run in turn (default build/portcullis). The count starts after --warmup
messages (callgrind_control -z) and ends after --messages more (callgrind_control -d); printed
is the total of instructions executed in portcullis's process (its code, libc, libevent,
spdlog; not the kernel) divided by --messages, and the ten functions that executed most
(self). Instruction counts barely move from run to run, so they resolve changes of a percent
or two in the userland share of the work, which CPU time on a shared 2-core machine does not
(the kernel's TCP is most of portcullis's CPU per message: see README, Benchmark).
--keep DIR copies each callgrind dump there (for callgrind_annotate, e.g. --tree=caller to see
who calls malloc).

As root it re-runs itself inside a loopback-only network + PID namespace. Needs valgrind,
postfix (smtp-source, smtp-sink) and a build.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from harness import Portcullis, SmtpSink  # noqa: E402
from harness.ports import free_port  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import plain_config, reexec_in_loopback_namespace, smtp_source  # noqa: E402


def measure(binary, sink, args, tmp):
    out = tempfile.mkdtemp(dir=tmp)
    wrapper = os.path.join(out, "callgrind.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec valgrind --tool=callgrind "
                f"--callgrind-out-file={out}/callgrind.out.%p \"{binary}\" \"$@\"\n")
    os.chmod(wrapper, 0o755)
    pc = Portcullis(binary=wrapper, upstream=sink.address, start_timeout=120,
                    config=plain_config(free_port(), args.log_level)).start()
    try:
        smtp_source(pc.port, args.warmup)
        subprocess.run(["callgrind_control", "-z"], check=True, capture_output=True)
        smtp_source(pc.port, args.messages)
        time.sleep(0.5)  # the last QUITs and closes
        subprocess.run(["callgrind_control", "-d"], check=True, capture_output=True)
        time.sleep(0.5)
    finally:
        pc.stop()
    dumps = [p for p in glob.glob(os.path.join(out, "callgrind.out.*")) if p.endswith(".1")]
    if len(dumps) != 1:
        raise RuntimeError(f"expected one dump after the zeroing, found {dumps}")
    total = None
    with open(dumps[0]) as f:
        for line in f:
            if line.startswith("summary:"):
                total = int(line.split()[1])
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        shutil.copy(dumps[0], os.path.join(args.keep, f"callgrind.{os.path.basename(binary)}.out"))
    top = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=no", dumps[0]],
                         check=True, capture_output=True, text=True).stdout
    return total, top


def top_functions(report, count):
    rows = []
    started = False
    for line in report.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started or not line.strip() or line.startswith("-"):
            continue
        if "main.cc:main" in line or "(below main)" in line or "event_base_dispatch" in line \
                or "libc_start" in line or "ld-linux" in line:
            continue  # the whole run, inclusive
        rows.append(line.strip()[:150])
        if len(rows) == count:
            break
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", action="append")
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--log-level", default="info")
    p.add_argument("--keep")
    args = p.parse_args()
    binaries = [os.path.abspath(b) for b in (args.binary or
                                             [os.path.join(REPO, "build", "portcullis")])]
    reexec_in_loopback_namespace("instructions")
    with tempfile.TemporaryDirectory(prefix="portcullis-instructions-") as tmp:
        sink = SmtpSink(dump=False, verbose=False, max_concurrency=2000, backlog=2000,
                        hostname="sink.bench.test").start()
        try:
            for binary in binaries:
                total, report = measure(binary, sink, args, tmp)
                print(f"binary={binary} messages={args.messages} "
                      f"instructions_per_msg={total / args.messages:,.0f}")
                for row in top_functions(report, 10):
                    print("   ", row)
        finally:
            sink.stop()


if __name__ == "__main__":
    main()
