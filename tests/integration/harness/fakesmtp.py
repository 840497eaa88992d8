"""FakeSmtp: a scripted, deliberately misbehaving SMTP server for fault tests (stdlib, threads).

Behaviour is keyed by command: "CONNECT" (the greeting), "EHLO", "HELO", "XCLIENT", "MAIL",
"RCPT", "DATA", "." (end of data), "RSET", "NOOP", "QUIT", "STARTTLS", ... A key "RCPT#2"
applies only to the 2nd RCPT of a connection and wins over a plain "RCPT".

    fake = FakeSmtp(
        replies={"RCPT#2": "451 4.3.0 try later",   # str: one reply line, CRLF added
                 "MAIL": b"hello\\r\\n",              # bytes: sent raw (garbage, bare LF, ...)
                 "DATA": None},                      # None: read the command, never answer
        extra_replies={"MAIL": b"250 surprise\\r\\n"},# unsolicited bytes after the real reply
        extra_delays_ms={"MAIL": 300},               # ... sent on their own, this much later
        delays_ms={".": 3000},                       # wait before replying
        close_after={"."},                           # hang up without a reply
        close_in_data_after=100,                     # hang up after 100 body bytes
        after_starttls=b"250 injected\\r\\n",          # sent right after our STARTTLS 220
        observe_tls_close=True,                      # record how a TLS client ends (below)
    ).start()
    fake.sessions()   [bytes received on connection 1, ...]
    fake.bodies()     [raw DATA body as on the wire (dot-stuffed, ends in CRLF), ...]
    fake.commands(0)  command lines of connection 0

observe_tls_close: on a TLS connection, session.tls_close records how the client ended it:
"close_notify" (a TLS close_notify, then EOF), "eof" (a FIN with no close_notify: a truncation
to TLS), "reset", "timeout" or "error: ...". After our 221 to QUIT the fake reads on (up to 10 s)
until the client closes, instead of hanging up at once. Off: nothing changes.

Any reply that starts with 421 closes the connection after it is sent. XCLIENT is answered
with a fresh 220 greeting, like Postfix. Connections are served one thread each.
"""

import socket
import ssl
import threading
import time

from .ports import free_port
from .process import Fixture, wait_until

DEFAULT_CAPS = ["PIPELINING", "SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES",
                "XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT"]

_DEFAULT_REPLIES = {
    "HELO": "250 {host}",
    "XCLIENT": "220 {host} ESMTP FakeSmtp",
    "XFORWARD": "250 2.0.0 Ok",
    "MAIL": "250 2.1.0 Ok",
    "RCPT": "250 2.1.5 Ok",
    "DATA": "354 End data with <CR><LF>.<CR><LF>",
    ".": "250 2.0.0 Ok: queued as FAKE{n}",
    "RSET": "250 2.0.0 Ok",
    "NOOP": "250 2.0.0 Ok",
    "QUIT": "221 2.0.0 Bye",
    "VRFY": "252 2.0.0 Cannot VRFY user",
    "HELP": "214 2.0.0 Ask someone else",
    "STARTTLS": "220 2.0.0 Ready to start TLS",
}


class FakeSession:
    """What one connection did. `received` is every byte, in order."""

    def __init__(self, index):
        self.index = index
        self.received = bytearray()
        self.commands = []
        self.bodies = []
        self.closed = False
        self.closed_by = None  # "client" or "server"
        self.counts = {}
        self.tls = False
        self.tls_close = None  # observe_tls_close: how the client ended the TLS connection


class FakeSmtp(Fixture):
    name = "fakesmtp"

    def __init__(self, *, port=None, host="127.0.0.1", hostname="fake.test.local",
                 greeting=None, ehlo_caps=None, replies=None, extra_replies=None,
                 delays_ms=None, close_after=(), close_in_data_after=None,
                 after_starttls=None, tls_context=None, handler=None, extra_delays_ms=None,
                 observe_tls_close=False, pause_after_354_ms=0, rcvbuf=None):
        """handler: optional callable(session, key, line) → bytes | None | NotImplemented,
        consulted before everything else for each command (NotImplemented = default path).
        pause_after_354_ms: after each 354, read nothing for that long (the message piles up
        in the sender); rcvbuf: SO_RCVBUF of every accepted connection (set on the listener)."""
        super().__init__()
        self.host = host
        self.port = port or free_port()
        self.hostname = hostname
        self.greeting = greeting if greeting is not None else f"220 {hostname} ESMTP FakeSmtp"
        self.ehlo_caps = list(DEFAULT_CAPS if ehlo_caps is None else ehlo_caps)
        self.replies = dict(replies or {})
        self.extra_replies = dict(extra_replies or {})
        self.delays_ms = dict(delays_ms or {})
        self.extra_delays_ms = dict(extra_delays_ms or {})
        self.close_after = set(close_after)
        self.close_in_data_after = close_in_data_after
        self.after_starttls = after_starttls
        self.tls_context = tls_context
        self.handler = handler
        self.observe_tls_close = observe_tls_close
        self.pause_after_354_ms = pause_after_354_ms
        self.rcvbuf = rcvbuf
        self._sessions = []
        self._lock = threading.Lock()
        self._threads = []
        self._socks = set()
        self._listener = None
        self._stopping = False
        self._queued = 0

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------

    def _start(self):
        self._stopping = False
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self._listener.bind((self.host, self.port))
        self._listener.listen(128)
        t = threading.Thread(target=self._accept_loop, name="fakesmtp-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def _stop(self):
        self._stopping = True
        if self._listener:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            _close(s)
        for t in self._threads:
            t.join(5)

    def _accept_loop(self):
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                session = FakeSession(len(self._sessions))
                self._sessions.append(session)
                self._socks.add(conn)
            t = threading.Thread(target=self._serve, args=(conn, session), daemon=True,
                                 name=f"fakesmtp-{session.index}")
            t.start()
            self._threads.append(t)

    # -- inspection ----------------------------------------------------------------------

    def sessions(self):
        """Bytes received, one entry per accepted connection."""
        with self._lock:
            return [bytes(s.received) for s in self._sessions]

    def session_objects(self):
        with self._lock:
            return list(self._sessions)

    def commands(self, index=None):
        """Command lines (without CRLF) of connection `index`, or of all connections."""
        with self._lock:
            chosen = self._sessions if index is None else [self._sessions[index]]
            return [c for s in chosen for c in s.commands]

    def bodies(self):
        with self._lock:
            return [b for s in self._sessions for b in s.bodies]

    def connection_count(self):
        with self._lock:
            return len(self._sessions)

    def wait_sessions(self, count=1, timeout=10.0):
        wait_until(lambda: self.connection_count() >= count, timeout,
                   what=f"{count} connection(s) to FakeSmtp")
        return self.session_objects()

    def wait_closed(self, timeout=10.0):
        """Wait until every connection so far is closed; return the sessions."""
        wait_until(lambda: all(s.closed for s in self.session_objects()), timeout,
                   what="FakeSmtp connections to close")
        return self.session_objects()

    # -- protocol ------------------------------------------------------------------------

    def _serve(self, conn, session):
        state = {"conn": conn, "buf": b"", "in_data": False, "body": bytearray(), "open": True}
        try:
            self._respond(state, session, "CONNECT", "", self.greeting)
            while state["open"] and not self._stopping:
                try:
                    chunk = state["conn"].recv(65536)
                except (OSError, ssl.SSLError) as exc:
                    self._note_tls_close(session, exc)
                    chunk = b""
                if not chunk:
                    self._note_tls_close(session, None)
                    session.closed_by = session.closed_by or "client"
                    break
                with self._lock:
                    session.received += chunk
                state["buf"] += chunk
                self._process(state, session)
        finally:
            session.closed_by = session.closed_by or "server"
            _close(state["conn"])
            with self._lock:
                self._socks.discard(conn)
                session.closed = True

    def _process(self, state, session):
        while state["open"]:
            if state["in_data"]:
                buf = state["buf"]
                limit = self.close_in_data_after
                if limit is not None and len(state["body"]) + len(buf) >= limit:
                    with self._lock:
                        session.bodies.append(
                            bytes(state["body"]) + buf[:limit - len(state["body"])])
                    self._hang_up(state, session)
                    return
                # The body so far grows in place and only its new end is searched: a message
                # that arrives in many small reads costs linear time, not quadratic.
                whole = state["body"]
                scanned = len(whole)
                whole += buf
                if whole.startswith(b".\r\n"):
                    end, body = 3, b""
                else:
                    idx = whole.find(b"\r\n.\r\n", max(0, scanned - 4))
                    if idx < 0:
                        state["buf"] = b""
                        return
                    end, body = idx + 5, bytes(whole[:idx + 2])
                state["body"], state["buf"], state["in_data"] = bytearray(), bytes(whole[end:]), False
                with self._lock:
                    session.bodies.append(body)
                    session.commands.append(".")
                    self._queued += 1
                    n = self._queued
                self._respond(state, session, ".", ".", _DEFAULT_REPLIES["."].format(n=n))
                continue
            idx = state["buf"].find(b"\n")
            if idx < 0:
                return
            raw, state["buf"] = state["buf"][:idx + 1], state["buf"][idx + 1:]
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            with self._lock:
                session.commands.append(line)
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                caps = [self.hostname] + self.ehlo_caps
                default = "\r\n".join(
                    f"250{'-' if i < len(caps) - 1 else ' '}{c}" for i, c in enumerate(caps))
            elif verb == "STARTTLS" and not any(c.upper() == "STARTTLS" for c in self.ehlo_caps):
                default = "502 5.5.1 Error: command not implemented"
            elif verb in _DEFAULT_REPLIES:
                default = _DEFAULT_REPLIES[verb].format(host=self.hostname, n=0)
            else:
                default = "502 5.5.2 Error: command not recognized"
            sent = self._respond(state, session, verb, line, default)
            if not state["open"]:
                return
            if verb == "DATA" and sent.startswith(b"354"):
                state["in_data"] = True
                if self.pause_after_354_ms:
                    time.sleep(self.pause_after_354_ms / 1000.0)
            elif verb == "QUIT" and sent.startswith(b"221"):
                if self.observe_tls_close and session.tls:
                    self._read_to_tls_end(state, session)
                self._hang_up(state, session)
            elif verb == "STARTTLS" and sent.startswith(b"220"):
                self._start_tls(state, session)

    def _lookup(self, table, key, count):
        specific = f"{key}#{count}"
        if specific in table:
            return True, table[specific]
        if key in table:
            return True, table[key]
        return False, None

    def _respond(self, state, session, key, line, default):
        """Send the reply for `key`; returns the bytes sent (b"" if none)."""
        with self._lock:
            count = session.counts[key] = session.counts.get(key, 0) + 1
        if self.handler is not None:
            custom = self.handler(session, key, line)
            if custom is not NotImplemented:
                if custom is None:
                    return b""
                self._send(state, custom)
                return custom
        if key in self.close_after or f"{key}#{count}" in self.close_after:
            self._hang_up(state, session)
            return b""
        found, delay = self._lookup(self.delays_ms, key, count)
        if found and delay:
            time.sleep(delay / 1000.0)
        found, reply = self._lookup(self.replies, key, count)
        if not found:
            reply = default
        if reply is None:
            return b""
        data = reply if isinstance(reply, bytes) else reply.encode() + b"\r\n"
        self._send(state, data)
        found, extra = self._lookup(self.extra_replies, key, count)
        if found and extra:
            found, pause = self._lookup(self.extra_delays_ms, key, count)
            if found and pause:
                time.sleep(pause / 1000.0)  # the next command waits in the socket meanwhile
            self._send(state, extra if isinstance(extra, bytes) else extra.encode() + b"\r\n")
        if data.startswith(b"421"):
            self._hang_up(state, session)
        return data

    def _send(self, state, data):
        if not state["open"]:
            return
        try:
            state["conn"].sendall(data)
        except OSError:
            state["open"] = False

    def _hang_up(self, state, session):
        session.closed_by = session.closed_by or "server"
        state["open"] = False

    def _start_tls(self, state, session):
        if self.after_starttls:
            self._send(state, self.after_starttls)
        state["buf"] = b""  # whatever the client pipelined before the handshake is discarded
        if self.tls_context is None:
            return
        try:
            if self.observe_tls_close:  # a FIN without close_notify raises SSLEOFError
                state["conn"] = self.tls_context.wrap_socket(state["conn"], server_side=True,
                                                             suppress_ragged_eofs=False)
            else:
                state["conn"] = self.tls_context.wrap_socket(state["conn"], server_side=True)
            session.tls = True
        except (OSError, ssl.SSLError):
            self._hang_up(state, session)

    def _note_tls_close(self, session, exc):
        """observe_tls_close: how the TLS connection ended (exc: what recv raised, if any)."""
        if not (self.observe_tls_close and session.tls) or session.tls_close is not None:
            return
        if exc is None or isinstance(exc, ssl.SSLZeroReturnError):
            how = "close_notify"  # recv gives b"" only after the peer's close_notify
        elif isinstance(exc, ssl.SSLEOFError):
            how = "eof"
        elif isinstance(exc, ConnectionResetError):
            how = "reset"
        elif isinstance(exc, socket.timeout):
            how = "timeout"
        else:
            how = f"error: {exc}"
        with self._lock:
            session.tls_close = how

    def _read_to_tls_end(self, state, session, timeout=10.0):
        """After our 221: read (and record) until the client closes, so that we see whether a
        close_notify came before its FIN."""
        conn = state["conn"]
        try:
            conn.settimeout(timeout)
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    self._note_tls_close(session, None)
                    return
                with self._lock:
                    session.received += chunk
        except (OSError, ssl.SSLError) as exc:
            self._note_tls_close(session, exc)


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
