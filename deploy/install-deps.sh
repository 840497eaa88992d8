#!/usr/bin/env bash
# Install every Debian 12 package that building and testing portcullis needs.
#
#   sudo deploy/install-deps.sh        (or as root: deploy/install-deps.sh)
#
# Non-interactive and idempotent: when every package is already installed it only checks and
# exits in well under a second (no apt-get update). Postfix is installed without its debconf
# dialog ("No configuration": no /etc/postfix/main.cf, the tests run private instances).
# Package maintainer scripts are kept from starting system daemons (postfix, unbound,
# redis-server, haproxy, clamav-daemon, clamav-freshclam, spamd, rspamd) with a temporary
# /usr/sbin/policy-rc.d, so nothing ends up bound to ports 25, 53 or 6379 where it could
# collide with tests or leak queries, freshclam never fetches signatures and sa-update never
# fetches rules.
set -euo pipefail

PACKAGES=(
  # build
  cmake g++ pkg-config make
  clang clang-14 libclang-rt-14-dev clang-format clang-tidy
  libevent-dev libmilter-dev libldns-dev ldnsutils libspdlog-dev libgtest-dev libgmock-dev
  libssl-dev libyaml-cpp-dev libhiredis-dev libpcre2-dev zlib1g-dev
  # test peers and tools
  python3 python3-dkim postfix swaks libnet-ssleay-perl libio-socket-ssl-perl unbound haproxy redis-server openssl
  iproute2 util-linux procps bsdutils
  rsyslog logrotate  # test_log_outputs runs private ones (a socket, a state file of its own)
  systemd  # systemd-analyze, for test_systemd's offline check of deploy/systemd/portcullis.service
  prometheus  # promtool, for test_admin's check of /metrics (its service is kept off)
  # clamd for test_clamd (a private instance with a one-signature database). freshclam comes
  # with it and is kept from running like the other services: no test may reach the network.
  clamav-daemon clamav-freshclam
  # spamd for test_spamd (a private instance with -L, the packaged rules and a private home).
  # Its service and the daily sa-update timer are kept off like the others.
  spamassassin spamd spamc
  # rspamd for test_rspamd and the rspamd benchmark (private instances: own ports, DNS at a
  # private unbound that refuses everything, no map updates). Its service is kept off.
  rspamd
  # test_container builds deploy/Dockerfile and runs the image: rootful podman with runc, a
  # bookworm base made with debootstrap (no registry); test_deploy_files reads the manifests.
  podman buildah runc debootstrap python3-yaml
  # gnuplot (no X) draws tests/bench/compare.sh's plot (a benchmark, not a test)
  gnuplot-nox
)
# Installed without their recommends: docker-compose (test_deploy_files validates
# deploy/compose.yaml with `docker-compose config`, offline, no engine) recommends docker.io;
# chromium (headless, for test_admin's screenshot and DOM of the /status page) recommends a
# desktop's worth of services.
PACKAGES_NO_RECOMMENDS=(docker-compose chromium)
SERVICES=(postfix unbound redis-server haproxy clamav-daemon clamav-freshclam spamd prometheus
          rspamd)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: must run as root (sudo $0)" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ $status == installed ]] || missing+=("$pkg")
done
missing_norec=()
for pkg in "${PACKAGES_NO_RECOMMENDS[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ $status == installed ]] || missing_norec+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 && ${#missing_norec[@]} -eq 0 ]]; then
  echo "install-deps: all $(( ${#PACKAGES[@]} + ${#PACKAGES_NO_RECOMMENDS[@]} )) packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]} ${missing_norec[*]}"

export DEBIAN_FRONTEND=noninteractive
# Keep services from starting during the install; only remove the file if we created it.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# temporary, from portcullis deploy/install-deps.sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

apt_quiet=(-q -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
log=$(mktemp /tmp/portcullis-install-deps.XXXXXX.log)
if ! apt-get "${apt_quiet[@]}" update >"$log" 2>&1; then
  echo "install-deps: apt-get update failed; continuing with the cached lists" >&2
  tail -5 "$log" >&2
fi
if [[ ${#missing[@]} -gt 0 ]] &&
  ! apt-get "${apt_quiet[@]}" install -y "${missing[@]}" >>"$log" 2>&1; then
  echo "install-deps: apt-get install failed; last lines of $log:" >&2
  tail -30 "$log" >&2
  exit 1
fi
if [[ ${#missing_norec[@]} -gt 0 ]] && ! apt-get "${apt_quiet[@]}" install -y \
  --no-install-recommends "${missing_norec[@]}" >>"$log" 2>&1; then
  echo "install-deps: apt-get install failed; last lines of $log:" >&2
  tail -30 "$log" >&2
  exit 1
fi
rm -f "$log"

# Belt and braces: the tests run private instances, never the system services. For each
# daemon this run installed, stop it if its package started it anyway, and on a systemd host
# also disable it so that it does not come up at the next boot.
for svc in "${SERVICES[@]}"; do
  [[ " ${missing[*]} " == *" $svc "* ]] || continue
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    systemctl disable --now "$svc" >/dev/null 2>&1 &&
      echo "install-deps: disabled the system $svc service (tests run private instances)"
  elif command -v service >/dev/null && service "$svc" status >/dev/null 2>&1; then
    echo "install-deps: stopping the system $svc service started by its package"
    service "$svc" stop >/dev/null 2>&1 || true
  fi
done
# spamassassin's daily maintenance timer runs sa-update, which fetches rules from the network.
if [[ " ${missing[*]} " == *" spamassassin "* && -d /run/systemd/system ]] &&
  command -v systemctl >/dev/null; then
  systemctl disable --now spamassassin-maintenance.timer >/dev/null 2>&1 &&
    echo "install-deps: disabled spamassassin-maintenance.timer (sa-update reaches the network)"
fi
if command -v ss >/dev/null && ss -Hltnu 2>/dev/null | awk '{print $5}' | grep -Eq ':(25|53|6379)$'; then
  echo "install-deps: warning: something listens on port 25, 53 or 6379:" >&2
  ss -Hltnup 2>/dev/null | grep -E ':(25|53|6379) ' >&2 || true
fi
echo "install-deps: done"
