"""A sweep: every failed task of the project, decided and, when expired, deleted.

List every scope (the top level and each protection group) with bounded
concurrency, decide every record with the same policy code as a single event,
check the guards before any DELETE, then delete with bounded concurrency,
the sweep's rate limit and a deadline. A sweep that cannot report (the sink is
down) stops deleting: nothing is done that cannot be told.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from failjob_reaper.coordination import BudgetSpent, SweepFenced
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.events import SweepRequest, TaskRequest
from failjob_reaper.ids import is_valid_id
from failjob_reaper.lookup import TOP_LEVEL, Found, Scope
from failjob_reaper.outcomes import Outcome, SweepSummary
from failjob_reaper.policy import Decision
from failjob_reaper.reaper import Listing, Reaper, _OutcomeBase, journal_entry
from failjob_reaper.sdrs import RateLimiter, SdrsError
from failjob_reaper.state.lease import Lease

log = logging.getLogger("failjob_reaper")

Progress = Callable[[str, int, int], None]
"""Called with (phase, done, total); phases: "listing", "deleting"."""


@dataclass(frozen=True)
class SweepLimits:
    concurrency: int = 8
    deadline: float = 240.0
    emit_retained: bool = False


@dataclass
class _Planned:
    found: Found
    failure_job_id: str
    decision: Decision
    base: _OutcomeBase


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

    def run(
        self,
        request: SweepRequest,
        *,
        deadline: float | None = None,
        progress: Progress | None = None,
    ) -> SweepSummary:
        """Sweep, publish every changed task and the summary; return the summary.

        Raises OutcomeDeliveryError when the summary itself cannot be delivered. One
        sweep per project at a time (the lease): a sweep that finds another running
        reports ``skipped`` and does nothing.
        """
        reaper = self.reaper
        pending = reaper.publisher.flush()  # outcomes any instance left, before new work
        return reaper.shared.run_sweep(
            reaper.publisher, request, pending,
            lambda lease, recorded: self._run(request, deadline, progress, lease, recorded),
            project_id=reaper.config.project_id,
        )

    def _run(
        self,
        request: SweepRequest,
        deadline: float | None,
        progress: Progress | None,
        lease: Lease | None,
        recorded: Callable[[SweepSummary], None],
    ) -> SweepSummary:
        started = self.monotonic()
        budget = self.limits.deadline if deadline is None else min(deadline, self.limits.deadline)
        stop_at = started + budget
        run = _Run(self, request, stop_at, progress or _no_progress, lease)
        summary = run.execute(started)
        log.info(
            "sweep_completed listed=%d deleted=%d partial=%s aborted=%s outcomes=%s",
            summary.listed, summary.deleted, summary.partial, summary.aborted,
            dict(summary.outcomes),
        )
        self.reaper.publisher.sweep_completed(summary, recorded=lambda: recorded(summary))
        if run.tally.delivery_error is not None:
            raise run.tally.delivery_error
        return summary


class _Run:
    """The state of one sweep."""

    def __init__(
        self, sweeper: Sweeper, request: SweepRequest, stop_at: float, progress: Progress,
        lease: Lease | None = None,
    ) -> None:
        self.lease = lease
        self.stopped: str | None = None
        """Why deleting stopped early besides the sink and the deadline (fenced, budget)."""
        self.sweeper = sweeper
        self.reaper = sweeper.reaper
        self.client = sweeper.client
        self.request = request
        self.stop_at = stop_at
        self.progress = progress
        self.tally = _Tally()
        self.dry_run = self.reaper.dry_run(request.dry_run)
        self.partial_reasons: list[str] = []
        self.sink_down = threading.Event()

    def execute(self, started: float) -> SweepSummary:
        summary: dict[str, Any] = {}
        try:
            scopes = self._scopes()
        except SdrsError as exc:
            return self._summary(started, aborted_reason=f"listing protection groups failed: "
                                 f"{exc.message}", error=exc.as_dict())
        listings = self._list_all(scopes)
        listed = sum(len(listing.records) for _, listing in listings)
        plan = self._decide_all(listings)
        summary.update(listed=listed, groups=len(scopes) - (1 if TOP_LEVEL in scopes else 0))
        guard = self._guard(len(plan), listed)
        if guard is not None:
            for item in plan:
                self._count_retained(item, "guard", guard)
            return self._summary(started, aborted_reason=guard, **summary)
        self._delete_all(plan)
        return self._summary(started, **summary)

    # -- listing ---------------------------------------------------------------

    def _scopes(self) -> list[Scope]:
        if self.request.server_group_id is not None:
            return [Scope(self.request.server_group_id)]
        groups = self.client.list_server_groups()
        ids = [str(g["id"]) for g in groups if is_valid_id(g.get("id"))]
        return [TOP_LEVEL, *(Scope(group_id) for group_id in ids)]

    def _list_all(self, scopes: list[Scope]) -> list[tuple[Scope, Listing]]:
        id_field = self.reaper.config.id_field
        client = self.client
        done = 0

        def list_one(scope: Scope) -> tuple[Scope, Listing | None]:
            if self.sweeper.monotonic() >= self.stop_at:
                return scope, None
            try:
                return scope, Listing(scope.list(client), id_field)
            except SdrsError as exc:
                where = scope.server_group_id or "the top level"
                self.partial_reasons.append(f"listing {where} failed: {exc.message}")
                return scope, None

        results: list[tuple[Scope, Listing]] = []
        with ThreadPoolExecutor(self.sweeper.limits.concurrency) as pool:
            for scope, listing in pool.map(list_one, scopes):
                done += 1
                self.progress("listing", done, len(scopes))
                if listing is not None:
                    results.append((scope, listing))
        if len(results) < len(scopes) and not self.partial_reasons:
            self.partial_reasons.append("deadline reached while listing")
        return results

    # -- deciding ----------------------------------------------------------------

    def _decide_all(self, listings: list[tuple[Scope, Listing]]) -> list[_Planned]:
        now = self.reaper.clock()
        id_field = self.reaper.config.id_field
        plan: dict[str, _Planned] = {}
        seen: set[str] = set()
        for scope, listing in listings:
            for record in listing.records:
                failure_job_id = record.get(id_field)
                if is_valid_id(failure_job_id):
                    # Records sharing one DELETE path are one task to the API: one decision
                    # (decide_record weighs them all), one outcome, at most one DELETE.
                    if failure_job_id in seen:
                        continue
                    seen.add(str(failure_job_id))
                decision = self.reaper.decide_record(record, listing, scope, now=now)
                found = Found(record, scope, listing.records)
                base = self._base(failure_job_id if is_valid_id(failure_job_id) else None)
                if decision.action == "retain":
                    self._publish(base.make("retained", found=found, decision=decision,
                                            failure_job_id=_str_or_none(failure_job_id),
                                            dry_run=self.dry_run))
                elif not is_valid_id(failure_job_id):
                    self._publish(base.make(
                        "delete_failed", found=found, decision=decision,
                        reason=f"the listed record has no usable {id_field!r}; "
                               "check SDRS_FAILURE_JOB_ID_FIELD",
                        error={"code": "reaper.no_id", "message": "no failure_job_id",
                               "retryable": False}))
                else:
                    plan[str(failure_job_id)] = _Planned(found, str(failure_job_id),
                                                         decision, base)
        return list(plan.values())

    def _guard(self, planned: int, listed: int) -> str | None:
        guards = self.reaper.policy.guards
        if planned > guards.max_deletions_per_sweep:
            return (f"{planned} deletions planned, more than max_deletions_per_sweep "
                    f"{guards.max_deletions_per_sweep}: nothing deleted")
        if listed and planned / listed > guards.max_deletion_fraction:
            return (f"{planned} of {listed} listed tasks planned for deletion, more than "
                    f"max_deletion_fraction {guards.max_deletion_fraction:g}: nothing deleted")
        return None

    # -- deleting ----------------------------------------------------------------

    def _delete_all(self, plan: list[_Planned]) -> None:
        total = len(plan)
        done = 0
        done_lock = threading.Lock()
        not_found: list[tuple[_Planned, int]] = []

        def delete_one(item: _Planned) -> None:
            nonlocal done
            if (self.sink_down.is_set() or self.stopped
                    or self.sweeper.monotonic() >= self.stop_at):
                return  # left for the next sweep; the summary says partial
            if self.dry_run:
                self._publish(item.base.make("would_delete", found=item.found,
                                             failure_job_id=item.failure_job_id,
                                             decision=item.decision, dry_run=True))
            else:
                self._delete(item, not_found)
            with done_lock:
                done += 1
                self.progress("deleting", done, total)

        # `concurrency` workers pull from one iterator: no Future per task (a 20,000-task
        # sweep would hold 20,000 of them), and an unexpected error still propagates.
        pending = iter(plan)
        pending_lock = threading.Lock()

        def worker() -> None:
            while True:
                with pending_lock:
                    item = next(pending, None)
                if item is None:
                    return
                delete_one(item)

        workers = min(self.sweeper.limits.concurrency, total) or 1
        with ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(worker) for _ in range(workers)]:
                future.result()
        if done < total:
            reason = ("outcome sink unavailable" if self.sink_down.is_set()
                      else self.stopped or "deadline reached")
            self.partial_reasons.append(f"{reason}: {total - done} of {total} deletions left "
                                        "for the next sweep")
        self._settle_not_found(not_found)

    def _delete(self, item: _Planned, not_found: list[tuple[_Planned, int]]) -> None:
        shared = self.reaper.shared
        try:
            if self.lease is not None and not shared.lease.still_held(self.lease):
                raise SweepFenced("the sweep lease expired and another sweep took it")
            shared.spend_budget(self.request.causation,
                                self.reaper.policy.guards.max_deletions_per_sweep)
        except (SweepFenced, BudgetSpent) as exc:
            self.stopped = str(exc)
            return
        try:
            result = self.reaper.send_delete(self.client, item.failure_job_id,
                                             self.request.causation,
                                             journal_entry(item.found, item.decision))
        except SdrsError as exc:
            self._publish(item.base.failed(exc, f"DELETE refused: {exc.message}",
                                           found=item.found, failure_job_id=item.failure_job_id,
                                           decision=item.decision))
            return
        if result.found:
            self._publish(item.base.make("deleted", found=item.found,
                                         failure_job_id=item.failure_job_id,
                                         decision=item.decision, status_code=204,
                                         attempts=result.attempts))
        else:
            with self.tally.lock:
                not_found.append((item, result.attempts))

    def _settle_not_found(self, not_found: list[tuple[_Planned, int]]) -> None:
        # One re-listing per scope tells "gone" from "wrong id field" for every 404 in it.
        by_scope: dict[Scope, list[tuple[_Planned, int]]] = {}
        for item, attempts in not_found:
            by_scope.setdefault(item.found.scope, []).append((item, attempts))
        for scope, items in by_scope.items():
            try:
                listing = Listing(scope.list(self.client), self.reaper.config.id_field)
            except SdrsError as exc:
                for item, _ in items:
                    self._publish(item.base.failed(exc, "DELETE answered 404 and the re-check "
                                                   "failed", found=item.found,
                                                   failure_job_id=item.failure_job_id,
                                                   decision=item.decision))
                continue
            for item, attempts in items:
                if listing.same_delete_id(item.found.record):
                    self._publish(item.base.make(
                        "delete_failed", found=item.found, failure_job_id=item.failure_job_id,
                        decision=item.decision, status_code=404, attempts=attempts,
                        reason=(f"DELETE by {self.reaper.config.id_field} answered 404 but the "
                                "task is still listed: SDRS_FAILURE_JOB_ID_FIELD probably "
                                "names the wrong field"),
                        error={"code": "HTTP.404", "message": "still listed after 404",
                               "retryable": False}))
                else:
                    self._publish(item.base.make(
                        "already_deleted", found=item.found, failure_job_id=item.failure_job_id,
                        decision=item.decision, status_code=404, attempts=attempts,
                        reason="DELETE answered 404: deleted by someone else"))

    # -- reporting ---------------------------------------------------------------

    def _base(self, failure_job_id: object) -> _OutcomeBase:
        request = TaskRequest(
            task_id=str(failure_job_id or ""),
            match_field=self.reaper.config.id_field,
            trigger=self.request.trigger,
            causation=self.request.causation,
            dry_run=self.dry_run,
        )
        return _OutcomeBase(self.reaper, request)

    def _count_retained(self, item: _Planned, rule: str, reason: str) -> None:
        decision = Decision(action="retain", rule=rule, reason=reason, retain_until=None)
        self._publish(item.base.make("retained", found=item.found, decision=decision,
                                     failure_job_id=item.failure_job_id, dry_run=self.dry_run))

    def _publish(self, outcome: Outcome) -> None:
        self.tally.count(outcome)
        if outcome.outcome == "retained" and not self.sweeper.limits.emit_retained:
            return
        if self.sink_down.is_set():
            # Kept for the next delivery attempt (the summary's, or the next invocation's).
            self.reaper.publisher.defer(self.reaper.shared.settle(outcome))
            return
        try:
            self.reaper.publish_outcome(outcome)
        except OutcomeDeliveryError as exc:
            self.sink_down.set()
            with self.tally.lock:
                self.tally.delivery_error = exc

    def _summary(
        self,
        started: float,
        *,
        listed: int = 0,
        groups: int = 0,
        aborted_reason: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> SweepSummary:
        outcomes = dict(self.tally.outcomes)
        return SweepSummary(
            project_id=self.reaper.config.project_id,
            trigger=self.request.trigger,
            dry_run=self.dry_run,
            causation=self.request.causation,
            server_group_id=self.request.server_group_id,
            listed=listed,
            groups=groups,
            decided=sum(outcomes.values()),
            deleted=outcomes.get("deleted", 0),
            outcomes=outcomes,
            rules=dict(self.tally.rules),
            duration_seconds=self.sweeper.monotonic() - started,
            partial=bool(self.partial_reasons),
            partial_reason="; ".join(self.partial_reasons) or None,
            aborted=aborted_reason is not None,
            aborted_reason=aborted_reason,
            error=error,
        )


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
