#!/usr/bin/env python3
"""Idle + slowloris load and the greeting-latency probe for tests/bench/idle_slowloris.sh.

    idle_slowloris.py --port P --pid PORTCULLIS_PID [--idle 10000] [--slow 500]
                      [--slow-interval 2] [--slow-for 20] [--probes 20]

1. Opens --idle connections that read the 220 and then say nothing, bound round-robin to
   source addresses 127.0.0.2 .. 127.0.0.250 (so no single address holds more than
   idle/249 of them), and reports portcullis's RSS (VmRSS of --pid) before and after:
   the difference divided by the connections is the memory one idle session costs.
2. Starts --slow slowloris connections, half of them trickling a command line one byte every
   --slow-interval seconds, half of them trickling a message body (after EHLO, MAIL, RCPT and
   DATA) the same way, and keeps them going for --slow-for seconds.
3. While all of that is held open: --probes fresh clients from 127.0.0.1, one every 0.5 s,
   each timing connect + 220 greeting. Prints each latency, then one summary line
     idle_slowloris: idle=.. idle_alive=.. slow=.. slow_alive=.. rss_base_kb=.. rss_idle_kb=..
       rss_per_idle_conn_bytes=.. greeting_ms[min=.. median=.. max=..]
   and exits 1 if the slowest probe took 1 s or more (or got no 220).
"""

import argparse
import asyncio
import statistics
import sys
import time

SOURCES = [f"127.0.0.{i}" for i in range(2, 251)]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def open_idle(args, i, sem, held, failures):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", args.port, local_addr=(SOURCES[i % len(SOURCES)], 0)), 30)
            line = await asyncio.wait_for(reader.readline(), 30)
            if not line.startswith(b"220"):
                failures.append(line[:80])
                writer.close()
                return
            held.append((reader, writer))
        except (OSError, asyncio.TimeoutError) as exc:
            failures.append(type(exc).__name__ + ": " + str(exc)[:80])


async def slowloris(args, i, stats, stop):
    """One slow connection: a command trickle (even i) or a DATA trickle (odd i)."""
    src = SOURCES[(i * 7) % len(SOURCES)]
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", args.port, local_addr=(src, 0)), 30)
        await asyncio.wait_for(reader.readline(), 30)
        if i % 2:
            for cmd in (b"EHLO slow.example\r\n", b"MAIL FROM:<slow@client.test>\r\n",
                        b"RCPT TO:<sink@test.local>\r\n", b"DATA\r\n"):
                writer.write(cmd)
                while True:
                    line = await asyncio.wait_for(reader.readline(), 30)
                    if not line or line[3:4] != b"-":
                        break
            trickle = b"Subject: slow\r\n\r\n" + b"x" * 100000
        else:
            trickle = b"EHLO " + b"s" * 400 + b".example\r\n"
        stats["started"] += 1
        for b in trickle:
            if stop.is_set():
                break
            writer.write(bytes([b]))
            await writer.drain()
            stats["bytes"] += 1
            try:
                # Anything the server says (a 421 for being too slow) or EOF ends the trickle.
                data = await asyncio.wait_for(reader.read(512), args.slow_interval)
                if not data:
                    stats["closed_by_server"] += 1
                    return
                stats["server_spoke"] += 1
                stats["last_reply"] = data[:80]
            except asyncio.TimeoutError:
                pass
        stats["alive_at_end"] += 1
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        stats["errors"] += 1
        stats["last_error"] = type(exc).__name__


async def probe(port):
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        line = await asyncio.wait_for(reader.readline(), 10)
        elapsed = time.monotonic() - t0
        writer.write(b"QUIT\r\n")
        writer.close()
        return elapsed if line.startswith(b"220") else None, line[:60]
    except (OSError, asyncio.TimeoutError) as exc:
        return None, type(exc).__name__.encode()


def still_open(held):
    """Connections whose server end has not closed (EOF not yet seen)."""
    # StreamReader records the server's FIN (or a reset) as soon as it arrives, read or not.
    return sum(1 for r, _ in held if not getattr(r, "_eof", False) and r.exception() is None)


async def main_async(args):
    rss_base = rss_kb(args.pid)
    t0 = time.monotonic()
    held, failures = [], []
    sem = asyncio.Semaphore(args.connect_concurrency)
    await asyncio.gather(*(open_idle(args, i, sem, held, failures) for i in range(args.idle)))
    print(f"idle_slowloris: {len(held)}/{args.idle} idle connections got their 220 in "
          f"{time.monotonic() - t0:.1f}s; failures={len(failures)}"
          + (f" e.g. {failures[:3]}" if failures else ""), flush=True)
    await asyncio.sleep(2)  # let the server settle before measuring
    rss_idle = rss_kb(args.pid)
    per_conn = (rss_idle - rss_base) * 1024 / max(1, len(held))
    print(f"idle_slowloris: portcullis VmRSS base={rss_base} kB with_idle={rss_idle} kB "
          f"-> {per_conn:.0f} bytes per idle connection", flush=True)

    stats = {"started": 0, "bytes": 0, "closed_by_server": 0, "server_spoke": 0,
             "alive_at_end": 0, "errors": 0, "last_reply": b"", "last_error": ""}
    stop = asyncio.Event()
    slow_tasks = [asyncio.create_task(slowloris(args, i, stats, stop)) for i in range(args.slow)]
    await asyncio.sleep(args.slow_for)
    rss_slow = rss_kb(args.pid)
    print(f"idle_slowloris: slowloris started={stats['started']}/{args.slow} "
          f"bytes_sent={stats['bytes']} closed_by_server={stats['closed_by_server']} "
          f"errors={stats['errors']}; portcullis VmRSS={rss_slow} kB", flush=True)

    latencies, bad = [], []
    for i in range(args.probes):
        lat, line = await probe(args.port)
        if lat is None:
            bad.append(line)
            print(f"idle_slowloris: probe {i + 1}: NO 220 ({line!r})", flush=True)
        else:
            latencies.append(lat)
            print(f"idle_slowloris: probe {i + 1}: 220 after {lat * 1000:.1f} ms", flush=True)
        await asyncio.sleep(0.5)
    idle_alive = still_open(held)
    slow_alive = sum(1 for t in slow_tasks if not t.done())
    stop.set()
    await asyncio.gather(*slow_tasks, return_exceptions=True)
    for _, w in held:
        w.close()
    ms = [x * 1000 for x in latencies] or [float("inf")]
    worst = max(ms) if not bad else float("inf")
    print(f"idle_slowloris: idle={len(held)} idle_alive={idle_alive} slow={args.slow} "
          f"slow_alive={slow_alive} slow_closed_by_server={stats['closed_by_server']} "
          f"rss_base_kb={rss_base} rss_idle_kb={rss_idle} rss_slow_kb={rss_slow} "
          f"rss_per_idle_conn_bytes={per_conn:.0f} probes={args.probes} no_220={len(bad)} "
          f"greeting_ms[min={min(ms):.1f} median={statistics.median(ms):.1f} "
          f"max={max(ms):.1f}]", flush=True)
    return 1 if worst >= 1000 else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--idle", type=int, default=10000)
    p.add_argument("--slow", type=int, default=500)
    p.add_argument("--slow-interval", type=float, default=2.0)
    p.add_argument("--slow-for", type=float, default=20.0)
    p.add_argument("--probes", type=int, default=20)
    p.add_argument("--connect-concurrency", type=int, default=200)
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
