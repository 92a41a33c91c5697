"""Cloud Trace Service (CTS) traces in: which resource a trace names, or why it is refused.

Pure functions, no I/O. SDRS publishes no "job failed" event of its own; what
Huawei Cloud delivers about SDRS operations are CTS traces (docs/events.md):

* FunctionGraph's CTS trigger calls ``handler`` with ``{"cts": {trace}}``
  (an older shape, read by Huawei's Cloud Custodian fork, is ``{"data": {trace}}``);
* EventGrid delivers cloud-service CloudEvents with ``source`` ``HC.SDRS`` (or
  ``HC.BRS``, SDRS's newer name), ``type`` ``SDRS:CloudTrace:ApiCall`` (or
  ``ConsoleAction``, ``SystemAction``) and the trace as ``data``.

A trace is a hint that the failed tasks of its resource may have changed: the
function then decides every failed task of that ``resource_id`` on its
authoritative record (keep-latest applies at once when a new failure arrives).
Traces of other services, read-only operations and traces that name no usable
resource are refused with a reason (the caller acknowledges them as ``rejected``).

Field names follow the trace model of Huawei's SDK (``huaweicloudsdkcts`` v3
``Traces``: ``resource_id``, ``resource_type``, ``trace_name``, ``service_type``,
``code`` (a string there, an integer in the trigger sample), ``read_only``, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from failjob_reaper.events import Rejected, ResourceRequest, Trigger
from failjob_reaper.ids import is_valid_id
from failjob_reaper.outcomes import Causation

SERVICES = frozenset({"SDRS", "BRS"})
"""``service_type`` values of SDRS traces (SDRS is now also named BRS)."""

CLOUD_SOURCES = frozenset(f"HC.{service}" for service in SERVICES)
_CLOUDTRACE_TYPE = re.compile(r"(?P<service>[A-Za-z0-9]+):CloudTrace:(?P<kind>[A-Za-z]+)")

# Operations that only read: CTS marks them `read_only` (newer traces); older ones
# only say it in the name. Neither can have changed a failed task.
_READ_ONLY_NAME = re.compile(r"(list|show|get|query|count|check|describe)[A-Z_]", re.ASCII)
# Group-level resources: their failed tasks are listed at the top level, not in a group.
_GROUP_TYPES = frozenset({"servergroup", "servergroups", "protectiongroup", "protectiongroups"})
_MAX_REQUEST_CHARS = 65536


@dataclass(frozen=True)
class TraceTarget:
    """Decide every failed task of ``resource_id``; ``server_group_id`` is a hint only."""

    resource_id: str
    server_group_id: str | None
    trace_id: str | None
    trace_name: str | None


class TraceRefused(ValueError):
    """The trace names nothing this function acts on; the message says why."""


def unwrap_trigger_payload(event: Mapping[str, Any]) -> object | None:
    """The trace in a FunctionGraph CTS trigger payload, or None when it is not one.

    ``{"cts": {...}}`` (the trigger's documented shape) or ``{"data": {...}}`` with a
    trace inside (the shape older Custodian code read); nothing else.
    """
    if set(event) == {"cts"}:
        trace: object = event["cts"]
        return trace
    if set(event) == {"data"} and isinstance(event["data"], Mapping):
        data = event["data"]
        if "trace_id" in data or "service_type" in data or "trace_name" in data:
            return data
    return None


def is_cloudtrace_event(attributes: Mapping[str, Any]) -> bool:
    """A CloudEvent that carries a CTS trace: type ``<SERVICE>:CloudTrace:<kind>``.

    Any service's trace qualifies (it is then refused as another service's, not as an
    unknown type); a source ``HC.SDRS``/``HC.BRS`` with another type does not.
    """
    event_type = attributes.get("type")
    return isinstance(event_type, str) and _CLOUDTRACE_TYPE.fullmatch(event_type) is not None


def cloudevent_service(attributes: Mapping[str, Any]) -> str | None:
    """The service a cloud-service CloudEvent is about, from its type (``SDRS:...``)."""
    event_type = attributes.get("type")
    match = _CLOUDTRACE_TYPE.fullmatch(event_type) if isinstance(event_type, str) else None
    return match["service"].upper() if match else None


def trace_target(
    trace: object, *, project_id: str, service: str | None = None
) -> TraceTarget:
    """The resource ``trace`` names; TraceRefused with the reason when it names none.

    ``service``: the service the envelope names (an EventGrid type ``SDRS:CloudTrace:*``),
    used when the trace itself carries no ``service_type``; the trace's own wins.
    """
    if not isinstance(trace, Mapping):
        raise TraceRefused("a CTS trace must be a JSON object")
    service = trace.get("service_type") or service
    if not isinstance(service, str) or service.upper() not in SERVICES:
        raise TraceRefused(
            f"trace of service {_printable(service)}, not SDRS: nothing to decide"
        )
    trace_name = _text(trace.get("trace_name"))
    if trace.get("read_only") is True or (trace_name and _READ_ONLY_NAME.match(trace_name)):
        raise TraceRefused(
            f"trace {_printable(trace_name)} is a read-only operation: nothing can have changed"
        )
    other = trace.get("project_id")
    if other is not None and other != project_id:
        if not is_valid_id(other):
            raise TraceRefused("trace project_id must be 1-64 letters, digits, '-' or '_'")
        raise TraceRefused(f"trace is for project {other}, this deployment serves {project_id}")
    resource_id = _resource_id(trace.get("resource_id"))
    resource_type = _text(trace.get("resource_type")) or ""
    group_hint: str | None
    if resource_type.replace("_", "").replace("-", "").lower() in _GROUP_TYPES:
        group_hint = None  # a group's own failures are listed at the top level
    else:
        group_hint = _group_in_request(trace.get("request"))
    trace_id = _text(trace.get("trace_id"))
    return TraceTarget(
        resource_id=resource_id,
        server_group_id=group_hint,
        trace_id=trace_id if is_valid_id(trace_id) else None,
        trace_name=trace_name if trace_name and len(trace_name) <= 64 else None,
    )


def trace_request(
    trace: object,
    *,
    project_id: str,
    trigger: Trigger,
    causation: Causation,
    service: str | None = None,
) -> ResourceRequest | Rejected:
    """The request a trace makes: decide every failed task of its resource, or rejected."""
    try:
        target = trace_target(trace, project_id=project_id, service=service)
    except TraceRefused as exc:
        # No task id: what a refused trace names is a resource, maybe another service's.
        return Rejected(str(exc), trigger, causation)
    return ResourceRequest(resource_id=target.resource_id, trigger=trigger,
                           causation=causation, server_group_id=target.server_group_id)


def _resource_id(value: object) -> str:
    # The trigger sample shows `resource_id` as an object; the trace model as a string.
    if isinstance(value, Mapping):
        inner = next((value[key] for key in ("id", "resource_id") if key in value), None)
        if inner is None:
            raise TraceRefused("trace names no resource (resource_id is an empty object)")
        value = inner
    if value is None or value == "":
        raise TraceRefused("trace names no resource (no resource_id)")
    if not is_valid_id(value):
        raise TraceRefused(
            "trace resource_id must be 1-64 letters, digits, '-' or '_' (one resource)"
        )
    return str(value)


def _group_in_request(request: object) -> str | None:
    """A ``server_group_id`` in the trace's request body (a JSON string or object), if any.

    Only a hint, two levels deep at most; a value that is not a plain token is ignored
    (it never reaches a URL, and a hint that names no group only costs a lookup).
    """
    if isinstance(request, str):
        if len(request) > _MAX_REQUEST_CHARS:
            return None
        try:
            request = json.loads(request)
        except (ValueError, RecursionError):
            return None
    if not isinstance(request, Mapping):
        return None
    candidates: list[object] = [request.get("server_group_id")]
    for value in request.values():
        if isinstance(value, Mapping):
            candidates.append(value.get("server_group_id"))
    for candidate in candidates:
        if is_valid_id(candidate):
            return str(candidate)
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _printable(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
