"""Exactly once across instances (docs/state.md): each input decided once, each
DELETE this deployment sent reported ``deleted`` once, one sweep at a time, and never
more DELETEs for one sweep input than its plan allowed.

One object per process (``reaper.shared``), over the ``StateStore`` of
``STATE_URL``: the idempotency records of inputs, the delete journal, the sweep
lease with its fencing token, and the shared deletion budget of a sweep. The
executor calls it at its two doors (every DELETE, every outcome) and the entry
points around each input; it holds no state of its own besides the store.

With the store unreachable (``StateUnavailable``) nothing is deleted: the DELETE
is not sent because its journal entry could not be written, and the input is
answered 5xx so that the trigger delivers it again later (docs/state.md).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from failjob_reaper.errors import OutcomeDeliveryError, ReaperError
from failjob_reaper.events import Rejected, SweepRequest, TaskRequest
from failjob_reaper.outcomes import (
    SWEEP_COMPLETED,
    TYPE_PREFIX,
    Causation,
    Outcome,
    Publisher,
    SweepSummary,
    outcome_id,
)
from failjob_reaper.state import StateStore, StateUnavailable
from failjob_reaper.state import keys as state_keys
from failjob_reaper.state.idempotency import (
    Claim,
    Completed,
    Idempotency,
    IdempotencyConflict,
    fingerprint,
)
from failjob_reaper.state.journal import DeleteJournal
from failjob_reaper.state.lease import Busy, Lease, SweepLease

log = logging.getLogger("failjob_reaper")

BUDGET_TTL = state_keys.BUDGET_TTL


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


class TaskRunner(Protocol):
    """What ``Shared.run_task`` needs of the executor (``Reaper``)."""

    publisher: Publisher

    def decide_and_publish(
        self, request: TaskRequest | Rejected,
        recorded: Callable[[Outcome], None] | None = None,
    ) -> Outcome: ...

    def reject(self, request: Rejected) -> Outcome: ...

    def publish_outcome(
        self, outcome: Outcome, recorded: Callable[[Outcome], None] | None = None
    ) -> Outcome: ...


SweepRun = Callable[[Lease | None, Callable[[SweepSummary], None]], SweepSummary]
"""Runs and reports one sweep while holding the lease; calls the second argument with
the summary once it is recorded in the outbox (before it is sent)."""


class ExactlyOnce:
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

    def run_task(
        self, runner: TaskRunner, request: TaskRequest | Rejected, pending: set[str]
    ) -> Outcome:
        """Decide ``request`` once across every instance (``pending``: the ids of outcome
        events still in the outbox after this invocation's flush)."""
        identity = self.identity(request.causation) if request.causation.deduplicated else None
        if identity is None:
            return runner.decide_and_publish(request)
        try:
            begun = self.tasks.begin(identity, self.fingerprint_of("task", _fields(request)))
        except IdempotencyConflict as exc:
            if request.trigger == "http":
                raise
            rejected = Rejected(reason=f"{exc}: decided nothing", trigger=request.trigger,
                                causation=request.causation, task_id=request.task_id)
            return runner.publish_outcome(runner.reject(rejected))
        if isinstance(begun, Completed):
            outcome = outcome_from_data(begun.answer)
            if runner.publisher.outcome_event(outcome)["id"] in pending:
                raise _still_pending(outcome.outcome, outcome.failure_job_id)
            return outcome
        claim = begun
        done: list[bool] = []

        def recorded(outcome: Outcome) -> None:
            # In the outbox now: from here a repeat gets this answer, even if sending fails.
            if not outcome.transient_failure:
                self.tasks.complete(claim, outcome.as_data())
                done.append(True)

        try:
            return runner.decide_and_publish(request, recorded)
        finally:
            if not done:  # nothing final (a transient failure, an error): decide again
                self._abandon(self.tasks, claim)

    def run_sweep(
        self, publisher: Publisher, request: SweepRequest, pending: set[str], run: SweepRun,
        *, project_id: str,
    ) -> SweepSummary:
        """One sweep per project at a time, once per input, across every instance."""
        identity = self.identity(request.causation)
        claim: Claim | None = None
        if identity is not None and request.causation.deduplicated:
            begun = self.sweeps.begin(identity, self.fingerprint_of("sweep", {
                "dry_run": request.dry_run, "server_group_id": request.server_group_id}))
            if isinstance(begun, Completed):
                summary = summary_from_data(begun.answer)
                if _sweep_event_id(publisher, summary) in pending:
                    raise _still_pending("sweep_completed", None)
                return summary
            claim = begun
        done: list[bool] = []

        def recorded(summary: SweepSummary) -> None:
            if claim is not None and not summary.transient_failure:
                self.sweeps.complete(claim, summary.as_data())
                done.append(True)

        try:
            held = self.lease.acquire(identity or "a sweep", self.timing.sweep_seconds)
            if isinstance(held, Busy):
                summary = SweepSummary(
                    project_id=project_id, trigger=request.trigger, dry_run=request.dry_run,
                    causation=request.causation, server_group_id=request.server_group_id,
                    skipped=True,
                    skipped_reason=(f"another sweep of this project is running (lease token "
                                    f"{held.token}): nothing listed, nothing deleted"),
                )
                log.info("sweep_completed skipped: %s", summary.skipped_reason)
                publisher.sweep_completed(summary, recorded=lambda: recorded(summary))
                return summary
            try:
                return run(held, recorded)
            finally:
                with contextlib.suppress(StateUnavailable):
                    self.lease.release(held)
        finally:
            if claim is not None and not done:
                self._abandon(self.sweeps, claim)

    @staticmethod
    def _abandon(idempotency: Idempotency, claim: Claim) -> None:
        with contextlib.suppress(StateUnavailable):  # then it expires on its own
            idempotency.abandon(claim)

    # -- the DELETE door -----------------------------------------------------------------

    def before_delete(
        self, failure_job_id: str, causation: Causation, decision: Mapping[str, Any],
        aliases: Sequence[str] = (),
    ) -> str | None:
        """Record the DELETE about to be sent (StateUnavailable: do not send it); returns
        the journal entry when this DELETE is the first of the task (see after_delete).
        ``aliases``: the record's other ids an input may name it by."""
        return self.journal.sending(failure_job_id, self.identity(causation) or "", decision,
                                    aliases)

    def after_delete(self, failure_job_id: str, entry: str | None, found: bool,
                     answer_lost: bool) -> None:
        """A 404 to the first DELETE of a task, with no earlier answer lost, means someone
        outside deleted it: our entry must not turn that into our ``deleted``."""
        if entry is not None and not found and not answer_lost:
            self.journal.withdraw(failure_job_id, entry)

    def spend_budget(self, causation: Causation, limit: int) -> None:
        """One DELETE of a sweep, counted across every instance and every redelivery of
        the sweep's input; BudgetSpent past ``limit`` (the DELETE is then not sent)."""
        key = state_keys.budget(self.identity(causation) or "")
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
            failure_job_id=sent.task_id,
            reason=str(recorded.get("reason") or "deleted by an earlier DELETE of this "
                       "deployment whose sender stopped before reporting it"),
            rule=recorded.get("rule") if isinstance(recorded.get("rule"), str) else outcome.rule,
            job=job if isinstance(job, dict) else outcome.job,
            server_group_id=(recorded.get("server_group_id")
                             if isinstance(recorded.get("server_group_id"), str)
                             else outcome.server_group_id),
            status_code=outcome.status_code,
        )


def _fields(request: TaskRequest | Rejected) -> dict[str, Any]:
    if isinstance(request, Rejected):
        return {"rejected": request.reason, "task_id": request.task_id}
    return {"task_id": request.task_id, "match_field": request.match_field,
            "server_group_id": request.server_group_id, "dry_run": request.dry_run,
            "force": request.force}


def _still_pending(outcome: str, failure_job_id: str | None) -> OutcomeDeliveryError:
    error = OutcomeDeliveryError("the first outcome of this input is still being delivered "
                                 "by another instance; deliver the input again later")
    error.outcome, error.failure_job_id = outcome, failure_job_id
    return error


def _sweep_event_id(publisher: Publisher, summary: SweepSummary) -> str:
    return outcome_id(summary.causation, "sweep", TYPE_PREFIX + SWEEP_COMPLETED)


# -- answers kept by idempotency records, read back ---------------------------------------


def outcome_from_data(data: Mapping[str, Any]) -> Outcome:
    return Outcome.from_data(data)  # the model reads its own data back (ValueError if corrupt)


def summary_from_data(data: Mapping[str, Any]) -> SweepSummary:
    return SweepSummary.from_data(data)
