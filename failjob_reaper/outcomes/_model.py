"""What an outcome carries (SPEC section 7) and how its CloudEvent id is made.

``Outcome.as_data()`` and ``SweepSummary.as_data()`` are declared to return the
TypedDicts ``OutcomeData`` and ``SweepSummaryData`` (``_data``): mypy holds the two
together, and the manual API's OpenAPI document is generated from the TypedDicts
(``failjob_reaper.http_api``), so what the document says is what is sent. A new
field of the event data is added in two places: the TypedDict and ``as_data``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

if TYPE_CHECKING:
    from failjob_reaper.outcomes._data import (
        CausationData,
        ErrorData,
        OutcomeData,
        SweepSummaryData,
    )

TYPE_PREFIX = "sdrs.failurejob."
OutcomeName = Literal[
    "deleted",
    "already_deleted",
    "retained",
    "would_delete",
    "delete_failed",
    "rejected",
]
OUTCOMES: tuple[OutcomeName, ...] = get_args(OutcomeName)
SWEEP_COMPLETED: Final = "sweep_completed"
Trigger = Literal["event", "timer", "http", "cli"]
"""What started the decision (the ``trigger`` of every outcome)."""

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
    deduplicated: bool = True
    """False when no repeat can name the input again (a manual call without an
    ``Idempotency-Key`` gets a fresh id): then no idempotency record is kept for it."""

    def as_dict(self) -> CausationData:
        return {"id": self.id, "source": self.source, "type": self.type}


@dataclass(frozen=True)
class Outcome:
    """One decided task (SPEC section 7, "Data")."""

    outcome: OutcomeName
    project_id: str
    failure_job_id: str | None
    trigger: Trigger
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
    def id_key(self) -> str | None:
        """What names the task in the outcome's id: its failure_job_id, else (a record
        without a usable id) its job_id, so that two such records never share an id."""
        if self.failure_job_id:
            return self.failure_job_id
        job_id = self.job.get("job_id") if self.job is not None else None
        return f"job_id:{job_id}" if isinstance(job_id, str) and job_id else None

    @property
    def transient_failure(self) -> bool:
        """A failure that a redelivery of the input may cure."""
        # delete_failed after transient errors; retained only because a listing was cut
        # short (the deadline, a 5xx): listing again may decide it.
        return self.outcome in ("delete_failed", "retained") and bool(
            self.error and self.error.get("retryable"))

    def as_data(self) -> OutcomeData:
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
            "error": _error_data(self.error),
            "causation": self.causation.as_dict(),
        }


@dataclass(frozen=True)
class SweepSummary:
    """The result of one sweep, sent as ``sdrs.failurejob.sweep_completed``."""

    project_id: str
    trigger: Trigger
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
    skipped: bool = False
    skipped_reason: str | None = None
    """Set when another sweep of the project held the lease: this one did nothing."""

    @property
    def transient_failure(self) -> bool:
        return bool(self.error and self.error.get("retryable"))

    def as_data(self) -> SweepSummaryData:
        counts = self.outcomes
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
            "outcomes": {
                "deleted": counts.get("deleted", 0),
                "already_deleted": counts.get("already_deleted", 0),
                "retained": counts.get("retained", 0),
                "would_delete": counts.get("would_delete", 0),
                "delete_failed": counts.get("delete_failed", 0),
                "rejected": counts.get("rejected", 0),
            },
            "rules": dict(self.rules),
            "duration_seconds": round(self.duration_seconds, 3),
            "partial": self.partial,
            "partial_reason": self.partial_reason,
            "aborted": self.aborted,
            "aborted_reason": self.aborted_reason,
            "skipped": self.skipped,
            "skipped_reason": self.skipped_reason,
            "error": _error_data(self.error),
            "causation": self.causation.as_dict(),
        }


def outcome_id(causation: Causation, task_id: str | None, event_type: str) -> str:
    """Deterministic: a redelivered input yields outcomes with the same ids."""
    key = "\x1f".join(
        (causation.source or "", causation.id or "", task_id or "", event_type)
    )
    return str(uuid.uuid5(_ID_NAMESPACE, key))


def _error_data(error: Mapping[str, Any] | None) -> ErrorData | None:
    if error is None:
        return None
    code = error.get("code")
    return {"code": None if code is None else str(code), "message": str(error.get("message", "")),
            "retryable": bool(error.get("retryable"))}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
