"""Loopback servers that answer the way no client should have to wait for.

``Hostile(mode)`` answers every request (any path) over raw sockets:

* ``"headers"``: the status line, then one byte of a header every ``interval``
  seconds, never ending the headers;
* ``"body"``: whole headers announcing a large JSON body, then one byte of it every
  ``interval`` seconds;
* ``"large"``: a 200 JSON listing page, chunked, that never ends (``size`` bytes, or
  without end when ``size`` is 0), as fast as the client reads.

It stops sending when the client goes away; ``sent`` counts the bytes it wrote and
``requests`` the requests it read.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Literal, Self

__all__ = ["Hostile"]

Mode = Literal["headers", "body", "large"]
_RECORD = (b'{"job_id": "ff80808268aa0000000000000000%04x", "resource_id": "r", '
           b'"job_status": "FAIL", "failure_status": "startFail", '
           b'"begin_time": "2026-01-01T00:00:00Z", "resource_name": "padding-padding"}')


class Hostile:
    def __init__(self, mode: Mode, *, interval: float = 0.05, size: int = 0) -> None:
        self.mode = mode
        self.interval = interval
        self.size = size
        self.sent = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Self:
        thread = threading.Thread(target=self._accept, daemon=True, name="hostile-accept")
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="hostile-conn").start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                self._read_request(conn)
                with self._lock:
                    self.requests += 1
                getattr(self, f"_{self.mode}")(conn)
            except OSError:
                return  # the client went away: what it is supposed to do

    @staticmethod
    def _read_request(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the request ended")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return
            body += chunk

    def _write(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.sent += len(data)

    def _drip(self, conn: socket.socket, byte: bytes) -> None:
        while not self._stop.wait(self.interval):
            self._write(conn, byte)

    def _headers(self, conn: socket.socket) -> None:
        self._write(conn, b"HTTP/1.1 200 OK\r\nX-Drip: ")
        self._drip(conn, b"a")

    def _body(self, conn: socket.socket) -> None:
        self._write(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100000000\r\n\r\n" + b'{"failure_jobs": [')
        self._drip(conn, b" ")

    def _large(self, conn: socket.socket) -> None:
        self._write(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
        first = b'{"failure_jobs": ['
        self._write(conn, b"%x\r\n%s\r\n" % (len(first), first))
        n = 0
        while not self._stop.is_set() and (not self.size or self.sent < self.size):
            chunk = b",".join(_RECORD % ((n + i) % 65536) for i in range(256)) + b","
            n += 256
            self._write(conn, b"%x\r\n%s\r\n" % (len(chunk), chunk))
        end = b'{}]}'
        self._write(conn, b"%x\r\n%s\r\n0\r\n\r\n" % (len(end), end))
