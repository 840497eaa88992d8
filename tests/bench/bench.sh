#!/usr/bin/env bash
# Throughput benchmark (not a test): smtp-source → portcullis → smtp-sink, compared in the same
# run with smtp-source → smtp-sink directly, for each parallel-session count.
#
#   sudo tests/bench/bench.sh [--messages 20000] [--sessions "20 100"] [--size 10240]
#                             [--rounds 3] [--binary build/portcullis] [--xclient] [--dnsbl]
#                             [--filters FILE] [--tls [--handshakes 5000] [--per-connection 1]]
#
# For each session count it runs direct and proxied back to back, --rounds times, and prints
# one line per round and a summary line with the median of the rounds' ratios, e.g.
#   sessions=20 round=1 direct=6100 msg/s proxied=4700 msg/s ratio=0.77
#     cpu_us_per_msg: direct[source=150 sink=160] proxied[source=155 portcullis=120 sink=98]
#   sessions=20 median_ratio=0.77 (3 rounds: 0.74 0.77 0.80)
# and portcullis's peak RSS (VmHWM). cpu_us_per_msg is each process's user+system CPU time per
# message (kernel softirq time not included): it shows where the cycles go, which the rates
# alone do not. All processes share the machine's cores, so compare the ratio, never an
# absolute number across machines or runs; the machine is noisy, hence the rounds and median.
#
#   --xclient      upstream.identity: xclient (default none; smtp-sink accepts XCLIENT)
#   --dnsbl        also run a second portcullis with the dnsbl and rdns filters (and the core's
#                  reverse lookups) against a private unbound serving tests/fixtures/dns/zones.conf,
#                  and report it against the no-filter proxied rate. smtp-source connects from
#                  127.0.0.1, which is not listed and has forward-confirmed reverse DNS, so every
#                  message passes; after the first connection every lookup is a cache hit.
#   --filters FILE YAML appended to the filtered instance's config (implies --dnsbl's setup;
#                  the file's filters: replace dnsbl + rdns)
#   --no-netns     do not enter a loopback-only network namespace
#   --tls          instead of the smtp-source runs: one portcullis with a throwaway EC P-256
#                  certificate, a STARTTLS listener and an implicit-TLS listener, driven by
#                  tests/bench/tls_load.cc (compiled into the temp dir; needs c++ and libssl-dev).
#                  The same client sends plain SMTP and STARTTLS (one message per connection
#                  unless --per-connection K), then times bare TLS handshakes (connect, handshake,
#                  220, QUIT) on the implicit listener, full and resumed (each client thread offers
#                  its last TLS 1.3 session ticket). One line per session count, e.g.
#   sessions=20 plain=5200 msg/s starttls=2100 msg/s ratio=0.40 handshakes_full=2600/s
#     handshakes_resumed=4100/s resumed=4990/5000
#   --counts N     after the rounds, one more run of N messages (20 sessions) to count, per
#                  message, portcullis's system calls (strace -c attached for the run only) and
#                  heap allocations (malloc/calloc/realloc/memalign through a counting LD_PRELOAD
#                  built into the temp dir; operator new goes through malloc), and smtp-sink's
#                  system calls on the direct and the proxied path in the same way, e.g.
#   counts: messages=2000 sessions=20 portcullis[syscalls=41.2 syscalls_but_epoll_wait=39.0
#     mallocs=118.5]
#     sink[syscalls direct=13.1 proxied=13.4] top_syscalls: write=9.1 epoll_wait=8.0 ...
#                  strace slows the processes it watches: these runs' rates mean nothing.
#   --budget S,M   with --counts: compare portcullis's per-message figures with a budget of S
#                  system calls (epoll_wait left out: how many events one wait collects
#                  depends on the machine's load) and M allocations, and print, e.g.
#   budget: syscalls_but_epoll_wait=25.2/25.5 PASS mallocs=74.2/80 PASS
#                  (default 25.5,45, with --pipelining 22.5,50: what the relay reached; OVER
#                  marks a regression to look at, never a failure: the bench's exit status
#                  does not change)
#   --postfix      a private Postfix (tests/integration/harness, mail discarded) instead of
#                  smtp-sink, which does not offer CHUNKING: the BDAT path is only taken with
#                  this. The sink's CPU and system calls are then not measured (smtpd runs in
#                  processes of its own); "direct" is smtp-source to that Postfix.
#   --chunking off upstream.chunking for every instance (default auto); compare runs with
#                  --postfix and with --postfix --chunking off, interleaved.
#   --workers LIST instead of the one plain instance, one per `workers:` value in LIST ("1 2"),
#                  run one after the other after the direct run in every round (interleaved, so
#                  the machine's noise hits each alike), e.g.
#   sessions=20 round=1 direct=6100 msg/s workers=1 proxied=4700 msg/s cpu_us_per_msg=120
#     workers=2 proxied=4900 msg/s cpu_us_per_msg=124
#                  and a median line per value. The CPU time is the whole process's (every
#                  worker thread).
#   --pipelining   the load comes from tests/bench/tls_load.cc (compiled into the temp dir) with
#                  --pipelining instead of smtp-source, which does not pipeline: MAIL, RCPT and
#                  DATA in one write, as real MTAs send them; every path and --counts alike.
#   --log-level L  every instance's log.level (default info, the daemon's default: three lines
#                  per message, written in batches to the instance's log file)
#   --pin-load CPUS run smtp-source and smtp-sink under `taskset -c CPUS` (the load generator
#                  apart from portcullis; pin portcullis yourself if you want it elsewhere)
#   --handshakes N connections per handshake run (default 5000)
#   --per-connection K  messages per connection in the --tls mail runs (default 1)
#
# The plain proxied instance has no filters and reverse lookups off: the relay itself.
# As root it re-runs itself inside a loopback-only network + PID namespace (unshare), so every
# byte stays on loopback and nothing outlives it. Needs smtp-source/smtp-sink (postfix),
# unbound for --dnsbl, python3.
# shellcheck disable=SC2317,SC2034  # cleanup runs from the EXIT trap; *_PID read via ${!pid_var}
set -euo pipefail

SELF=$(realpath "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/../.."
REPO=$PWD
MESSAGES=20000
SESSIONS="20 100"
ROUNDS=3
SIZE=10240
BINARY=$REPO/build/portcullis
IDENTITY=none
DNSBL=0
FILTERS=
NETNS=1
TLS=0
HANDSHAKES=5000
PER_CONNECTION=1
COUNTS=0
BUDGET=
POSTFIX=0
CHUNKING=auto
WORKERS_LIST=
PIN=
PIPELINING=0
LOG_LEVEL=info
ARGS=("$@")
usage() { sed -n '2,79p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --messages) MESSAGES=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --binary) BINARY=$2; shift 2 ;;
    --xclient) IDENTITY=xclient; shift ;;
    --dnsbl) DNSBL=1; shift ;;
    --filters) FILTERS=$(realpath "$2"); DNSBL=1; shift 2 ;;
    --no-netns) NETNS=0; shift ;;
    --tls) TLS=1; shift ;;
    --handshakes) HANDSHAKES=$2; shift 2 ;;
    --per-connection) PER_CONNECTION=$2; shift 2 ;;
    --counts) COUNTS=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --postfix) POSTFIX=1; shift ;;
    --chunking) CHUNKING=$2; shift 2 ;;
    --workers) WORKERS_LIST=$2; shift 2 ;;
    --pin-load) PIN=$2; shift 2 ;;
    --pipelining) PIPELINING=1; shift ;;
    --log-level) LOG_LEVEL=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
# The default budget: what the relay reached, with each client (a pipelining one makes fewer
# system calls per message and takes a few more allocations for the replies it is owed).
[[ -z $BUDGET ]] && BUDGET=$([[ $PIPELINING -eq 1 ]] && echo 22.5,50 || echo 25.5,45)
[[ $BUDGET =~ ^[0-9]+(\.[0-9]+)?,[0-9]+(\.[0-9]+)?$ ]] || { echo "bench: --budget takes SYSCALLS,MALLOCS, e.g. 25.5,95" >&2; exit 2; }
BINARY=$(realpath "$BINARY")
[[ -x $BINARY ]] || { echo "bench: $BINARY not found; build it: cmake --preset default && cmake --build --preset default -j2" >&2; exit 1; }
PATH=$PATH:/usr/sbin:/sbin
command -v smtp-source >/dev/null || { echo "bench: smtp-source missing: run deploy/install-deps.sh" >&2; exit 1; }

# Re-run inside a loopback-only namespace when we can.
if [[ $NETNS -eq 1 && -z ${PORTCULLIS_BENCH_NETNS:-} ]]; then
  if [[ $(id -u) -eq 0 ]] && unshare --net --pid --fork --mount-proc true 2>/dev/null; then
    export PORTCULLIS_BENCH_NETNS=1
    exec unshare --net --pid --fork --mount-proc -- \
      bash -c 'ip link set lo up && "$@"' bench bash "$SELF" "${ARGS[@]}"
  fi
  echo "bench: WARNING: not root or no unshare; running on the host's loopback" >&2
fi

TMP=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
chmod 755 "$TMP"
PIDS=()
stop_pid() {  # SIGTERM, up to 10 s to drain, then SIGKILL
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_listening() {  # PORT PID [udp]
  local flag=-Hltn
  [[ ${3:-} == udp ]] && flag=-Hlun
  for _ in $(seq 1 200); do
    ss $flag "sport = :$1" | grep -q . && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

SINK_PORT=$(free_port)
sink_user=()
[[ $(id -u) -eq 0 ]] && sink_user=(-u nobody)
PINNED=()
[[ -n $PIN ]] && PINNED=(taskset -c "$PIN")
RCPT=sink@test.local
if [[ $POSTFIX -eq 1 ]]; then
  # The harness's Postfix; a recipient outside its virtual domain goes to the discard transport.
  RCPT=sink@discard.bench.test
  python3 - "$REPO/tests/integration" "$SINK_PORT" >"$TMP/sink.log" 2>&1 <<'PY' &
import signal, sys, time
sys.path.insert(0, sys.argv[1])
from harness import Postfix
pf = Postfix(port=int(sys.argv[2])).start()
signal.signal(signal.SIGTERM, lambda *_: (pf.stop(), sys.exit(0)))
print("postfix ready", flush=True)
while True:
    time.sleep(1)
PY
  PIDS+=($!)
  for _ in $(seq 1 1200); do grep -q "postfix ready" "$TMP/sink.log" && break; sleep 0.1; done
  grep -q "postfix ready" "$TMP/sink.log" || { echo "bench: Postfix did not start"; cat "$TMP/sink.log"; exit 1; }
else
  "${PINNED[@]}" smtp-sink "${sink_user[@]}" -m 2000 -h sink.bench.test "127.0.0.1:$SINK_PORT" 2000 \
    >"$TMP/sink.log" 2>&1 &
  PIDS+=($!)
  wait_listening "$SINK_PORT" "$!" || { echo "bench: smtp-sink did not start"; cat "$TMP/sink.log"; exit 1; }
fi

DNS_PORT=$(free_port)  # nothing listens there unless --dnsbl: never the system resolver
if [[ $DNSBL -eq 1 ]]; then
  command -v unbound >/dev/null || { echo "bench: unbound missing: run deploy/install-deps.sh" >&2; exit 1; }
  {
    echo "server:"
    echo "  interface: 127.0.0.1@$DNS_PORT"
    echo "  do-daemonize: no"
    echo "  chroot: \"\""
    echo "  username: \"\""
    echo "  directory: \"$TMP\""
    echo "  pidfile: \"$TMP/unbound.pid\""
    echo "  use-syslog: no"
    echo "  num-threads: 1"
    echo "  module-config: \"iterator\""
    echo "  access-control: 127.0.0.0/8 allow"
    echo "  local-zone: \".\" refuse"
    cat "$REPO/tests/fixtures/dns/zones.conf"
  } >"$TMP/unbound.conf"
  unbound -d -c "$TMP/unbound.conf" >"$TMP/unbound.log" 2>&1 &
  PIDS+=($!)
  wait_listening "$DNS_PORT" "$!" udp || { echo "bench: unbound did not start"; cat "$TMP/unbound.log"; exit 1; }
fi

# start_portcullis NAME EXTRA_YAML [EXTRA_LISTEN_PORT]: starts an instance, sets PORT and PID;
# with EXTRA_LISTEN_PORT it also listens there with implicit TLS.
start_portcullis() {
  local name=$1 extra=$2 implicit=${3:-}
  PORT=$(free_port)
  local listen="\"127.0.0.1:$PORT\""
  [[ -n $implicit ]] && listen+=", {address: \"127.0.0.1:$implicit\", tls: implicit}"
  mkdir -p "$TMP/$name/spool"
  cat >"$TMP/$name/portcullis.yaml" <<YAML
hostname: bench.test.local
listen: [$listen]
upstream:
  address: "127.0.0.1:$SINK_PORT"
  identity: $IDENTITY
  chunking: $CHUNKING
limits:
  # Far above the 100 sessions of the largest run, and within the descriptor budget portcullis
  # checks at start-up (4 per connection: 8,065 descriptors here).
  max_connections: 2000
  max_connections_per_ip: 2000
spool:
  directory: "$TMP/$name/spool"
log:
  level: $LOG_LEVEL
$extra
YAML
  env ${PRELOAD:+LD_PRELOAD=$PRELOAD MALLOC_COUNT_FILE=$TMP/$name/mallocs} \
    "$BINARY" --config "$TMP/$name/portcullis.yaml" >"$TMP/$name/portcullis.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  wait_listening "$PORT" "$PID" || { echo "bench: portcullis ($name) did not start"; cat "$TMP/$name/portcullis.log"; exit 1; }
  if [[ -n $implicit ]]; then
    wait_listening "$implicit" "$PID" || { echo "bench: portcullis ($name) did not start"; cat "$TMP/$name/portcullis.log"; exit 1; }
  fi
}

if [[ $TLS -eq 1 || $PIPELINING -eq 1 ]]; then
  command -v c++ >/dev/null || { echo "bench: c++ missing (build-essential)" >&2; exit 1; }
  c++ -O2 -std=c++20 -o "$TMP/tls_load" "$REPO/tests/bench/tls_load.cc" -lssl -lcrypto -pthread \
    || { echo "bench: building tests/bench/tls_load.cc failed (libssl-dev?)" >&2; exit 1; }
fi
if [[ $TLS -eq 1 ]]; then
  mkdir -p "$TMP/certs"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=bench.test.local -addext subjectAltName=DNS:bench.test.local \
    -keyout "$TMP/certs/server.key" -out "$TMP/certs/server.crt" >/dev/null 2>&1 \
    || { echo "bench: openssl could not make a certificate" >&2; exit 1; }
  IMPLICIT_PORT=$(free_port)
  start_portcullis tls "dns:
  servers: [\"127.0.0.1:$DNS_PORT\"]
  reverse_lookup: false
tls:
  cert: \"$TMP/certs/server.crt\"
  key: \"$TMP/certs/server.key\"" "$IMPLICIT_PORT"
  TLS_PORT=$PORT
  TLS_PID=$PID
fi

if [[ $TLS -eq 0 && -z $WORKERS_LIST ]]; then  # --tls runs only the TLS instance
  start_portcullis plain "dns:
  servers: [\"127.0.0.1:$DNS_PORT\"]
  reverse_lookup: false"
  PLAIN_PORT=$PORT
  PLAIN_PID=$PID
fi
declare -A WORKERS_PORT WORKERS_PID
if [[ $TLS -eq 0 && -n $WORKERS_LIST ]]; then
  for w in $WORKERS_LIST; do
    start_portcullis "plain-w$w" "workers: $w
dns:
  servers: [\"127.0.0.1:$DNS_PORT\"]
  reverse_lookup: false"
    WORKERS_PORT[$w]=$PORT
    WORKERS_PID[$w]=$PID
  done
fi
if [[ $DNSBL -eq 1 && $TLS -eq 0 ]]; then
  filters="filters:
  - name: dnsbl
    zones: [\"dnsbl.test=127.0.0.[2..11]*2\", \"dnswl.test=127.0.[0..255].[1..3]*-5\"]
    threshold: 2
  - name: rdns
    defer_to: rcpt"
  [[ -n $FILTERS ]] && filters=$(cat "$FILTERS")
  start_portcullis filtered "dns:
  servers: [\"127.0.0.1:$DNS_PORT\"]
$filters"
  FILTERED_PORT=$PORT
  FILTERED_PID=$PID
fi

# One smtp-source run against TARGET_PORT; sets RATE (msg/s) and CPU_SOURCE and CPU_<NAME>
# (CPU µs per message of smtp-source and of each process named in WATCH, "name:pid" pairs).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }  # utime + stime, in clock ticks
# CHILD_SECONDS: this shell's reaped children's user + system seconds. `times` must run in this
# shell, not in a pipeline or $(...), where a subshell's own children times start at zero.
children_seconds() {
  times >"$TMP/times"
  CHILD_SECONDS=$(awk 'END { s = 0
    for (i = 1; i <= 2; i++) { split($i, ms, "m"); sub("s", "", ms[2]); s += ms[1] * 60 + ms[2] }
    printf "%.6f", s }' "$TMP/times")
}
HZ=$(getconf CLK_TCK)
run_source() {  # TARGET_PORT SESSIONS
  local t0 t1 w before=() i=0 src0
  for w in "${WATCH[@]}"; do before+=("$(cpu_ticks "${w#*:}")"); done
  children_seconds
  src0=$CHILD_SECONDS
  t0=$(date +%s%N)
  local client=(smtp-source -s "$2" -m "$MESSAGES" -l "$SIZE" -f bench@client.test -t "$RCPT"
                "127.0.0.1:$1")
  if [[ $PIPELINING -eq 1 ]]; then
    client=("$TMP/tls_load" mail --pipelining --port "$1" --connections "$2"
            --messages "$MESSAGES" --size "$SIZE" --rcpt "$RCPT")
  fi
  if ! timeout 900 "${PINNED[@]}" "${client[@]}" >"$TMP/source.log" 2>&1; then
    echo "bench: ${client[0]##*/} to port $1 failed:" >&2
    tail -n 20 "$TMP/source.log" >&2
    return 1
  fi
  t1=$(date +%s%N)
  children_seconds
  RATE=$(awk -v a="$t0" -v b="$t1" -v m="$MESSAGES" 'BEGIN { printf "%.0f", m * 1e9 / (b - a) }')
  CPU_SOURCE=$(awk -v a="$src0" -v b="$CHILD_SECONDS" -v m="$MESSAGES" \
                 'BEGIN { printf "%.0f", (b - a) * 1e6 / m }')
  for w in "${WATCH[@]}"; do
    printf -v "CPU_${w%%:*}" '%s' "$(awk -v a="${before[$i]}" -v b="$(cpu_ticks "${w#*:}")" \
      -v hz="$HZ" -v m="$MESSAGES" 'BEGIN { printf "%.0f", (b - a) * 1e6 / hz / m }')"
    i=$((i + 1))
  done
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
  printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# One tls_load run; prints its key=value line (mode=... done=... rate=...).
run_tls_load() {  # ARGS...
  local line
  if ! line=$(timeout 900 "$TMP/tls_load" "$@" 2>"$TMP/tls_load.err"); then
    echo "bench: tls_load $* failed: $line" >&2
    tail -n 5 "$TMP/tls_load.err" >&2
    return 1
  fi
  echo "$line"
}
kv() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<" $2"; }  # KEY LINE: the integer part

status=0
if [[ $TLS -eq 1 ]]; then
  echo "bench: $MESSAGES messages of $SIZE bytes per run, $PER_CONNECTION per connection," \
       "$HANDSHAKES handshakes per handshake run, binary=$BINARY"
  for s in $SESSIONS; do
    mail=(mail --port "$TLS_PORT" --connections "$s" --messages "$MESSAGES" --size "$SIZE"
          --per-connection "$PER_CONNECTION")
    plain=$(run_tls_load "${mail[@]}") || { status=1; break; }
    starttls=$(run_tls_load "${mail[@]}" --starttls) || { status=1; break; }
    hs=(handshake --port "$IMPLICIT_PORT" --connections "$s" --count "$HANDSHAKES")
    full=$(run_tls_load "${hs[@]}") || { status=1; break; }
    resumed=$(run_tls_load "${hs[@]}" --resume) || { status=1; break; }
    echo "sessions=$s plain=$(kv rate "$plain") msg/s starttls=$(kv rate "$starttls") msg/s" \
         "ratio=$(ratio "$(kv rate "$starttls")" "$(kv rate "$plain")")" \
         "handshakes_full=$(kv rate "$full")/s handshakes_resumed=$(kv rate "$resumed")/s" \
         "resumed=$(kv resumed "$resumed")/$(kv "done" "$resumed")"
  done
  SESSIONS=""  # the smtp-source runs below are skipped
else
  echo "bench: $MESSAGES messages of $SIZE bytes per run, identity=$IDENTITY," \
       "chunking=$CHUNKING, sink=$([[ $POSTFIX -eq 1 ]] && echo postfix || echo smtp-sink)," \
       "binary=$BINARY"
fi
SINK_PID=${PIDS[0]}
SINK_WATCH=("sink:$SINK_PID")
[[ $POSTFIX -eq 1 ]] && SINK_WATCH=()  # Postfix's smtpd processes are not one pid
CPU_sink=n/a
for s in $SESSIONS; do
  [[ -n $WORKERS_LIST ]] && break  # the --workers loop below instead
  ratios=() filtered_ratios=()
  for round in $(seq 1 "$ROUNDS"); do
    WATCH=("${SINK_WATCH[@]}")
    run_source "$SINK_PORT" "$s" || { status=1; break 2; }
    direct=$RATE direct_cpu="source=$CPU_SOURCE sink=$CPU_sink"
    WATCH=("portcullis:$PLAIN_PID" "${SINK_WATCH[@]}")
    run_source "$PLAIN_PORT" "$s" || { status=1; break 2; }
    proxied=$RATE
    ratios+=("$(ratio "$proxied" "$direct")")
    echo "sessions=$s round=$round direct=$direct msg/s proxied=$proxied msg/s" \
         "ratio=${ratios[-1]}"
    echo "  cpu_us_per_msg: direct[$direct_cpu]" \
         "proxied[source=$CPU_SOURCE portcullis=$CPU_portcullis sink=$CPU_sink]"
    if [[ $DNSBL -eq 1 ]]; then
      WATCH=("portcullis:$FILTERED_PID")
      run_source "$FILTERED_PORT" "$s" || { status=1; break 2; }
      filtered_ratios+=("$(ratio "$RATE" "$proxied")")
      echo "sessions=$s round=$round filters=dnsbl+rdns proxied=$RATE msg/s" \
           "vs_no_filters=${filtered_ratios[-1]} vs_direct=$(ratio "$RATE" "$direct")" \
           "portcullis_cpu_us_per_msg=$CPU_portcullis"
    fi
  done
  echo "sessions=$s median_ratio=$(median "${ratios[@]}") (${#ratios[@]} rounds: ${ratios[*]})"
  if [[ $DNSBL -eq 1 ]]; then
    echo "sessions=$s filters=dnsbl+rdns median_vs_no_filters=$(median "${filtered_ratios[@]}")"
  fi
done

# --workers: each instance after the direct run, in every round.
for s in $SESSIONS; do
  [[ -z $WORKERS_LIST ]] && break
  declare -A wrates=() wcpus=()
  for round in $(seq 1 "$ROUNDS"); do
    WATCH=("sink:$SINK_PID")
    run_source "$SINK_PORT" "$s" || { status=1; break 2; }
    line="sessions=$s round=$round direct=$RATE msg/s"
    for w in $WORKERS_LIST; do
      WATCH=("portcullis:${WORKERS_PID[$w]}")
      run_source "${WORKERS_PORT[$w]}" "$s" || { status=1; break 3; }
      wrates[$w]+="$RATE " wcpus[$w]+="$CPU_portcullis "
      line+=" workers=$w proxied=$RATE msg/s cpu_us_per_msg=$CPU_portcullis"
    done
    echo "$line"
  done
  for w in $WORKERS_LIST; do
    # shellcheck disable=SC2086  # the lists are space-separated numbers
    echo "sessions=$s workers=$w median_rate=$(median ${wrates[$w]}) msg/s" \
         "median_cpu_us_per_msg=$(median ${wcpus[$w]}) (rates: ${wrates[$w]% })"
  done
done

# --counts: system calls and allocations per message (see the header).
strace_start() {  # PID OUTFILE: sets STRACE_PID; counting starts once strace is attached
  strace -c -f -qq -p "$1" -o "$2" 2>"$2.err" &
  STRACE_PID=$!
  for _ in $(seq 1 100); do  # attached when the tracee's TracerPid is set
    [[ $(awk '/^TracerPid:/ { print $2 }' "/proc/$1/status") != 0 ]] && return 0
    sleep 0.05
  done
  echo "bench: strace could not attach to $1" >&2
  return 1
}
strace_stop() {  # OUTFILE: SYSCALLS = calls per message, TOP_SYSCALLS = the top 5 per message
  # (not in a $(...): the wait must run in the shell that started strace, which writes its
  # summary when it detaches)
  kill -INT "$STRACE_PID" 2>/dev/null || true
  wait "$STRACE_PID" 2>/dev/null || true
  SYSCALLS=$(awk -v m="$COUNTS" '$NF == "total" { printf "%.1f", $4 / m }' "$1")
  # Without epoll_wait: how many events each wait collects depends on the machine's load (1.7
  # to 5.2 per message in back-to-back runs of the same binary), the rest does not.
  SYSCALLS_NO_WAIT=$(awk -v m="$COUNTS" '$NF == "total" { t = $4 } $NF == "epoll_wait" { w = $4 }
    END { printf "%.1f", (t - w) / m }' "$1")
  TOP_SYSCALLS=$(awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { print $4, $NF }' "$1" |
    sort -rn | head -5 | awk -v m="$COUNTS" '{ printf "%s=%.1f ", $2, $1 / m }')
}
if [[ $COUNTS -gt 0 && $TLS -eq 0 && -z $WORKERS_LIST && $status -eq 0 ]]; then
  command -v strace >/dev/null || { echo "bench: strace missing (apt-get install strace)" >&2; exit 1; }
  cat >"$TMP/malloc_count.c" <<'C'
// Counts heap allocations into a shared counter file the bench reads before and after a run.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);
static _Atomic unsigned long long fallback;
static _Atomic unsigned long long* counter = &fallback;
__attribute__((constructor)) static void init(void) {
  const char* path = getenv("MALLOC_COUNT_FILE");
  int fd = path ? open(path, O_RDWR | O_CREAT, 0644) : -1;
  if (fd < 0) return;
  if (ftruncate(fd, 8) == 0) {
    void* m = mmap(0, 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED) counter = m;
  }
  close(fd);
}
static void count(void) { atomic_fetch_add_explicit(counter, 1, memory_order_relaxed); }
void* malloc(size_t n) { count(); return __libc_malloc(n); }
void* calloc(size_t a, size_t b) { count(); return __libc_calloc(a, b); }
void* realloc(void* p, size_t n) { count(); return __libc_realloc(p, n); }
void* memalign(size_t a, size_t n) { count(); return __libc_memalign(a, n); }
void* aligned_alloc(size_t a, size_t n) { count(); return __libc_memalign(a, n); }
int posix_memalign(void** p, size_t a, size_t n) {
  count();
  *p = __libc_memalign(a, n);
  return *p ? 0 : 12;
}
C
  cc -O2 -shared -fPIC -o "$TMP/malloc_count.so" "$TMP/malloc_count.c"
  PRELOAD=$TMP/malloc_count.so
  start_portcullis counted "dns:
  servers: [\"127.0.0.1:$DNS_PORT\"]
  reverse_lookup: false"
  PRELOAD=
  COUNTED_PID=$PID
  saved=$MESSAGES
  MESSAGES=$COUNTS
  WATCH=()
  sink_direct=n/a sink_proxied=n/a
  if [[ $POSTFIX -eq 0 ]]; then
    strace_start "$SINK_PID" "$TMP/strace.sink.direct" || exit 1
    run_source "$SINK_PORT" 20 || status=1
    strace_stop "$TMP/strace.sink.direct"
    sink_direct=$SYSCALLS
  fi
  mallocs0=$(od -An -t u8 "$TMP/counted/mallocs" | tr -d ' ')
  if [[ $POSTFIX -eq 0 ]]; then
    strace_start "$SINK_PID" "$TMP/strace.sink.proxied" || exit 1
    sink_strace=$STRACE_PID
  fi
  strace_start "$COUNTED_PID" "$TMP/strace.portcullis" || exit 1
  run_source "$PORT" 20 || status=1
  mallocs1=$(od -An -t u8 "$TMP/counted/mallocs" | tr -d ' ')
  strace_stop "$TMP/strace.portcullis"
  pc_syscalls=$SYSCALLS pc_top=$TOP_SYSCALLS pc_no_wait=$SYSCALLS_NO_WAIT
  if [[ $POSTFIX -eq 0 ]]; then
    STRACE_PID=$sink_strace
    strace_stop "$TMP/strace.sink.proxied"
    sink_proxied=$SYSCALLS
  fi
  MESSAGES=$saved
  pc_mallocs=$(awk -v a="$mallocs0" -v b="$mallocs1" -v m="$COUNTS" \
                'BEGIN { printf "%.1f", (b - a) / m }')
  echo "counts: messages=$COUNTS sessions=20 portcullis[syscalls=$pc_syscalls" \
       "syscalls_but_epoll_wait=$pc_no_wait mallocs=$pc_mallocs]" \
       "sink[syscalls direct=$sink_direct proxied=$sink_proxied] top_syscalls: $pc_top"
  verdict() { awk -v got="$1" -v max="$2" 'BEGIN { print (got <= max ? "PASS" : "OVER") }'; }
  echo "budget: syscalls_but_epoll_wait=$pc_no_wait/${BUDGET%%,*}" \
       "$(verdict "$pc_no_wait" "${BUDGET%%,*}")" \
       "mallocs=$pc_mallocs/${BUDGET##*,} $(verdict "$pc_mallocs" "${BUDGET##*,}")"
fi

for name in plain filtered tls; do
  pid_var=${name^^}_PID
  pid=${!pid_var:-}
  [[ -n $pid ]] || continue
  if kill -0 "$pid" 2>/dev/null; then
    echo "portcullis ($name) peak RSS: $(awk '/^VmHWM:/ { print $2, $3 }' "/proc/$pid/status")"
  else
    echo "bench: portcullis ($name) exited during the run:" >&2
    status=1
  fi
  if grep -qE '^\S+ (warning|error|critical) ' "$TMP/$name/portcullis.log" 2>/dev/null; then
    echo "portcullis ($name) log, warnings and errors, last 5:"
    grep -E '^\S+ (warning|error|critical) ' "$TMP/$name/portcullis.log" | tail -n 5
  fi
done
exit $status
