"""The one client of the SDRS task-center API.

One ``httpx.Client`` per instance, over httpx's own pooled transport (at most
``max_connections``, kept alive); the process builds one instance and reuses it
across invocations. Every attempt takes a start slot from the rate limiter and
reports its answer back to it. Tests pass a ``transport`` instead of patching.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from failjob_reaper import delivery
from failjob_reaper.delivery import RetryPolicy, Verdict
from failjob_reaper.ids import validate_id
from failjob_reaper.sdrs._errors import (
    SdrsError,
    error_from_response,
    error_from_transport,
)
from failjob_reaper.sdrs._pacing import RateLimiter

PAGE_SIZE = 1000  # the API's maximum and default
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""The bound on one answer's body (SDRS_MAX_RESPONSE_BYTES): a page of 1000 records of
the stand-in is 0.4 MB; this leaves room for records ten times as large.
Past it the answer is not read (``SDRS.ResponseTooLarge``): the listing is incomplete."""
RESPONSE_TOO_LARGE = "SDRS.ResponseTooLarge"
DEADLINE_REACHED = "SDRS.DeadlineReached"
"""A request cut off by its caller's deadline (``_send(deadline=...)``): a listing that
meets it is incomplete, as one that reaches the deadline between pages."""


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
class DeleteResult:
    """A DELETE that the API answered with 204 (``found``) or 404 (not ``found``)."""

    found: bool
    status_code: int
    attempts: int
    lost_answers: int = 0
    """Earlier attempts that got no answer (timeout, reset): they may have been applied."""


class _Transient(delivery.Retry):
    """One failed attempt that deserves another; carries what to report if none is left."""

    def __init__(self, error: SdrsError, retry_after: float | None) -> None:
        super().__init__(error, retry_after)
        self.sdrs_error = error
        self.lost_answer = False
        """No answer after the request went out: it may have been applied."""


_DEFAULT_RETRY = RetryPolicy()
_FullJitterOrRetryAfter = delivery.FullJitterOrRetryAfter
"""The one backoff of every client (delivery.py)."""


class TaskCenterClient:
    """List failed tasks and protection groups, delete one failed task."""

    def __init__(
        self,
        endpoint: str,
        project_id: str,
        *,
        auth: httpx.Auth | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = _DEFAULT_RETRY,
        max_connections: int = 32,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.project_id = validate_id(project_id, "project_id")
        self.retry = retry
        self.rate_limiter = rate_limiter
        self.max_response_bytes = max_response_bytes
        self._sleep = sleep  # None: delivery's (nothing sleeps in its testing mode)
        # httpx's pool: thread-safe, at most max_connections (a sweep's workers beyond it
        # wait for a connection); proxies from the environment are honoured. The TLS
        # context is the process's one (tls.py), not a fresh CA bundle per client. The
        # transport bounds each request as a whole (delivery.py).
        if transport is None:
            transport = delivery.pooled_transport(endpoint, max_connections=max_connections)
        self._http = httpx.Client(
            base_url=endpoint,
            auth=auth,
            timeout=timeout,
            transport=delivery.bound_transport(transport),
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
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Every failed task of one scope, page by page as each arrives: each page's
        records not seen before (by ``job_id``, else by content), never an empty list.

        ``keep``: where the caller keeps the records (``records.RecordTable.add``): it
        takes a record and says whether it was new, so the listing needs no memory of
        its own for telling new records from seen ones.

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
        return self._pages(path, params, "failure_jobs", page_size, "job_id", deadline,
                           keep)

    def list_server_groups(
        self, *, page_size: int = PAGE_SIZE, deadline: float | None = None
    ) -> list[dict[str, Any]]:
        """Every protection group of the project (complete or IncompleteListing, whose
        ``records`` are the distinct groups read until it stopped)."""
        path = f"/v1/{self.project_id}/server-groups"
        return _joined(self._pages(path, {}, "server_groups", page_size, "id", deadline))

    def delete_failure_job(
        self, failure_job_id: str, *, deadline: float | None = None
    ) -> DeleteResult:
        """DELETE one failed task: 204 and 404 are answers, anything else raises SdrsError.

        ``deadline``: a ``time.monotonic()`` instant bounding every attempt and wait."""
        job_id = validate_id(failure_job_id)
        path = f"/v1/{self.project_id}/task-center/failure-jobs/{job_id}"
        lost: list[SdrsError] = []
        response, attempts = self._send("DELETE", path, None, ok=(204, 404), lost=lost,
                                        deadline=deadline)
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
        deadline: float | None, keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        # Page until an empty page: servers cap pages below `limit`, and `count` may be the
        # page's size, so neither a short page nor `count` says the listing is done. Stop,
        # as incomplete, when a page brings nothing new (a server that ignores `offset`
        # repeats itself), when a page is over the byte bound, or at the deadline. No
        # bound on the number of pages (docs: a backlog of 1,000,000 is listed to the
        # end); what is kept across pages is a digest per distinct record.
        if keep is None:
            seen = _Seen()

            def keep(item: dict[str, Any]) -> bool:
                return seen.add(_identity(item, identity))
        offset = pages = attempts = 0
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                raise IncompleteListing(
                    f"deadline reached while listing (after {pages} pages)",
                    retryable=True, attempts=attempts, pages=pages)
            page_params = {**params, "limit": str(page_size), "offset": str(offset)}
            try:
                response, attempts = self._send("GET", path, page_params, ok=(200,),
                                                deadline=deadline)
            except SdrsError as exc:
                raise _stopped(exc, pages, offset, deadline) from None
            items = _page(response, key, attempts)
            del response  # the page's body is not kept beyond its records
            pages += 1
            if not items:
                return
            fresh = [item for item in items if keep(item)]
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
        deadline: float | None = None,
    ) -> tuple[httpx.Response, int]:
        """One call, retried as delivery.py's table says, every
        attempt and wait inside ``deadline`` (a ``time.monotonic()`` instant) and the
        policy's own deadline. ``ok``: the statuses that are this call's answers (a
        DELETE's 404 is one). ``lost`` collects the attempts whose answer was lost after
        the request went out (they may have been applied)."""
        destination = delivery.SDRS_LISTING if method == "GET" else delivery.SDRS_DELETE
        if set(ok) != destination.taken:
            destination = delivery.Destination(
                "SDRS", taken=frozenset(ok), retry=destination.retry,
                own_answer=destination.own_answer, otherwise=destination.otherwise)
        end = time.monotonic() + self.retry.deadline
        if deadline is not None:
            end = min(end, deadline)

        def attempt(number: int) -> httpx.Response:
            try:
                return self._attempt(method, path, params, number, destination, end)
            except _Transient as exc:
                if lost is not None and exc.lost_answer:
                    lost.append(exc.sdrs_error)
                raise

        try:
            response = delivery.call(attempt, self.retry, deadline=end, sleep=self._sleep)
        except _Transient as exc:
            error = exc.sdrs_error
            error.attempts = exc.attempts
            if deadline is not None and error.status_code is None and (
                    time.monotonic() >= deadline):
                error = SdrsError(f"deadline reached: {error.message}", code=DEADLINE_REACHED,
                                  status_code=None, retryable=True, attempts=exc.attempts)
            raise error from None
        return response, _attempts_of(response)

    def _attempt(
        self, method: str, path: str, params: dict[str, str] | None, attempt_number: int,
        destination: delivery.Destination | None = None, deadline: float | None = None,
    ) -> httpx.Response:
        if destination is None:
            destination = delivery.SDRS_LISTING if method == "GET" else delivery.SDRS_DELETE
        if deadline is None:
            deadline = time.monotonic() + self.retry.deadline
        limiter = self.rate_limiter
        ticket = limiter.acquire() if limiter is not None else 0
        try:
            answer = delivery.send(self._http, method, path, params=params, deadline=deadline,
                                   max_bytes=self.max_response_bytes)
        except httpx.TransportError as exc:
            transient = _Transient(error_from_transport(exc, attempts=attempt_number), None)
            transient.lost_answer = not delivery.surely_unsent(exc)
            raise transient from None
        response = answer.response
        if limiter is not None:
            limiter.record(ticket, response)
        if answer.too_large and response.status_code in destination.taken and (
                destination.own_answer is not None):
            raise SdrsError(
                f"answer larger than SDRS_MAX_RESPONSE_BYTES ({self.max_response_bytes} bytes)",
                code=RESPONSE_TOO_LARGE, status_code=response.status_code, retryable=False,
                attempts=attempt_number)
        verdict = destination.classify(answer)
        if verdict is Verdict.TAKEN:
            response.extensions["failjob_reaper.attempts"] = attempt_number
            return response
        if verdict is Verdict.RETRY:
            if response.status_code in destination.taken:  # a proxy's page answered 200
                error = SdrsError("unexpected body: not an answer of the API",
                                  code="SDRS.BadListing", status_code=response.status_code,
                                  retryable=True, attempts=attempt_number)
            else:
                error = error_from_response(response, attempts=attempt_number)
            raise _Transient(error, _retry_after(response, self.retry.deadline))
        raise error_from_response(response, attempts=attempt_number)


def _attempts_of(response: httpx.Response) -> int:
    return int(response.extensions.get("failjob_reaper.attempts", 1))


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
    if error.code == DEADLINE_REACHED or (
            deadline is not None and error.status_code is None
            and time.monotonic() >= deadline):
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
    """Seconds from a Retry-After header (delta or HTTP date), capped: delivery's one parser."""
    return delivery.retry_after(response, cap)


def transport_for(url: str, *, max_connections: int = 32) -> httpx.HTTPTransport:
    """httpx's pooled transport for ``url``, bounded, as ``TaskCenterClient`` gets it by
    default: for callers that wrap the transport (the CLI)."""
    return delivery.pooled_transport(url, max_connections=max_connections)
