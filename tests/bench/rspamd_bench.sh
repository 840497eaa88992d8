#!/usr/bin/env bash
# rspamd benchmark (not a test): the same rspamd scanning every message, reached two ways, in
# front of the same smtp-sink, in the same run, rounds interleaved:
#   portcullis:  smtp-source → portcullis (rspamd filter: evhttp POST /checkv2 to rspamd's
#                normal worker) → smtp-sink
#   milter:      smtp-source → Postfix (smtpd_milters = rspamd's own proxy worker in milter
#                mode with self_scan: the scan runs inside the proxy; then Postfix's queue and
#                smtp to relayhost = the sink) → smtp-sink. Postfix's before-queue proxy filter
#                cannot be used: milters do not see the content of its mail (MILTER_README).
#                Each milter reading waits for Postfix's queue to drain, so delivery counts.
#
#   sudo tests/bench/rspamd_bench.sh [--messages 2000] [--sessions "1 10"] [--size 10240]
#                                    [--rounds 3] [--workers 2] [--binary build/portcullis]
#
# One line per round and path, and a summary, e.g.
#   sessions=10 round=1 portcullis=420 msg/s milter=310 msg/s ratio=1.35
#     cpu_us_per_msg: portcullis[source=.. portcullis=.. rspamd=.. sink=..]
#                     milter[source=.. postfix=.. rspamd=.. sink=..]
#   sessions=10 median_ratio=1.35 (3 rounds: ...)
#   scan_ms (portcullis's event=scan time): p50=.. p99=..; rspamd's own (time_real): p50=..
#     p99=..; added by portcullis (time - rspamd_time, per scan): p50=.. p99=..
# cpu_us_per_msg is the user+system CPU time per message of each side's processes (Postfix:
# every postfix process plus its reaped children; rspamd: every rspamd process). All processes
# share the machine's cores: compare the ratio, never an absolute number across runs.
# rspamd runs the project's test config (tests/integration/rspamd/, DNS at a private unbound
# that refuses everything: lookups fail at once). As root it re-runs itself inside a
# loopback-only network + PID namespace (unshare), so every byte stays on loopback and nothing
# outlives it. Needs rspamd, postfix (smtp-source, smtp-sink), unbound, python3.
set -euo pipefail

SELF=$(realpath "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/../.."
REPO=$PWD
ARGS=("$@")
BINARY=$REPO/build/portcullis
usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }
for ((i = 0; i < ${#ARGS[@]}; i++)); do
  case ${ARGS[$i]} in
    -h|--help) usage; exit 0 ;;
    --binary) BINARY=${ARGS[$((i + 1))]} ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "rspamd_bench: must run as root (Postfix's master, rspamd's user)" >&2; exit 1; }
for prog in rspamd smtp-source smtp-sink postfix unbound python3; do
  PATH=$PATH:/usr/sbin:/sbin command -v "$prog" >/dev/null ||
    { echo "rspamd_bench: $prog missing: run deploy/install-deps.sh" >&2; exit 1; }
done
[[ -x $(realpath "$BINARY") ]] ||
  { echo "rspamd_bench: $BINARY not found; build it: cmake --preset default && cmake --build --preset default -j2" >&2; exit 1; }

if [[ -z ${PORTCULLIS_BENCH_NETNS:-} ]]; then
  export PORTCULLIS_BENCH_NETNS=1
  exec unshare --net --pid --fork --mount-proc -- \
    bash -c 'ip link set lo up && "$@"' bench bash "$SELF" "${ARGS[@]}"
fi
export PATH=$PATH:/usr/sbin:/sbin PYTHONDONTWRITEBYTECODE=1
exec python3 "$REPO/tests/bench/rspamd_bench.py" "${ARGS[@]}"
