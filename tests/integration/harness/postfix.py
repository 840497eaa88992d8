"""A private Postfix instance on loopback high ports, in its own temp dir.

    pf = Postfix(reject_recipients={"bad@test.local": "550 5.1.1 no such user"}).start()
    pf.port        plain smtpd; XCLIENT and XFORWARD allowed from 127.0.0.0/8
    pf.proxy_port  smtpd with smtpd_upstream_proxy_protocol = haproxy (PROXY v1/v2)
    Postfix(tls_certs=certs)   both smtpd offer STARTTLS with certs.cert/certs.key (a
                   harness make_certs() Certs), smtpd_tls_loglevel = 1, plus a tlsmgr service
    Postfix(milter="inet:127.0.0.1:8891")   smtpd_milters and non_smtpd_milters, with
                   milter_default_action (default tempfail), milter_protocol = 6 and any
                   milter_*_timeout given as milter_timeouts={"command": "1s"}
    pf.sendmail(msg, "-f", "a@b", "rcpt@test.local")   the sendmail(1) command of this instance
    pf.messages(1) delivered messages (bytes), *@test.local → Maildir DIR/mail/sink/
    pf.wait_for_log(r"client=\\S+\\[203\\.0\\.113\\.7\\]")   maillog is DIR/maillog (postlogd)

Each instance owns its queue_directory (hence its pid/ and socket dirs) and data_directory,
so several can run at once; /etc/postfix is only read (meta_directory). Needs root: master(8)
runs as root and drops to mail_owner=postfix for the daemons. No DNS is ever used
(smtpd_peername_lookup = no, smtp_dns_support_level = disabled); other domains are discarded
unless relayhost is set to a loopback next hop. Readiness = the smtpd greeting, so the maillog
always starts with one "connect from unknown[127.0.0.1]" that is the harness's own probe.
"""

import email
import email.policy
import os
import re
import socket
import subprocess
import time

from .ports import free_port, wait_listening, wait_port
from .process import (WAIT, Fixture, read_text, require_program, tail, wait_for_regex,
                      wait_until)

MASTER_CF_SERVICES = """\
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
"""

_REJECT_PREFIX = re.compile(r"^<[^>]*>: Recipient address rejected: ")


def _access_action(reply):
    """Turn the reply a test expects to see into an access(5) action.

    Postfix answers a matching check_recipient_access entry with
    "CODE [DSN] <rcpt>: Recipient address rejected: TEXT", so when the expected reply already
    has that shape only TEXT goes into the table, and the client sees exactly `reply`.
    """
    match = re.match(r"^([45]\d\d)(?:\s+([245]\.\d{1,3}\.\d{1,3}))?\s*(.*)$", reply.strip())
    if not match:
        raise ValueError(f"reject reply must start with a 4xx/5xx code: {reply!r}")
    code, dsn, text = match.groups()
    text = _REJECT_PREFIX.sub("", text) or "rejected"
    return " ".join(part for part in (code, dsn, text) if part)


class Postfix(Fixture):
    name = "postfix"

    def __init__(self, *, port=None, proxy_port=None, hostname="upstream.test.local",
                 extra_main_cf=None, extra_master_cf=None, reject_recipients=None,
                 milter=None, milter_default_action="tempfail", milter_timeouts=None,
                 relayhost=None, message_size_limit=52428800, start_timeout=30.0,
                 tls_certs=None, inet_protocols="all"):
        """extra_main_cf: str of main.cf lines or dict name→value, appended last (wins).
        extra_master_cf: str appended to master.cf (e.g. another smtpd with -o overrides).
        reject_recipients: {address: expected reply}, e.g.
            {"bad@test.local": "550 5.1.1 <bad@test.local>: Recipient address rejected: no such user"}
        relayhost: e.g. "[127.0.0.1]:20025"; other domains are then relayed there instead of
            discarded.
        tls_certs: a Certs (harness.tls.make_certs); smtpd then offers STARTTLS
            (smtpd_tls_security_level = may) and logs "... TLS connection established from ...".
        inet_protocols: "all" (as deploy/demo.sh) takes IPv6 client addresses in XCLIENT even
            though it listens on 127.0.0.1 only; "ipv4" refuses them (501 5.5.4)."""
        super().__init__()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proxy_port = proxy_port or free_port()
        self.hostname = hostname
        self.extra_main_cf = extra_main_cf
        self.milter = milter
        self.milter_default_action = milter_default_action
        self.milter_timeouts = milter_timeouts or {}
        self.extra_master_cf = extra_master_cf or ""
        self.reject_recipients = dict(reject_recipients or {})
        self.relayhost = relayhost or ""
        self.message_size_limit = message_size_limit
        self.tls_certs = tls_certs
        self.inet_protocols = inet_protocols
        self.start_timeout = start_timeout
        self.dir = self.conf_dir = self.maildir = self.maillog = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    # -- configuration -------------------------------------------------------------------

    def _main_cf(self):
        d = self.dir
        transport = "smtp" if self.relayhost else "discard:not-delivered"
        lines = f"""\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = {self.hostname}
mydomain = test.local
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = {self.inet_protocols}
mynetworks = 127.0.0.0/8
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
smtpd_peername_lookup = no
maillog_file_prefixes = /var, /dev/stdout, {d}
maillog_file = {self.maillog}
virtual_mailbox_domains = test.local
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = static:sink/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
default_transport = {transport}
relay_transport = {transport}
relayhost = {self.relayhost}
smtp_dns_support_level = disabled
smtp_host_lookup = native
default_destination_concurrency_limit = 50
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_authorized_xforward_hosts = 127.0.0.0/8
message_size_limit = {self.message_size_limit}
virtual_mailbox_limit = 0
mailbox_size_limit = 0
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
in_flow_delay = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""
        if self.reject_recipients:
            table = os.path.join(self.conf_dir, "reject_recipients")
            with open(table, "w") as f:
                for addr, reply in self.reject_recipients.items():
                    f.write(f"{addr} {_access_action(reply)}\n")
            os.chmod(table, 0o644)
            lines += ("smtpd_recipient_restrictions = check_recipient_access "
                      f"texthash:{table}, permit_mynetworks, reject_unauth_destination\n")
        if self.tls_certs is not None:
            # smtpd reads the key as root before it drops privileges.
            lines += (f"smtpd_tls_cert_file = {self.tls_certs.cert}\n"
                      f"smtpd_tls_key_file = {self.tls_certs.key}\n"
                      "smtpd_tls_security_level = may\n"
                      "smtpd_tls_loglevel = 1\n"
                      "smtpd_tls_session_cache_database =\n")
        if self.milter:
            lines += (f"smtpd_milters = {self.milter}\n"
                      f"non_smtpd_milters = {self.milter}\n"
                      f"milter_default_action = {self.milter_default_action}\n"
                      "milter_protocol = 6\n")
            for name, value in self.milter_timeouts.items():
                lines += f"milter_{name}_timeout = {value}\n"
        extra = self.extra_main_cf
        if isinstance(extra, dict):
            extra = "".join(f"{k} = {v}\n" for k, v in extra.items())
        if extra:
            lines += extra if extra.endswith("\n") else extra + "\n"
        return lines

    def _master_cf(self):
        return (f"127.0.0.1:{self.port} inet n - n - - smtpd\n"
                f"127.0.0.1:{self.proxy_port} inet n - n - - smtpd"
                " -o smtpd_upstream_proxy_protocol=haproxy -o syslog_name=postfix/proxy\n"
                + MASTER_CF_SERVICES
                + ("tlsmgr    unix  - - n 1000? 1 tlsmgr\n" if self.tls_certs is not None else "")
                + self.extra_master_cf)

    # -- lifecycle -----------------------------------------------------------------------

    def _postfix(self, *args, check=True, timeout=60):
        return subprocess.run([self._bin, "-c", self.conf_dir, *args], check=check,
                              timeout=timeout, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def _start(self):
        if os.geteuid() != 0:
            raise PermissionError("Postfix fixture needs root (master(8) runs as root)")
        self._bin = require_program("postfix")
        self.dir = self.make_tmpdir()
        self.conf_dir = os.path.join(self.dir, "conf")
        self.maildir = os.path.join(self.dir, "mail", "sink")
        self.maillog = os.path.join(self.dir, "maillog")
        for sub in ("conf", "queue", "data", "mail"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.chown(os.path.join(self.dir, "data"), _uid("postfix"), -1)
        os.chown(os.path.join(self.dir, "mail"), 65534, 65534)
        with open(os.path.join(self.conf_dir, "main.cf"), "w") as f:
            f.write(self._main_cf())
        with open(os.path.join(self.conf_dir, "master.cf"), "w") as f:
            f.write(self._master_cf())
        # Postfix polls for ~2 s while main.cf is younger than a few seconds: backdate it.
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(os.path.join(self.conf_dir, name), (past, past))
        self._postfix("set-permissions", check=False)  # creates queue subdirs, right owners
        result = self._postfix("start", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed ({result.returncode}): {result.stdout}\n"
                               f"{self._check_output()}\nmaillog:\n{tail(self.log_text())}")
        try:
            wait_port(self.host, self.port, self.start_timeout)
            self._read_greeting()
            wait_listening(self.proxy_port, self.start_timeout)
        except Exception as exc:
            raise RuntimeError(f"postfix not ready: {exc}\nmaillog:\n{tail(self.log_text())}")

    def _check_output(self):
        # `postfix check` prints nothing without syslog unless it has a terminal.
        try:
            r = subprocess.run(["script", "-qc", f"{self._bin} -c {self.conf_dir} check",
                                "/dev/null"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
            return "postfix check: " + r.stdout.strip()
        except Exception as exc:
            return f"postfix check could not run: {exc}"

    def _read_greeting(self):
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=5) as s:
                    data = b""
                    while b"\n" not in data:
                        chunk = s.recv(1024)
                        if not chunk:
                            break
                        data += chunk
                    if data.startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        s.recv(1024)
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("no 220 greeting from postfix")
            time.sleep(0.1)

    def master_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _stop(self, timeout=15.0):
        if not self.conf_dir or not os.path.isdir(self.conf_dir):
            return
        pid = self.master_pid()
        try:
            self._postfix("stop", check=False, timeout=30)
        except subprocess.TimeoutExpired:
            # Seen on a loaded machine: postfix-script's own `master -t` check hung (it logs
            # through postlogd, which may be gone by then). The master is killed below.
            pass
        if pid is None:
            return
        try:
            wait_until(lambda: not _pid_alive(pid), timeout, what="postfix master to exit")
        except TimeoutError:
            for kill in (lambda: os.killpg(pid, 9), lambda: os.kill(pid, 9)):
                try:
                    kill()
                except OSError:
                    pass
            wait_until(lambda: not _pid_alive(pid), 5, what="postfix master to die")

    # -- inspection ----------------------------------------------------------------------

    def log_text(self):
        return read_text(self.maillog) if self.maillog else ""

    def wait_for_log(self, regex, timeout=WAIT):
        """Wait until the maillog matches `regex` (re.MULTILINE); return the match."""
        return wait_for_regex(self.log_text, regex, timeout, "postfix maillog")

    def message_files(self):
        """Paths of delivered messages, oldest first."""
        paths = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir, sub)
            if os.path.isdir(d):
                paths += [os.path.join(d, n) for n in os.listdir(d)]
        return sorted(paths, key=lambda p: (os.path.getmtime(p), os.path.basename(p)))

    def messages(self, count=1, timeout=WAIT):
        """Delivered messages as bytes (virtual(8) adds Delivered-To: and Return-Path:).
        Waits up to `timeout` for at least `count` to arrive; count=0 returns at once."""
        if count:
            try:
                wait_until(lambda: len(self.message_files()) >= count, timeout,
                           what=f"{count} delivered message(s)")
            except TimeoutError as exc:
                raise AssertionError(f"{exc}; got {len(self.message_files())}; maillog:\n"
                                     + tail(self.log_text())) from None
        out = []
        for path in self.message_files():
            with open(path, "rb") as f:
                out.append(f.read())
        return out

    def emails(self, count=1, timeout=10.0):
        """Like messages() but parsed into email.message.EmailMessage objects."""
        return [email.message_from_bytes(m, policy=email.policy.default)
                for m in self.messages(count, timeout)]

    def sendmail(self, message, *args, timeout=30):
        """Submits `message` (bytes) with this instance's sendmail(1) (postdrop, then pickup
        and cleanup: the non_smtpd_milters path). Returns the CompletedProcess."""
        env = dict(os.environ, MAIL_CONFIG=self.conf_dir)
        return subprocess.run(["/usr/sbin/sendmail", "-C", self.conf_dir, *args], input=message,
                              env=env, capture_output=True, timeout=timeout, check=False)

    def queued(self):
        """Queue file names still in incoming/active/deferred/hold (empty when all delivered)."""
        names = []
        for sub in ("incoming", "active", "deferred", "hold"):
            for root, _, files in os.walk(os.path.join(self.dir, "queue", sub)):
                names += files
        return names


def _uid(user):
    import pwd
    return pwd.getpwnam(user).pw_uid


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False
