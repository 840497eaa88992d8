#!/usr/bin/env python3
"""A stand-in for the portcullis binary, used only by test_harness.py to prove the Portcullis
fixture (config writing, readiness, log capture, session lines, SIGTERM exit code) without the
real daemon. It is not a proxy: it answers SMTP locally and never connects upstream.

usage: standin.py --config FILE     (JSON config; listens on every "listen" address)
"""

import argparse
import json
import os
import secrets
import signal
import socket
import sys
import threading


def log(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def serve(conn, peer):
    sid = secrets.token_hex(4)
    helo, commands, quit_seen = "", [], "no"
    f = conn.makefile("rb")
    conn.sendall(b"220 standin.test.local ESMTP\r\n")
    closed_by = "client"
    for raw in f:
        verb = raw.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")
        if verb in ("EHLO", "HELO"):
            helo = raw.split(b" ", 1)[1].strip().decode() if b" " in raw else ""
            code = 250
        elif verb == "QUIT":
            code, quit_seen, closed_by = 221, "yes", "server"
        else:
            code = 250
        commands.append(f"{verb}:{code}")
        conn.sendall(f"{code} ok\r\n".encode())
        if verb == "QUIT":
            break
    conn.close()
    log(f'{sid} event=session client={peer[0]} helo={helo} commands="{",".join(commands)}" '
        f"stage=connect closed_by={closed_by} quit={quit_seen}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    args = ap.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for entry in config["listen"]:
        address = entry["address"] if isinstance(entry, dict) else entry
        host, _, port = address.rpartition(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen(16)
        log(f"0000 event=listening address={address}")

        def accept_loop(sock=s):
            while True:
                conn, peer = sock.accept()
                threading.Thread(target=serve, args=(conn, peer), daemon=True).start()

        threading.Thread(target=accept_loop, daemon=True).start()
    stop.wait()
    log("0000 event=shutdown")
    return int(os.environ.get("STANDIN_EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main())
