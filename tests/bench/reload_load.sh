#!/usr/bin/env bash
# Reload under load, at full size (not CI; run by hand, as root): smtp-source sends 10,000
# messages through portcullis to a real Postfix while portcullis is reloaded 20 times (a new
# header_checks rule and a listener added or removed each time); every message must arrive
# and none be refused. CI runs the same test with 2,000 messages
# (tests/integration/test_reload.py, ReloadUnderLoadTest).
#
#   sudo tests/bench/reload_load.sh [MESSAGES] [--bin build/portcullis]
#
# Prints the test's line, e.g.
#   reload under load: 10000 messages, 20 reloads, 21 rule generations seen, 70.2s
# and exits non-zero if any message was lost or refused. Runs in a loopback-only network
# namespace.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
messages=10000
bin=${PORTCULLIS_BIN:-$here/../../build/portcullis}
while [[ $# -gt 0 ]]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    [0-9]*) messages=$1; shift ;;
    *) echo "usage: $0 [MESSAGES] [--bin PATH]" >&2; exit 2 ;;
  esac
done
export PORTCULLIS_BIN=$bin RELOAD_MESSAGES=$messages
exec unshare --net --fork bash -c \
  "ip link set lo up && python3 '$here/../integration/test_reload.py' -v ReloadUnderLoadTest"
