"""A sweep: every failed task of the project, decided and, when expired, deleted.

A sweep is the executor (``Reaper.execute``) run over every scope (the top level
and each protection group) with bounded concurrency, the sweep's rate limit
and a deadline; the plan checks the guards before any DELETE. A sweep that
cannot report (the sink is down) stops deleting: nothing is done that cannot
be told.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from failjob_reaper.alerts import SweepWatch
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.events import SweepRequest
from failjob_reaper.exactly_once import BudgetSpent, SweepFenced
from failjob_reaper.logs import summary_fields
from failjob_reaper.outcomes import MAX_BATCH, Outcome, SweepSummary
from failjob_reaper.plan import Everything, Plan
from failjob_reaper.reaper import Execution, Job, Progress, Reaper
from failjob_reaper.scopes import TOP_LEVEL, Scope, group_scopes
from failjob_reaper.sdrs import IncompleteListing, RateLimiter, SdrsError
from failjob_reaper.state import StateUnavailable
from failjob_reaper.state.lease import Lease

log = logging.getLogger("failjob_reaper")

__all__ = ["Progress", "SweepLimits", "Sweeper"]


@dataclass(frozen=True)
class SweepLimits:
    concurrency: int = 8
    deadline: float = 240.0
    emit_retained: bool = False
    max_task_events: int = 1000
    """A dry run over a backlog sends at most this many per-task ``would_delete`` events
    (the summary counts every one): a dry run of 100,000 tasks ends in its deadline and
    does not flood its consumers; real DELETEs are always told one by one."""


@dataclass
class _Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delivery_error: OutcomeDeliveryError | None = None

    def count(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes[outcome.outcome] += 1
            if outcome.rule:
                self.rules[outcome.rule] += 1


class Sweeper:
    def __init__(
        self,
        reaper: Reaper,
        limits: SweepLimits,
        *,
        rate_limiter: RateLimiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reaper = reaper
        self.limits = limits
        # One limiter per process: concurrent sweeps share the rate.
        self.client = reaper.client.with_rate_limit(rate_limiter)
        self.monotonic = monotonic

    def job(self, request: SweepRequest) -> Job:
        return Job(Everything(), request.trigger, request.causation,
                   self.reaper.dry_run(request.dry_run),
                   hint_group=request.server_group_id)

    def scopes(self, request: SweepRequest, deadline_at: float | None = None) -> list[Scope]:
        """What a sweep reads: one group when it names one, else the top level and every
        group (SdrsError when the groups cannot be listed)."""
        if request.server_group_id is not None:
            return [Scope(request.server_group_id)]
        return [TOP_LEVEL, *group_scopes(self.client, deadline_at, self.reaper.index)]

    def preview(
        self, request: SweepRequest, *, deadline: float | None = None,
        progress: Progress | None = None,
    ) -> tuple[Plan, Execution]:
        """List and plan, execute nothing (``sweep --dry-run``, ``plan``): the plan holds
        every task it would delete, every task it keeps and the guard verdict."""
        deadline_at = time.monotonic() + self._budget(deadline)
        return self.reaper.preview(
            self.job(request), client=self.client, scopes=self.scopes(request, deadline_at),
            concurrency=self.limits.concurrency, deadline_at=deadline_at,
            stop_at=lambda: time.monotonic() >= deadline_at, progress=progress,
        )

    def run(
        self,
        request: SweepRequest,
        *,
        deadline: float | None = None,
        progress: Progress | None = None,
        on_plan: Callable[[Plan], None] | None = None,
        stop_deleting: Callable[[], str | None] | None = None,
    ) -> SweepSummary:
        """Sweep, publish every changed task and the summary; return the summary.

        ``stop_deleting``: the caller's own brake (the CLI's ``--limit``), asked before
        each DELETE (each would_delete in a dry run); a reason stops deleting, and the
        summary says so with what is left for the next sweep.

        Raises OutcomeDeliveryError when the summary itself cannot be delivered. One
        sweep per project at a time (the lease): a sweep that finds another running
        reports ``skipped`` and does nothing.
        """
        reaper = self.reaper
        pending = reaper.publisher.flush()  # outcomes any instance left, before new work
        return reaper.shared.run_sweep(
            reaper.publisher, request, pending,
            lambda lease, recorded: self._run(request, deadline, progress, on_plan, lease,
                                              recorded, stop_deleting),
            project_id=reaper.config.project_id,
        )

    def _run(
        self,
        request: SweepRequest,
        deadline: float | None,
        progress: Progress | None,
        on_plan: Callable[[Plan], None] | None,
        lease: Lease | None,
        recorded: Callable[[SweepSummary], None],
        stop_deleting: Callable[[], str | None] | None = None,
    ) -> SweepSummary:
        started = self.monotonic()
        deadline_at = time.monotonic() + self._budget(deadline)
        run = _Run(self, request, lease, stop_deleting)
        try:
            scopes = self.scopes(request, deadline_at)
        except IncompleteListing as exc:
            # Not every group is known: any DELETE could remove a record of a group unseen.
            summary = run.summary(started, None, partial_reason="listing protection groups "
                                  f"incomplete: {exc.message}; nothing deleted")
        except SdrsError as exc:
            summary = run.summary(started, None, aborted_reason="listing protection groups "
                                  f"failed: {exc.message}", error=exc.as_dict())
        else:
            def planned(plan: Plan) -> None:
                if plan.guard is not None:  # the planner's number, enforced across instances
                    run.allowance = plan.guard.max_deletions
                if on_plan is not None:
                    on_plan(plan)

            execution = self.reaper.execute(
                run.job, run.publish, client=self.client, scopes=scopes,
                concurrency=self.limits.concurrency, deadline_at=deadline_at,
                stop_deleting=run.stop_deleting,
                progress=progress, on_plan=planned,
            )
            run.drain()
            summary = run.summary(started, execution)
        log.info(
            "sweep_completed listed=%d deleted=%d partial=%s aborted=%s outcomes=%s",
            summary.listed, summary.deleted, summary.partial, summary.aborted,
            dict(summary.outcomes), extra=summary_fields(summary),
        )
        try:
            # A sweep cut short by the sink is not this input's final answer: a redelivery
            # sweeps again (and finds what this one left), so only a clean one is recorded.
            self.reaper.publisher.sweep_completed(
                summary, recorded=(lambda: recorded(summary))
                if run.tally.delivery_error is None else None)
        finally:
            if self.reaper.alerts is not None:  # SMN digest and notice; never raises
                self.reaper.alerts.sweep_finished(summary, run.watch)
        if run.tally.delivery_error is not None:
            raise run.tally.delivery_error
        return summary

    def _budget(self, deadline: float | None) -> float:
        return self.limits.deadline if deadline is None else min(deadline, self.limits.deadline)


class _Run:
    """The tally and reporting of one sweep."""

    def __init__(self, sweeper: Sweeper, request: SweepRequest, lease: Lease | None = None,
                 caller_stop: Callable[[], str | None] | None = None) -> None:
        self.sweeper = sweeper
        self.caller_stop = caller_stop
        self.reaper = sweeper.reaper
        self.request = request
        self.job = sweeper.job(request)
        self.tally = _Tally()
        self.sink_down = threading.Event()
        self.lease = lease
        self.stopped: str | None = None
        """Why deleting stopped besides the sink and the deadline (fenced, budget spent)."""
        self.store_lost = False
        self.would_delete_sent = 0
        self.task_events_omitted = 0
        """would_delete outcomes counted in the summary but not sent one by one."""
        self.watch = (SweepWatch(self.reaper.clock(), self.reaper.policy.notice)
                      if self.reaper.alerts is not None else None)
        # An emitter that takes batches (EventGrid) gets outcomes ten at a time.
        self._batch: list[Outcome] | None = (
            [] if callable(getattr(self.reaper.publisher.emitter, "emit_many", None)) else None)
        self._batch_lock = threading.Lock()
        self.allowance = self.reaper.policy.guards.max_deletions_per_sweep
        """How many DELETEs the plan's guard allows this sweep (``on_plan`` sets it from
        the plan's verdict); the shared budget only enforces it across instances."""

    def stop_deleting(self) -> bool:
        """Asked before each DELETE: the sink is down, the lease was lost (fencing), or
        the sweep's deletions across every instance reached max_deletions_per_sweep."""
        if self.sink_down.is_set() or self.stopped:
            return True
        if self.caller_stop is not None:
            reason = self.caller_stop()
            if reason is not None:
                self.stopped = reason
                return True
        if self.job.dry_run:
            return False
        shared = self.reaper.shared
        try:
            if self.lease is not None and not shared.lease.still_held(self.lease):
                raise SweepFenced("the sweep lease expired and another sweep took it")
            shared.spend_budget(self.request.causation, self.allowance)
        except (SweepFenced, BudgetSpent) as exc:
            self.stopped = str(exc)
            return True
        except StateUnavailable as exc:
            # No DELETE without the lease and the shared budget: stop, say what was done.
            self.stopped = f"state store unavailable ({exc})"
            self.store_lost = True
            return True
        return False

    def publish(self, outcome: Outcome) -> None:
        self.tally.count(outcome)
        if self.watch is not None:
            self.watch.observe(outcome)
        if outcome.outcome == "retained" and not self.sweeper.limits.emit_retained:
            return
        if outcome.outcome == "would_delete":
            with self.tally.lock:
                self.would_delete_sent += 1
                if self.would_delete_sent > self.sweeper.limits.max_task_events:
                    self.task_events_omitted += 1
                    return
        if self.sink_down.is_set():
            # Kept for the next delivery attempt (the summary's, or the next invocation's).
            self.reaper.keep_outcome(outcome)
            return
        if self._batch is not None:
            with self._batch_lock:
                self._batch.append(outcome)
                if len(self._batch) < MAX_BATCH:
                    return
                ready, self._batch = self._batch, []
            self._send(ready)
            return
        self._send([outcome])

    def drain(self) -> None:
        """Send what the batch still holds (the execution has ended)."""
        if self._batch:
            with self._batch_lock:
                ready, self._batch = self._batch, []
            if self.sink_down.is_set():
                for outcome in ready:
                    self.reaper.keep_outcome(outcome)
            else:
                self._send(ready)

    def _send(self, outcomes: list[Outcome]) -> None:
        try:
            self.reaper.publish_outcomes(outcomes)
        except OutcomeDeliveryError as exc:
            self.sink_down.set()
            with self.tally.lock:
                self.tally.delivery_error = exc

    def summary(
        self,
        started: float,
        execution: Execution | None,
        *,
        aborted_reason: str | None = None,
        error: dict[str, Any] | None = None,
        partial_reason: str | None = None,
    ) -> SweepSummary:
        partial: list[str] = [partial_reason] if partial_reason else []
        listed = groups = 0
        if execution is not None:
            partial.extend(execution.partial_reasons)
            plan = execution.plan
            if plan is not None:
                listed = plan.listed
                if plan.guard is not None and plan.guard.tripped is not None:
                    aborted_reason = plan.guard.reason
                if execution.stopped is not None:
                    self.stopped = self.stopped or execution.stopped
                    self.store_lost = True
                if execution.left_over:
                    total = len(plan.deletes)
                    reason = ("outcome sink unavailable" if self.sink_down.is_set()
                              else self.stopped or "deadline reached")
                    done = (f"; {self.tally.outcomes.get('deleted', 0)} deleted before it "
                            "stopped" if self.store_lost else "")
                    partial.append(f"{reason}: {execution.left_over} of {total} deletions "
                                   f"left for the next sweep{done}")
            groups = sum(1 for s in execution.scopes if s.server_group_id is not None)
        outcomes = dict(self.tally.outcomes)
        if self.store_lost and error is None:
            # The truth, and a redelivery: what was deleted is counted above.
            error = {"code": "state_unavailable", "retryable": True,
                     "message": f"the state store was lost half-way: {self.stopped}"}
        return SweepSummary(
            project_id=self.reaper.config.project_id,
            trigger=self.request.trigger,
            dry_run=self.job.dry_run,
            causation=self.request.causation,
            server_group_id=self.request.server_group_id,
            listed=listed,
            groups=groups,
            decided=sum(outcomes.values()),
            deleted=outcomes.get("deleted", 0),
            outcomes=outcomes,
            rules=dict(self.tally.rules),
            duration_seconds=self.sweeper.monotonic() - started,
            partial=bool(partial),
            partial_reason="; ".join(partial) or None,
            aborted=aborted_reason is not None,
            aborted_reason=aborted_reason,
            error=error,
            task_events_omitted=self.task_events_omitted,
        )
