#!/usr/bin/env bash
# Milter benchmark (not a test): Postfix with portcullis as its milter against Postfix alone,
# msgs/s in the same run, rounds interleaved. Two private Postfix instances that differ only in
# smtpd_milters; portcullis serves the milter only (listen: []) with a header_checks chain that
# adds a header to every message; both instances discard at delivery, so a reading is
# smtp-source's messages / seconds until its last 250 (smtpd + milter + cleanup, not the queue).
#
#   sudo tests/bench/milter_bench.sh [--messages 2000] [--sessions "1 10"] [--size 10240]
#                                    [--rounds 3] [--binary build/portcullis]
#                                    [--socket inet|unix]
#
# One line per round, and a median per session count, e.g.
#   sessions=10 round=1 postfix=900 msg/s postfix+portcullis-milter=700 msg/s ratio=0.78
#   sessions=10 median_ratio=0.78 (3 rounds)
# All processes share the machine's cores: compare the ratio, never an absolute number across
# runs. As root it re-runs itself inside a loopback-only network + PID namespace (unshare).
# Needs postfix (smtp-source), python3.
set -euo pipefail

SELF=$(realpath "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/../.."
REPO=$PWD
ARGS=("$@")
BINARY=$REPO/build/portcullis
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
for ((i = 0; i < ${#ARGS[@]}; i++)); do
  case ${ARGS[$i]} in
    -h|--help) usage; exit 0 ;;
    --binary) BINARY=${ARGS[$((i + 1))]} ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "milter_bench: must run as root (Postfix's master)" >&2; exit 1; }
for prog in smtp-source postfix python3; do
  PATH=$PATH:/usr/sbin:/sbin command -v "$prog" >/dev/null ||
    { echo "milter_bench: $prog missing: run deploy/install-deps.sh" >&2; exit 1; }
done
[[ -x $(realpath "$BINARY") ]] ||
  { echo "milter_bench: $BINARY not found; build it: cmake --preset default && cmake --build --preset default -j2" >&2; exit 1; }

if [[ -z ${PORTCULLIS_BENCH_NETNS:-} ]]; then
  export PORTCULLIS_BENCH_NETNS=1
  exec unshare --net --pid --fork --mount-proc -- \
    bash -c 'ip link set lo up && "$@"' bench bash "$SELF" "${ARGS[@]}"
fi
export PATH=$PATH:/usr/sbin:/sbin PYTHONDONTWRITEBYTECODE=1
exec python3 "$REPO/tests/bench/milter_bench.py" "${ARGS[@]}"
