#!/usr/bin/env bash
# Idle-connection and slowloris benchmark (not CI; run by hand, as root): does a fresh client
# still get its 220 quickly while portcullis holds 10,000 idle sessions and a slowloris swarm?
#
#   sudo tests/bench/idle_slowloris.sh [--idle 10000] [--slow 500] [--slow-interval 2]
#                                      [--slow-for 20] [--probes 20] [--bin build/portcullis]
#                                      [--no-netns]
#
# tests/bench/idle_slowloris.py opens --idle connections that read the 220 and then say nothing
# (source addresses 127.0.0.2 .. 127.0.0.250 round-robin, about 40 per address), then --slow
# slowloris connections: half trickle an EHLO line, half trickle a message body after
# EHLO/MAIL/RCPT/DATA, one byte every --slow-interval seconds, for --slow-for seconds. While all
# of them are held, --probes fresh clients from 127.0.0.1 (one every 0.5 s) time connect + 220.
# It prints each probe and one summary line, e.g.
#   idle_slowloris: idle=10000 idle_alive=10000 slow=500 slow_alive=500 ...
#     rss_per_idle_conn_bytes=1234 probes=20 no_220=0 greeting_ms[min=0.4 median=0.6 max=3.1]
# rss_per_idle_conn_bytes = (portcullis VmRSS with the idle sessions - VmRSS before) / sessions.
# Exit status 1 if the slowest probe waited 1 s or more for its 220 (or got none), 3 if
# portcullis died.
#
# portcullis runs with limits.max_connections 12000, max_connections_per_ip 100 (so 10,000
# from 249 addresses fit and the probe's 127.0.0.1 is never full), its default timeouts
# (command 5m, data_grace 30s, min_data_rate 1024) and DNS pointed at an unused loopback port
# (reverse lookups off). Its upstream is an smtp-sink (the DATA tricklers reach it). The open
# files limit is raised to 65536, or to the hard limit where that cannot be raised (no
# CAP_SYS_RESOURCE), for every process. Everything runs in a loopback-only network + PID
# namespace; logs stay in /tmp/idle-slowloris-XXXXXX.
# shellcheck disable=SC2317  # cleanup runs from the EXIT trap
set -euo pipefail

SELF=$(realpath "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/../.."
REPO=$PWD
IDLE=10000
SLOW=500
SLOW_INTERVAL=2
SLOW_FOR=20
PROBES=20
BINARY=$REPO/build/portcullis
NETNS=1
ARGS=("$@")
usage() { sed -n '2,27p' "$SELF" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --idle) IDLE=$2; shift 2 ;;
    --slow) SLOW=$2; shift 2 ;;
    --slow-interval) SLOW_INTERVAL=$2; shift 2 ;;
    --slow-for) SLOW_FOR=$2; shift 2 ;;
    --probes) PROBES=$2; shift 2 ;;
    --bin|--binary) BINARY=$2; shift 2 ;;
    --no-netns) NETNS=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "idle_slowloris: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
BINARY=$(realpath "$BINARY")
[[ -x $BINARY ]] || { echo "idle_slowloris: $BINARY not found" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "idle_slowloris: needs root (ulimit -n, netns)" >&2; exit 1; }
PATH=$PATH:/usr/sbin:/sbin
command -v smtp-sink >/dev/null || { echo "idle_slowloris: smtp-sink missing (postfix)" >&2; exit 1; }

if [[ $NETNS -eq 1 && -z ${PORTCULLIS_IDLE_NETNS:-} ]]; then
  export PORTCULLIS_IDLE_NETNS=1
  exec unshare --net --pid --fork --mount-proc -- \
    bash -c 'ip link set lo up && "$@"' idle_slowloris bash "$SELF" "${ARGS[@]}"
fi

# Every process started below inherits this: 10,000 client sockets in one Python process,
# and client + MTA sockets in portcullis.
# Raising the hard limit needs CAP_SYS_RESOURCE (some containers lack it): else use the hard limit.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
if [[ $(ulimit -n) -lt $((IDLE + SLOW + 200)) ]]; then
  echo "idle_slowloris: open files limit $(ulimit -n) is below idle+slow+200; lower --idle" >&2
  exit 1
fi

TMP=$(mktemp -d /tmp/idle-slowloris-XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  echo "idle_slowloris: logs in $TMP"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_listening() {  # PORT PID
  for _ in $(seq 1 200); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

SINK_PORT=$(free_port)
smtp-sink -u nobody -h sink.idle.test "127.0.0.1:$SINK_PORT" 2048 >"$TMP/sink.log" 2>&1 &
PIDS+=($!)
wait_listening "$SINK_PORT" "$!" || { echo "idle_slowloris: smtp-sink did not start"; cat "$TMP/sink.log"; exit 1; }

PORT=$(free_port)
DNS_PORT=$(free_port)  # nothing listens there: never the system resolver
mkdir -p "$TMP/spool"
cat >"$TMP/portcullis.yaml" <<YAML
hostname: portcullis.idle.test
listen: ["127.0.0.1:$PORT"]
upstream:
  address: "127.0.0.1:$SINK_PORT"
  identity: none
limits:
  max_connections: $((IDLE + SLOW + 1500))
  max_connections_per_ip: 100
spool:
  directory: "$TMP/spool"
dns:
  servers: ["127.0.0.1:$DNS_PORT"]
  reverse_lookup: false
log:
  level: warn
YAML
"$BINARY" --config "$TMP/portcullis.yaml" >"$TMP/portcullis.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
wait_listening "$PORT" "$PROXY_PID" || { echo "idle_slowloris: portcullis did not start"; cat "$TMP/portcullis.log"; exit 1; }
echo "idle_slowloris: idle=$IDLE slow=$SLOW slow_interval=${SLOW_INTERVAL}s slow_for=${SLOW_FOR}s" \
     "probes=$PROBES binary=$BINARY open_files_limit=$(awk '/Max open files/ { print $4 }' "/proc/$PROXY_PID/limits")"

STATUS=0
timeout $((600 + ${SLOW_FOR%.*} * 2)) python3 "$REPO/tests/bench/idle_slowloris.py" \
  --port "$PORT" --pid "$PROXY_PID" --idle "$IDLE" --slow "$SLOW" \
  --slow-interval "$SLOW_INTERVAL" --slow-for "$SLOW_FOR" --probes "$PROBES" || STATUS=$?
if ! kill -0 "$PROXY_PID" 2>/dev/null; then
  echo "idle_slowloris: FAIL: portcullis died; last log lines:" >&2
  tail -n 20 "$TMP/portcullis.log" >&2
  STATUS=3
else
  echo "idle_slowloris: portcullis peak RSS $(awk '/^VmHWM:/ { print $2, $3 }' "/proc/$PROXY_PID/status")," \
       "log: $(grep -c . "$TMP/portcullis.log") lines at warn or above"
  grep -o 'event=[a-z-]*' "$TMP/portcullis.log" | sort | uniq -c | sort -rn | head -5 | sed 's/^/idle_slowloris:   /' || true
fi
exit "$STATUS"
