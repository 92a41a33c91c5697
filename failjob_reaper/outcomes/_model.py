"""What an outcome carries (SPEC section 7) and how its CloudEvent id is made."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
    skipped: bool = False
    skipped_reason: str | None = None
    """Set when another sweep of the project held the lease: this one did nothing."""

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
            "skipped": self.skipped,
            "skipped_reason": self.skipped_reason,
            "error": dict(self.error) if self.error is not None else None,
            "causation": self.causation.as_dict(),
        }


def outcome_id(causation: Causation, task_id: str | None, event_type: str) -> str:
    """Deterministic: a redelivered input yields outcomes with the same ids."""
    key = "\x1f".join(
        (causation.source or "", causation.id or "", task_id or "", event_type)
    )
    return str(uuid.uuid5(_ID_NAMESPACE, key))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
