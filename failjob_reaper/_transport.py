"""An httpx transport over ``http.client``: one keep-alive connection per thread and origin.

httpx's own transport (httpcore, h11) costs ~0.7-1.0 ms of CPU per request, against
~0.16 ms for ``http.client`` (bench/RESULTS.md); a sweep is CPU-bound on exactly that.
This transport keeps httpx's client side (auth, signing, timeouts, retries on httpx's
exceptions) and swaps only the wire.

- One connection per (thread, scheme, host, port), in a ``threading.local``: concurrent
  sweep workers never share one, so no pool and no lock on the request path. When a
  thread ends (a sweep's executor threads do), its connections are closed; ``close()``
  closes every connection of every thread.
- Bodies are read whole: the API and the sink answer small JSON documents.
- Errors become httpx's own (ConnectError, ConnectTimeout, WriteTimeout, ReadTimeout,
  RemoteProtocolError, ReadError, WriteError), so callers' retries keep working. The
  connection of a failed request is closed and dropped.
- An idle connection the server has closed (readable while idle: EOF, or a last answer
  such as 408) is dropped before use, as httpcore does. A request whose *sending* fails
  on a reused connection (broken pipe, reset) is sent once more on a fresh connection:
  the server had closed it, and a request that could not be sent was not received. A
  connection dropped *after* the request went out (no status line) is reported, not
  repeated here: the server may have acted on it, and the caller's retry policy counts
  that attempt (a DELETE then answers 404, reported with its attempt count).
- ``Connection: close`` from either side closes the connection after the response.
- No proxies, no redirects (httpx handles those above the transport), no HTTP/2.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import weakref
from typing import Any

import httpx

from failjob_reaper.tls import context_for

__all__ = ["KeepAliveTransport"]

_Key = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Stale(Exception):
    """Sending failed on a reused connection: the server had closed it; try a fresh one."""


class _ThreadConnections:
    """The connections of one thread; its finalizer closes them when the thread ends."""

    __slots__ = ("__weakref__", "conns")

    def __init__(self) -> None:
        self.conns: dict[_Key, http.client.HTTPConnection] = {}


def _close_all(
    conns: dict[_Key, http.client.HTTPConnection],
    tracked: set[http.client.HTTPConnection],
    lock: threading.Lock,
) -> None:
    for conn in list(conns.values()):
        conn.close()
        with lock:
            tracked.discard(conn)
    conns.clear()


def _readable(sock: socket.socket) -> bool:
    """True when an idle connection has something to read: EOF, a reset, or stray bytes."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _settimeout(sock: socket.socket, timeout: float | None) -> None:
    if sock.gettimeout() != timeout:
        sock.settimeout(timeout)


class KeepAliveTransport(httpx.BaseTransport):
    """HTTP/1.1 over ``http.client`` with one keep-alive connection per thread and origin.

    ``verify``: the TLS context for https origins (``tls.context_for`` of the URL when not
    given). Timeouts come from the request's ``timeout`` extension, which httpx.Client
    fills from its ``timeout=``.
    """

    def __init__(self, *, verify: ssl.SSLContext | None = None) -> None:
        self._ssl = verify
        self._local = threading.local()
        self._lock = threading.Lock()
        self._tracked: set[http.client.HTTPConnection] = set()

    # -- httpx.BaseTransport ---------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme}://'.", request=request
            )
        key = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts: dict[str, float | None] = request.extensions.get("timeout") or {}
        body = request.read()
        conns = self._connections()
        conn = conns.get(key)
        if conn is not None and (conn.sock is None or _readable(conn.sock)):
            self._drop(conns, key, conn)
            conn = None
        while True:
            reused = conn is not None
            if conn is None:
                conn = self._connect(request, key, timeouts.get("connect"))
                conns[key] = conn
            try:
                response, keep = self._exchange(conn, request, body, timeouts, reused=reused)
            except _Stale:
                self._drop(conns, key, conn)
                conn = None  # once: a fresh connection is not reused, so never _Stale
                continue
            except BaseException:
                self._drop(conns, key, conn)
                raise
            if not keep:
                self._drop(conns, key, conn)
            return response

    def close(self) -> None:
        with self._lock:
            conns, self._tracked = list(self._tracked), set()
        for conn in conns:
            conn.close()

    # -- connections -------------------------------------------------------------

    def _connections(self) -> dict[_Key, http.client.HTTPConnection]:
        mine: _ThreadConnections | None = getattr(self._local, "mine", None)
        if mine is None:
            mine = _ThreadConnections()
            # Runs when the thread ends (its locals go) or the transport is collected.
            weakref.finalize(mine, _close_all, mine.conns, self._tracked, self._lock)
            self._local.mine = mine
        return mine.conns

    def _connect(
        self, request: httpx.Request, key: _Key, timeout: float | None
    ) -> http.client.HTTPConnection:
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            context = self._ssl if self._ssl is not None else context_for(str(request.url))
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
        except OSError as exc:  # refused, unreachable, name resolution, TLS handshake
            conn.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        with self._lock:
            self._tracked.add(conn)
        return conn

    def _drop(
        self,
        conns: dict[_Key, http.client.HTTPConnection],
        key: _Key,
        conn: http.client.HTTPConnection,
    ) -> None:
        conn.close()
        if conns.get(key) is conn:
            del conns[key]
        with self._lock:
            self._tracked.discard(conn)

    # -- one request ---------------------------------------------------------------

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        request: httpx.Request,
        body: bytes,
        timeouts: dict[str, float | None],
        *,
        reused: bool,
    ) -> tuple[httpx.Response, bool]:
        """Send, read the whole answer; the response and whether to keep the connection."""
        sock = conn.sock
        assert sock is not None
        headers = request.headers.raw
        chunked = any(
            name.lower() == b"transfer-encoding" and b"chunked" in value.lower()
            for name, value in headers
        )
        _settimeout(sock, timeouts.get("write"))
        try:
            conn.putrequest(
                request.method,
                request.url.raw_path.decode("ascii"),
                skip_host=True,  # httpx sent Host (and Accept-Encoding) already
                skip_accept_encoding=True,
            )
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body or None, encode_chunked=chunked)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "write timed out", request=request) from exc
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            if reused:
                raise _Stale from exc
            raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from exc
        except (ValueError, http.client.HTTPException) as exc:  # illegal header, bad path
            raise httpx.LocalProtocolError(str(exc), request=request) from exc

        _settimeout(sock, timeouts.get("read"))
        try:
            answer = conn.getresponse()
            content = answer.read()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except http.client.RemoteDisconnected as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from exc
        except http.client.HTTPException as exc:  # IncompleteRead, BadStatusLine, ...
            raise httpx.RemoteProtocolError(
                f"{type(exc).__name__}: {exc}", request=request
            ) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc

        extensions: dict[str, Any] = {
            "http_version": b"HTTP/1.1" if answer.version == 11 else b"HTTP/1.0",
            "reason_phrase": answer.reason.encode("latin-1", "replace"),
        }
        response = httpx.Response(
            answer.status,
            headers=[
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in answer.getheaders()
            ],
            content=content,
            request=request,
            extensions=extensions,
        )
        # will_close: the server said Connection: close (or HTTP/1.0 without keep-alive),
        # or the request did; http.client then already let go of the socket.
        return response, not answer.will_close and conn.sock is not None


def transport_for(url: str) -> httpx.BaseTransport:
    """The transport for requests to ``url``: this one, or httpx's own behind a proxy.

    This transport speaks to the origin directly. When the environment routes ``url``
    through a proxy (HTTP_PROXY/HTTPS_PROXY/ALL_PROXY, minus NO_PROXY), httpx's own
    transport, which honours them, is used instead.
    """
    proxy = _env_proxy(url)
    if proxy is not None:
        return httpx.HTTPTransport(verify=context_for(url), proxy=proxy)
    return KeepAliveTransport(verify=context_for(url))


def _env_proxy(url: str) -> str | None:
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()  # the same variables httpx reads
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy
