"""Tap: a TCP relay in front of a real server that writes down, in order, what crossed it.

Every byte goes through unchanged, both ways. What the server says is held back `delay`
seconds before it is passed on, so that what the client sends without waiting for a reply is
seen before that reply reaches it. events() lists ("client", bytes) and ("server", bytes) in
the order they crossed: client bytes as they arrived, server bytes as they were passed on.
Used to show how portcullis talks to a real MTA (does RCPT leave before MAIL's reply came?),
never to stand in for it.
"""

import socket
import threading
import time

from .ports import free_port
from .process import Fixture


class Tap(Fixture):
    name = "tap"

    def __init__(self, target, *, delay=0.3):
        super().__init__()
        self.host = "127.0.0.1"
        self.port = free_port(udp=False)
        self.address = f"{self.host}:{self.port}"
        self.target = (target.host, target.port) if hasattr(target, "port") else target
        self.delay = delay
        self._lock = threading.Lock()
        self._events = []
        self._sockets = []
        self._listener = None

    def events(self):
        with self._lock:
            return list(self._events)

    def clear(self):
        with self._lock:
            self._events.clear()

    def _start(self):
        self._listener = socket.create_server((self.host, self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _stop(self):
        for s in [self._listener] + self._sockets:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=10)
            server.settimeout(None)
            for s in (client, server):  # no Nagle: forward each piece as it comes
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, "client", 0),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "server", self.delay),
                             daemon=True).start()

    def _pump(self, src, dst, who, delay):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if delay:
                time.sleep(delay)
            with self._lock:
                self._events.append((who, data))
                try:
                    dst.sendall(data)
                except OSError:
                    return
