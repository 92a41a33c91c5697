"""A loopback stand-in of the SDRS task-center API, with fault injection and a request log.

Choices where the real API is not settled (see docs/huawei-cloud.md):

* listings are ordered newest ``begin_time`` first (unparsable times last), then
  by insertion; offsets shift when records are deleted between pages, as they
  would on a real server;
* listing an unknown ``server_group_id`` answers 404 ``SDRS.1301``;
* ``limit`` outside 0..1000 or a non-integer ``limit``/``offset`` answers 400;
  a limit above ``max_page`` is clamped to it; ``limit=0`` gives an empty page;
* authentication failures and unknown paths answer in the API gateway's shape
  (``{"error_code": "APIGW.03xx"/"APIGW.0101", "error_msg": ...}``), everything
  else in the SDRS shape ``{"error": {"code", "message"}}``;
* the ``resource_type`` filter matches spellings loosely
  (``protectedInstance`` matches ``protected_instances``).

Odd answers real servers give, as knobs (all off by default): ``max_page`` (pages
capped below ``limit``), ``count_mode="page"`` (``count`` is the page's size),
``ignore_offset`` (every page is the first; ``"jobs"``: only failed-task listings),
``repeat_records`` / ``repeat_groups``
(each record or group listed that many times in a row), :data:`HTML_200` (a gateway
page answered 200), ``Fault(passthrough=True, late=s)`` (a DELETE applied at once and
answered late, so the client times out), ``after_delete`` (a callback after each
applied DELETE: "a new failure appears meanwhile"), ``drip`` (every answer's body one
byte every ``drip`` seconds after its headers: a server that trickles; one request at a
time: ``Fault(drip=s)``) and ``page_bytes`` (every failure-job listing page padded to at
least that many bytes: an oversized page). The same id in two scopes is just
``add_job`` twice; one DELETE removes both, as the project-wide path does.

Sizes: each listing is a :class:`~standin._rows.SortedRows` of the records' JSON, so
a page at any offset costs O(blocks + page) and a DELETE O(log n + block); a filtered
listing (``failure_status``, ...) reads its whole scope. :meth:`load_rows` loads
1,000,000 bulk records in seconds (about 14 s of CPU) at about 0.85 KB each.
``log_keep`` bounds the request log (:meth:`request_counts` still counts every request).
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

from ._auth import auth_failure
from ._http import (
    PAD_OVERHEAD,
    Fault,
    RecordedRequest,
    RequestLog,
    Response,
    ServerBase,
    error_body,
    json_response,
)
from ._rows import SortedRows
from ._throttle import Throttle
from .sample_data import DEFAULT_PROJECT_ID, BulkRow, Group, parse_begin_time

__all__ = ["HTML_200", "CountMode", "TaskCenterStandIn"]

HTML_200 = Fault(200, headers={"Content-Type": "text/html"},
                 body=b"<html><body><h1>Service is busy</h1></body></html>")
"""A gateway's HTML page with status 200, for ``inject``."""

CountMode = Literal["page", "total", "wrong"]
Record = dict[str, Any]
_Scope = str | None  # a protection group id, None for the top level
_Ref = tuple[_Scope, int]  # where a record is: its listing and its sort key there

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SEQ_BITS = 40
_NEWEST = 1 << 60  # begin_time in microseconds is within +-2**59 (years 1..9999)
_UNPARSABLE = 1 << 61  # listed after every parsable begin_time
# A record as stored: its JSON, its listing, begin_time in microseconds, its id_field value.
_Row = tuple[bytes, _Scope, int | None, str | None]


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND

_API_MAX_LIMIT = 1000
_FILTERS = ("failure_status", "resource_name", "resource_type")

_LIST = re.compile(r"^/v1/(?P<pid>[^/]+)/task-center/failure-jobs/?$")
_BATCH = re.compile(r"^/v1/(?P<pid>[^/]+)/task-center/(?:[^/]+/)?failure-jobs/batch/?$")
_ONE = re.compile(r"^/v1/(?P<pid>[^/]+)/task-center/failure-jobs/(?P<fid>[^/]+)/?$")
_GROUPS = re.compile(r"^/v1/(?P<pid>[^/]+)/server-groups/?$")


def _type_key(value: Any) -> str:
    # "protectedInstance", "protected_instances" -> "protectedinstance"
    text = str(value).lower().replace("_", "").replace("-", "")
    return text[:-1] if text.endswith("s") else text


class _BadRequest(Exception):
    pass


def _int_param(query: Mapping[str, str], name: str, default: int, upper: int | None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer") from None
    if value < 0 or (upper is not None and value > upper):
        bound = f"0..{upper}" if upper is not None else ">= 0"
        raise _BadRequest(f"{name} must be in {bound}")
    return value


class TaskCenterStandIn(ServerBase):
    """The task-center API on 127.0.0.1, backed by in-memory records indexed by group and id."""

    def __init__(
        self,
        *,
        project_id: str = DEFAULT_PROJECT_ID,
        token: str | None = None,
        credentials: Mapping[str, str] | None = None,
        id_field: str = "resource_id",
        latency: float = 0.0,
        count_mode: CountMode = "page",
        max_page: int = 1000,
        ignore_offset: bool | Literal["jobs"] = False,
        repeat_records: int = 1,
        repeat_groups: int = 1,
        drip: float = 0.0,
        page_bytes: int = 0,
        log_keep: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.log = RequestLog(log_keep)
        self.drip_seconds = drip
        """Seconds between two bytes of every answer's body (0: all at once)."""
        self.page_bytes = page_bytes
        """Every failure-job listing page padded to at least this many bytes (0: none)."""
        self.project_id = project_id
        self.id_field = id_field
        self.max_page = max_page
        self.ignore_offset = ignore_offset
        self.repeat_records = repeat_records
        self.repeat_groups = repeat_groups
        self.after_delete: Callable[[str], None] | None = None
        self._token = token
        self._credentials = dict(credentials) if credentials is not None else None
        self._latency = 0.0
        self._count_mode: CountMode = "page"
        self.latency = latency
        self.count_mode = count_mode
        self._rng = random.Random(seed)
        self._data_lock = threading.Lock()
        self._seq = 0
        self._groups: dict[str, Record] = {}
        self._scopes: dict[_Scope, SortedRows] = {None: SortedRows()}
        # id_field value -> where its record is (a list when several records share it)
        self._by_id: dict[str, _Ref | list[_Ref]] = {}
        self.throttle: Throttle | None = None  # the gateway's rate limit; off by default
        self.unknown_group_answer: tuple[int, str] = (404, "SDRS.1301")
        """(status, code) of a listing of a group that does not exist: undocumented."""

    # -- runtime knobs -------------------------------------------------------

    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self._latency = float(seconds)

    @property
    def count_mode(self) -> CountMode:
        return self._count_mode

    @count_mode.setter
    def count_mode(self, mode: CountMode) -> None:
        if mode not in get_args(CountMode):
            raise ValueError(f"count_mode must be one of {get_args(CountMode)}")
        self._count_mode = mode

    def extra_latency(self) -> float:
        return self._latency

    def drip(self) -> float:
        return self.drip_seconds

    # -- data ----------------------------------------------------------------

    def add_group(self, group_id: str, name: str = "", **fields: Any) -> None:
        group: Record = {
            "id": group_id,
            "name": name or f"group-{group_id[:8]}",
            "description": "",
            "status": "available",
            "protected_status": "started",
            "replication_status": "active",
            "health_status": "normal",
            "priority_station": "source",
            "protection_type": "replication-pair",
            "dr_type": "migration",
            "server_type": "ECS",
            "source_availability_zone": "az1.dc1",
            "target_availability_zone": "az2.dc2",
            "created_at": "2019-01-01 08:00:00.000",
            "updated_at": "2019-01-01 08:00:00.000",
        }
        group.update(fields)
        with self._data_lock:
            self._groups[group_id] = group
            self._scopes.setdefault(group_id, SortedRows())

    def add_job(self, record: Mapping[str, Any], server_group_id: str | None = None) -> None:
        self.add_jobs([(record, server_group_id)])

    def add_jobs(self, jobs: Iterable[tuple[Mapping[str, Any], str | None]]) -> None:
        """Add many records at once (all or none: a record of an unknown group adds none)."""
        rows: list[_Row] = []
        for record, scope in jobs:
            begin = parse_begin_time(record.get("begin_time"))
            key = record.get(self.id_field)
            rows.append((json.dumps(dict(record)).encode(), scope,
                         _micros(begin) if begin is not None else None,
                         str(key) if key is not None else None))
        self._add_rows(rows)

    def load(
        self, groups: Iterable[Group], jobs: Iterable[tuple[Mapping[str, Any], str | None]]
    ) -> None:
        """Load a world from :mod:`standin.sample_data`."""
        for group in groups:
            self.add_group(group.id, group.name)
        self.add_jobs(jobs)

    def load_rows(self, groups: Iterable[Group], rows: Iterable[BulkRow]) -> None:
        """Load :func:`standin.sample_data.bulk_rows`: 1,000,000 records in seconds."""
        for group in groups:
            self.add_group(group.id, group.name)
        self._add_rows((body, scope, round(begin * 1_000_000), self._id_of(body, rid, jid))
                       for body, scope, begin, rid, jid in rows)

    def _add_rows(self, rows: Iterable[_Row]) -> None:
        by_scope: dict[_Scope, list[tuple[int, bytes]]] = {}
        refs: list[tuple[str, _Ref]] = []
        with self._data_lock:
            for body, scope, begin, job_key in rows:
                if scope is not None and scope not in self._groups:
                    raise KeyError(f"unknown protection group {scope!r}: add_group() first")
                self._seq += 1
                key = self._sort_key(begin, self._seq)
                by_scope.setdefault(scope, []).append((key, body))
                if job_key is not None:
                    refs.append((job_key, (scope, key)))
            for scope, added in by_scope.items():
                self._scopes[scope].add_many(added)
            for job_key, ref in refs:
                known = self._by_id.get(job_key)
                if known is None:
                    self._by_id[job_key] = ref
                elif isinstance(known, list):
                    known.append(ref)
                else:
                    self._by_id[job_key] = [known, ref]

    def _id_of(self, body: bytes, resource_id: str, job_id: str) -> str | None:
        if self.id_field == "resource_id":
            return resource_id
        if self.id_field == "job_id":
            return job_id
        value = json.loads(body).get(self.id_field)
        return str(value) if value is not None else None

    @staticmethod
    def _sort_key(begin: int | None, seq: int) -> int:
        """Newest ``begin_time`` (microseconds) first, unparsable last, then by insertion:
        one int."""
        when = _UNPARSABLE if begin is None else _NEWEST - begin
        return (when << _SEQ_BITS) | seq

    def remove_job(self, failure_job_id: str) -> None:
        """Remove every record with this id ("deleted by someone else")."""
        with self._data_lock:
            self._remove(failure_job_id)

    def _remove(self, failure_job_id: str) -> bool:
        refs = self._by_id.pop(failure_job_id, None)
        if refs is None:
            return False
        for scope, key in refs if isinstance(refs, list) else [refs]:
            self._scopes[scope].remove(key)
        return True

    def listed(self, failure_job_id: str) -> bool:
        with self._data_lock:
            return failure_job_id in self._by_id

    def job_count(self) -> int:
        with self._data_lock:
            return sum(len(rows) for rows in self._scopes.values())

    def records(self, server_group_id: str | None = None) -> list[Record]:
        """The records of one listing (top level by default), in listing order."""
        with self._data_lock:
            return [json.loads(body) for body in self._scopes.get(server_group_id, ())]

    def request_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Requests by method and answers by "METHOD status" since the last ``reset_log``
        (every one, whatever ``log_keep`` kept)."""
        return self.log.counts()

    def group_ids(self) -> list[str]:
        with self._data_lock:
            return list(self._groups)

    # -- faults and observation ----------------------------------------------

    def inject(self, method: str, path_regex: str, *faults: Fault) -> None:
        """Queue faults for requests whose method (or "*") and path (re.search) match."""
        self.faults.add(method, path_regex, faults)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.log.snapshot()

    def reset_log(self) -> None:
        self.log.clear()

    def deletes(self) -> list[str]:
        """The failure_job_id of every single-record DELETE received, whatever its answer."""
        ids = []
        for r in self.log.snapshot():
            match = _ONE.match(r.path)
            if r.method == "DELETE" and match and not _BATCH.match(r.path):
                ids.append(unquote(match["fid"]))
        return ids

    def batch_calls(self) -> list[RecordedRequest]:
        """Requests to the batch-delete paths (which must never be called)."""
        return [r for r in self.log.snapshot() if _BATCH.match(r.path)]

    def max_requests_per_second(self, method: str | None = None) -> int:
        return self.log.max_per_second(method)

    # -- HTTP ----------------------------------------------------------------

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        if self.throttle is not None and (refused := self.throttle.check()) is not None:
            return refused
        parts = urlsplit(target)
        path = parts.path
        route = _BATCH.match(path) or _LIST.match(path) or _ONE.match(path) or _GROUPS.match(path)
        if route is None:
            return Response(
                404,
                json.dumps(
                    {
                        "error_code": "APIGW.0101",
                        "error_msg": "The API does not exist or has not been published",
                    }
                ).encode(),
            )
        if route.re is _BATCH:
            return Response(418, error_body(418, "SDRS.0418", "batch deletion is not allowed here"))
        reason = self._auth_failure(method, target, headers, body)
        if reason is not None:
            message = f"Incorrect IAM authentication information: {reason}"
            payload = {"error_code": "APIGW.0301", "error_msg": message}
            return Response(401, json.dumps(payload).encode())
        if route["pid"] != self.project_id:
            return Response(403, error_body(403, "SDRS.0403", "project id does not match"))
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            if route.re is _LIST and method == "GET":
                return self._list_jobs(query)
            if route.re is _GROUPS and method == "GET":
                return self._list_groups(query)
            if route.re is _ONE and method == "DELETE":
                return self._delete(unquote(route["fid"]))
        except _BadRequest as exc:
            return Response(400, error_body(400, "SDRS.0400", str(exc)))
        return Response(405, error_body(405, "SDRS.0405", f"{method} is not allowed here"))

    def _auth_failure(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        return auth_failure(method, target, headers, body, base_url=self.url,
                            token=self._token, credentials=self._credentials)

    def _list_jobs(self, query: Mapping[str, str]) -> Response:
        limit = min(_int_param(query, "limit", _API_MAX_LIMIT, _API_MAX_LIMIT), self.max_page)
        offset = 0 if self.ignore_offset else _int_param(query, "offset", 0, None)
        scope = query.get("server_group_id") or None
        filters = {name: query[name] for name in _FILTERS if query.get(name)}
        repeat = self.repeat_records
        with self._data_lock:
            rows = self._scopes.get(scope)
            if rows is None:
                # What SDRS answers here is not documented: a guess, and a knob.
                status, code = self.unknown_group_answer
                return Response(status, error_body(status, code, "protection group not found"))
            if filters:  # the whole scope, parsed: filtered listings are O(scope)
                matching = [b for b in rows if self._matches(json.loads(b), filters)]
                total = len(matching) * repeat
                page = [matching[i // repeat] for i in range(offset, min(offset + limit, total))]
            elif repeat > 1:  # position p is row p // repeat: still O(page)
                total = len(rows) * repeat
                stop = min(offset + limit, total)
                distinct = rows.page(offset // repeat, (stop - 1) // repeat + 1)
                first = offset // repeat
                page = [distinct[i // repeat - first] for i in range(offset, stop)]
            else:
                total = len(rows)
                page = rows.page(offset, offset + limit)
        body = b'{"count": %d, "failure_jobs": [%s]}' % (
            self._count(len(page), total),
            b", ".join(page),
        )
        padding = max(0, self.page_bytes - len(body) - PAD_OVERHEAD)
        return Response(200, body, padding=padding)

    @staticmethod
    def _matches(record: Record, filters: Mapping[str, str]) -> bool:
        for name, wanted in filters.items():
            value = record.get(name)
            if name == "resource_type":
                if _type_key(value) != _type_key(wanted):
                    return False
            elif value != wanted:
                return False
        return True

    def _count(self, page: int, total: int) -> int:
        mode = self._count_mode
        if mode == "page":
            return page
        if mode == "total":
            return total
        wrong = self._rng.randint(0, 2 * total + 10)
        while wrong in (page, total):
            wrong += 1
        return wrong

    def _list_groups(self, query: Mapping[str, str]) -> Response:
        limit = min(_int_param(query, "limit", _API_MAX_LIMIT, _API_MAX_LIMIT), self.max_page)
        offset = 0 if self.ignore_offset is True else _int_param(query, "offset", 0, None)
        with self._data_lock:
            groups = [g for g in self._groups.values() for _ in range(self.repeat_groups)]
        return json_response(
            200, {"server_groups": groups[offset : offset + limit], "count": len(groups)}
        )

    def _delete(self, failure_job_id: str) -> Response:
        with self._data_lock:
            removed = self._remove(failure_job_id)
        if removed:
            if self.after_delete is not None:
                self.after_delete(failure_job_id)
            return Response(204)
        return Response(404, error_body(404, "SDRS.1302", "failure job not found"))
