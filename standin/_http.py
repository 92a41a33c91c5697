"""Shared loopback HTTP machinery for the stand-ins: faults, request log, raw responses."""

from __future__ import annotations

import bisect
import contextlib
import json
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Fault", "FaultQueues", "RecordedRequest", "RequestLog"]


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by one matching request.

    ``close`` with ``body=None`` drops the connection without any response; with a
    body it sends the headers announcing the whole body, half of it, then drops.
    """

    status: int = 500
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0
    close: bool = False
    passthrough: bool = False
    late: float = 0.0
    """With ``passthrough``: the request is applied at once, its answer sent this many
    seconds later (a client that times out meanwhile never learns it was applied)."""
    drip: float = 0.0
    """The answer's headers at once, then its body one byte every ``drip`` seconds (a
    server that trickles; with ``passthrough``, the real answer trickles)."""


def error_body(status: int, code: str | None = None, message: str | None = None) -> bytes:
    """The SDRS error shape; 429 gets the API gateway's throttling shape, as in production."""
    if status == 429 and code is None:
        return json.dumps(
            {
                "error_code": "APIG.0308",
                "error_msg": "The throttling threshold has been reached: "
                "policy user over ratelimit, limit:100, time:1 minute",
            }
        ).encode()
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return json.dumps(
        {"error": {"code": code or f"SDRS.0{status % 1000:03d}", "message": message or phrase}}
    ).encode()


@dataclass(slots=True)
class RecordedRequest:
    """A request as received; ``status`` is 0 until answered, and stays 0 when dropped."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    started: float
    body: bytes = b""
    status: int = 0
    finished: float | None = None
    fault: Fault | None = None
    client_port: int = 0  # the same port on several requests shows keep-alive


class RequestLog:
    """Thread-safe request log with a sliding-window rate counter.

    ``keep``: only the last ``keep`` requests are kept (None: all); the counts by method
    and by method and status cover every request since the last ``clear``, so a
    stand-in answering a million requests need not hold them all.
    """

    def __init__(self, keep: int | None = None) -> None:
        self._lock = threading.Lock()
        self._items: deque[RecordedRequest] = deque(maxlen=keep)
        self._by_method: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()

    def add(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)
            self._by_method[item.method] += 1

    def finish(self, item: RecordedRequest, status: int) -> None:
        with self._lock:
            item.status = status
            item.finished = time.monotonic()
            self._by_status[f"{item.method} {status}"] += 1

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Requests by method, and answers by "METHOD status" (0: dropped), since the
        last ``clear``, kept or not."""
        with self._lock:
            return dict(self._by_method), dict(self._by_status)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._by_method.clear()
            self._by_status.clear()

    def max_per_second(self, method: str | None = None) -> int:
        starts = sorted(
            r.started for r in self.snapshot() if method is None or r.method == method.upper()
        )
        best = 0
        for i, start in enumerate(starts):
            # Requests started in [start, start + 1s).
            best = max(best, bisect.bisect_left(starts, start + 1.0, lo=i) - i)
        return best


class FaultQueues:
    """Fault queues keyed by (method, path regex); the first matching non-empty queue wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[tuple[str, str], deque[Fault]] = {}
        self._patterns: dict[str, re.Pattern[str]] = {}

    def add(self, method: str, path_regex: str, faults: tuple[Fault, ...]) -> None:
        key = (method.upper(), path_regex)
        with self._lock:
            self._patterns.setdefault(path_regex, re.compile(path_regex))
            self._queues.setdefault(key, deque()).extend(faults)

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for (want, regex), queue in self._queues.items():
                if queue and want in ("*", method) and self._patterns[regex].search(path):
                    return queue.popleft()
        return None

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    padding: int = 0
    """Filler bytes inside the JSON object ``body`` (a ``"padding"`` string before its
    closing brace), written in chunks: an answer of N MB that the server never holds."""
    drip: float = 0.0
    """Seconds between two bytes of the body (0: all at once)."""

    def length(self) -> int:
        return len(self.body) + (len(_PAD_OPEN) + self.padding + 1 if self.padding else 0)

    def chunks(self) -> Iterator[bytes]:
        if not self.padding:
            yield self.body
            return
        yield self.body[:-1] + _PAD_OPEN
        left = self.padding
        while left > 0:
            chunk = _FILLER[:left]
            left -= len(chunk)
            yield chunk
        yield b'"' + self.body[-1:]


_PAD_OPEN = b', "padding": "'
PAD_OVERHEAD = len(_PAD_OPEN) + 1
"""Bytes a padded body has beyond its body and its ``padding`` filler."""
_FILLER = b"x" * (1 << 20)


def json_response(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload).encode())


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Back-pressure for bursts of new connections from benchmarks.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: ServerBase) -> None:
        self.owner = owner
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or disconnect are routine here, not worth a traceback.
        return


class ServerBase:
    """Lifecycle shared by every loopback stand-in (task center, sink, EventGrid, SMN)."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self.log = RequestLog()
        self.faults = FaultQueues()
        self.url = ""

    # Subclasses answer one parsed request.
    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        raise NotImplementedError

    def take_fault(self, method: str, path: str) -> Fault | None:
        return self.faults.take(method, path)

    def extra_latency(self) -> float:
        return 0.0

    def drip(self) -> float:
        """Seconds between two bytes of every answer's body (0: all at once)."""
        return 0.0

    def start_server(self) -> None:
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._server = LoopbackServer(self._address, self)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{port}",
            daemon=True,
        )
        self._thread.start()

    def stop_server(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers waiting out a delay
        server.shutdown()
        server.server_close()
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:  # idle keep-alive handlers would otherwise linger
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def start(self) -> Self:
        self.start_server()
        return self

    def stop(self) -> None:
        self.stop_server()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` unless stopping; True when the server is stopping."""
        if seconds > 0:
            return self._stopping.wait(seconds)
        return self._stopping.is_set()

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


class _Dropped(Exception):
    """The connection was closed on purpose (a ``close`` fault or shutdown)."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sdrs-standin/1.0"
    sys_version = ""
    # Headers and body go out in one write, and no Nagle delay on small answers.
    disable_nagle_algorithm = True
    server: LoopbackServer
    _methods: ClassVar[tuple[str, ...]] = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")

    def setup(self) -> None:
        super().setup()
        self.server.owner.track(self.connection, add=True)

    def finish(self) -> None:
        self.server.owner.track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def __getattr__(self, name: str) -> Callable[[], None]:
        # do_GET, do_DELETE, ...: all methods share one entry point.
        if name.startswith("do_") and name[3:] in self._methods:
            return self._serve
        raise AttributeError(name)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        owner = self.server.owner
        started = time.monotonic()
        body = self._read_body()
        # http.server decodes headers as latin-1; undo that so UTF-8 values survive.
        headers = {
            k.lower(): v.encode("latin-1", "replace").decode("utf-8", "replace")
            for k, v in self.headers.items()
        }
        parts = urlsplit(self.path)
        record = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            started=started,
            body=body,
            client_port=int(self.client_address[1]),
        )
        owner.log.add(record)
        try:
            fault = owner.take_fault(self.command, parts.path)
            record.fault = fault
            response: Response | None = None
            if fault is not None:
                if owner.wait(fault.delay):
                    raise _Dropped
                if not fault.passthrough:
                    response = self._fault_response(fault)
            if response is None:
                response = owner.dispatch(self.command, self.path, headers, body)
                if fault is not None and fault.late and owner.wait(fault.late):
                    raise _Dropped
            if owner.wait(owner.extra_latency()):
                raise _Dropped
            response.drip = max(response.drip, owner.drip(), fault.drip if fault else 0.0)
            # Logged before the write, so a client that has its answer sees it logged.
            owner.log.finish(record, response.status)
            self._send(response, truncate=fault is not None and fault.close)
        except _Dropped:
            owner.log.finish(record, 0)
            self._drop()
        except OSError:
            self.close_connection = True

    def _fault_response(self, fault: Fault) -> Response:
        if fault.close and fault.body is None:
            raise _Dropped
        body = fault.body if fault.body is not None else error_body(fault.status)
        return Response(fault.status, body, dict(fault.headers))

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, response: Response, *, truncate: bool = False) -> None:
        status = response.status
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        no_body = status in (204, 304) or status < 200 or self.command == "HEAD"
        body = b"" if no_body else response.body
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            f"Server: {self.server_version}",
            f"Date: {formatdate(usegmt=True)}",
        ]
        names = {name.lower() for name in response.headers}
        if body and "content-type" not in names:
            lines.append(f"Content-Type: {response.content_type}")
        if status not in (204, 304) and status >= 200:
            lines.append(f"Content-Length: {response.length()}")
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        if self.close_connection or truncate:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if truncate:
            self.wfile.write(head + body[: len(body) // 2])
            self._drop()
            return
        if not body:
            self.wfile.write(head)
        elif response.drip > 0:
            self._drip(head, response)
        elif response.padding:
            self.wfile.write(head)
            for chunk in response.chunks():
                self.wfile.write(chunk)
        else:
            self.wfile.write(head + body)

    def _drip(self, head: bytes, response: Response) -> None:
        """Headers at once, then one byte every ``response.drip`` seconds, until the body
        is sent, the client goes away or the server stops."""
        self.wfile.write(head)
        self.wfile.flush()
        owner = self.server.owner
        for chunk in response.chunks():
            for i in range(len(chunk)):
                if owner.wait(response.drip):
                    self._drop()
                    return
                self.wfile.write(chunk[i:i + 1])
                self.wfile.flush()
