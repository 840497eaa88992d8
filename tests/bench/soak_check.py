#!/usr/bin/env python3
"""Compares what the soak client was told with what Postfix queued (run by tests/bench/soak.sh).

    soak_check.py --results FILE --queue DIR --maillog FILE --run-id ID --restarts K

The client's --results file says, per message attempt, which reply decided it. Postfix's
queue directory holds what Postfix really queued: soak.sh's Postfix puts every message on hold
(header_checks HOLD), so each committed queue file stays in DIR/hold and nothing is delivered.
A queue file counts once it is committed (mode 0700: cleanup sets the owner-execute bit as its
last step, before smtpd may answer 250). Message-IDs are read from the files themselves, so the
count does not depend on the maillog (whose daemon, postlogd, is killed along with the rest).

Prints details, then one line
    soak: sent=.. acked_250=.. queued=.. lost=.. duplicates=.. tempfail=.. mta_restarts=..
lost = acked with 250 but in no committed queue file; duplicates = queue files beyond the first
for one Message-ID (a real sender's retry after a reply it never saw). Exit 1 if lost > 0.
"""

import argparse
import collections
import os
import re
import stat
import sys

MSGID = re.compile(rb"Message-ID: <soak\.([A-Za-z0-9_-]+)\.(\d+)@soak\.test>")
ATTEMPT = re.compile(rb"X-Soak-Attempt: (\d+)")


def scan_queue(queue_dir, run_id):
    """{n: [(path, attempt)]} of committed files, and counts of the other files seen."""
    queued = collections.defaultdict(list)
    other = collections.Counter()
    for sub in ("incoming", "active", "deferred", "hold", "maildrop", "corrupt"):
        for root, _, files in os.walk(os.path.join(queue_dir, sub)):
            for name in files:
                path = os.path.join(root, name)
                try:
                    st = os.stat(path)
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    other["unreadable"] += 1
                    continue
                if st.st_mode & stat.S_IXUSR == 0:
                    other[f"uncommitted_in_{sub}"] += 1  # cleanup was killed while writing it
                    continue
                m = MSGID.search(data)
                if not m or m.group(1).decode() != run_id:
                    other[f"foreign_in_{sub}"] += 1
                    continue
                a = ATTEMPT.search(data)
                queued[int(m.group(2))].append((path, int(a.group(1)) if a else 0))
                if sub != "hold":
                    other[f"committed_in_{sub}"] += 1
    return queued, other


def read_results(path):
    attempts = collections.defaultdict(list)  # n -> [(attempt, stage, code, text)]
    summary = ""
    with open(path, encoding="latin-1") as f:
        for line in f:
            if line.startswith("#summary"):
                summary = line.strip()
                continue
            parts = line.rstrip("\n").split(" ", 4)
            if len(parts) < 4:
                continue
            n, attempt, stage, code = int(parts[0]), int(parts[1]), parts[2], parts[3]
            attempts[n].append((attempt, stage, code, parts[4] if len(parts) > 4 else ""))
    return attempts, summary


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--maillog", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--restarts", type=int, default=0)
    args = p.parse_args()

    attempts, summary = read_results(args.results)
    queued, other = scan_queue(args.queue, args.run_id)
    acked = {n for n, tries in attempts.items()
             if any(stage == "eod" and code == "250" for _, stage, code, _ in tries)}
    codes = collections.Counter(code for tries in attempts.values() for _, _, code, _ in tries)
    tempfail = sum(v for k, v in codes.items() if k.startswith("4"))
    broken = codes.get("000", 0)
    lost = sorted(acked - set(queued))
    dup_ids = {n: files for n, files in queued.items() if len(files) > 1}
    duplicates = sum(len(files) - 1 for files in dup_ids.values())
    queued_unacked = sorted(set(queued) - acked)
    try:
        with open(args.maillog, encoding="latin-1") as f:
            maillog = f.read()
    except OSError:
        maillog = ""
    logged_holds = len(re.findall(r"hold: header Message-ID: <soak\.", maillog))

    print(f"soak: client {summary.replace('#summary ', '') or '(no summary: client died?)'}")
    print(f"soak: reply codes over all attempts: "
          + " ".join(f"{k}={v}" for k, v in sorted(codes.items())))
    print(f"soak: queue files={sum(len(v) for v in queued.values())} "
          f"distinct_message_ids={len(queued)} other={dict(other) or '-'} "
          f"maillog_hold_lines={logged_holds}")
    if dup_ids:
        by_reason = collections.Counter()
        for n in dup_ids:
            seen = [code for _, stage, code, _ in attempts.get(n, []) if stage == "eod"]
            by_reason[",".join(seen)] += 1
        print("soak: duplicates by the client's end-of-data replies: "
              + " ".join(f"[{k}]={v}" for k, v in by_reason.most_common(10)))
        for n in sorted(dup_ids)[:5]:
            eod = [(a, code) for a, stage, code, _ in attempts.get(n, []) if stage == "eod"]
            print(f"soak:   duplicate n={n} queue_files(id,attempt)="
                  f"{[(os.path.basename(p), a) for p, a in dup_ids[n]]} client_eod(attempt,code)={eod}")
    if queued_unacked:
        print(f"soak: queued but never acked with 250 (client gave up or got 5xx): "
              f"{len(queued_unacked)} e.g. {queued_unacked[:5]}")
    for n in lost[:20]:
        tries = attempts.get(n, [])
        print(f"soak: LOST <soak.{args.run_id}.{n}@soak.test> attempts={len(tries)} "
              f"client_eod={[t for t in tries if t[1] == 'eod']} last={tries[-3:]}")
        ids = [m for m in re.findall(r"queued as (\w+)", " ".join(t for _, _, _, t in attempts[n]))]
        for qid in ids:
            lines = [line for line in maillog.splitlines() if qid in line]
            print(f"soak:   maillog for {qid}: {lines[:10] or 'nothing'}")
    print(f"soak: sent={args.messages} acked_250={len(acked)} queued={len(queued)} "
          f"lost={len(lost)} duplicates={duplicates} tempfail={tempfail} broken={broken} "
          f"mta_restarts={args.restarts}")
    if not acked:
        print("soak: FAIL: no message was acked with 250 (is Postfix refusing them?)")
        return 1
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
