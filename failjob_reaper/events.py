"""Turn trigger input into requests for the reaper, rejecting bad input early.

Pure functions: no I/O. Whatever comes in (a CloudEvent, an HTTP body, a
FunctionGraph payload) becomes a ``TaskRequest``, a ``SweepRequest`` or a
``Rejected``. Ids are validated here, before they can reach a URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from failjob_reaper._text import json_kind, printable
from failjob_reaper.errors import InvalidInput
from failjob_reaper.ids import is_valid_id, validate_id
from failjob_reaper.outcomes import Causation
from failjob_reaper.outcomes import Trigger as Trigger  # defined with the outcomes it names

PING_TYPE = "dev.knative.sources.ping"

# Fields of an input that name a task, most specific first. `failure_job_id` is
# matched against the configured id field of the listing (SDRS_FAILURE_JOB_ID_FIELD).
_TASK_KEYS = ("failure_job_id", "job_id", "resource_id")
_ID_KEYS = (*_TASK_KEYS, "server_group_id", "project_id")


@dataclass(frozen=True)
class EventTypes:
    job_failed: str = "sdrs.job.failed"
    expired: str = "sdrs.failurejob.expired"
    sweep: str = "sdrs.failurejob.sweep"


@dataclass(frozen=True)
class TaskRequest:
    """Decide one task, named by ``task_id`` in record field ``match_field``."""

    task_id: str
    match_field: str
    trigger: Trigger
    causation: Causation
    server_group_id: str | None = None
    dry_run: bool = False
    force: bool = False


@dataclass(frozen=True)
class SweepRequest:
    trigger: Trigger
    causation: Causation
    dry_run: bool = False
    server_group_id: str | None = None


@dataclass(frozen=True)
class ResourceRequest:
    """Decide every failed task of one ``resource_id`` (a CTS trace names a resource).

    ``server_group_id`` is only a hint of where to look first.
    """

    resource_id: str
    trigger: Trigger
    causation: Causation
    server_group_id: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class Rejected:
    reason: str
    trigger: Trigger
    causation: Causation
    task_id: str | None = None


Request = TaskRequest | SweepRequest | ResourceRequest | Rejected


def parse_cloudevent(
    attributes: Mapping[str, Any],
    data: object,
    *,
    types: EventTypes,
    project_id: str,
    id_field: str,
) -> Request:
    """Map one input CloudEvent (attributes + data) onto a request."""
    causation = causation_of(attributes)
    event_type = attributes.get("type")
    if event_type in (PING_TYPE, types.sweep):
        trigger: Trigger = "timer" if event_type == PING_TYPE else "event"
        try:
            return sweep_request(data, project_id=project_id, trigger=trigger,
                                 causation=causation)
        except InvalidInput as exc:
            return Rejected(str(exc), trigger, causation)
    if isinstance(event_type, str) and ":CloudTrace:" in event_type:
        from failjob_reaper import cts  # cts builds on this module

        if cts.is_cloudtrace_event(attributes):  # EventGrid cloud-service event: a CTS trace
            try:
                trace = _decode(data)
            except InvalidInput as exc:
                return Rejected(str(exc), "event", causation)
            return cts.trace_request(trace, project_id=project_id, trigger="event",
                                     causation=causation,
                                     service=cts.cloudevent_service(attributes))
    try:
        payload = _decode(data)
        if event_type in (types.job_failed, types.expired):
            return task_request(
                payload, project_id=project_id, id_field=id_field,
                trigger="event", causation=causation, allow_force=False,
            )
    except InvalidInput as exc:
        return Rejected(str(exc), "event", causation, _safe_task_id(data))
    return Rejected(
        f"unsupported event type {printable(event_type)}", "event", causation,
        _safe_task_id(data),
    )


def task_request(
    payload: object,
    *,
    project_id: str,
    id_field: str,
    trigger: Trigger,
    causation: Causation,
    allow_force: bool,
) -> TaskRequest:
    """A request to decide one task from an event's data or a /retry body."""
    if not isinstance(payload, dict):
        raise InvalidInput("data must be a JSON object naming the failed task")
    _check_ids(payload)
    _check_project(payload, project_id)
    for key in _TASK_KEYS:
        if payload.get(key) is not None:  # null counts as absent, as in _check_ids
            match_field = id_field if key == "failure_job_id" else key
            task_id = validate_id(payload[key], key)
            break
    else:
        raise InvalidInput("data names no task: expected failure_job_id, job_id or resource_id")
    force = _optional_bool(payload, "force")
    if force and not allow_force:
        raise InvalidInput("force is only accepted by the manual HTTP API")
    return TaskRequest(
        task_id=task_id,
        match_field=match_field,
        trigger=trigger,
        causation=causation,
        server_group_id=payload.get("server_group_id"),
        dry_run=_optional_bool(payload, "dry_run"),
        force=force,
    )


_SWEEP_KEYS = frozenset({"dry_run", "server_group_id", "project_id"})


def sweep_request(
    data: object, *, project_id: str, trigger: Trigger, causation: Causation
) -> SweepRequest:
    """The one strict parser of sweep data, for every path (sweep event, PingSource,
    FunctionGraph timer ``user_event``, ``POST /sweep``).

    ``data`` raw (bytes, text) or parsed JSON. Absent or empty data (nothing, blank
    text, JSON ``null``, ``{}``) sweeps; an object with only the known keys, each of the
    right type, sweeps as it says; anything else raises InvalidInput: a typo must never
    turn an intended dry run into deletes.
    """
    payload = _decode(data)
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidInput(
            'sweep data must be a JSON object such as {"dry_run": true} or empty, not '
            f"{json_kind(payload)}"
        )
    unknown = sorted(str(key) for key in payload if key not in _SWEEP_KEYS)
    if unknown:
        raise InvalidInput(
            f"sweep data: unknown key {printable(unknown[0])}; known keys: "
            + ", ".join(sorted(_SWEEP_KEYS))
        )
    if "dry_run" in payload and not isinstance(payload["dry_run"], bool):
        raise InvalidInput("dry_run must be true or false")
    _check_ids(payload)
    _check_project(payload, project_id)
    return SweepRequest(
        trigger=trigger,
        causation=causation,
        dry_run=payload.get("dry_run", False),
        server_group_id=payload.get("server_group_id"),
    )


def causation_of(attributes: Mapping[str, Any]) -> Causation:
    def text(name: str) -> str | None:
        value = attributes.get(name)
        return value if isinstance(value, str) and value else None

    traceparent, tracestate = trace_context(text("traceparent"), text("tracestate"))
    return Causation(
        id=text("id"),
        source=text("source"),
        type=text("type"),
        traceparent=traceparent,
        tracestate=tracestate,
    )


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE = re.compile(r"[\x20-\x7e]{1,512}")


def trace_context(
    traceparent: str | None, tracestate: str | None
) -> tuple[str | None, str | None]:
    """W3C trace context to copy onto outcomes; an invalid traceparent is dropped, not copied."""
    if not traceparent or not _TRACEPARENT.fullmatch(traceparent.strip()):
        return None, None
    traceparent = traceparent.strip()
    version, trace_id, parent_id, _ = traceparent.split("-")
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None, None
    if tracestate is not None:
        tracestate = tracestate.strip()
        if not _TRACESTATE.fullmatch(tracestate):
            tracestate = None
    return traceparent, tracestate or None


def _decode(data: object) -> object:
    # Binary-mode events with a JSON content type arrive decoded; others as bytes/str.
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("data is not UTF-8") from None
    if isinstance(data, str):
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidInput("data is not valid JSON") from None
    return data


def _check_ids(payload: Mapping[str, Any]) -> None:
    # Every id-like field must be a plain token, used or not: a path trick anywhere is hostile.
    for key in _ID_KEYS:
        if key in payload and payload[key] is not None:
            validate_id(payload[key], key)


def _check_project(payload: Mapping[str, Any], project_id: str) -> None:
    other = payload.get("project_id")
    if other is not None and other != project_id:
        raise InvalidInput(f"event is for project {other}, this deployment serves {project_id}")


def _optional_bool(payload: Mapping[str, Any], key: str) -> bool:
    value = payload.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{key} must be true or false")
    return value


def _safe_task_id(data: object) -> str | None:
    """A task id for the subject of a rejection, only if it is a plain token."""
    if isinstance(data, dict):
        for key in _TASK_KEYS:
            if is_valid_id(data.get(key)):
                return str(data[key])
    return None
