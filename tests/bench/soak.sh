#!/usr/bin/env bash
# Soak test (not CI; run by hand, as root): N messages through portcullis into a REAL private
# Postfix that is killed and restarted at random intervals, then checks that every message the
# client got a 250 for is in Postfix's queue.
#
#   sudo tests/bench/soak.sh [--messages 100000] [--sessions 20] [--per-connection 5]
#                            [--size 1024] [--bin build/portcullis] [--interval 2:10]
#                            [--down 0:2] [--attempts 200 | --no-retry] [--deadline 5400]
#                            [--kill-modes kill,kill,kill,abort,stop] [--log-level info]
#                            [--keep] [--no-netns]
#
# tests/bench/soak_client.py (asyncio, --sessions concurrent sessions) sends --messages distinct
# messages, each with its own Message-ID <soak.RUN.n@soak.test>, and records every deciding
# reply. A 4xx or a broken connection is retried (a real sender does) up to --attempts
# attempts; --no-retry sends each message once. Meanwhile, every --interval seconds (uniform
# between MIN:MAX) the MTA is killed, one of --kill-modes picked at random:
#   kill   SIGKILL the master and all its children (no clean-up at all)
#   abort  `postfix abort` (SIGTERM to the master, which kills its children)
#   stop   `postfix stop` (graceful)
# stays down for --down seconds (uniform MIN:MAX) and is started again with `postfix start`.
#
# The private Postfix (loopback high port, XCLIENT from 127.0.0.0/8, no DNS) keeps every message
# it accepts: header_checks puts it on hold, and the only transport is in defer_transports, so
# a queue file that escaped the hold stays in the deferred queue. tests/bench/soak_check.py then
# reads the Message-IDs from the committed queue files themselves (not from the maillog, whose
# daemon dies with the rest) and prints
#   soak: sent=.. acked_250=.. queued=.. lost=.. duplicates=.. tempfail=.. broken=.. mta_restarts=..
# lost = the client got 250 but no queue file holds that Message-ID (the bar is 0);
# duplicates = extra queue files for one Message-ID (the client never saw the first 250 and
# retried: inherent to SMTP, reported); tempfail = 4xx replies; broken = attempts that ended with
# a dropped connection. Exit status: 1 if lost > 0 (or nothing was acked), 3 if portcullis died,
# 4 if the client did not finish, 5 if Postfix could not be restarted, 0 otherwise.
#
# Everything runs inside a loopback-only network + PID namespace; DNS points at an unused
# loopback port (and reverse lookups are off). The work directory /tmp/soak-XXXXXX keeps the
# logs (portcullis.log, maillog, client results); Postfix's queue is removed unless --keep or
# the run failed.
# shellcheck disable=SC2317  # cleanup runs from the EXIT trap
set -euo pipefail

SELF=$(realpath "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/../.."
REPO=$PWD
MESSAGES=100000
SESSIONS=20
PER_CONNECTION=5
SIZE=1024
BINARY=$REPO/build/portcullis
INTERVAL=2:10
DOWN=0:2
ATTEMPTS=200
DEADLINE=5400
KILL_MODES=kill,kill,kill,abort,stop
LOG_LEVEL=info
KEEP=0
NETNS=1
ARGS=("$@")
usage() { sed -n '2,37p' "$SELF" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --messages) MESSAGES=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --per-connection) PER_CONNECTION=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --bin|--binary) BINARY=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --down) DOWN=$2; shift 2 ;;
    --attempts) ATTEMPTS=$2; shift 2 ;;
    --no-retry) ATTEMPTS=1; shift ;;
    --deadline) DEADLINE=$2; shift 2 ;;
    --kill-modes) KILL_MODES=$2; shift 2 ;;
    --log-level) LOG_LEVEL=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-netns) NETNS=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "soak: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
BINARY=$(realpath "$BINARY")
[[ -x $BINARY ]] || { echo "soak: $BINARY not found" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "soak: needs root (Postfix's master runs as root)" >&2; exit 1; }
PATH=$PATH:/usr/sbin:/sbin
command -v postfix >/dev/null || { echo "soak: postfix missing: run deploy/install-deps.sh" >&2; exit 1; }

if [[ $NETNS -eq 1 && -z ${PORTCULLIS_SOAK_NETNS:-} ]]; then
  export PORTCULLIS_SOAK_NETNS=1
  exec unshare --net --pid --fork --mount-proc -- \
    bash -c 'ip link set lo up && "$@"' soak bash "$SELF" "${ARGS[@]}"
fi

TMP=$(mktemp -d /tmp/soak-XXXXXX)
chmod 755 "$TMP"
RUN_ID=$(basename "$TMP" | tr -c 'A-Za-z0-9\n' _)
PF=$TMP/postfix
PIDS=()
STATUS=1
pf() { postfix -c "$PF/conf" "$@"; }
master_pid() { awk '{ print $1; exit }' "$PF/queue/pid/master.pid" 2>/dev/null || true; }
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done  # the client, portcullis
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  if [[ -d $PF/conf ]]; then
    pf abort >/dev/null 2>&1
    kill_mta >/dev/null 2>&1
  fi
  if [[ $STATUS -eq 0 && $KEEP -eq 0 ]]; then
    rm -rf "$PF/queue"
  fi
  echo "soak: logs in $TMP (exit status $STATUS)"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_listening() {  # PORT [PID]
  for _ in $(seq 1 300); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    [[ -n ${2:-} ]] && ! kill -0 "$2" 2>/dev/null && return 1
    sleep 0.05
  done
  return 1
}
uniform() {  # MIN:MAX → a random number of seconds in between
  awk -v r="$RANDOM$RANDOM" -v spec="$1" 'BEGIN { split(spec, a, ":"); srand(r)
    printf "%.2f", a[1] + rand() * (a[2] - a[1]) }'
}

# --- the private Postfix ------------------------------------------------------------------
PF_PORT=$(free_port)
mkdir -p "$PF"/{conf,queue,data}
chown postfix "$PF/data"
printf '/^Message-ID:/ HOLD soak keeps every message\n' >"$PF/conf/header_checks"
cat >"$PF/conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.soak.test
mydomain = test.local
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
relay_domains = test.local
smtpd_peername_lookup = no
maillog_file_prefixes = $TMP
maillog_file = $TMP/maillog
header_checks = regexp:$PF/conf/header_checks
# Nothing is ever delivered: a message that was committed but not yet moved to hold when the
# MTA died is deferred (defer_transports), and stays countable. smtp never runs.
default_transport = smtp
relay_transport = smtp
relayhost = [127.0.0.1]:9
defer_transports = smtp
smtp_dns_support_level = disabled
smtpd_authorized_xclient_hosts = 127.0.0.0/8
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
in_flow_delay = 0
enable_long_queue_ids = yes
EOF
cat >"$PF/conf/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
touch -d '-1 minute' "$PF/conf/main.cf" "$PF/conf/master.cf"  # else Postfix polls for ~2 s
pf set-permissions >/dev/null 2>&1 || true
# After a crash, postfix start's integrity check (postsuper, running as mail_owner) logs about
# the half-written queue files it finds, straight into maillog_file: it must be able to open it.
install -o postfix -g postdrop -m 0660 /dev/null "$TMP/maillog"

start_mta() {
  if ! pf start >>"$TMP/postfix-start.log" 2>&1; then
    echo "soak: postfix start failed:" >&2
    tail -n 5 "$TMP/postfix-start.log" >&2
    script -qc "postfix -c $PF/conf check" /dev/null >&2 || true
    return 1
  fi
  wait_listening "$PF_PORT" || { echo "soak: postfix not listening" >&2; return 1; }
}
kill_mta() {  # SIGKILL the master, its process group and its children
  local m pids
  m=$(master_pid)
  [[ -n $m ]] && kill -0 "$m" 2>/dev/null || return 0
  pids=$(ps -o pid= --ppid "$m" || true)
  kill -9 -- -"$m" 2>/dev/null || true  # master calls setsid(): its children share its group
  # shellcheck disable=SC2086
  kill -9 "$m" $pids 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$m" 2>/dev/null || break; sleep 0.05; done
}
stop_mta() {  # MODE
  case $1 in
    kill) kill_mta ;;
    abort) pf abort >/dev/null 2>&1 || kill_mta ;;
    stop) pf stop >/dev/null 2>&1 || kill_mta ;;
  esac
  local m
  m=$(master_pid)
  for _ in $(seq 1 200); do
    if [[ -z $m ]] || ! kill -0 "$m" 2>/dev/null; then break; fi
    sleep 0.05
  done
  kill_mta  # anything left over (a stop that hung) goes the hard way
  # Wait until the port is free, so the next master can bind it.
  for _ in $(seq 1 200); do ss -Hltn "sport = :$PF_PORT" | grep -q . || break; sleep 0.05; done
}

start_mta || exit 1

# --- portcullis ---------------------------------------------------------------------------
PORT=$(free_port)
DNS_PORT=$(free_port)  # nothing listens there: never the system resolver
mkdir -p "$TMP/spool"
cat >"$TMP/portcullis.yaml" <<YAML
hostname: portcullis.soak.test
listen: ["127.0.0.1:$PORT"]
upstream:
  address: "127.0.0.1:$PF_PORT"
  identity: xclient
  connect_timeout: 5s
  command_timeout: 60s
limits:
  max_connections: 1000
  max_connections_per_ip: 1000
spool:
  directory: "$TMP/spool"
dns:
  servers: ["127.0.0.1:$DNS_PORT"]
  reverse_lookup: false
log:
  level: $LOG_LEVEL
YAML
"$BINARY" --config "$TMP/portcullis.yaml" >"$TMP/portcullis.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
wait_listening "$PORT" "$PROXY_PID" || { echo "soak: portcullis did not start"; cat "$TMP/portcullis.log"; exit 1; }

echo "soak: run=$RUN_ID messages=$MESSAGES sessions=$SESSIONS per_connection=$PER_CONNECTION" \
     "size=$SIZE attempts=$ATTEMPTS interval=$INTERVAL down=$DOWN kill_modes=$KILL_MODES" \
     "binary=$BINARY dir=$TMP"

# --- load and chaos -----------------------------------------------------------------------
python3 "$REPO/tests/bench/soak_client.py" --port "$PORT" --messages "$MESSAGES" \
  --sessions "$SESSIONS" --per-connection "$PER_CONNECTION" --size "$SIZE" \
  --attempts "$ATTEMPTS" --deadline "$DEADLINE" --run-id "$RUN_ID" \
  --results "$TMP/client-results.txt" >"$TMP/client.out" 2>"$TMP/client.err" &
CLIENT_PID=$!
PIDS+=("$CLIENT_PID")

IFS=, read -r -a MODES <<<"$KILL_MODES"
RESTARTS=0
PROXY_DIED=0
MTA_FAILED=0
declare -A BY_MODE=()
t_start=$(date +%s)
next_kill=$(awk -v n="$(date +%s.%N)" -v d="$(uniform "$INTERVAL")" 'BEGIN { printf "%.2f", n + d }')
while kill -0 "$CLIENT_PID" 2>/dev/null; do
  if ! kill -0 "$PROXY_PID" 2>/dev/null; then
    PROXY_DIED=1
    echo "soak: portcullis DIED during the run (see $TMP/portcullis.log)" >&2
    break
  fi
  if awk -v n="$(date +%s.%N)" -v k="$next_kill" 'BEGIN { exit !(n >= k) }'; then
    mode=${MODES[RANDOM % ${#MODES[@]}]}
    stop_mta "$mode"
    sleep "$(uniform "$DOWN")"
    tries=0
    until start_mta; do
      tries=$((tries + 1))
      if [[ $tries -ge 5 ]]; then
        echo "soak: cannot restart postfix (see $TMP/postfix-start.log); stopping the client" >&2
        kill "$CLIENT_PID" 2>/dev/null || true
        MTA_FAILED=1
        break 2
      fi
      sleep 1
    done
    RESTARTS=$((RESTARTS + 1))
    BY_MODE[$mode]=$(( ${BY_MODE[$mode]:-0} + 1 ))
    echo "$(date +%T) restart=$RESTARTS mode=$mode" >>"$TMP/restarts.log"
    next_kill=$(awk -v n="$(date +%s.%N)" -v d="$(uniform "$INTERVAL")" 'BEGIN { printf "%.2f", n + d }')
  fi
  sleep 0.2
done
CLIENT_RC=0
if [[ $PROXY_DIED -eq 1 ]]; then
  kill "$CLIENT_PID" 2>/dev/null || true
fi
wait "$CLIENT_PID" || CLIENT_RC=$?
t_end=$(date +%s)
cat "$TMP/client.out"
tail -n 3 "$TMP/client.err" | sed 's/^/soak: client stderr: /'
modes=""
for m in "${!BY_MODE[@]}"; do modes+="$m=${BY_MODE[$m]} "; done
echo "soak: wall=$((t_end - t_start))s mta_restarts=$RESTARTS (${modes% })"

# Let Postfix finish anything in flight before the queue is read (nothing is mid-commit once
# the client is done; a stop makes sure).
pf stop >/dev/null 2>&1 || kill_mta
if kill -0 "$PROXY_PID" 2>/dev/null; then
  echo "soak: portcullis alive at the end, RSS $(awk '/^VmRSS:/ { print $2, $3 }' "/proc/$PROXY_PID/status")," \
       "peak $(awk '/^VmHWM:/ { print $2, $3 }' "/proc/$PROXY_PID/status")"
else
  PROXY_DIED=1
fi
echo "soak: portcullis log: $(grep -c . "$TMP/portcullis.log") lines," \
     "$(grep -ciE 'level=(error|critical)|\[(error|critical)\]' "$TMP/portcullis.log" || true) at error or above"

CHECK_RC=0
python3 "$REPO/tests/bench/soak_check.py" --results "$TMP/client-results.txt" \
  --queue "$PF/queue" --maillog "$TMP/maillog" --run-id "$RUN_ID" --messages "$MESSAGES" \
  --restarts "$RESTARTS" || CHECK_RC=$?
if [[ $CHECK_RC -ne 0 ]]; then
  STATUS=1
elif [[ $MTA_FAILED -eq 1 ]]; then
  echo "soak: FAIL: Postfix could not be restarted; the run is incomplete" >&2
  STATUS=5
elif [[ $PROXY_DIED -eq 1 ]]; then
  echo "soak: FAIL: portcullis died; last log lines:" >&2
  tail -n 20 "$TMP/portcullis.log" >&2
  STATUS=3
elif [[ $CLIENT_RC -ne 0 ]]; then
  echo "soak: FAIL: the client did not finish every message (deadline or attempts)" >&2
  STATUS=4
else
  STATUS=0
fi
exit $STATUS
