"""The one client of the SDRS task-center API.

One ``httpx.Client`` per instance, over httpx's own pooled transport (at most
``max_connections``, kept alive); the process builds one instance and reuses it
across invocations. Every attempt takes a start slot from the rate limiter and
reports its answer back to it. Tests pass a ``transport`` instead of patching.
"""

from __future__ import annotations

import copy
import email.utils
import hashlib
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
)

from failjob_reaper.ids import validate_id
from failjob_reaper.sdrs._errors import (
    RETRYABLE_STATUSES,
    SdrsError,
    error_from_response,
    error_from_transport,
)
from failjob_reaper.sdrs._pacing import RateLimiter
from failjob_reaper.tls import context_for

PAGE_SIZE = 1000  # the API's maximum and default
RESPONSE_TOO_LARGE = "SDRS.ResponseTooLarge"
"""The request layer's code for an answer larger than its byte bound."""


class IncompleteListing(SdrsError):
    """A listing that stopped before an empty page: a page with nothing new, a page over
    the byte bound, or the deadline.

    ``records``: what the caller may still use of it. The streaming form
    (:meth:`TaskCenterClient.failure_job_pages`) has already handed every page over and
    keeps nothing (an empty list); the list forms hand over what they had collected.
    """

    def __init__(self, message: str, *, records: list[dict[str, Any]] | None = None,
                 retryable: bool, attempts: int = 0, pages: int = 0) -> None:
        super().__init__(message, code="SDRS.IncompleteListing", status_code=None,
                         retryable=retryable, attempts=attempts)
        self.records: list[dict[str, Any]] = records if records is not None else []
        self.pages = pages
        """Pages read before the listing stopped."""
        self.scopes: list[Any] = []
        """Set by the caller that knows what the records mean (lookup: the scopes)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: attempts, overall deadline, backoff bounds."""

    max_attempts: int = 5
    deadline: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 8.0


@dataclass(frozen=True)
class DeleteResult:
    """A DELETE that the API answered with 204 (``found``) or 404 (not ``found``)."""

    found: bool
    status_code: int
    attempts: int
    lost_answers: int = 0
    """Earlier attempts that got no answer (timeout, reset): they may have been applied."""


class _Transient(Exception):
    """One failed attempt that deserves another; carries what to report if none is left."""

    def __init__(self, error: SdrsError, retry_after: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


class _FullJitterOrRetryAfter:
    """Wait what the server asked for (Retry-After), else exponential backoff, full jitter."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        ceiling = min(
            self._policy.backoff_max,
            self._policy.backoff_initial * 2 ** (state.attempt_number - 1),
        )
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not cryptography


class TaskCenterClient:
    """List failed tasks and protection groups, delete one failed task."""

    def __init__(
        self,
        endpoint: str,
        project_id: str,
        *,
        auth: httpx.Auth | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        max_connections: int = 32,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.project_id = validate_id(project_id, "project_id")
        self.retry = retry
        self.rate_limiter = rate_limiter
        # httpx's pool: thread-safe, at most max_connections (a sweep's workers beyond it
        # wait for a connection); proxies from the environment are honoured (trust_env).
        # The TLS context is the process's one (tls.py), not a fresh CA bundle per client.
        self._http = httpx.Client(
            base_url=endpoint,
            auth=auth,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            verify=context_for(endpoint),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "failjob-reaper"},
            follow_redirects=False,
        )

    # -- the API --------------------------------------------------------------

    def list_failure_jobs(
        self,
        *,
        server_group_id: str | None = None,
        failure_status: str | None = None,
        resource_name: str | None = None,
        resource_type: str | None = None,
        page_size: int = PAGE_SIZE,
        deadline: float | None = None,
    ) -> list[dict[str, Any]]:
        """Every failed task of one scope: the top level, or one protection group.

        The pages of :meth:`failure_job_pages` joined in one list, for callers that need
        one (it costs the whole listing in memory). Complete or IncompleteListing, whose
        ``records`` are the distinct records read until it stopped.
        """
        pages = self.failure_job_pages(
            server_group_id=server_group_id, failure_status=failure_status,
            resource_name=resource_name, resource_type=resource_type, page_size=page_size,
            deadline=deadline)
        return _joined(pages)

    def failure_job_pages(
        self,
        *,
        server_group_id: str | None = None,
        failure_status: str | None = None,
        resource_name: str | None = None,
        resource_type: str | None = None,
        page_size: int = PAGE_SIZE,
        deadline: float | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Every failed task of one scope, page by page as each arrives: each page's
        records not seen before (by ``job_id``, else by content), never an empty list.

        Paged until an empty page, with no bound on the number of pages; when the
        listing cannot be completed (a page that brings nothing new, a page over the
        request layer's byte bound, the deadline) IncompleteListing is raised after the
        pages already yielded, with no records. ``deadline``: a ``time.monotonic()``
        instant. What the generator keeps between pages: a 16-byte digest per
        distinct record (80 to 100 bytes per record in the process, see ``_Seen``).
        """
        params: dict[str, str] = {}
        if server_group_id is not None:
            params["server_group_id"] = validate_id(server_group_id, "server_group_id")
        for key, value in (
            ("failure_status", failure_status),
            ("resource_name", resource_name),
            ("resource_type", resource_type),
        ):
            if value is not None:
                params[key] = value
        path = f"/v1/{self.project_id}/task-center/failure-jobs"
        return self._pages(path, params, "failure_jobs", page_size, "job_id", deadline)

    def list_server_groups(
        self, *, page_size: int = PAGE_SIZE, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        """Every protection group of the project (complete or IncompleteListing, whose
        ``records`` are the distinct groups read until it stopped)."""
        path = f"/v1/{self.project_id}/server-groups"
        return _joined(self._pages(path, {}, "server_groups", page_size, "id", deadline))

    def delete_failure_job(self, failure_job_id: str) -> DeleteResult:
        """DELETE one failed task: 204 and 404 are answers, anything else raises SdrsError."""
        job_id = validate_id(failure_job_id)
        path = f"/v1/{self.project_id}/task-center/failure-jobs/{job_id}"
        lost: list[SdrsError] = []
        response, attempts = self._send("DELETE", path, None, ok=(204, 404), lost=lost)
        return DeleteResult(response.status_code == 204, response.status_code, attempts,
                            lost_answers=len(lost))

    def with_rate_limit(self, limiter: RateLimiter | None) -> TaskCenterClient:
        """The same client (and connection pool) pacing its requests with ``limiter``.

        Sweeps use it with the process's limiter's ``bulk()`` view: the same rate, and
        single events' requests go first.
        """
        paced = copy.copy(self)
        paced.rate_limiter = limiter
        return paced

    def close(self) -> None:
        self._http.close()

    # -- plumbing ---------------------------------------------------------------

    def _pages(
        self, path: str, params: dict[str, str], key: str, page_size: int, identity: str,
        deadline: float | None,
    ) -> Iterator[list[dict[str, Any]]]:
        # Page until an empty page: servers cap pages below `limit`, and `count` may be the
        # page's size, so neither a short page nor `count` says the listing is done. Stop,
        # as incomplete, when a page brings nothing new (a server that ignores `offset`
        # repeats itself), when a page is over the byte bound, or at the deadline. No
        # bound on the number of pages (docs: a backlog of 1,000,000 is listed to the
        # end); what is kept across pages is a digest per distinct record.
        seen = _Seen()
        offset = pages = attempts = 0
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                raise IncompleteListing(
                    f"deadline reached while listing (after {pages} pages)",
                    retryable=True, attempts=attempts, pages=pages)
            page_params = {**params, "limit": str(page_size), "offset": str(offset)}
            try:
                response, attempts = self._send("GET", path, page_params, ok=(200,))
            except SdrsError as exc:
                raise _stopped(exc, pages, offset, deadline) from None
            items = _page(response, key, attempts)
            del response  # the page's body is not kept beyond its records
            pages += 1
            if not items:
                return
            fresh = [item for item in items if seen.add(_identity(item, identity))]
            if not fresh:
                raise IncompleteListing(
                    f"page {pages} (offset {offset}) brought no record not seen before: "
                    "the server seems to ignore offset",
                    retryable=False, attempts=attempts, pages=pages)
            offset += len(items)
            del items
            yield fresh
            del fresh

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        *,
        ok: tuple[int, ...],
        lost: list[SdrsError] | None = None,
    ) -> tuple[httpx.Response, int]:
        policy = self.retry
        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            wait=_FullJitterOrRetryAfter(policy),
            stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.deadline),
            reraise=True,
            sleep=time.sleep,
        )
        attempt_number = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempt_number = attempt.retry_state.attempt_number
                    try:
                        response = self._attempt(method, path, params, attempt_number)
                    except _Transient as exc:
                        if lost is not None and _maybe_applied(exc.error):
                            lost.append(exc.error)
                        raise
                    if response.status_code in ok:
                        return response, attempt_number
                    raise error_from_response(response, attempts=attempt_number)
        except _Transient as exc:
            exc.error.attempts = attempt_number
            raise exc.error from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _attempt(
        self, method: str, path: str, params: dict[str, str] | None, attempt_number: int
    ) -> httpx.Response:
        limiter = self.rate_limiter
        ticket = limiter.acquire() if limiter is not None else 0
        try:
            response = self._http.request(method, path, params=params)
        except httpx.TransportError as exc:
            raise _Transient(error_from_transport(exc, attempts=attempt_number), None) from None
        if limiter is not None:
            limiter.record(ticket, response)
        if response.status_code in RETRYABLE_STATUSES:
            error = error_from_response(response, attempts=attempt_number)
            raise _Transient(error, _retry_after(response, self.retry.deadline))
        return response


def _maybe_applied(error: SdrsError) -> bool:
    """No answer after the request may have gone out (a read timeout, a reset): not a
    connection that was never made (httpx's ConnectError/ConnectTimeout send nothing)."""
    return error.status_code is None and not error.message.endswith(
        ("ConnectError", "ConnectTimeout")
    )


def _page(response: httpx.Response, key: str, attempts: int) -> list[dict[str, Any]]:
    """The items of one listing page. `count` is not read: it may be the page's size."""
    try:
        body = response.json()
    except (ValueError, RecursionError):  # an HTML page answered 200, say
        body = None
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise SdrsError(
            f"unexpected listing body: no list under {key!r}",
            code="SDRS.BadListing",
            status_code=response.status_code,
            retryable=True,  # a gateway's page (HTML with 200) passes; try again later
            attempts=attempts,
        )
    return items


def _identity(item: dict[str, Any], field: str) -> str:
    """One record is one record: by its id field, else by its whole content."""
    value = item.get(field)
    if isinstance(value, str) and value:
        return "id:" + value
    return "content:" + json.dumps(item, sort_keys=True, default=str)


class _Seen:
    """The identities of the records one listing has brought, 16 bytes each.

    A keyed BLAKE2b digest (a fresh random key per listing) as a Python int in a set:
    about 80 to 100 bytes per record in the process (44 for the int, the rest the set's
    table; tests/test_listing.py measures it with tracemalloc), not the identity strings. Two
    records are mistaken for one only if their 128-bit digests collide: about n**2 / 2**129
    for n records (1e-27 at 1,000,000), and no server can aim for it (the key is secret).
    """

    __slots__ = ("_digests", "_key")

    def __init__(self) -> None:
        self._key = os.urandom(16)
        self._digests: set[int] = set()

    def add(self, identity: str) -> bool:
        """Remember ``identity``; True when it had not been seen before."""
        digest = int.from_bytes(
            hashlib.blake2b(identity.encode(), digest_size=16, key=self._key).digest(), "big")
        if digest in self._digests:
            return False
        self._digests.add(digest)
        return True

    def __len__(self) -> int:
        return len(self._digests)


def _stopped(
    error: SdrsError, pages: int, offset: int, deadline: float | None
) -> SdrsError:
    """What a failed page means for its listing: over the byte bound or past the deadline,
    an incomplete listing; anything else, the error itself."""
    if error.code == RESPONSE_TOO_LARGE:
        return IncompleteListing(
            f"page {pages + 1} (offset {offset}) is larger than the byte bound: "
            f"{error.message}", retryable=False, attempts=error.attempts, pages=pages)
    if deadline is not None and error.status_code is None and time.monotonic() >= deadline:
        return IncompleteListing(
            f"deadline reached while listing (after {pages} pages): {error.message}",
            retryable=True, attempts=error.attempts, pages=pages)
    return error


def _joined(pages: Iterator[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every page in one list; an IncompleteListing carries what was read until then."""
    records: list[dict[str, Any]] = []
    try:
        for page in pages:
            records.extend(page)
    except IncompleteListing as exc:
        exc.records = records
        raise
    return records


def _retry_after(response: httpx.Response, cap: float) -> float | None:
    """Seconds from a Retry-After header (delta or HTTP date), capped; None if absent/bad."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), cap)


def transport_for(url: str, *, max_connections: int = 32) -> httpx.HTTPTransport:
    """httpx's pooled transport for ``url``, as ``TaskCenterClient`` gets it by default:
    for callers that wrap the transport (the CLI). A proxy from the environment
    (HTTP_PROXY/HTTPS_PROXY/ALL_PROXY, minus NO_PROXY) is honoured, as httpx does."""
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()  # the variables httpx reads
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        proxy = None
    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=max_connections)
    return httpx.HTTPTransport(verify=context_for(url), limits=limits, proxy=proxy)
