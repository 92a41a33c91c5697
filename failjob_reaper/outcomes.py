"""Outcome CloudEvents: what they carry, how their ids are made, where they go.

Every decision becomes one ``Outcome``; ``Publisher`` turns it into a
CloudEvent (SPEC section 7) and hands it to an ``Emitter``: the sink from
``K_SINK`` in binary mode, or one JSON line on stdout when there is none.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

import httpx
from cloudevents.conversion import to_binary, to_dict
from cloudevents.http import CloudEvent
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from failjob_reaper._transport import transport_for
from failjob_reaper.errors import OutcomeDeliveryError

TYPE_PREFIX = "sdrs.failurejob."
OUTCOMES = (
    "deleted",
    "already_deleted",
    "retained",
    "would_delete",
    "delete_failed",
    "rejected",
)
SWEEP_COMPLETED = "sweep_completed"

log = logging.getLogger("failjob_reaper")

# Fixed namespace so that the same (input, task, outcome) always gets the same id.
_ID_NAMESPACE = uuid.UUID("6f1c3c52-5b0e-4f0e-9d53-6a4f7f2b9a10")


@dataclass(frozen=True)
class Causation:
    """The input that caused an outcome: its CloudEvent identity and trace context."""

    id: str | None = None
    source: str | None = None
    type: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"id": self.id, "source": self.source, "type": self.type}


@dataclass(frozen=True)
class Outcome:
    """One decided task (SPEC section 7, "Data")."""

    outcome: str
    project_id: str
    failure_job_id: str | None
    trigger: str
    dry_run: bool
    causation: Causation
    rule: str | None = None
    reason: str = ""
    retain_until: datetime | None = None
    status_code: int | None = None
    attempts: int = 0
    job: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    forced: bool = False
    server_group_id: str | None = None

    @property
    def transient_failure(self) -> bool:
        """A failure that a redelivery of the input may cure."""
        return self.outcome == "delete_failed" and bool(self.error and self.error.get("retryable"))

    def as_data(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "project_id": self.project_id,
            "failure_job_id": self.failure_job_id,
            "server_group_id": self.server_group_id,
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "forced": self.forced,
            "rule": self.rule,
            "reason": self.reason,
            "retain_until": _iso(self.retain_until),
            "status_code": self.status_code,
            "attempts": self.attempts,
            "job": dict(self.job) if self.job is not None else None,
            "error": dict(self.error) if self.error is not None else None,
            "causation": self.causation.as_dict(),
        }


@dataclass(frozen=True)
class SweepSummary:
    """The result of one sweep, sent as ``sdrs.failurejob.sweep_completed``."""

    project_id: str
    trigger: str
    dry_run: bool
    causation: Causation
    listed: int = 0
    groups: int = 0
    decided: int = 0
    deleted: int = 0
    outcomes: Mapping[str, int] = field(default_factory=dict)
    rules: Mapping[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0
    partial: bool = False
    partial_reason: str | None = None
    aborted: bool = False
    aborted_reason: str | None = None
    error: Mapping[str, Any] | None = None
    server_group_id: str | None = None

    @property
    def transient_failure(self) -> bool:
        return bool(self.error and self.error.get("retryable"))

    def as_data(self) -> dict[str, Any]:
        return {
            "outcome": SWEEP_COMPLETED,
            "project_id": self.project_id,
            "server_group_id": self.server_group_id,
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "listed": self.listed,
            "groups": self.groups,
            "decided": self.decided,
            "deleted": self.deleted,
            "outcomes": {name: self.outcomes.get(name, 0) for name in OUTCOMES},
            "rules": dict(self.rules),
            "duration_seconds": round(self.duration_seconds, 3),
            "partial": self.partial,
            "partial_reason": self.partial_reason,
            "aborted": self.aborted,
            "aborted_reason": self.aborted_reason,
            "error": dict(self.error) if self.error is not None else None,
            "causation": self.causation.as_dict(),
        }


def outcome_id(causation: Causation, task_id: str | None, event_type: str) -> str:
    """Deterministic: a redelivered input yields outcomes with the same ids."""
    key = "\x1f".join(
        (causation.source or "", causation.id or "", task_id or "", event_type)
    )
    return str(uuid.uuid5(_ID_NAMESPACE, key))


class Emitter(Protocol):
    def emit(self, event: CloudEvent) -> None: ...


class Publisher:
    """Builds outcome CloudEvents and hands them to the emitter.

    An event the emitter refuses is kept in a bounded outbox and sent again,
    oldest first, before the next one: a task deleted while the sink was down is
    still reported once the sink is back (its id is stable, so a consumer that
    saw it already can drop the repeat).
    """

    def __init__(
        self,
        emitter: Emitter,
        *,
        source: str,
        overrides: Mapping[str, Any] | None = None,
        outbox_limit: int = 10_000,
    ) -> None:
        self.emitter = emitter
        self.source = source
        self._extensions = dict((overrides or {}).get("extensions", {}))
        self._outbox: deque[CloudEvent] = deque()
        self._outbox_limit = outbox_limit
        self._flush_lock = threading.Lock()

    def outcome(self, outcome: Outcome) -> CloudEvent:
        return self._send(self.outcome_event(outcome))

    def sweep_completed(self, summary: SweepSummary) -> CloudEvent:
        event = self._event(
            TYPE_PREFIX + SWEEP_COMPLETED, None, summary.causation, summary.as_data()
        )
        return self._send(event)

    def defer(self, outcome: Outcome) -> None:
        """Queue without trying: the caller knows the sink is down right now."""
        self._keep(self.outcome_event(outcome))

    def outcome_event(self, outcome: Outcome) -> CloudEvent:
        return self._event(
            TYPE_PREFIX + outcome.outcome,
            outcome.failure_job_id,
            outcome.causation,
            outcome.as_data(),
        )

    @property
    def pending(self) -> int:
        return len(self._outbox)

    def flush(self) -> None:
        """Send what the outbox holds, oldest first; raise OutcomeDeliveryError if refused."""
        if not self._outbox:  # the common case takes no lock
            return
        with self._flush_lock:
            while self._outbox:
                self.emitter.emit(self._outbox[0])
                self._outbox.popleft()

    def _send(self, event: CloudEvent) -> CloudEvent:
        try:
            self.flush()
            self.emitter.emit(event)
        except OutcomeDeliveryError:
            self._keep(event)
            raise
        return event

    def _keep(self, event: CloudEvent) -> None:
        if len(self._outbox) >= self._outbox_limit:
            lost = self._outbox.popleft()
            log.error("outbox full: outcome %s %s for %s dropped", lost["id"], lost["type"],
                      lost.get("subject") or "-")
        self._outbox.append(event)
        log.warning("outcome %s %s for %s not delivered; kept to send again", event["id"],
                    event["type"], event.get("subject") or "-")

    def _event(
        self, event_type: str, subject: str | None, causation: Causation, data: dict[str, Any]
    ) -> CloudEvent:
        attributes: dict[str, Any] = {
            **self._extensions,
            "type": event_type,
            "source": self.source,
            "id": outcome_id(causation, subject or "sweep", event_type),
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
        }
        if subject:
            attributes["subject"] = subject
        if causation.traceparent:
            attributes["traceparent"] = causation.traceparent
            if causation.tracestate:
                attributes["tracestate"] = causation.tracestate
        return CloudEvent(attributes, data)


class _SinkRefused(Exception):
    pass


class SinkEmitter:
    """POSTs each event to ``K_SINK`` in binary mode; retries a little, then raises."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.attempts = attempts
        # Its own client and connections: the SDRS credentials must never travel to the sink.
        # A POST that the transport sends again on a fresh connection (it could not be sent
        # on a reused one) is harmless anyway: outcome ids are deterministic, so a repeat
        # is recognisable as such.
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport or transport_for(url),
            follow_redirects=False,
        )

    def emit(self, event: CloudEvent) -> None:
        headers, body = to_binary(event)
        retrying = Retrying(
            retry=retry_if_exception_type((_SinkRefused, httpx.TransportError)),
            wait=wait_random_exponential(multiplier=0.1, max=1.0),
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    response = self._http.post(self.url, headers=headers, content=body)
                    if not response.is_success:
                        raise _SinkRefused(f"sink answered {response.status_code}")
        except (_SinkRefused, httpx.TransportError) as exc:
            raise OutcomeDeliveryError(
                f"outcome {event['type']} for {event.get('subject') or '-'} not delivered: "
                f"{exc or type(exc).__name__}"
            ) from None

    def close(self) -> None:
        self._http.close()


class StdoutEmitter:
    """One structured-mode JSON line per event, for runs without a sink."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, event: CloudEvent) -> None:
        line = json.dumps(to_dict(event), separators=(",", ":"), default=str)
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
