#!/usr/bin/env python3
"""Concurrent SMTP load generator for tests/bench/soak.sh (not a test; run by soak.sh).

    soak_client.py --port P --messages N --sessions 20 --run-id ID --results FILE
                   [--per-connection 5] [--size 1024] [--attempts 200] [--deadline 3600]

Sends N distinct messages (Message-ID <soak.ID.n@soak.test>, X-Soak-Attempt: k) over
--sessions concurrent SMTP sessions, --per-connection messages per connection. Every reply
that decides a message attempt is written to --results, one line each:

    n attempt stage code text          (stage: connect|ehlo|mail|rcpt|data|eod|io)

code is the 3-digit reply code, or "000" when the connection broke or timed out (text says
how). A message is done at its first 250 to the end of data (eod) or a 5xx; a 4xx or a broken
connection puts it back for another attempt (a real sender retries) after a pause of 0.5-2 s, up to
--attempts attempts in all (--attempts 1: never retry). The last line of --results is
"#summary key=value ...", also printed to stdout. Bounded: it gives up at --deadline seconds.
"""

import argparse
import asyncio
import collections
import random
import sys
import time

REPLY_TIMEOUT = 330.0  # longer than portcullis's end_of_data timeout (5m), so it answers first


def by_stage(counter):
    return ",".join(f"{k}:{v}" for k, v in sorted(counter.items())) or "-"


class Broken(Exception):
    """The connection failed; the message in flight gets code 000."""


class Session:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def reply(self):
        lines = []
        while True:
            try:
                line = await asyncio.wait_for(self.reader.readline(), REPLY_TIMEOUT)
            except asyncio.TimeoutError:
                raise Broken("timeout") from None
            except (ConnectionError, OSError) as exc:
                raise Broken(type(exc).__name__) from None
            if not line.endswith(b"\n"):
                raise Broken("closed")
            text = line.decode("latin-1").rstrip("\r\n")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                break
        code = lines[-1][:3]
        if not (code.isdigit() and len(code) == 3):
            raise Broken("garbage reply " + repr(lines[-1][:60]))
        return code, " / ".join(lines)

    async def command(self, data):
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise Broken(type(exc).__name__) from None
        return await self.reply()

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass


class Generator:
    def __init__(self, args):
        self.args = args
        self.next_fresh = 0
        self.retry = collections.deque()  # (due_time, n, attempt)
        self.attempts = {}  # n -> attempts made
        self.done = 0
        self.acked = 0
        self.permfail = 0
        self.gaveup = 0
        self.tempfail = collections.Counter()  # stage -> 4xx replies
        self.broken = collections.Counter()  # stage -> broken connections
        self.eod_attempts = 0
        self.connections = 0
        self.out = open(args.results, "w", buffering=1 << 16)
        filler = ("soak filler line " + "x" * 60 + "\r\n").encode()
        self.body = filler * max(1, args.size // len(filler))

    def record(self, n, attempt, stage, code, text):
        self.out.write(f"{n} {attempt} {stage} {code} {text}\n")

    def take(self):
        """The next (n, attempt) to send, or None when nothing is ready (or all is done)."""
        now = time.monotonic()
        if self.retry and self.retry[0][0] <= now:
            _, n, attempt = self.retry.popleft()
            return n, attempt
        if self.next_fresh < self.args.messages:
            n = self.next_fresh
            self.next_fresh += 1
            return n, 1
        return None

    def finish(self, n, attempt, stage, code, text):
        """Records the outcome of an attempt; requeues the message when it may be retried."""
        self.record(n, attempt, stage, code, text)
        if stage == "eod" and code == "250":
            self.acked += 1
            self.done += 1
        elif code.startswith("5"):
            self.permfail += 1
            self.done += 1
        else:
            (self.tempfail if code.startswith("4") else self.broken)[stage] += 1
            if attempt >= self.args.attempts:
                self.gaveup += 1
                self.done += 1
            else:
                pause = random.uniform(0.5, 2.0)
                self.retry.append((time.monotonic() + pause, n, attempt + 1))

    def message(self, n, attempt):
        head = (f"From: <soak@client.test>\r\nTo: <sink@test.local>\r\n"
                f"Subject: soak {self.args.run_id} {n}\r\n"
                f"Message-ID: <soak.{self.args.run_id}.{n}@soak.test>\r\n"
                f"X-Soak-Attempt: {attempt}\r\n\r\n").encode()
        return head + self.body + b".\r\n"

    async def connect(self):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.args.host, self.args.port, limit=1 << 16), 30)
        self.connections += 1
        s = Session(reader, writer)
        code, text = await s.reply()
        if code != "220":
            s.close()
            return None, "connect", code, text
        code, text = await s.command(b"EHLO soak.client.test\r\n")
        if code != "250":
            s.close()
            return None, "ehlo", code, text
        return s, None, None, None

    async def worker(self, deadline):
        session, sent_on_session = None, 0
        while self.done < self.args.messages and time.monotonic() < deadline:
            item = self.take()
            if item is None:
                await asyncio.sleep(0.05)
                continue
            n, attempt = item
            stage, recorded = "connect", False
            try:
                if session is None:
                    try:
                        session, stage, code, text = await self.connect()
                    except (OSError, asyncio.TimeoutError) as exc:
                        session, code, text = None, "000", type(exc).__name__
                    if session is None:
                        recorded = True
                        self.finish(n, attempt, stage, code, text)
                        await asyncio.sleep(random.uniform(0.1, 0.5))
                        continue
                    sent_on_session = 0
                steps = ((b"MAIL FROM:<soak@client.test>\r\n", "mail", "250"),
                         (b"RCPT TO:<sink@test.local>\r\n", "rcpt", "250"),
                         (b"DATA\r\n", "data", "354"),
                         (self.message(n, attempt), "eod", "250"))
                for line, stage, want in steps:
                    if stage == "eod":
                        self.eod_attempts += 1
                    code, text = await session.command(line)
                    if code != want or stage == "eod":
                        recorded = True
                        self.finish(n, attempt, stage, code, text)
                        break
                sent_on_session += 1
                if code == "421":
                    session.close()
                    session = None
                elif code != "250":
                    # After a refused step the transaction may be half open (RFC 5321 4.1.1.5).
                    stage = "rset"
                    code, _ = await session.command(b"RSET\r\n")
                    if code != "250":
                        raise Broken("RSET " + code)
                if session is not None and sent_on_session >= self.args.per_connection:
                    stage = "quit"
                    await session.command(b"QUIT\r\n")
                    session.close()
                    session = None
            except Broken as exc:
                if session is not None:
                    session.close()
                session = None
                # A break after the attempt's deciding reply (during RSET or QUIT) changes
                # nothing about that attempt.
                if not recorded:
                    self.finish(n, attempt, stage, "000", str(exc))
        if session is not None:
            session.close()

    async def run(self):
        deadline = time.monotonic() + self.args.deadline
        t0 = time.monotonic()
        ticker = asyncio.create_task(self.progress(t0))
        await asyncio.gather(*(self.worker(deadline) for _ in range(self.args.sessions)))
        ticker.cancel()
        elapsed = time.monotonic() - t0
        pending = self.args.messages - self.done
        summary = (f"#summary messages={self.args.messages} acked_250={self.acked} "
                   f"permfail={self.permfail} gaveup={self.gaveup} unfinished={pending} "
                   f"eod_attempts={self.eod_attempts} "
                   f"tempfail={sum(self.tempfail.values())} "
                   f"tempfail_by_stage={by_stage(self.tempfail)} "
                   f"broken={sum(self.broken.values())} "
                   f"broken_by_stage={by_stage(self.broken)} "
                   f"connections={self.connections} elapsed_s={elapsed:.1f} "
                   f"rate={self.acked / elapsed:.0f}/s")
        self.out.write(summary + "\n")
        self.out.close()
        print(summary, flush=True)
        return 0 if pending == 0 else 1

    async def progress(self, t0):
        while True:
            await asyncio.sleep(self.args.progress)
            print(f"soak_client: t={time.monotonic() - t0:.0f}s done={self.done} "
                  f"acked={self.acked} tempfail={sum(self.tempfail.values())} "
                  f"broken={sum(self.broken.values())}", file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--messages", type=int, default=100000)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--per-connection", type=int, default=5)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--attempts", type=int, default=200)
    p.add_argument("--deadline", type=float, default=3600)
    p.add_argument("--progress", type=float, default=30)
    p.add_argument("--run-id", required=True)
    p.add_argument("--results", required=True)
    args = p.parse_args()
    gen = Generator(args)
    return asyncio.run(gen.run())


if __name__ == "__main__":
    sys.exit(main())
