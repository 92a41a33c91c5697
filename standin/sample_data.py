"""Seeded task-center data: a small realistic world and bulk worlds for benchmarks.

Records use the field names of the API's listing example. ``begin_time`` is
relative to the ``now`` given, so "expired" means older than the default 7-day
retention at that instant.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "DEFAULT_PROJECT_ID",
    "BulkRow",
    "Group",
    "JobRecord",
    "World",
    "bulk_rows",
    "bulk_world",
    "cts_trace",
    "eventgrid_cloudtrace",
    "format_begin_time",
    "parse_begin_time",
    "sample_world",
]

DEFAULT_PROJECT_ID = "0605767f0a00d5762fe0c0148c8ba0d3"

JobRecord = dict[str, Any]


@dataclass(frozen=True)
class Group:
    id: str
    name: str


# Groups, then (record, server_group_id or None for the top level).
World = tuple[list[Group], list[tuple[JobRecord, str | None]]]

_JOB_TYPES = {
    "createFail": "createProtectedInstance",
    "deleteFail": "deleteProtectedInstance",
    "attachFail": "attachReplicationPair",
    "detachFail": "detachReplicationPair",
    "expandFail": "expandReplicationPair",
    "resizeFail": "resizeProtectedInstance",
    "startFail": "startServerGroup",
    "stopFail": "stopServerGroup",
    "reverseFail": "reverseServerGroup",
    "failoverFail": "failoverServerGroup",
    "reprotectFail": "reprotectServerGroup",
}
_ERRORS = [
    ("EVS.2024", "SdrsGenerateNativeServerParamsTask-fail:volume is error!"),
    ("EVS.2031", "SdrsExpandVolumeTask-fail:volume size exceeds the quota"),
    ("ECS.0011", "SdrsAttachNicTask-fail:the server is not in a valid state"),
    ("SDRS.1205", "SdrsCreateServerGroupTask-fail:quota of protection groups exceeded"),
    ("SDRS.1402", "SdrsFailoverTask-fail:replication pair is not synchronized"),
    ("VPC.0114", "SdrsCreatePortTask-fail:no available ip address in the subnet"),
]


def format_begin_time(moment: datetime) -> str:
    """``yyyy-MM-ddTHH:mm:ss.SSSZ`` in UTC, as the API writes it."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_begin_time(value: Any) -> datetime | None:
    """Parse a ``begin_time`` into an aware UTC datetime; None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=UTC)
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it: clamp to the calendar
        edge = datetime.min if parsed.year == 1 else datetime.max
        return edge.replace(tzinfo=UTC)


def _record(
    *,
    resource_id: str,
    resource_name: str,
    resource_type: str,
    failure_status: str,
    job_id: str,
    job_type: str,
    begin_time: str,
    error_code: str,
    fail_reason: str,
) -> JobRecord:
    return {
        "job_status": "FAIL",
        "resource_id": resource_id,
        "resource_name": resource_name,
        "resource_type": resource_type,
        "failure_status": failure_status,
        "job_id": job_id,
        "job_type": job_type,
        "begin_time": begin_time,
        "error_code": error_code,
        "fail_reason": fail_reason,
    }


def sample_world(now: datetime, *, project_id: str = DEFAULT_PROJECT_ID) -> World:
    """Three groups and 17 failures covering the policy's cases (ids stable per project).

    Highlights: ``web-03`` has three failures (keep-latest), ``prod-db-01`` is
    expired but meant for holds, ``db-03`` has no parsable ``begin_time``,
    ``etl-03`` starts in the future (clock skew), ``etl-02`` is just under 7 days.
    """
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"sdrs-standin:{project_id}")

    def uid(name: str) -> str:
        return str(uuid.uuid5(namespace, name))

    def job_id(name: str) -> str:
        return uuid.uuid5(namespace, "job/" + name).hex

    def ago(**delta: float) -> str:
        return format_begin_time(now - timedelta(**delta))

    groups = [Group(uid("pg-web"), "pg-web"), Group(uid("pg-db"), "pg-db")]
    groups.append(Group(uid("pg-analytics"), "pg-analytics"))
    web, db, analytics = (g.id for g in groups)

    # (group, resource name, resource_type, failure_status, job_type, begin_time, error, n)
    rows: list[tuple[str | None, str, str, str, str, str, int, int]] = [
        (None, "pg-staging-old", "server_groups", "createFail", "createServerGroup",
         ago(days=30), 3, 0),
        (None, "pg-retired", "server_groups", "deleteFail", "deleteServerGroup",
         ago(hours=3), 3, 0),
        (web, "web-01", "protectedInstance", "createFail", "createProtectedInstance",
         ago(days=10), 0, 0),
        (web, "web-02", "protected_instances", "attachFail", "attachReplicationPair",
         ago(days=1), 2, 0),
        (web, "web-03", "protected_instances", "startFail", "startServerGroup",
         ago(days=9), 2, 0),
        (web, "web-03", "protected_instances", "stopFail", "stopServerGroup",
         ago(days=5), 2, 1),
        (web, "web-03", "protected_instances", "startFail", "startServerGroup",
         ago(hours=1), 2, 2),
        (web, "web-data-rep", "replications", "expandFail", "expandReplicationPair",
         ago(days=8), 0, 0),
        (db, "prod-db-01", "protected_instances", "detachFail", "detachReplicationPair",
         ago(days=20), 2, 0),
        (db, "db-replica-02", "protected_instances", "failoverFail", "failoverServerGroup",
         ago(days=40), 4, 0),
        (db, "drill-2024-q1", "disaster_recovery_drills", "createFail",
         "createDisasterRecoveryDrill", ago(days=2), 5, 0),
        (db, "drill-2023-q4", "disaster_recovery_drills", "deleteFail",
         "deleteDisasterRecoveryDrill", ago(days=12), 5, 0),
        (db, "db-03", "protected_instances", "reverseFail", "reverseServerGroup",
         "unknown", 4, 0),
        (analytics, "etl-01", "protectedInstance", "resizeFail", "resizeProtectedInstance",
         ago(days=3), 1, 0),
        (analytics, "etl-02", "protected_instances", "reprotectFail", "reprotectServerGroup",
         ago(days=6, hours=23), 4, 0),
        (analytics, "etl-03", "protected_instances", "stopFail", "stopServerGroup",
         ago(hours=-1), 2, 0),
        (analytics, "etl-rep-04", "replications", "deleteFail", "detachReplicationPair",
         ago(days=15), 0, 0),
    ]  # fmt: skip
    jobs: list[tuple[JobRecord, str | None]] = []
    for group, name, rtype, status, jtype, begin, error, n in rows:
        code, reason = _ERRORS[error]
        record = _record(
            resource_id=uid("resource/" + name),
            resource_name=name,
            resource_type=rtype,
            failure_status=status,
            job_id=job_id(f"{name}/{n}"),
            job_type=jtype,
            begin_time=begin,
            error_code=code,
            fail_reason=reason,
        )
        jobs.append((record, group))
    return groups, jobs


def cts_trace(
    resource_id: object,
    *,
    now: datetime,
    service_type: str = "SDRS",
    trace_name: str = "createProtectedInstance",
    resource_type: str = "protectedInstance",
    resource_name: str = "",
    code: int | str = 400,
    trace_type: str = "ApiCall",
    request: object = None,
    project_id: str | None = None,
    read_only: bool | None = None,
) -> dict[str, Any]:
    """A CTS trace of an SDRS operation, in the fields of the CTS trace structure.

    ``resource_id`` may be an object, as the FunctionGraph CTS trigger sample shows it.
    Wrap it as ``{"cts": trace}`` for a FunctionGraph CTS trigger, or pass it to
    ``eventgrid_cloudtrace`` for the EventGrid shape.
    """
    millis = int(now.timestamp() * 1000)
    trace: dict[str, Any] = {
        "time": millis,
        "user": None if trace_type == "SystemAction" else {
            "name": "ops", "id": "5b726c4fbfd84821ba866bafaaf56aa1",
            "domain": {"name": "acme", "id": "b2b3853af40448fcb9e40dc3b89505ba"},
        },
        "request": json.dumps(request) if request is not None else "",
        "response": "",
        "code": code,
        "service_type": service_type,
        "event_type": "system",
        "resource_type": resource_type,
        "resource_name": resource_name,
        "resource_id": resource_id,
        "source_ip": None if trace_type == "SystemAction" else "192.0.2.10",
        "trace_name": trace_name,
        "trace_rating": "warning" if str(code).startswith(("4", "5")) else "normal",
        "trace_type": trace_type,
        "api_version": "v1",
        "record_time": millis + 120,
        "trace_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"trace:{resource_id}:{millis}")),
    }
    if project_id is not None:
        trace["project_id"] = project_id
    if read_only is not None:
        trace["read_only"] = read_only
    return trace


def eventgrid_cloudtrace(trace: dict[str, Any], *, service: str = "SDRS") -> dict[str, Any]:
    """The CloudEvent (structured JSON) EventGrid delivers for a cloud-service trace."""
    kind = str(trace.get("trace_type") or "ApiCall")
    return {
        "specversion": "1.0",
        "id": str(trace.get("trace_id") or uuid.uuid4()),
        "source": f"HC.{service}",
        "type": f"{service}:CloudTrace:{kind}",
        "datacontenttype": "application/json",
        "subject": str(trace.get("resource_name") or trace.get("trace_name") or ""),
        "time": datetime.fromtimestamp(int(trace.get("time") or 0) / 1000, UTC)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": trace,
    }


BulkRow = tuple[bytes, str | None, float, str, str]
"""One bulk record ready for the stand-in: its JSON, its group (None: the top level), its
``begin_time`` as POSIX seconds, its ``resource_id`` and its ``job_id``."""

_DAY_MS = 86_400_000


def bulk_rows(
    n_tasks: int,
    n_groups: int,
    now: datetime,
    expired: bool = True,
    *,
    seed: int = 0,
    top_level_share: float = 0.05,
) -> tuple[list[Group], Iterator[BulkRow]]:
    """``bulk_world`` as the stand-in loads it, fast: each record encoded once, made as
    it is consumed (1,000,000 of them in seconds, never all as dicts at once)."""
    rng = random.Random(seed)

    def uuid4_like(bits: int) -> str:
        bits = (bits & ~(0xF << 76)) | (0x4 << 76)  # version 4
        bits = (bits & ~(0xC << 60)) | (0x8 << 60)  # RFC 4122 variant
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    groups = [Group(uuid4_like(rng.getrandbits(128)), f"bulk-pg-{i:04d}")
              for i in range(n_groups)]
    top_level = n_tasks if not groups else int(n_tasks * top_level_share)
    now_ms = int(now.timestamp() * 1000)
    low_ms, span_ms = ((8 * _DAY_MS, 82 * _DAY_MS) if expired
                       else (60_000, 6 * _DAY_MS - 60_000))
    statuses = [(status, _JOB_TYPES[status]) for status in _JOB_TYPES]
    kinds = ["protected_instances", "protectedInstance", "replications", "disaster_recovery_drills"]
    days: dict[int, str] = {}

    def stamp(ms: int) -> str:
        day, rest = divmod(ms, _DAY_MS)
        date = days.get(day)
        if date is None:
            date = days[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")
        seconds, millis = divmod(rest, 1000)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        return f"{date}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"

    def rows() -> Iterator[BulkRow]:
        for i in range(n_tasks):
            group = None if i < top_level else groups[(i - top_level) % len(groups)].id
            bits = rng.getrandbits(320)
            resource_id = uuid4_like(bits & ((1 << 128) - 1))
            job_id = f"{(bits >> 128) & ((1 << 128) - 1):032x}"
            extra = bits >> 256
            begin_ms = now_ms - low_ms - (extra & 0xFFFFFFFFFF) % span_ms
            status, job_type = statuses[(extra >> 40) % len(statuses)]
            code, reason = _ERRORS[(extra >> 48) % len(_ERRORS)]
            kind = "server_groups" if group is None else kinds[(extra >> 56) % len(kinds)]
            body = (
                f'{{"job_status": "FAIL", "resource_id": "{resource_id}", '
                f'"resource_name": "bulk-{i:06d}", "resource_type": "{kind}", '
                f'"failure_status": "{status}", "job_id": "{job_id}", '
                f'"job_type": "{job_type}", "begin_time": "{stamp(begin_ms)}", '
                f'"error_code": "{code}", "fail_reason": "{reason}"}}'
            ).encode()
            yield body, group, begin_ms / 1000, resource_id, job_id

    return groups, rows()


def bulk_world(
    n_tasks: int,
    n_groups: int,
    now: datetime,
    expired: bool = True,
    *,
    seed: int = 0,
    top_level_share: float = 0.05,
) -> World:
    """``n_tasks`` failures with unique resource ids, spread over ``n_groups`` groups.

    A ``top_level_share`` of them is at the top level (all of them without groups).
    ``expired``: 8 to 90 days old, else 1 minute to 6 days. Deterministic per seed; the
    same records as :func:`bulk_rows` (which the stand-in loads faster).
    """
    groups, rows = bulk_rows(n_tasks, n_groups, now, expired, seed=seed,
                             top_level_share=top_level_share)
    return groups, [(json.loads(body), group) for body, group, *_ in rows]
