#!/usr/bin/env bash
# The newcomer's one command: see portcullis relay a message to a real Postfix.
#
#   sudo deploy/demo.sh           install deps, build, run the demo, stop everything
#   sudo deploy/demo.sh --keep    leave it running so you can try it yourself:
#                                   swaks --server 127.0.0.1:2525 --to user@test.local
#   sudo deploy/demo.sh --stop    stop what --keep left running
#   PORTCULLIS_BIN=path/to/portcullis deploy/demo.sh    use that binary instead of building
#
# What runs (all on loopback, state under /tmp/portcullis-demo):
#   unbound    127.0.0.1:5353    test zones from tests/fixtures/dns/zones.conf; never recurses
#   Postfix    127.0.0.1:10025   private instance; XCLIENT allowed from 127.0.0.0/8;
#                                *@test.local is delivered to a Maildir
#   portcullis 127.0.0.1:2525    in front of Postfix, passing the real client with XCLIENT
# swaks sends one message (sender@client.test → user@test.local) through portcullis, and the
# script prints the transcript, portcullis's session summary line, Postfix's client= log line
# and the delivered file. Safe to run again: a previous demo is stopped first.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
DEMO=/tmp/portcullis-demo
RUN=$DEMO/run
PF=$DEMO/postfix
PC_PORT=2525
PF_PORT=10025
DNS_PORT=5353
KEEP=0
case ${1:-} in
  --keep) KEEP=1 ;;
  --stop) ;;
  "") ;;
  -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "demo: unknown option $1 (try --help)" >&2; exit 2 ;;
esac
if [[ $(id -u) -ne 0 ]]; then
  echo "demo: must run as root (sudo $0): Postfix's master runs as root" >&2
  exit 1
fi
PATH=$PATH:/usr/sbin:/sbin

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_pidfile() {  # NAME PIDFILE: SIGTERM, wait up to 10 s, then SIGKILL
  local pid
  [[ -f $2 ]] || return 0
  pid=$(cat "$2")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "demo: $1 did not stop in 10 s, killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
    echo "stopped $1 (pid $pid)"
  fi
  rm -f "$2"
}

stop_all() {
  stop_pidfile portcullis "$RUN/portcullis.pid"
  stop_pidfile unbound "$RUN/unbound.pid"
  if [[ -f $PF/conf/main.cf ]] && postfix -c "$PF/conf" status >/dev/null 2>&1; then
    local master
    master=$(tr -d ' ' <"$PF/queue/pid/master.pid" 2>/dev/null || true)
    postfix -c "$PF/conf" stop >/dev/null 2>&1 || true
    if [[ -n $master ]]; then
      for _ in $(seq 1 100); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
    fi
    echo "stopped postfix"
  fi
}

if [[ ${1:-} == --stop ]]; then
  stop_all
  exit 0
fi

stop_all >/dev/null  # a previous --keep run, if any

say "dependencies"
bash deploy/install-deps.sh

mkdir -p "$DEMO"
if [[ -n ${PORTCULLIS_BIN:-} ]]; then
  BIN=$(realpath "$PORTCULLIS_BIN")
  say "using PORTCULLIS_BIN=$BIN (no build)"
else
  say "build (cmake --preset default)"
  if ! { cmake --preset default && cmake --build --preset default -j2; } >"$DEMO/build.log" 2>&1; then
    tail -n 40 "$DEMO/build.log"
    echo "demo: build failed (full log: $DEMO/build.log)" >&2
    exit 1
  fi
  BIN=$REPO/build/portcullis
  echo "built $BIN"
fi

for port in $PC_PORT $PF_PORT $DNS_PORT; do
  if ss -Hltnu "sport = :$port" | grep -q .; then
    echo "demo: port $port is already in use:" >&2
    ss -Hltnup "sport = :$port" >&2
    exit 1
  fi
done
rm -rf "$PF" "$RUN" "$DEMO/spool" "$DEMO/dns"
mkdir -p "$RUN" "$DEMO/spool" "$DEMO/dns" "$PF/conf" "$PF/queue" "$PF/data" "$PF/mail"
chmod 755 "$DEMO"

say "unbound on 127.0.0.1:$DNS_PORT"
ZONES=$REPO/tests/fixtures/dns/zones.conf
{
  echo "server:"
  echo "  interface: 127.0.0.1@$DNS_PORT"
  echo "  do-daemonize: no"
  echo '  chroot: ""'
  echo '  username: ""'
  echo "  directory: \"$DEMO/dns\""
  echo "  pidfile: \"$DEMO/dns/unbound.pid\""
  echo "  use-syslog: no"
  echo "  logfile: \"\""
  echo "  num-threads: 1"
  echo "  do-ip6: no"
  echo "  access-control: 127.0.0.0/8 allow"
  echo '  module-config: "iterator"'
  echo "  outgoing-interface: 127.0.0.1"
  echo "  cache-max-ttl: 0"
  echo "  cache-max-negative-ttl: 0"
  echo '  local-zone: "." refuse'    # never recurse: anything not below is REFUSED
  if [[ -f $ZONES ]]; then
    grep -v '^[[:space:]]*server:' "$ZONES"
  else
    echo '  local-zone: "test." static'
    echo '  local-data: "client.test. 60 IN A 127.0.0.1"'
    echo '  local-zone: "127.in-addr.arpa." static'
    echo '  local-data-ptr: "127.0.0.1 client.test."'
  fi
} >"$DEMO/dns/unbound.conf"
unbound-checkconf "$DEMO/dns/unbound.conf" >/dev/null
setsid unbound -d -c "$DEMO/dns/unbound.conf" >"$DEMO/unbound.log" 2>&1 </dev/null &
echo $! >"$RUN/unbound.pid"
for _ in $(seq 1 100); do
  drill -Q -p "$DNS_PORT" client.test @127.0.0.1 >/dev/null 2>&1 && break
  sleep 0.05
done
echo "client.test → $(drill -Q -p "$DNS_PORT" client.test @127.0.0.1 2>/dev/null || echo '?')"

say "Postfix on 127.0.0.1:$PF_PORT"
cat >"$PF/conf/main.cf" <<MAIN
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = upstream.test.local
mydomain = test.local
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
# Both families, though it listens on 127.0.0.1 only: with ipv4 alone Postfix refuses an IPv6
# client's address in XCLIENT (501 5.5.4 Bad ADDR syntax) and every IPv6 sender is tempfailed.
inet_protocols = all
mynetworks = 127.0.0.0/8
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
# no DNS at all: the identity of the client comes from portcullis via XCLIENT
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_authorized_xclient_hosts = 127.0.0.0/8
maillog_file_prefixes = /var, /dev/stdout, $PF
maillog_file = $PF/maillog
virtual_mailbox_domains = test.local
virtual_mailbox_base = $PF/mail
virtual_mailbox_maps = static:sink/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
default_transport = discard:not-delivered
relay_transport = discard:not-delivered
MAIN
cat >"$PF/conf/master.cf" <<MASTER
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
proxywrite unix - - n -  1 proxymap
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
virtual   unix  - n n -  - virtual
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
MASTER
chown postfix "$PF/data"
chown nobody:nogroup "$PF/mail"
touch -d '1 minute ago' "$PF/conf/main.cf" "$PF/conf/master.cf"  # or Postfix waits ~2 s
postfix -c "$PF/conf" set-permissions >/dev/null 2>&1 || true
postfix -c "$PF/conf" start >/dev/null 2>&1 || { echo "demo: postfix failed to start:"; tail "$PF/maillog"; exit 1; }
for _ in $(seq 1 100); do ss -Hltn "sport = :$PF_PORT" | grep -q LISTEN && break; sleep 0.05; done
echo "maillog: $PF/maillog"

say "portcullis on 127.0.0.1:$PC_PORT → 127.0.0.1:$PF_PORT"
cat >"$DEMO/portcullis.yaml" <<YAML
hostname: portcullis.test.local
listen: ["127.0.0.1:$PC_PORT"]
upstream:
  address: "127.0.0.1:$PF_PORT"
  identity: xclient
dns:
  servers: ["127.0.0.1:$DNS_PORT"]
spool:
  directory: "$DEMO/spool"
log:
  level: info
YAML
setsid "$BIN" --config "$DEMO/portcullis.yaml" \
  >"$DEMO/portcullis.log" 2>&1 </dev/null &
echo $! >"$RUN/portcullis.pid"
for _ in $(seq 1 100); do
  ss -Hltn "sport = :$PC_PORT" | grep -q LISTEN && break
  kill -0 "$(cat "$RUN/portcullis.pid")" 2>/dev/null || break
  sleep 0.05
done
if ! ss -Hltn "sport = :$PC_PORT" | grep -q LISTEN; then
  echo "demo: portcullis did not start:" >&2
  tail -n 20 "$DEMO/portcullis.log" >&2
  stop_all
  exit 1
fi
echo "config: $DEMO/portcullis.yaml   log: $DEMO/portcullis.log"

say "swaks --server 127.0.0.1:$PC_PORT --from sender@client.test --to user@test.local"
status=0
swaks --server "127.0.0.1:$PC_PORT" --from sender@client.test --to user@test.local \
  --helo client.test --header "Subject: portcullis demo" \
  --body "Hello from deploy/demo.sh" >"$DEMO/swaks.log" 2>&1 || status=$?
tail -n 12 "$DEMO/swaks.log"

say "portcullis session summary"
line=
for _ in $(seq 1 50); do
  line=$(grep 'event=session' "$DEMO/portcullis.log" | tail -n 1 || true)
  [[ -n $line ]] && break
  sleep 0.1
done
if [[ -n $line ]]; then
  echo "$line"
else
  echo "(no event=session line in $DEMO/portcullis.log)"
  status=1
fi

say "Postfix saw the real client (via XCLIENT)"
delivered=
for _ in $(seq 1 100); do
  delivered=$(find "$PF/mail/sink/new" -type f 2>/dev/null | head -n 1 || true)
  [[ -n $delivered ]] && break
  sleep 0.1
done
grep -E 'smtpd\[[0-9]+\]: [0-9A-F]+: client=' "$PF/maillog" | tail -n 1 ||
  echo "(no client= line in $PF/maillog)"

say "delivered"
if [[ -n $delivered ]]; then
  echo "$delivered"
else
  echo "(nothing delivered to $PF/mail/sink/new/)"
  status=1
fi

if [[ $KEEP -eq 1 ]]; then
  say "still running"
  echo "try:   swaks --server 127.0.0.1:$PC_PORT --from you@client.test --to someone@test.local"
  echo "logs:  $DEMO/portcullis.log  $PF/maillog"
  echo "mail:  $PF/mail/sink/new/"
  echo "stop:  sudo deploy/demo.sh --stop"
else
  say "stopping"
  stop_all
fi
exit $status
