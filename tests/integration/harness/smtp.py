"""SMTP client helpers for tests.

RawClient speaks bytes, so a test can send exactly what it means (pipelined commands, bare LF,
oversized lines) and read the replies one by one:

    c = RawClient("127.0.0.1", pc.port)
    code, lines = c.read_reply()                 # the greeting: (220, ["host ESMTP ..."])
    c.send(b"EHLO client.test\\r\\nMAIL FROM:<a@client.test>\\r\\n")
    (c1, _), (c2, _) = c.read_replies(2)
    c.cmd("QUIT")                                # send a line + CRLF, return its reply
    c.expect_closed()

send_mail() wraps smtplib for ordinary submissions, including XCLIENT before the envelope.
"""

import re
import smtplib
import socket
import time

_REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*)$")


class SmtpProtocolError(AssertionError):
    pass


class RawClient:
    # A reply's default wait is longer than the Portcullis fixture's upstream.connect_timeout
    # (30 s): a Postfix slow to greet on a loaded machine gives a late reply, or portcullis's own
    # 451, never a client that gave up first and says nothing of why.
    def __init__(self, host="127.0.0.1", port=25, timeout=45.0, source_address=None):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=source_address)
        self.buf = b""
        self.transcript = []  # ("C"|"S", bytes) in order, for failure messages

    # -- sending -------------------------------------------------------------------------

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append(("C", data))
        self.sock.sendall(data)

    def cmd(self, line, timeout=None):
        """Send one command line (CRLF appended) and return its reply (code, lines)."""
        self.send(line.encode() + b"\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.read_reply(timeout)

    # -- receiving -----------------------------------------------------------------------

    def _read_line(self, deadline):
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete reply line; buffered={self.buf!r}\n"
                                   + self.format_transcript())
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionError(f"connection closed by server; buffered={self.buf!r}\n"
                                      + self.format_transcript())
            self.transcript.append(("S", chunk))
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def read_reply(self, timeout=None):
        """Read one (possibly multi-line) reply; return (code, [text of each line])."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        code, lines = None, []
        while True:
            raw = self._read_line(deadline)
            if not raw.endswith(b"\r"):
                raise SmtpProtocolError(f"reply line without CRLF: {raw!r}")
            m = _REPLY_LINE.match(raw[:-1]) or re.match(rb"^(\d{3})()()$", raw[:-1])
            if not m:
                raise SmtpProtocolError(f"malformed reply line: {raw!r}\n"
                                        + self.format_transcript())
            this = int(m.group(1))
            if code is not None and this != code:
                raise SmtpProtocolError(f"reply code changed mid-reply: {code} then {this}")
            code = this
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) != b"-":
                return code, lines

    def read_replies(self, n, timeout=None):
        return [self.read_reply(timeout) for _ in range(n)]

    def pending(self, wait=0.2):
        """Bytes the server sent that no read has consumed yet (waits `wait` s for more)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
            if chunk:
                self.transcript.append(("S", chunk))
                self.buf += chunk
        except (socket.timeout, OSError):
            pass
        return self.buf

    def expect_closed(self, timeout=None):
        """Assert the server closes the connection within timeout (reading and discarding any
        bytes before EOF is an error: they are returned in the message)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        extra = self.buf
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"connection still open after timeout; unread={extra!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if extra:
                    raise AssertionError(f"server sent {extra!r} before closing")
                return True
            self.transcript.append(("S", chunk))
            extra += chunk

    def is_closed(self, wait=0.5):
        try:
            self.expect_closed(wait)
            return True
        except AssertionError:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def format_transcript(self):
        return "\n".join(f"{who}: {data!r}" for who, data in self.transcript[-30:])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def dot_stuff(message):
    """The message as a correct client puts it on the wire, final dot included."""
    out = [b"." + line if line.startswith(b".") else line
           for line in message.split(b"\r\n")[:-1]]
    return b"\r\n".join(out) + b"\r\n.\r\n"


def without_ref(text):
    """A reply line without the reference portcullis puts on its own refusals."""
    return re.sub(r" \[ref=[2-9A-Z]{8}\]$", "", text)


def make_message(mail_from="sender@client.test", rcpt_to="user@test.local",
                 subject="harness test", body="Hello from the portcullis test harness.\r\n",
                 size=None, headers=None):
    """An RFC 5322 message as bytes with CRLF line ends; `size` pads the body to ~size bytes."""
    lines = [f"From: <{mail_from}>", f"To: <{rcpt_to}>", f"Subject: {subject}",
             "Message-ID: <%d.%d@client.test>" % (time.time_ns(), id(body))]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    text = "\r\n".join(lines) + "\r\n\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n")
    data = text.encode()
    if size and len(data) < size:
        filler = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
        data += filler * ((size - len(data)) // len(filler) + 1)
        data = data[:size - 2].rsplit(b"\r\n", 1)[0] + b"\r\n"
    return data


def send_mail(host, port, mail_from="sender@client.test", rcpt_to="user@test.local", msg=None,
              helo="client.test", xclient=None, timeout=30.0):
    """Send one message with smtplib. rcpt_to: str or list. xclient: dict such as
    {"ADDR": "203.0.113.7", "NAME": "mail.example"} sent after EHLO (then EHLO again).
    Returns smtplib's refused-recipients dict; raises smtplib errors on rejection."""
    rcpts = [rcpt_to] if isinstance(rcpt_to, str) else list(rcpt_to)
    if msg is None:
        msg = make_message(mail_from, rcpts[0])
    with smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout) as s:
        s.ehlo(helo)
        if xclient:
            args = " ".join(f"{k}={v}" for k, v in xclient.items())
            code, text = s.docmd("XCLIENT", args)
            if code // 100 != 2:  # Postfix answers 220 (a new greeting), smtp-sink 250
                raise smtplib.SMTPResponseException(code, text)
            s.ehlo(helo)
        return s.sendmail(mail_from, rcpts, msg)
