"""Pieces the Python benchmark drivers share (not a test)."""

import os
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
