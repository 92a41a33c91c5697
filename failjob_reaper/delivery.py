"""One delivery policy for every HTTP client: SDRS, the sink, EventGrid, SMN (docs: README).

What is here, and nowhere else:

* **The table** (``Destination``): for an answer, whether the destination *took*
  it, whether it deserves another attempt (*retry*), whether it is a *permanent
  refusal* of that one message (*refused*: logged in full, counted, dropped), whether
  the destination refuses this deployment rather than the message (*keep*: not
  retried now, not dropped), or whether the message may have been taken and must not
  be sent blindly again (*unknown*, SMN only). A 2xx whose body is not what the
  destination answers (a proxy's HTML page, a PutEvents answer without its per-event
  results, an answer over its byte bound) is not a delivery: retried, then kept.

  ================  =====================  =================================  ===========
  destination       taken                  retried                            kept
  ================  =====================  =================================  ===========
  SDRS listing      200 + a JSON object    408 409 429 5xx, transport         -
  SDRS DELETE       204, 404               408 409 429 5xx, transport         -
  K_SINK            2xx                    408 429 5xx, transport             -
  EventGrid         2xx + per-event        408 429 5xx, transport             401 403 404
  SMN               2xx + message_id       408 429 503, connect errors        -
  ================  =====================  =================================  ===========

  Any other 4xx is a permanent refusal. EventGrid's 401/403/404 name the channel
  (credentials, permission, channel id), not the event: dropping would lose every
  outcome until the deployment is fixed, so they are kept. SMN has no outbox and a
  person reads every copy: it is tried again only where the message surely was not
  taken (nothing sent: connection refused or timed out; 408: the request did not
  arrive whole; 429 and 503: turned away before any work). A read timeout, a reset
  or another 5xx may follow a message SMN took: *unknown*, logged, not repeated.

* **One retry helper** (``retrying``): tenacity, exponential backoff with full
  jitter, ``Retry-After`` honoured (``retry_after``: delta seconds or an HTTP date,
  capped), a bounded number of attempts and a deadline.
* **One bound on a request as a whole** (``send``): from connecting to the last byte
  of the body, inside a ``time.monotonic()`` deadline: every socket read and write
  of the request gets at most the time left (a seam on httpcore's network backend,
  installed by ``pooled_transport``/``bound_transport``), so a server that trickles
  its headers or its body byte by byte is cut off like one that does not answer.
* **One bound on an answer's bytes**: the body is streamed, decoded here (gzip and
  deflate, the only encodings asked for, inflated at most to the room left: a
  compressed bomb stops at the bound too) and reading stops past ``max_bytes``;
  memory never holds more than one answer's bound.
* **A testing mode** (``testing()``) in which nothing sleeps: the waits asked for are
  recorded instead.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base

from failjob_reaper.tls import context_for

T = TypeVar("T")

ANSWER_MAX_BYTES = 64 * 1024
"""The bound on a sink's, EventGrid's or SMN's answer: each is a few hundred bytes."""


# -- the table ----------------------------------------------------------------------------


class Verdict(Enum):
    """What an answer means for the message (the module doc's table)."""

    TAKEN = "taken"  # the destination took it
    RETRY = "retry"  # another attempt; kept (outbox) when none is left
    REFUSED = "refused"  # refused for good: logged in full, counted, dropped
    KEEP = "keep"  # the destination refuses this deployment: kept, not retried now
    UNKNOWN = "unknown"  # it may have been taken: not sent again (SMN)


FIVE_XX = frozenset(range(500, 600))


@dataclass(frozen=True)
class Destination:
    """What one destination's answers mean (see the module doc's table)."""

    name: str
    taken: frozenset[int] = frozenset(range(200, 300))
    retry: frozenset[int] = frozenset({408, 429}) | FIVE_XX
    keep: frozenset[int] = frozenset()
    unknown: frozenset[int] = frozenset()
    """Answers after which the message may have been taken: not repeated (SMN)."""
    retry_unsent_only: bool = False
    """Transport errors are retried only when nothing was sent (SMN); else all are."""
    own_answer: Callable[[httpx.Response], bool] | None = None
    """For a taken status: is the body the destination's own answer? None: any body."""
    otherwise: Verdict = Verdict.RETRY
    """1xx, 3xx (redirects are not followed: a signed request must not go elsewhere) and
    statuses beyond 599: nothing the destination meant as an answer."""

    def classify(self, answer: Answer) -> Verdict:
        status = answer.response.status_code
        if status in self.taken:
            if self.own_answer is None:
                return Verdict.TAKEN
            if answer.too_large or not self.own_answer(answer.response):
                return Verdict.RETRY  # not the destination's answer: not a delivery
            return Verdict.TAKEN
        if status in self.retry:
            return Verdict.RETRY
        if status in self.keep:
            return Verdict.KEEP
        if status in self.unknown:
            return Verdict.UNKNOWN
        if 400 <= status < 500:
            return Verdict.REFUSED
        return self.otherwise

    def classify_error(self, exc: httpx.TransportError) -> Verdict:
        if not self.retry_unsent_only or surely_unsent(exc):
            return Verdict.RETRY
        return Verdict.UNKNOWN


def surely_unsent(exc: httpx.TransportError) -> bool:
    """No byte of the request left: the connection was never made (or never got a slot)."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None (HTML, a list, not JSON at all)."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _looks_like_json_object(response: httpx.Response) -> bool:
    """Cheap (a 1000-record page is not parsed twice here): a body that opens with
    ``{``, and not an HTML content type (a proxy's page)."""
    head = response.content[:256].lstrip()
    kind = response.headers.get("content-type", "").lower()
    if "html" in kind:
        return False
    return head.startswith(b"{")


def _put_events_answer(response: httpx.Response) -> bool:
    body = json_object(response)
    if body is None:
        return False
    count = body.get("failed_count")
    return (isinstance(count, int) and not isinstance(count, bool)
            and isinstance(body.get("events"), list))


def _smn_answer(response: httpx.Response) -> bool:
    body = json_object(response)
    return body is not None and isinstance(body.get("message_id"), str)


# SDRS: a redirect or a 1xx is an error of the call (delete_failed), as it always was.
SDRS_LISTING = Destination("SDRS", taken=frozenset({200}),
                           retry=frozenset({408, 409, 429}) | FIVE_XX,
                           own_answer=_looks_like_json_object, otherwise=Verdict.REFUSED)
SDRS_DELETE = Destination("SDRS", taken=frozenset({204, 404}),
                          retry=frozenset({408, 409, 429}) | FIVE_XX, otherwise=Verdict.REFUSED)
SINK = Destination("K_SINK")
EVENTGRID = Destination("EventGrid", keep=frozenset({401, 403, 404}),
                        own_answer=_put_events_answer)
SMN = Destination("SMN", retry=frozenset({408, 429, 503}),
                  unknown=FIVE_XX - {503}, retry_unsent_only=True, own_answer=_smn_answer,
                  otherwise=Verdict.UNKNOWN)


class Refused(Exception):
    """The destination refused these messages permanently (any 4xx the table does not
    retry or keep). Not a failure to deliver: the caller logs each in full at ERROR,
    counts and drops it. ``refused`` maps each message's id to the reason."""

    def __init__(self, destination: str, refused: Mapping[str, str]) -> None:
        super().__init__(f"{destination} refused {len(refused)} message(s) permanently: "
                         f"{next(iter(refused.values()), '')}")
        self.destination = destination
        self.refused = dict(refused)


def describe(answer: Answer) -> str:
    """``<status> <code> <message>`` of an answer, short (for logs and errors)."""
    response = answer.response
    text = response.reason_phrase
    body = None if answer.too_large else json_object(response)
    if body is not None:
        error = body.get("error")
        inner: dict[str, Any] = error if isinstance(error, dict) else body
        code = inner.get("error_code") or inner.get("code")
        message = inner.get("error_msg") or inner.get("message")
        text = f"{code or ''} {message or ''}".strip()[:300] or text
    return f"{response.status_code} {text}".strip()


# -- Retry-After ----------------------------------------------------------------------------


def retry_after(response: httpx.Response, cap: float, *,
                now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), at most
    ``cap``; None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - now()), cap)


# -- the retry helper ---------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: attempts, overall deadline, backoff bounds."""

    max_attempts: int = 5
    deadline: float = 30.0
    """Seconds for all attempts of one request, waits included."""
    backoff_initial: float = 0.5
    backoff_max: float = 8.0


class Retry(Exception):
    """Raised by an attempt that deserves another. ``error`` says what to report if
    none is left; ``retry_after`` is the wait the destination asked for."""

    def __init__(self, error: Exception, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.attempts = 0


class FullJitterOrRetryAfter:
    """Wait what the destination asked for (Retry-After), else exponential backoff with
    full jitter (a uniform draw between 0 and the exponential ceiling)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Retry) and exc.retry_after is not None:
            return exc.retry_after
        ceiling = min(self._policy.backoff_max,
                      self._policy.backoff_initial * 2 ** (state.attempt_number - 1))
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not cryptography


class _StopAt(stop_base):
    """Stop when the next wait would end past ``deadline`` (a monotonic instant)."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def __call__(self, state: RetryCallState) -> bool:
        return time.monotonic() + state.upcoming_sleep >= self._deadline


def call(attempt: Callable[[int], T], policy: RetryPolicy, *, deadline: float | None = None,
         sleep: Callable[[float], None] | None = None) -> T:
    """``attempt(n)`` (n from 1) until it returns; each ``Retry`` it raises waits and
    tries again while attempts and time are left. The last ``Retry`` is raised, its
    ``attempts`` set, when none are left. ``deadline``: a ``time.monotonic()`` instant,
    at most ``policy.deadline`` from now."""
    end = time.monotonic() + policy.deadline
    if deadline is not None:
        end = min(end, deadline)
    retrying = Retrying(
        retry=retry_if_exception_type(Retry),
        wait=FullJitterOrRetryAfter(policy),
        stop=stop_after_attempt(max(1, policy.max_attempts)) | _StopAt(end),
        reraise=True,
        sleep=sleep if sleep is not None else _sleep,
    )
    number = 0
    try:
        for try_ in retrying:
            with try_:
                number = try_.retry_state.attempt_number
                return attempt(number)
    except Retry as exc:
        exc.attempts = number
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")


# -- the testing mode ---------------------------------------------------------------------

_testing: list[float] | None = None


def _sleep(seconds: float) -> None:
    waits = _testing
    if waits is not None:
        waits.append(seconds)
        return
    time.sleep(seconds)


@contextlib.contextmanager
def testing() -> Iterator[list[float]]:
    """Nothing sleeps between attempts (in every client that does not pass its own
    ``sleep``); the waits asked for are recorded in the list yielded."""
    global _testing
    previous, waits = _testing, list[float]()
    _testing = waits
    try:
        yield waits
    finally:
        _testing = previous


def set_testing(on: bool) -> None:
    """The testing mode for a whole test session (``testing()`` for one block)."""
    global _testing
    _testing = [] if on else None


# -- one request, bounded in time and bytes -------------------------------------------------


@dataclass
class Answer:
    """An answer read whole, or up to ``max_bytes`` (then ``too_large`` and no body)."""

    response: httpx.Response
    too_large: bool = False


class DeadlineExceeded(httpx.TimeoutException):
    """The request's whole-duration bound passed (a trickling server, say)."""


def send(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    deadline: float,
    max_bytes: int,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    json_body: Any = None,
) -> Answer:
    """One request, connect to the last byte of the body inside ``deadline`` (a
    ``time.monotonic()`` instant), the body read up to ``max_bytes``.

    Raises httpx.TransportError (``DeadlineExceeded`` is one, a timeout) as httpx does.
    """
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpx.PoolTimeout("deadline reached before the request was sent")
    configured = http.timeout
    timeout = httpx.Timeout(
        connect=_min(configured.connect, left), read=_min(configured.read, left),
        write=_min(configured.write, left), pool=_min(configured.pool, left))
    # Only encodings decoded here within the bound (a gzip bomb stops at max_bytes too).
    request = http.build_request(method, url, params=params,
                                 headers={"Accept-Encoding": "gzip, deflate", **(headers or {})},
                                 content=content, json=json_body, timeout=timeout)
    with _within(deadline):
        response = http.send(request, stream=True)
        try:
            body = _read(response, max_bytes, deadline)
        finally:
            response.close()
    if body is None:
        return Answer(_without_body(response), too_large=True)
    return Answer(_with_body(response, body))


def _read(response: httpx.Response, max_bytes: int, deadline: float) -> bytes | None:
    """The body, decoded, or None past ``max_bytes`` (or in an encoding not asked for)."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        inflate = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib, by its header
    else:
        return None
    parts: list[bytes] = []
    size = 0
    for raw in response.iter_raw():
        chunk = raw
        if inflate is not None:
            try:
                chunk = inflate.decompress(raw, max_bytes - size + 1)
            except zlib.error as exc:
                raise httpx.RemoteProtocolError(f"bad {encoding} body: {exc}",
                                                request=response.request) from None
            if inflate.unconsumed_tail:
                return None  # more than the room left
        size += len(chunk)
        if size > max_bytes:
            return None
        parts.append(chunk)
        if time.monotonic() >= deadline:  # a transport without the seam
            raise DeadlineExceeded("the answer outlasted its deadline",
                                   request=response.request)
    return b"".join(parts)


_ENCODING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _with_body(response: httpx.Response, body: bytes) -> httpx.Response:
    # The body is decoded already: a fresh Response that holds it (public API only).
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in _ENCODING_HEADERS]
    return httpx.Response(response.status_code, headers=headers, content=body,
                          request=response.request, extensions=response.extensions)


def _without_body(response: httpx.Response) -> httpx.Response:
    return _with_body(response, b"")


def _min(value: float | None, left: float) -> float:
    return left if value is None else min(value, left)


# -- the seam: every socket operation of a request gets at most the time left ---------------

_local = threading.local()


@contextlib.contextmanager
def _within(deadline: float) -> Iterator[None]:
    previous: float | None = getattr(_local, "deadline", None)
    _local.deadline = deadline if previous is None else min(previous, deadline)
    try:
        yield
    finally:
        _local.deadline = previous


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    deadline: float | None = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the request outlasted its deadline")
    return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address,
            socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._inner.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bound_transport(transport: httpx.BaseTransport) -> httpx.BaseTransport:
    """Install the seam on httpx's pooled transport (and its proxy pool); other
    transports (a test's ``MockTransport``) are returned as they are: ``send`` then
    checks the deadline between the body's chunks only."""
    if isinstance(transport, httpx.HTTPTransport):
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is None:
            raise RuntimeError("httpcore changed: no network backend to bound (pin it)")
        if not isinstance(backend, _BoundedBackend):
            pool._network_backend = _BoundedBackend(backend)  # type: ignore[union-attr]
    return transport


def pooled_transport(url: str, *, max_connections: int = 32) -> httpx.HTTPTransport:
    """httpx's pooled transport for ``url``, bounded (the seam above): a proxy from the
    environment (HTTP_PROXY/HTTPS_PROXY/ALL_PROXY, minus NO_PROXY) is honoured, as
    httpx does; the process's one TLS context (tls.py)."""
    import urllib.request  # here: not on the cold start's path of every import

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()  # the variables httpx reads
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        proxy = None
    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=max_connections)
    transport = httpx.HTTPTransport(verify=context_for(url), limits=limits, proxy=proxy)
    bound_transport(transport)
    return transport


def client(url: str, *, timeout: float, transport: httpx.BaseTransport | None = None,
           auth: httpx.Auth | None = None, max_connections: int = 32,
           headers: Mapping[str, str] | None = None) -> httpx.Client:
    """An ``httpx.Client`` for one destination, its transport bounded; redirects are
    not followed (a signed request must not be carried elsewhere)."""
    transport = bound_transport(transport) if transport is not None else pooled_transport(
        url, max_connections=max_connections)
    return httpx.Client(timeout=timeout, auth=auth, transport=transport,
                        follow_redirects=False, headers=dict(headers or {}))


def send_window(attempts: int, timeout: float) -> float:
    """The longest one outcome delivery may take: every attempt times out, with backoff."""
    return attempts * (timeout + 1.0) + 1.0


def full_json(payload: Any) -> str:
    """A message as one JSON line, for the log line that is its only record."""
    return json.dumps(payload, default=str, separators=(",", ":"), sort_keys=True)
