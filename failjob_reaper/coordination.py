"""What holds across instances, as the executor uses it (SPEC section 10).

One object per process (``App.shared``), over the ``StateStore`` of
``STATE_URL``: the idempotency records of inputs, the delete journal, the sweep
lease with its fencing token, and the shared deletion budget of a sweep. The
executor calls it at its two doors (every DELETE, every outcome) and the entry
points around each input; it holds no state of its own besides the store.

With the store unreachable (``StateUnavailable``) nothing is deleted: the DELETE
is not sent because its journal entry could not be written, and the input is
answered 5xx so that the trigger delivers it again later (README, "State").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from failjob_reaper.errors import ReaperError
from failjob_reaper.outcomes import Causation, Outcome, SweepSummary
from failjob_reaper.state import StateStore
from failjob_reaper.state.idempotency import Idempotency, fingerprint
from failjob_reaper.state.journal import DeleteJournal
from failjob_reaper.state.lease import SweepLease

BUDGET_TTL = 24 * 3600.0


class SweepFenced(ReaperError):
    """The sweep's lease expired and another sweep took it: this one must stop deleting."""


class BudgetSpent(ReaperError):
    """The sweep's deletions across every instance reached max_deletions_per_sweep."""


@dataclass(frozen=True)
class Timing:
    """How long work may take, for the expiry of in-progress records and of the lease."""

    task_seconds: float
    """The longest one task decision takes: listings, the DELETE, the re-check, the sink."""
    sweep_seconds: float
    """SWEEP_DEADLINE plus reporting."""
    wait_seconds: float = 5.0
    """How long a duplicate waits for the first to finish before it is refused."""


class Shared:
    def __init__(self, store: StateStore, timing: Timing) -> None:
        self.store = store
        self.timing = timing
        self.tasks = Idempotency(store, in_progress_ttl=timing.task_seconds,
                                 wait=timing.wait_seconds)
        self.sweeps = Idempotency(store, in_progress_ttl=timing.sweep_seconds,
                                  wait=timing.wait_seconds)
        self.journal = DeleteJournal(store)
        self.lease = SweepLease(store)

    # -- inputs -----------------------------------------------------------------------

    @staticmethod
    def identity(causation: Causation) -> str | None:
        """An input's identity: its CloudEvent source and id (a manual call's route and
        Idempotency-Key); None when it has none (then it is not deduplicated)."""
        if causation.source and causation.id:
            return f"{causation.source}\x1f{causation.id}"
        return None

    @staticmethod
    def fingerprint_of(kind: str, fields: Mapping[str, Any]) -> str:
        return fingerprint({"kind": kind, **fields})

    # -- the DELETE door -----------------------------------------------------------------

    def before_delete(
        self, failure_job_id: str, causation: Causation, decision: Mapping[str, Any]
    ) -> None:
        """Record the DELETE about to be sent (StateUnavailable: do not send it)."""
        self.journal.sending(failure_job_id, self.identity(causation) or "", decision)

    def spend_budget(self, causation: Causation, limit: int) -> None:
        """One DELETE of a sweep, counted across every instance and every redelivery of
        the sweep's input; BudgetSpent past ``limit`` (the DELETE is then not sent)."""
        key = "budget:" + hashlib.sha256((self.identity(causation) or "").encode()
                                         ).hexdigest()[:40]
        if self.store.incr(key, 1, BUDGET_TTL) > limit:
            raise BudgetSpent(f"max_deletions_per_sweep {limit} reached across instances")

    # -- the outcome door ----------------------------------------------------------------

    def settle(self, outcome: Outcome) -> Outcome:
        """Make ``deleted`` exactly once per DELETE this deployment sent.

        ``deleted``: the journal entry is taken (reported); if another instance had
        reported it already, this one says ``already_deleted``. ``already_deleted``
        (a 404, or not listed any more): if a DELETE of ours is unreported - its sender
        died - this is its report, ``deleted``, with what the journal recorded.
        """
        task = outcome.failure_job_id
        if outcome.dry_run or not task or outcome.outcome not in ("deleted",
                                                                  "already_deleted"):
            return outcome
        sent = self.journal.take_report(task)
        if outcome.outcome == "deleted":
            if sent is None and self.journal.reported(task):
                return replace(outcome, outcome="already_deleted",
                               reason="deleted; reported by another instance")
            return outcome
        if sent is None:
            return outcome
        recorded = sent.decision
        job = recorded.get("job")
        return replace(
            outcome,
            outcome="deleted",
            reason=str(recorded.get("reason") or "deleted by an earlier DELETE of this "
                       "deployment whose sender stopped before reporting it"),
            rule=recorded.get("rule") if isinstance(recorded.get("rule"), str) else outcome.rule,
            job=job if isinstance(job, dict) else outcome.job,
            server_group_id=(recorded.get("server_group_id")
                             if isinstance(recorded.get("server_group_id"), str)
                             else outcome.server_group_id),
            status_code=outcome.status_code,
        )


# -- answers kept by idempotency records, read back ---------------------------------------


def outcome_from_data(data: Mapping[str, Any]) -> Outcome:
    """The Outcome whose ``as_data()`` is ``data`` (a replayed first answer)."""
    causation = data.get("causation") or {}
    return Outcome(
        outcome=str(data["outcome"]),
        project_id=str(data.get("project_id", "")),
        failure_job_id=data.get("failure_job_id"),
        trigger=str(data.get("trigger", "event")),
        dry_run=bool(data.get("dry_run")),
        causation=Causation(**{k: causation.get(k) for k in ("id", "source", "type")}),
        rule=data.get("rule"),
        reason=str(data.get("reason") or ""),
        retain_until=_datetime(data.get("retain_until")),
        status_code=data.get("status_code"),
        attempts=int(data.get("attempts") or 0),
        job=data.get("job"),
        error=data.get("error"),
        forced=bool(data.get("forced")),
        server_group_id=data.get("server_group_id"),
    )


def summary_from_data(data: Mapping[str, Any]) -> SweepSummary:
    """The SweepSummary whose ``as_data()`` is ``data``."""
    causation = data.get("causation") or {}
    names = {"listed", "groups", "decided", "deleted", "partial", "partial_reason",
             "aborted", "aborted_reason", "error", "server_group_id", "skipped",
             "skipped_reason"}
    fields = {name: data[name] for name in names if name in data}
    return SweepSummary(
        project_id=str(data.get("project_id", "")),
        trigger=str(data.get("trigger", "event")),
        dry_run=bool(data.get("dry_run")),
        causation=Causation(**{k: causation.get(k) for k in ("id", "source", "type")}),
        outcomes={k: int(v) for k, v in (data.get("outcomes") or {}).items() if v},
        rules=dict(data.get("rules") or {}),
        duration_seconds=float(data.get("duration_seconds") or 0.0),
        **fields,
    )


def _datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
