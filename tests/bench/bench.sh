#!/usr/bin/env bash
# Throughput benchmark (not a test): smtp-source → portcullis → smtp-sink, compared in the same
# run with smtp-source → smtp-sink directly, for each parallel-session count.
#
#   sudo tests/bench/bench.sh [--messages 20000] [--sessions "20 100"] [--size 10240]
#                             [--binary build/portcullis] [--xclient] [--filters FILE] [--tls]
#
# Prints one line per session count, e.g.
#   sessions=20 direct=9500 msg/s proxied=8100 msg/s ratio=0.85
# and then portcullis's peak RSS (VmHWM). All processes share the machine's cores, so compare
# the ratio, never an absolute number across machines or runs.
#
#   --xclient      upstream.identity: xclient (default none; smtp-sink accepts XCLIENT)
#   --filters FILE extra config merged in: a .json file with "filters"/"dns" keys is merged as
#                  JSON; any other file is YAML appended to the generated config (top-level
#                  filters: and/or dns:, which then replaces the default dns: section)
#   --tls          placeholder for STARTTLS benchmarks (smtp-source cannot do TLS): not yet
#   --no-netns     do not enter a loopback-only network namespace
#
# As root it re-runs itself inside a loopback-only network + PID namespace (unshare), so every
# byte stays on loopback and nothing outlives it. Needs: smtp-source/smtp-sink (postfix), python3.
# shellcheck disable=SC2317  # the cleanup functions are called from the EXIT trap
set -euo pipefail

SELF=$(realpath "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/../.."
REPO=$PWD
MESSAGES=20000
SESSIONS="20 100"
SIZE=10240
BINARY=$REPO/build/portcullis
IDENTITY=none
FILTERS=
NETNS=1
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --messages) MESSAGES=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --binary) BINARY=$2; shift 2 ;;
    --xclient) IDENTITY=xclient; shift ;;
    --filters) FILTERS=$(realpath "$2"); shift 2 ;;
    --tls) echo "bench: --tls is a placeholder: smtp-source has no STARTTLS; not implemented yet" >&2
           exit 2 ;;
    --no-netns) NETNS=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
BINARY=$(realpath "$BINARY")
[[ -x $BINARY ]] || { echo "bench: $BINARY not found; build it: cmake --preset default && cmake --build --preset default -j2" >&2; exit 1; }
command -v smtp-source >/dev/null || PATH=$PATH:/usr/sbin
command -v smtp-source >/dev/null || { echo "bench: smtp-source missing: run deploy/install-deps.sh" >&2; exit 1; }

# Re-run inside a loopback-only namespace when we can.
if [[ $NETNS -eq 1 && -z ${PORTCULLIS_BENCH_NETNS:-} ]]; then
  if [[ $(id -u) -eq 0 ]] && unshare --net --pid --fork --mount-proc true 2>/dev/null; then
    export PORTCULLIS_BENCH_NETNS=1
    args=(--messages "$MESSAGES" --sessions "$SESSIONS" --size "$SIZE" --binary "$BINARY")
    [[ $IDENTITY == xclient ]] && args+=(--xclient)
    [[ -n $FILTERS ]] && args+=(--filters "$FILTERS")
    exec unshare --net --pid --fork --mount-proc -- \
      bash -c 'ip link set lo up && "$@"' bench bash "$SELF" "${args[@]}"
  fi
  echo "bench: WARNING: not root or no unshare; running on the host's loopback" >&2
fi

TMP=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
chmod 755 "$TMP"
SINK_PID=
PC_PID=
stop_pid() {  # SIGTERM, up to 10 s to drain, then SIGKILL
  local pid=$1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$PC_PID"
  stop_pid "$SINK_PID"
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_listening() {  # PORT PID

  for _ in $(seq 1 200); do
    ss -Hltn "sport = :$1" | grep -q LISTEN && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

SINK_PORT=$(free_port)
PC_PORT=$(free_port)
DNS_PORT=$(free_port)   # nothing listens there: DNS must never reach the system resolver

sink_user=()
[[ $(id -u) -eq 0 ]] && sink_user=(-u nobody)
smtp-sink "${sink_user[@]}" -m 2000 -h sink.bench.test "127.0.0.1:$SINK_PORT" 2000 \
  >"$TMP/sink.log" 2>&1 &
SINK_PID=$!
wait_listening "$SINK_PORT" "$SINK_PID" || { echo "bench: smtp-sink did not start"; cat "$TMP/sink.log"; exit 1; }

# The config: YAML written here, optionally merged with --filters.
CONFIG=$TMP/portcullis.yaml
{
  echo "hostname: bench.test.local"
  echo "listen: [\"127.0.0.1:$PC_PORT\"]"
  echo "upstream:"
  echo "  address: \"127.0.0.1:$SINK_PORT\""
  echo "  identity: $IDENTITY"
  echo "limits:"
  echo "  max_connections: 10000"
  echo "  max_connections_per_ip: 10000"
  echo "  max_recipients: 1000"
  echo "spool:"
  echo "  directory: \"$TMP/spool\""
  echo "log:"
  echo "  level: warn"
  if [[ -z $FILTERS || $FILTERS == *.json ]] || ! grep -q '^dns:' "$FILTERS"; then
    echo "dns:"
    echo "  servers: [\"127.0.0.1:$DNS_PORT\"]"
  fi
  if [[ -n $FILTERS && $FILTERS != *.json ]]; then
    cat "$FILTERS"
  fi
} >"$CONFIG"
if [[ $FILTERS == *.json ]]; then
  python3 - "$CONFIG" "$FILTERS" "$DNS_PORT" "$SINK_PORT" "$PC_PORT" "$TMP" "$IDENTITY" <<'PY'
import json, sys
out, extra, dns, sink, pc, tmp, identity = sys.argv[1:]
config = {"hostname": "bench.test.local", "listen": [f"127.0.0.1:{pc}"],
          "upstream": {"address": f"127.0.0.1:{sink}", "identity": identity},
          "limits": {"max_connections": 10000, "max_connections_per_ip": 10000,
                     "max_recipients": 1000},
          "spool": {"directory": f"{tmp}/spool"}, "log": {"level": "warn"},
          "dns": {"servers": [f"127.0.0.1:{dns}"]}}
with open(extra) as f:
    config.update(json.load(f))  # "filters" and "dns" replace whole sections
with open(out, "w") as f:
    json.dump(config, f, indent=2)
PY
fi
mkdir -p "$TMP/spool"

"$BINARY" --config "$CONFIG" >"$TMP/portcullis.log" 2>&1 &
PC_PID=$!
wait_listening "$PC_PORT" "$PC_PID" || { echo "bench: portcullis did not start"; cat "$TMP/portcullis.log"; exit 1; }

# One smtp-source run; prints msg/s.
run_source() {  # TARGET_PORT SESSIONS
  local t0 t1
  t0=$(date +%s.%N)
  if ! timeout 900 smtp-source -s "$2" -m "$MESSAGES" -l "$SIZE" -f bench@client.test \
       -t sink@test.local "127.0.0.1:$1" >"$TMP/source.log" 2>&1; then
    echo "bench: smtp-source to port $1 failed:" >&2
    tail -n 20 "$TMP/source.log" >&2
    return 1
  fi
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v m="$MESSAGES" 'BEGIN { printf "%.0f", m / (b - a) }'
}

echo "bench: $MESSAGES messages of $SIZE bytes per run, identity=$IDENTITY, binary=$BINARY"
status=0
for s in $SESSIONS; do
  direct=$(run_source "$SINK_PORT" "$s") || { status=1; break; }
  proxied=$(run_source "$PC_PORT" "$s") || { status=1; break; }
  ratio=$(awk -v p="$proxied" -v d="$direct" 'BEGIN { printf "%.2f", p / d }')
  echo "sessions=$s direct=$direct msg/s proxied=$proxied msg/s ratio=$ratio"
done

if kill -0 "$PC_PID" 2>/dev/null; then
  echo "portcullis peak RSS: $(awk '/^VmHWM:/ { print $2, $3 }' "/proc/$PC_PID/status")"
else
  echo "bench: portcullis exited during the run:" >&2
  status=1
fi
if [[ -s $TMP/portcullis.log ]]; then
  echo "portcullis log (warn and above, last 10 lines):"
  tail -n 10 "$TMP/portcullis.log"
fi
exit $status
