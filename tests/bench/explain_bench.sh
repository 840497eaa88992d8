#!/usr/bin/env bash
# Benchmark (not a test, not in CI): `portcullis explain` on a generated day of logs.
#
#   tests/bench/explain_bench.sh [--size-mb 1024] [--binary build/portcullis] [--runs 3]
#                                [--dir DIR] [--keep]
#
# Generates a log of realistic sessions in our text format (mostly delivered sessions of 4-5
# lines, some with TLS, about 2% refused with a reference, sessions interleaved as a busy relay
# writes them) of about --size-mb MB into a temporary directory, gzips a copy as logrotate
# would, then times, each --runs times (the median is reported):
#   ref        portcullis explain REF --log big.log      a reference near the end (two passes)
#   client     portcullis explain --client IP --log big.log   the client's last 5 sessions
#   gz         portcullis explain REF --log big.log.gz   the same on the compressed file
#   stdin      portcullis explain REF < big.log          standard input, spooled for pass two
#   grep       grep -c REF big.log                       the yardstick: one read, no parsing
# and prints wall seconds and MB/s of log (uncompressed bytes) for each. The file is read
# from the page cache after the first run when it fits in memory; say so when comparing.
# Uses farm-bench when it is installed (its median), else bash's time.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SIZE_MB=1024
BINARY=build/portcullis
RUNS=3
DIR=
KEEP=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --size-mb) SIZE_MB=$2; shift 2 ;;
    --binary) BINARY=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "explain_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x $BINARY ]] || { echo "explain_bench: no binary $BINARY (--binary)" >&2; exit 2; }
BINARY=$(realpath "$BINARY")
if [[ -z $DIR ]]; then
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/explain-bench.XXXXXX")
  [[ $KEEP == 1 ]] || trap 'rm -rf "$DIR"' EXIT
fi
LOG=$DIR/big.log
REF=Z9BENCH2
CLIENT=192.0.2.77

need_kb=$(( SIZE_MB * 1024 * 2 ))  # the log and its .gz (and the stdin spool) with room
avail_kb=$(df -Pk "$DIR" | awk 'NR==2 {print $4}')
if (( avail_kb < need_kb )); then
  echo "explain_bench: $DIR has $((avail_kb / 1024)) MB free, $((need_kb / 1024)) MB needed; lower --size-mb" >&2
  exit 2
fi

echo "generating ~${SIZE_MB} MB of log in $DIR ..."
start=$(date +%s.%N)
python3 - "$LOG" "$SIZE_MB" "$REF" "$CLIENT" <<'PY'
import random, sys
path, size_mb, target_ref, target_client = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
limit = size_mb * 1024 * 1024
rnd = random.Random(42)
ALPHA = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
domains = ["example.com", "example.net", "example.org", "mail.example", "corp.example"]
users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
ms = 0  # milliseconds since midnight

def ts():
    t = ms // 1000
    return "2026-12-03T%02d:%02d:%02d.%03d" % (t // 3600 % 24, t // 60 % 60, t % 60, ms % 1000)

def session(sid, ip, port, ref=None, rejected=False, tls=False):
    """The lines of one session, without timestamps."""
    helo = "mx%d.%s" % (port % 50, domains[port % 5])
    frm = "<%s@%s>" % (users[port % 10], domains[(port >> 3) % 5])
    to = "<%s@%s>" % (users[(port >> 2) % 10], domains[(port >> 5) % 5])
    name = "mx%d.%s" % (port % 50, domains[port % 5]) if port % 3 else "unknown"
    client = "%s[%s]:%d" % (name, ip, port)
    out = ["%s event=connect client=%s:%d local=192.0.2.1:25" % (sid, ip, port)]
    tlsf = "tls=no"
    cmds = "CONNECT:220,EHLO:250,"
    if tls:
        out.append("%s event=tls protocol=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256 resumed=no" % sid)
        tlsf = "tls=TLSv1.3 tls_cipher=TLS_AES_256_GCM_SHA384"
        cmds += "STARTTLS:220,EHLO:250,"
    if rejected:
        out.append('%s event=verdict stage=rcpt filter=dnsbl verdict=reject code=550 mode=enforce reason="client listed in zen.example"' % sid)
        out.append('%s event=reject from=%s to=%s helo=%s client=%s stage=rcpt code=550 dsn=5.7.1 filter=dnsbl reason="client listed in zen.example" ref=%s reply="Service unavailable; client [%s] blocked using zen.example [ref=%s]"' % (sid, frm, to, helo, client, ref, ip, ref))
        out.append('%s event=transaction from=%s rcpts=0/1 to="%s:550:dnsbl" size=0 result=no-recipients code=550 by=dnsbl' % (sid, frm, to))
        cmds += "MAIL:250,RCPT:550,QUIT:221"
        out.append('%s event=session client=%s helo=%s %s stage=rcpt commands=%s messages=0 closed_by=client quit=yes duration=0.%03ds from=%s rcpts=0/1 verdicts="dnsbl@rcpt:reject:550[client listed in zen.example]" last_reply="221 2.0.0 Bye"' % (sid, client, helo, tlsf, cmds, port % 1000, frm))
    else:
        qid = "%011X" % (hash((sid, port)) & 0xFFFFFFFFFFF)
        size = 2000 + port * 7 % 60000
        out.append('%s event=transaction from=%s rcpts=1/1 to="%s:250:mta" size=%d result=delivered code=250 by=mta queued_as=%s' % (sid, frm, to, size, qid))
        cmds += "MAIL:250,RCPT:250,DATA:354,.:250,QUIT:221"
        out.append('%s event=session client=%s helo=%s %s stage=end_of_message commands=%s messages=1 closed_by=client quit=yes duration=0.%03ds from=%s rcpts=1/1 queued_as=%s last_reply="221 2.0.0 Bye"' % (sid, client, helo, tlsf, cmds, port % 1000, frm, qid))
    return out

written = 0
n = 0
target_done = False
with open(path, "w", buffering=8 * 1024 * 1024) as f:
    while written < limit:
        # A group of 8 concurrent sessions, their lines interleaved.
        group = []
        for _ in range(8):
            n += 1
            sid = "%012x" % ((n * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFF)  # random-looking, unique
            if n % 20000 == 0 or (not target_done and written > limit * 0.98):
                ip = target_client
            else:
                ip = "198.51.%d.%d" % (n % 250, (n >> 8) % 250 + 1)
            port = 1024 + (n * 7919) % 60000
            if not target_done and written > limit * 0.98:
                target_done = True
                lines = session(sid, ip, port, ref=target_ref, rejected=True, tls=True)
            elif rnd.random() < 0.02:
                ref = "".join(rnd.choice(ALPHA) for _ in range(8))
                if ref == target_ref:
                    ref = "22222222"
                lines = session(sid, ip, port, ref=ref, rejected=True, tls=rnd.random() < 0.5)
            else:
                lines = session(sid, ip, port, tls=rnd.random() < 0.5)
            group.append(lines)
        chunk = []
        i = 0
        while any(group):
            for lines in group:
                if lines:
                    ms += 1 + (i % 3)
                    chunk.append(ts() + " info " + lines.pop(0) + "\n")
            i += 1
        data = "".join(chunk)
        f.write(data)
        written += len(data)
print("sessions=%d bytes=%d" % (n, written))
PY
gen=$(echo "$(date +%s.%N) - $start" | bc)
BYTES=$(stat -c %s "$LOG")
MB=$(echo "scale=1; $BYTES / 1048576" | bc)
echo "generated $MB MB in ${gen}s"
start=$(date +%s.%N)
gzip -c "$LOG" >"$LOG.gz"
echo "gzip -6: $(( $(stat -c %s "$LOG.gz") / 1048576 )) MB in $(echo "$(date +%s.%N) - $start" | bc)s"

# Correctness first: each command must find what it should.
"$BINARY" explain "$REF" --log "$LOG" >"$DIR/ref.out"
grep -q "failed here" "$DIR/ref.out" || { echo "explain_bench: the story lacks the failure" >&2; exit 1; }
"$BINARY" explain --client "$CLIENT" --log "$LOG" >"$DIR/client.out"
grep -q "session(s) of client $CLIENT" "$DIR/client.out" || { echo "explain_bench: --client found too few" >&2; exit 1; }
cmp -s "$DIR/ref.out" <("$BINARY" explain "$REF" --log "$LOG.gz" | sed "s|$LOG.gz|$LOG|") ||
  { echo "explain_bench: .gz gives another story" >&2; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_runs() {  # NAME CMD...  -> "NAME wall=S MB/s=R"
  local name=$1; shift
  local t
  if command -v farm-bench >/dev/null; then
    local report
    report=$(farm-bench -n "$RUNS" --warmup 1 --timeout 3000 -- sh -c "exec $* >/dev/null 2>&1" 2>&1)
    while IFS= read -r line; do echo "    [$name] $line"; done <<<"$report"
    t=$(echo "$report" | awk '$1 == "A" && $2 == "wall" {print $5}')
  fi
  if [[ -z ${t:-} ]]; then
    local runs=()
    for _ in $(seq "$RUNS"); do
      local s e
      s=$(date +%s.%N)
      sh -c "$* >/dev/null 2>&1" || true
      e=$(date +%s.%N)
      runs+=("$(echo "$e - $s" | bc)")
    done
    t=$(printf '%s\n' "${runs[@]}" | median)
  fi
  printf '%-8s wall=%6.2fs  %7.0f MB/s\n' "$name" "$t" "$(echo "$BYTES / 1048576 / $t" | bc -l)"
}

echo "log: $MB MB, $(wc -l <"$LOG") lines; runs: $RUNS (median)"
time_runs ref "$BINARY" explain "$REF" --log "$LOG"
time_runs client "$BINARY" explain --client "$CLIENT" --log "$LOG"
time_runs gz "$BINARY" explain "$REF" --log "$LOG.gz"
time_runs stdin "$BINARY" explain "$REF" "<" "$LOG"
time_runs grep grep -c "$REF" "$LOG"
