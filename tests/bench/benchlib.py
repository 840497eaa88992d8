"""Pieces the Python benchmark drivers share (not a test)."""

import os
import subprocess
import sys

HZ = os.sysconf("SC_CLK_TCK")


def reexec_in_loopback_namespace(name):
    """Unless already inside: re-runs this script, as root, in a new network namespace with only
    loopback up (and a PID namespace, so that nothing it starts outlives it). Returns inside."""
    if os.environ.get("PORTCULLIS_BENCH_NETNS"):
        os.environ["PATH"] += ":/usr/sbin:/sbin"
        return
    if os.geteuid() != 0:
        sys.exit(f"{name}: must run as root (the loopback-only namespace)")
    os.environ["PORTCULLIS_BENCH_NETNS"] = "1"
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    os.execvp("unshare", ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--",
                          "sh", "-c", 'ip link set lo up && exec "$@"', name,
                          sys.executable, os.path.abspath(sys.argv[0]), *sys.argv[1:]])


def proc_times(pid):
    """(user, system, reaped children's user, reaped children's system) CPU seconds of `pid`
    from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state): utime..cstime are fields 14..17.
    return tuple(int(x) / HZ for x in fields[11:15])


def smtp_source(port, messages, sessions=20):
    """smtp-source into 127.0.0.1:`port`: `messages` of 10 KiB, one connection each."""
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", "10240",
                    "-f", "bench@client.test", "-t", "sink@test.local", f"127.0.0.1:{port}"],
                   check=True, stdout=subprocess.DEVNULL, timeout=1800)


def plain_config(dns_port, log_level="info", **extra):
    """portcullis with no filters and no DNS in use (a dead loopback server, no reverse
    lookups), identity none, limits out of the load's way."""
    return {"hostname": "bench.test.local",
            "upstream": {"identity": "none"},
            "limits": {"max_connections": 2000, "max_connections_per_ip": 2000},
            "log": {"level": log_level},
            "dns": {"servers": [f"127.0.0.1:{dns_port}"], "reverse_lookup": False},
            **extra}
