#!/usr/bin/env python3
"""Comparison driver (tests/bench/compare.sh runs it inside a loopback-only namespace).

Every path ends at the same final MTA (smtp-sink; with --final-postfix also a second table
with a private Postfix that queues and discards), and all of them run in one process tree, in
interleaved rounds whose order rotates from round to round:

    direct              smtp-source → final
    portcullis          smtp-source → portcullis (no filters, no reverse lookups) → final
    portcullis+dnsbl    the same with the dnsbl and rdns filters and the core's reverse lookups,
                        against a private unbound; the cache is warm after the warm-up
    postfix-proxy       smtp-source → Postfix smtpd with smtpd_proxy_filter → final
    haraka              smtp-source → Haraka (queue/smtp_forward) → final
    tcp-relay           smtp-source → HAProxy 2.6 in mode tcp (one thread) → final: a byte
                        relay that parses nothing, opens one MTA connection per client
                        connection and runs no filter; the floor any proxy in between pays
                        in extra hops and wake-ups on this machine
    floor-relay         smtp-source → tests/bench/floor_relay.cc → final: the system calls
                        portcullis makes for the message (a pooled MTA connection, MAIL and
                        RCPT forwarded, DATA at the dot) and nothing else: no filter, no
                        parsing beyond line ends, no log, no allocation, its own epoll loop
                        without EPOLL_CTL_DEL; the kernel's floor for a pooled SMTP relay

Per path and round: smtp-source's rate (messages / seconds until its last reply), the CPU
time (user + system, /proc, reaped children included) of the path's own processes per
message, and then a latency run: one transaction at a time from a small client of our own,
timing connect → 220 and MAIL → the 250 after the dot (MAIL, RCPT, DATA, message, dot, each
waiting for its reply). The report gives medians over rounds, the CPU divided by the final
MTA's own CPU per message on the direct path in the same run, and the latency statistics taken
per round, the direct path's of the same round subtracted, median over rounds.
"""

import argparse
import datetime
import os
import platform
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from harness import Portcullis, Postfix, SmtpSink, Unbound  # noqa: E402
from harness.haproxy import HAProxy  # noqa: E402
from harness.ports import free_port, wait_listening  # noqa: E402
from harness.process import Fixture, ManagedProcess, tail  # noqa: E402

HARAKA_VERSION = "3.3.4"
HZ = os.sysconf("SC_CLK_TCK")
RCPT = "sink@test.local"
SENDER = "bench@client.test"


# -- CPU accounting ------------------------------------------------------------------------

def _proc_table():
    """{pid: (ppid, ticks)} for every process; ticks = utime + stime + cutime + cstime, so a
    child that exited and was reaped still counts in its parent."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
        table[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    return table


def tree_cpu(root):
    """CPU seconds of `root` and every descendant (alive ones, plus reaped ones via cutime)."""
    table = _proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][1]
            todo += children.get(pid, [])
    return total / HZ


# -- load and latency ----------------------------------------------------------------------

def run_source(port, args, watch):
    """One smtp-source run; returns (msg/s, {name: CPU µs per message}, source µs/msg)."""
    before = {name: tree_cpu(pid()) for name, pid in watch.items()}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = ["smtp-source", "-s", str(args.sessions), "-m", str(args.messages), "-l",
           str(args.size), "-f", SENDER, "-t", RCPT, f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1800)
    t1 = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"smtp-source to {port} failed: {done.stdout[-2000:]}")
    time.sleep(0.2)  # the last QUITs and closes, after the final replies
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {name: (tree_cpu(pid()) - before[name]) * 1e6 / args.messages
           for name, pid in watch.items()}
    source = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1e6 / args.messages
    return args.messages / (t1 - t0), cpu, source


def make_body(size):
    """A message of about `size` bytes (like smtp-source's -l), dot-terminated."""
    head = (f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: latency probe\r\n"
            "Message-ID: <probe@client.test>\r\n\r\n")
    line = "x" * 78 + "\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body + ".\r\n").encode()


class _Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def reply(self, want):
        while True:
            line = self.file.readline()
            if not line:
                raise RuntimeError(f"connection closed, wanted {want}")
            if len(line) < 4 or line[3:4] != b"-":
                break
        if not line.startswith(want):
            raise RuntimeError(f"wanted {want!r}, got {line!r}")

    def cmd(self, data, want):
        self.sock.sendall(data)
        self.reply(want)

    def close(self):
        self.file.close()
        self.sock.close()


def latency_run(port, count, body):
    """`count` transactions one after another, each on its own connection; returns
    ([connect → 220 seconds], [MAIL → 250 after the dot seconds])."""
    connect, txn = [], []
    for _ in range(count):
        t0 = time.perf_counter()
        c = _Conn(port)
        c.reply(b"220")
        t1 = time.perf_counter()
        c.cmd(b"EHLO latency.client.test\r\n", b"250")
        t2 = time.perf_counter()
        c.cmd(f"MAIL FROM:<{SENDER}>\r\n".encode(), b"250")
        c.cmd(f"RCPT TO:<{RCPT}>\r\n".encode(), b"250")
        c.cmd(b"DATA\r\n", b"354")
        c.cmd(body, b"250")
        t3 = time.perf_counter()
        c.cmd(b"QUIT\r\n", b"221")
        c.close()
        connect.append(t1 - t0)
        txn.append(t3 - t2)
    return connect, txn


def latency_interleaved(ports, count, body, limits, gap):
    """`count` turns of one transaction on each path in `ports` ([(name, port)]), each on its
    own connection, path after path: every path meets the machine in the same state (the cores'
    power states after a load run, another process's burst), which a path's transactions run
    back to back would not (the direct path's first ~200 after a load run took half the time of
    the rest). With `gap` (seconds) the client waits that long after each transaction: what a
    path does after its last reply (Postfix's smtpd logs, updates anvil) is then over before the
    next path's turn, but the machine idles between transactions, which changes every path's
    times (see README, Benchmark). `limits`: at most that many for a path. Returns
    {name: ([connect s], [txn s])}."""
    out = {name: ([], []) for name, _ in ports}
    for i in range(count):
        for name, port in ports:
            if i < limits.get(name, count):
                connect, txn = latency_run(port, 1, body)
                out[name][0].extend(connect)
                out[name][1].extend(txn)
                if gap > 0:
                    time.sleep(gap)
    return out


def quantile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))]


# -- Haraka --------------------------------------------------------------------------------

class Haraka(Fixture):
    """Haraka from the npm cache dir, forwarding everything to `forward` with smtp_forward.
    public_ip is set and the plugin list replaced: both keep it off the network."""
    name = "haraka"

    def __init__(self, cache, forward_port):
        super().__init__()
        self.bin = os.path.join(cache, "node_modules", ".bin", "haraka")
        self.forward_port = forward_port
        self.port = free_port()
        self.proc = None

    def _start(self):
        tmp = self.make_tmpdir()
        srv = os.path.join(tmp, "srv")
        subprocess.run([self.bin, "-i", srv], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.STDOUT, timeout=120)
        conf = os.path.join(srv, "config")
        files = {
            "smtp.ini": f"listen=127.0.0.1:{self.port}\n"
                        # Without public_ip Haraka may ask a STUN server for it.
                        "public_ip=127.0.0.1\n",
            "me": "haraka.bench.test\n",
            "host_list": "test.local\n",
            # The default list has DNS plugins (mail_from.is_resolvable and others).
            "plugins": "rcpt_to.in_host_list\nqueue/smtp_forward\n",
            "smtp_forward.ini": f"host=127.0.0.1\nport={self.forward_port}\n"
                                "enable_tls=false\nmax_connections=1000\n"
                                "connect_timeout=10\ntimeout=30\n",
            "log.ini": "[main]\nlevel=warn\ntimestamps=true\n",
        }
        for name, text in files.items():
            with open(os.path.join(conf, name), "w") as f:
                f.write(text)
        self.proc = ManagedProcess([self.bin, "-c", srv], os.path.join(tmp, "haraka.log"))
        try:
            wait_listening(self.port, 60, alive=self.proc.alive)
        except Exception as exc:
            raise RuntimeError(f"haraka did not start: {exc}\n{tail(self.proc.log_text())}")

    def _stop(self):
        if self.proc:
            self.proc.terminate(timeout=10)


# -- one suite: every path against one final MTA -------------------------------------------

class TcpRelay(HAProxy):
    """HAProxy in mode tcp with one thread (portcullis runs one worker here), no PROXY header:
    the bytes of each client connection relayed on a connection of their own to the final MTA."""
    name = "tcp-relay"

    def __init__(self, backend):
        super().__init__(backend=backend, send_proxy=None)

    def config_text(self):
        return super().config_text().replace("    maxconn 1000\n",
                                             "    maxconn 4000\n    nbthread 1\n")


class FloorRelay(Fixture):
    """tests/bench/floor_relay.cc, compiled into its temp dir, relaying to `forward`; `extra`
    are its options (--epoll-del, --processes N)."""
    name = "floor-relay"

    def __init__(self, forward_port, extra=()):
        super().__init__()
        self.forward_port = forward_port
        self.extra = list(extra)
        self.port = free_port()
        self.proc = None

    def _start(self):
        tmp = self.make_tmpdir()
        exe = os.path.join(tmp, "floor_relay")
        subprocess.run(["c++", "-O2", "-std=c++20", "-o", exe,
                        os.path.join(REPO, "tests", "bench", "floor_relay.cc")],
                       check=True, timeout=300)
        self.proc = ManagedProcess([exe, self.port, self.forward_port, *self.extra],
                                   os.path.join(tmp, "floor_relay.log"))
        try:
            wait_listening(self.port, 10, alive=self.proc.alive)
        except Exception as exc:
            raise RuntimeError(f"floor_relay did not start: {exc}\n{tail(self.proc.log_text())}")

    def _stop(self):
        if self.proc:
            self.proc.terminate(timeout=10)


def start_final(kind):
    """(fixture, pid function) of the final MTA."""
    if kind == "smtp-sink":
        sink = SmtpSink(dump=False, verbose=False, max_concurrency=2000, backlog=2000,
                        hostname="sink.bench.test").start()
        return sink, lambda: sink.proc.pid
    pf = Postfix(hostname="final.bench.test", message_size_limit=0,
                 extra_main_cf={"default_transport": "discard:bench",
                                "virtual_transport": "discard:bench"}).start()
    return pf, pf.master_pid


def start_paths(args, final, final_pid, fixtures):
    """[(name, port, {name: pid function})] in the configured order; starts what they need."""
    paths = [("direct", final.port, {})]

    def portcullis(extra):
        pc = Portcullis(binary=args.binary, upstream=final.address, config={
            "hostname": "bench.test.local",
            "upstream": {"identity": "none"},
            "limits": {"max_connections": 2000, "max_connections_per_ip": 2000},
            "log": {"level": "info"},
            **extra}).start()
        fixtures.append(pc)
        return pc

    if "portcullis" in args.paths:
        pc = portcullis({"dns": {"servers": [f"127.0.0.1:{free_port()}"],
                                 "reverse_lookup": False}})
        paths.append(("portcullis", pc.port, {"proxy": lambda pc=pc: pc.pid}))
    if "portcullis+dnsbl" in args.paths:
        unbound = Unbound().start()
        fixtures.append(unbound)
        pc = portcullis({
            "dns": {"servers": [unbound.address]},
            "filters": [
                {"name": "dnsbl",
                 "zones": ["dnsbl.test=127.0.0.[2..11]*2", "dnswl.test=127.0.[0..255].[1..3]*-5"],
                 "threshold": 2},
                {"name": "rdns", "defer_to": "rcpt"}]})
        paths.append(("portcullis+dnsbl", pc.port, {"proxy": lambda pc=pc: pc.pid}))
    if "postfix-proxy" in args.paths:
        pf = Postfix(hostname="proxy.bench.test", message_size_limit=0, extra_main_cf={
            "smtpd_proxy_filter": f"127.0.0.1:{final.port}",
            "smtpd_proxy_ehlo": "proxy.bench.test"}).start()
        fixtures.append(pf)
        paths.append(("postfix-proxy", pf.port, {"proxy": pf.master_pid}))
    if "haraka" in args.paths:
        h = Haraka(args.haraka_cache, final.port).start()
        fixtures.append(h)
        paths.append(("haraka", h.port, {"proxy": lambda h=h: h.proc.pid}))
    if "tcp-relay" in args.paths:
        relay = TcpRelay(final.address).start()
        fixtures.append(relay)
        paths.append(("tcp-relay", relay.port, {"proxy": lambda r=relay: r.proc.pid}))
    if "floor-relay" in args.paths:
        floor = FloorRelay(final.port).start()
        fixtures.append(floor)
        paths.append(("floor-relay", floor.port, {"proxy": lambda f=floor: f.proc.pid}))
    for name, port, watch in paths:
        watch["final"] = final_pid
    return paths


def run_suite(kind, args, out):
    """Runs every path against one final MTA; returns {path: {...}} with per-round lists."""
    fixtures = []
    final, final_pid = start_final(kind)
    fixtures.append(final)
    try:
        paths = start_paths(args, final, final_pid, fixtures)
        body = make_body(args.size)
        results = {name: {"rate": [], "proxy": [], "final": [], "source": [], "connect": [],
                          "txn": [], "connect_rounds": [], "txn_rounds": []}
                   for name, _, _ in paths}
        warm = argparse.Namespace(**vars(args))
        warm.messages = min(args.messages, 500)
        for name, port, watch in paths:  # warm caches, JITs and process pools
            run_source(port, warm, watch)
            latency_run(port, 20, body)
        for r in range(args.rounds):
            shift = r % len(paths)
            order = paths[shift:] + paths[:shift]
            for name, port, watch in order:
                rate, cpu, source = run_source(port, args, watch)
                res = results[name]
                res["rate"].append(rate)
                res["proxy"].append(cpu.get("proxy", 0.0))
                res["final"].append(cpu["final"])
                res["source"].append(source)
                print(f"final={kind} round={r + 1} path={name} rate={rate:.0f} msg/s "
                      f"cpu_us_per_msg[proxy={cpu.get('proxy', 0):.0f} "
                      f"final={cpu['final']:.0f} source={source:.0f}]", flush=True)
                out.write(f"{kind}\t{r + 1}\t{name}\t{rate:.1f}\t{cpu.get('proxy', 0):.1f}\t"
                          f"{cpu['final']:.1f}\t{source:.1f}\n")
            if args.latency:
                # Haraka's ~43 ms per transaction needs no precision: 200 at most.
                lat = latency_interleaved([(name, port) for name, port, _ in order],
                                          args.latency, body, {"haraka": 200},
                                          args.latency_gap / 1000)
                for name, (connect, txn) in lat.items():
                    res = results[name]
                    res["connect"] += connect
                    res["txn"] += txn
                    res["connect_rounds"].append(connect)
                    res["txn_rounds"].append(txn)
                    print(f"final={kind} round={r + 1} path={name} latency_us[txn "
                          f"p50={quantile(txn, .5) * 1e6:.0f} p99={quantile(txn, .99) * 1e6:.0f}"
                          f" connect p50={quantile(connect, .5) * 1e6:.0f}]", flush=True)
        for name, port, watch in paths:
            for f in fixtures:
                if isinstance(f, (Portcullis, Haraka, TcpRelay, FloorRelay)) and not f.proc.alive():
                    raise RuntimeError(f"{f.name} exited during the run:\n{tail(f.log_text())}")
        return results
    finally:
        for f in reversed(fixtures):
            try:
                f.stop()
            except Exception as exc:  # report, keep stopping the others
                print(f"compare: stopping {f.name}: {exc}", file=sys.stderr)


# -- report --------------------------------------------------------------------------------

def summarize(results):
    direct = results["direct"]
    d_rate = statistics.median(direct["rate"])
    d_final = statistics.median(direct["final"])
    lat = bool(direct["txn"])
    rows = {}
    for name, res in results.items():
        row = {"rate": statistics.median(res["rate"]), "rate_min": min(res["rate"]),
               "rate_max": max(res["rate"]), "proxy": statistics.median(res["proxy"]),
               "proxy_min": min(res["proxy"]), "proxy_max": max(res["proxy"]),
               "final": statistics.median(res["final"])}
        row["ratio"] = row["rate"] / d_rate
        row["merit"] = row["proxy"] / d_final
        if lat:
            # Each statistic per round, then the median over rounds: one round's outliers
            # (a scheduling hiccup) do not decide the published p99.
            for key in ("txn", "connect"):
                row[key + "_stats"] = [stats_of(v) for v in res[key + "_rounds"]]
                row[key] = {s: statistics.median(r[s] for r in row[key + "_stats"])
                            for s in STATS}
        rows[name] = row
    if lat:
        # Added latency: the path's statistic minus the direct path's in the same round (the
        # two ran minutes apart at most), median over rounds.
        for name, row in rows.items():
            for key in ("txn", "connect"):
                pairs = zip(row[key + "_stats"], rows["direct"][key + "_stats"])
                diffs = [{s: (p[s] - d[s]) * 1e6 for s in STATS} for p, d in pairs]
                row[key + "_added"] = {s: statistics.median(x[s] for x in diffs) for s in STATS}
    return rows, d_final


STATS = ("mean", "p50", "p99")


def stats_of(v):
    return {"mean": statistics.fmean(v), "p50": quantile(v, .5), "p99": quantile(v, .99)}


def table(kind, rows, d_final, args):
    lat = "txn" in rows["direct"]
    head = ("| path | msg/s (median; min–max) | ratio to direct | proxy CPU µs/msg | "
            f"÷ {kind} CPU/msg on direct |")
    sep = "|---|---|---|---|---|"
    if lat:
        head += (" added latency MAIL→250 after dot, µs: mean / p50 / p99 |"
                 " added connect→220 p50, µs |")
        sep += "---|---|"
    lines = [head, sep]
    for name, row in rows.items():
        if name == "direct":
            cells = [f"direct ({kind} alone)",
                     f"{row['rate']:,.0f} ({row['rate_min']:,.0f}–{row['rate_max']:,.0f})",
                     "1.00", f"— ({kind}: {d_final:.0f})", "—"]
        else:
            cells = [name,
                     f"{row['rate']:,.0f} ({row['rate_min']:,.0f}–{row['rate_max']:,.0f})",
                     f"{row['ratio']:.2f}",
                     f"{row['proxy']:.0f} ({row['proxy_min']:.0f}–{row['proxy_max']:.0f})",
                     f"**{row['merit']:.2f}**"]
        if lat:
            if name == "direct":
                t, c = row["txn"], row["connect"]
                cells += [f"(direct itself: {t['mean'] * 1e6:.0f} / {t['p50'] * 1e6:.0f} / "
                          f"{t['p99'] * 1e6:.0f})", f"(direct itself: {c['p50'] * 1e6:.0f})"]
            else:
                a, c = row["txn_added"], row["connect_added"]
                cells += [f"{a['mean']:.0f} / {a['p50']:.0f} / {a['p99']:.0f}",
                          f"{c['p50']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return (f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
            f"load average at start {load}")


def versions(args):
    out = []
    for cmd in (["postconf", "-d", "mail_version"], ["node", "--version"]):
        try:
            out.append(subprocess.run(cmd, capture_output=True, text=True,
                                      timeout=30).stdout.strip())
        except OSError:
            pass
    try:
        rev = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        rev = "?"
    try:
        hap = subprocess.run(["haproxy", "-v"], capture_output=True, text=True,
                             timeout=30).stdout.split()
        hap = hap[2] if len(hap) > 2 else "?"
    except OSError:
        hap = "?"
    return f"portcullis {rev} ({args.binary}); Postfix {out[0].split('=')[-1].strip()}; " \
           f"Haraka {HARAKA_VERSION} on node {out[1] if len(out) > 1 else '?'}; HAProxy {hap}"


def plot(rows, latency, path_png, tmp):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("compare: gnuplot missing (deploy/install-deps.sh installs gnuplot-nox); "
              "no plot", file=sys.stderr)
        return False
    names = list(rows)
    with open(os.path.join(tmp, "bars.dat"), "w") as f:
        for i, name in enumerate(names):
            r = rows[name]
            cpu, lo, hi = (r["proxy"], r["proxy_min"], r["proxy_max"]) if name != "direct" \
                else (r["final"], r["final"], r["final"])
            f.write(f"{i}\t\"{name}\"\t{r['rate']:.1f}\t{r['rate_min']:.1f}\t"
                    f"{r['rate_max']:.1f}\t{cpu:.1f}\t{lo:.1f}\t{hi:.1f}\n")
    cdf_plots = []
    if latency:
        for i, name in enumerate(names):
            v = sorted(latency[name])
            step = max(1, len(v) // 400)
            data = os.path.join(tmp, f"cdf{i}.dat")
            with open(data, "w") as f:
                for j in range(0, len(v), step):
                    f.write(f"{v[j] * 1e3:.4f}\t{(j + 1) / len(v):.4f}\n")
                f.write(f"{v[-1] * 1e3:.4f}\t1\n")
            cdf_plots.append(f"'{data}' using 1:2 with lines lw 2 title '{name}'")
    script = f"""
set terminal pngcairo size 1500,460 font 'DejaVu Sans,10'
set output '{path_png}'
set multiplot layout 1,{3 if latency else 2}
set style fill solid 0.6 border -1
set boxwidth 0.6
set grid ytics
set xtics rotate by -25 scale 0
set yrange [0:*]
set xrange [-0.6:{len(names) - 0.4}]
set title 'throughput, msg/s (median, min-max of rounds)'
plot '{tmp}/bars.dat' using 1:3:xtic(2) with boxes lc rgb '#4477aa' notitle, \\
     '' using 1:3:4:5 with yerrorbars lc rgb 'black' pt 0 notitle
set title 'CPU µs per message: the proxy (direct: smtp-sink itself)'
plot '{tmp}/bars.dat' using 1:6:xtic(2) with boxes lc rgb '#cc6677' notitle, \\
     '' using 1:6:7:8 with yerrorbars lc rgb 'black' pt 0 notitle
"""
    if latency:
        script += f"""
set title 'MAIL → 250 after the dot, one transaction at a time (CDF)'
set logscale x
set xrange [*:*]
set xtics norotate auto scale 1
set xlabel 'ms'
set yrange [0:1]
set key bottom right opaque
set grid xtics ytics
plot {', '.join(cdf_plots)}
"""
    script += "unset multiplot\n"
    done = subprocess.run([gnuplot], input=script, text=True, capture_output=True, timeout=120)
    if done.returncode != 0:
        print(f"compare: gnuplot failed: {done.stderr}", file=sys.stderr)
        return False
    return True


README_BEGIN = "<!-- compare.sh results: begin (generated, see tests/bench/compare.sh) -->"
README_END = "<!-- compare.sh results: end -->"


def update_readme(args, text, plotted):
    """Replaces the generated block of README.md with this run's report (the plot is linked
    from the results dir, relative to the repository)."""
    path = os.path.join(REPO, "README.md")
    with open(path) as f:
        readme = f.read()
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        print("compare: README.md has no generated block; --readme did nothing", file=sys.stderr)
        return
    png = os.path.relpath(os.path.join(args.out, "compare.png"), REPO)
    body = [line.replace("](compare.png)", f"]({png})") for line in text[2:]]
    body = [line.replace("## Final MTA", "#### Final MTA") for line in body]
    block = README_BEGIN + "\n" + "\n".join(body).strip() + "\n" + README_END
    with open(path, "w") as f:
        f.write(readme[:start] + block + readme[end + len(README_END):])
    print(f"compare: updated the generated block of {path}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--latency", type=int, default=1000)
    # ms the client waits after each latency transaction (0: the next path's turn at once)
    p.add_argument("--latency-gap", type=float, default=0.0)
    p.add_argument("--binary", default=os.path.join(REPO, "build", "portcullis"))
    p.add_argument("--paths",
                   default="portcullis,portcullis+dnsbl,postfix-proxy,haraka,tcp-relay,floor-relay")
    p.add_argument("--final-postfix", action="store_true")
    p.add_argument("--haraka-cache", default="/var/cache/portcullis-bench/haraka")
    p.add_argument("--out", default=os.path.join(REPO, "tests", "bench", "results"))
    p.add_argument("--readme", action="store_true")
    p.add_argument("--command", default="")
    args = p.parse_args()
    args.binary = os.path.abspath(args.binary)
    args.paths = [x for x in args.paths.split(",") if x]
    os.makedirs(args.out, exist_ok=True)
    started = time.monotonic()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    host = machine()
    print(f"compare: {host}", flush=True)
    kinds = ["smtp-sink"] + (["postfix"] if args.final_postfix else [])
    tables = []
    with open(os.path.join(args.out, "compare.tsv"), "w") as raw:
        raw.write("final\tround\tpath\tmsg_per_s\tproxy_cpu_us_per_msg\tfinal_cpu_us_per_msg\t"
                  "source_cpu_us_per_msg\n")
        first_rows = first_lat = None
        for kind in kinds:
            results = run_suite(kind, args, raw)
            rows, d_final = summarize(results)
            tables.append((kind, table(kind, rows, d_final, args)))
            if first_rows is None:
                first_rows = rows
                first_lat = {n: r["txn"] for n, r in results.items()} if args.latency else None
    elapsed = time.monotonic() - started
    png = os.path.join(args.out, "compare.png")
    tmp = tempfile.mkdtemp(prefix="portcullis-compare-")
    try:
        plotted = plot(first_rows, first_lat, png, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = [f"# Comparison: every path into the same final MTA ({when})", "",
            f"Command: `{args.command or 'tests/bench/compare.py ' + shlex.join(sys.argv[1:])}`",
            "", f"Machine: {host}.", "", f"Software: {versions(args)}.", "",
            f"Load: smtp-source, {args.messages:,} messages of {args.size:,} bytes per run, "
            f"{args.sessions} sessions, one connection per message; {args.rounds} rounds, "
            "paths interleaved (order rotated each round), medians over rounds. "
            + (f"Latency: after each round's load runs, {args.latency} turns of one "
               "transaction on each path in turn (Haraka: the first "
               f"{min(args.latency, 200)} turns), each on a new connection"
               + (f" and followed by a {args.latency_gap:g} ms pause" if args.latency_gap else "")
               + "; each "
               "statistic is taken per round, the direct path's of the same round subtracted, "
               "and the median over rounds shown. " if args.latency else "")
            + f"Whole run: {elapsed:.0f} s.", "",
            "Proxy CPU is user + system time of the proxy's processes per message (portcullis: "
            "its one process; Postfix: the whole private instance, master and every smtpd; "
            "Haraka: its two node processes, launcher and server; tcp-relay: HAProxy's one "
            "process, one thread; floor-relay: its one process); kernel softirq time is in "
            "none of them. The ÷ column is that CPU divided by the final MTA's own CPU per "
            "message on the direct path in the same run: the figure of merit, how many final "
            "MTAs' worth of CPU the proxy costs. All processes share the machine's cores, so "
            "compare ratios within this run, never absolute numbers across runs.", ""]
    text = [line if line.startswith(("#", "|", "!"))
            else textwrap.fill(line, 96, break_on_hyphens=False, break_long_words=False)
            for line in text]
    for kind, t in tables:
        text += [f"## Final MTA: {kind}", "", t]
    if plotted:
        text += ["![msg/s, CPU per message and latency per path](compare.png)", ""]
    with open(os.path.join(args.out, "compare.md"), "w") as f:
        f.write("\n".join(text))
    if args.readme:
        update_readme(args, text, plotted)
    print("\n".join(text), flush=True)
    print(f"compare: wrote {args.out}/compare.md"
          + (", compare.png" if plotted else "") + ", compare.tsv", flush=True)


if __name__ == "__main__":
    main()
