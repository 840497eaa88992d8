#!/usr/bin/env bash
# Published comparison (not a test): every path into the same smtp-sink, in one run, rounds
# interleaved, and a markdown table plus a PNG plot written to a results dir.
#
#   sudo tests/bench/compare.sh [--messages 3000] [--sessions 20] [--size 10240] [--rounds 5]
#                               [--latency 1000] [--binary build/portcullis] [--final-postfix]
#                               [--paths portcullis,portcullis+dnsbl,postfix-proxy,haraka,tcp-relay,floor-relay]
#                               [--out tests/bench/results] [--haraka-cache DIR] [--readme]
#
# Paths: direct (smtp-source → smtp-sink); portcullis (no filters, no reverse lookups);
# portcullis+dnsbl (dnsbl + rdns + the core's reverse lookups against a private unbound, cache
# warm); postfix-proxy (a private Postfix whose smtpd proxies to the sink with
# smtpd_proxy_filter); haraka (Haraka 3.3.4, queue/smtp_forward to the sink, off the network:
# public_ip set and its own two-plugin list); tcp-relay (HAProxy in mode tcp, one thread: a
# byte relay that parses nothing and runs no filter, the floor of any proxy's extra hops and
# wake-ups on the machine); floor-relay (tests/bench/floor_relay.cc, compiled with c++ into the
# temp dir: the system calls portcullis makes for a message and nothing else, no filter, no
# log, no allocation, no libevent, no EPOLL_CTL_DEL: the kernel's floor for a pooled SMTP relay,
# which no relay that forwards the transaction before it answers goes below). --final-postfix
# adds a second table with a private Postfix (queue, discard) as the final MTA instead of
# smtp-sink: it offers PIPELINING and CHUNKING (the floor-relay sends DATA all the same), and
# accepting costs it a queue file.
#
# Per path and round: smtp-source's msg/s and the proxy's CPU µs per message (user + system of
# its processes, /proc; reaped children included); then, once every path has had its run,
# --latency turns of one transaction on each path in turn, each on its own connection (connect →
# 220, and MAIL → 250 after the dot; Haraka 200 at most: its ~43 ms stall needs no precision).
# Interleaved so that every path meets the machine in the same state: run back to back after a
# load run, the direct path's first ~200 transactions took half the time of the rest. The
# report: median msg/s and ratio to direct, proxy CPU per message and that divided by
# smtp-sink's own CPU per message on the direct path (the figure of merit), latency mean / p50 /
# p99 in µs per round less the direct path's, median.
# Writes OUT/compare.md (the table, machine, command), OUT/compare.png (msg/s, CPU per message,
# latency CDF; needs gnuplot, from gnuplot-nox) and OUT/compare.tsv (every round). --readme
# also replaces the generated block of README.md's comparison section with the new report.
#
# Haraka is installed once with npm (the only network use, before the namespace is entered)
# into --haraka-cache (default /var/cache/portcullis-bench/haraka); leave haraka out of --paths
# to skip it. As root it re-runs itself inside a loopback-only network + PID namespace, so every
# byte stays on loopback and nothing outlives it. The defaults took 5 to 5.5 minutes on the
# 2-core development machine with other builds running (load average 7-17); --final-postfix added 11.
# Needs postfix (smtp-source, smtp-sink), unbound, haproxy, python3, c++ (for the floor-relay),
# gnuplot, and node/npm for Haraka.
set -euo pipefail

SELF=$(realpath "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/../.."
REPO=$PWD
ARGS=("$@")
BINARY=$REPO/build/portcullis
HARAKA_CACHE=/var/cache/portcullis-bench/haraka
HARAKA_VERSION=3.3.4
PATHS=portcullis,portcullis+dnsbl,postfix-proxy,haraka,tcp-relay,floor-relay
usage() { sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//'; }
for ((i = 0; i < ${#ARGS[@]}; i++)); do
  case ${ARGS[$i]} in
    -h|--help) usage; exit 0 ;;
    --binary) BINARY=${ARGS[$((i + 1))]} ;;
    --haraka-cache) HARAKA_CACHE=${ARGS[$((i + 1))]} ;;
    --paths) PATHS=${ARGS[$((i + 1))]} ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "compare: must run as root (Postfix's master, the namespace)" >&2; exit 1; }
export PATH=$PATH:/usr/sbin:/sbin
for prog in smtp-source smtp-sink postfix unbound python3 c++; do
  command -v "$prog" >/dev/null ||
    { echo "compare: $prog missing: run deploy/install-deps.sh" >&2; exit 1; }
done
command -v gnuplot >/dev/null ||
  echo "compare: gnuplot missing (deploy/install-deps.sh installs gnuplot-nox): table only" >&2
[[ -x $(realpath "$BINARY") ]] ||
  { echo "compare: $BINARY not found; build it: cmake --preset default && cmake --build --preset default -j2" >&2; exit 1; }

if [[ -z ${PORTCULLIS_BENCH_NETNS:-} && ,$PATHS, == *,haraka,* ]]; then
  # Outside the namespace: the npm registry is needed once, to install the pinned version.
  installed=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
              "$HARAKA_CACHE/node_modules/Haraka/package.json" 2>/dev/null | head -1 || true)
  if [[ $installed != "$HARAKA_VERSION" ]]; then
    command -v npm >/dev/null ||
      { echo "compare: npm missing (Debian: apt-get install nodejs npm), or leave haraka out of --paths" >&2; exit 1; }
    echo "compare: installing Haraka $HARAKA_VERSION into $HARAKA_CACHE (npm)"
    mkdir -p "$HARAKA_CACHE"
    [[ -f $HARAKA_CACHE/package.json ]] ||
      echo '{"name":"portcullis-bench-haraka","private":true}' >"$HARAKA_CACHE/package.json"
    (cd "$HARAKA_CACHE" && npm install --no-audit --no-fund --save-exact "Haraka@$HARAKA_VERSION")
  fi
fi

if [[ -z ${PORTCULLIS_BENCH_NETNS:-} ]]; then
  export PORTCULLIS_BENCH_NETNS=1 PORTCULLIS_BENCH_COMMAND="tests/bench/compare.sh ${ARGS[*]}"
  # net.unix.max_dgram_qlen is per network namespace: a long queue on Postfix's postlog socket
  # (seen once under a load average of 34: a postlogd restarted while the queue was full blocked
  # on its own logging, and every smtpd with it).
  exec unshare --net --pid --fork --mount-proc -- \
    bash -c 'ip link set lo up && sysctl -qw net.unix.max_dgram_qlen=65536 && "$@"' \
    bench bash "$SELF" "${ARGS[@]}"
fi
export PYTHONDONTWRITEBYTECODE=1
exec python3 "$REPO/tests/bench/compare.py" --command "${PORTCULLIS_BENCH_COMMAND:-$0 ${ARGS[*]}}" "${ARGS[@]}"
