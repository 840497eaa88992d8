"""Integration-test harness for portcullis (Python 3 stdlib only).

Every tests/integration/test_*.py starts with
    sys.path.insert(0, os.path.dirname(__file__)); from harness import ...
and uses these fixtures, each with start()/stop(), usable as a context manager, and best
started through HarnessTestCase.start() so that cleanup is automatic:

    Postfix     private Postfix (XCLIENT/XFORWARD allowed, PROXY-protocol port, Maildir)
    SmtpSink    smtp-sink with fault flags and message dumps
    FakeSmtp    scripted misbehaving SMTP server that records every byte
    Unbound     unbound serving tests/fixtures/dns/zones.conf on a free loopback port
    SlowDns     tests/fixtures/dns/slowdns.py (delays, NXDOMAIN, SERVFAIL, drops)
    Clamd       clamd with a private one-signature database (EICAR), TCP and unix socket
    FakeClamd   scripted misbehaving clamd (stalls, garbage, hostile names)
    Spamd       SpamAssassin's spamd with -L, packaged rules and a private home, TCP and unix
    FakeSpamd   scripted misbehaving spamd (stalls, garbage, error status, hostile symbols)
    Rspamd      rspamd 3.x with the project's test config, private ports, DNS refused locally
    FakeRspamd  scripted misbehaving rspamd HTTP server (stalls, garbage, status, hostile JSON)
    HAProxy     haproxy (mode tcp) in front of a backend, sending PROXY v1/v2
    Portcullis  the daemon under test with a generated config
    RawClient, send_mail, make_message    SMTP client helpers
    make_certs  throwaway CA + server certificate (openssl CLI)
    free_port, wait_port, wait_listening, dns_query

Nothing here talks to anything but 127.0.0.0/8 or ::1.
"""

from .clamd import EICAR, Clamd, FakeClamd, instream
from .dns import DnsResponse, SlowDns, Unbound, dns_query, ipv6_loopback_usable
from .fakesmtp import DEFAULT_CAPS, FakeSmtp
from .haproxy import HAProxy
from .portcullis import Portcullis, deep_merge, default_binary, parse_kv, run_binary
from .ports import free_port, is_listening, split_hostport, wait_listening, wait_port
from .postfix import Postfix
from .process import REPO_ROOT, Fixture, wait_until
from .smtp import (RawClient, SmtpProtocolError, dot_stuff, make_message, send_mail,
                   without_ref)
from .smtpsink import SinkMessage, SmtpSink
from .rspamd import ADD_HEADER_WORD, REWRITE_SUBJECT_WORD, FakeRspamd, Rspamd, http_reply
from .spamd import GTUBE, FakeSpamd, Spamd, spamc
from .testcase import DaemonTestCase, HarnessTestCase
from .tls import Certs, make_certs

__all__ = [
    "Certs", "Clamd", "DEFAULT_CAPS", "EICAR", "FakeClamd", "instream", "DaemonTestCase", "DnsResponse", "FakeSmtp",
    "ADD_HEADER_WORD", "FakeRspamd", "REWRITE_SUBJECT_WORD", "Rspamd", "http_reply",
    "FakeSpamd", "GTUBE", "Spamd", "spamc", "Fixture", "HAProxy", "HarnessTestCase",
    "Portcullis", "Postfix", "REPO_ROOT", "RawClient", "SinkMessage", "SlowDns",
    "SmtpProtocolError", "SmtpSink", "Unbound", "deep_merge", "default_binary", "dns_query", "dot_stuff",
    "free_port", "ipv6_loopback_usable", "is_listening", "make_certs", "make_message", "parse_kv", "run_binary",
    "send_mail", "split_hostport", "wait_listening", "wait_port", "wait_until",
]
