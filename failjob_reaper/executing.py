"""Executing a plan: the one door every DELETE goes through, and what its answer means.

:class:`DeleteDoor` journals a planned DELETE before it is sent (so that a task
this deployment deleted is reported ``deleted`` exactly once, whichever
instance reports it) and sends it. :class:`PlanExecutor` sends the DELETEs of
one plan with bounded concurrency, lists a scope again when the listing a
DELETE rests on grew older than ``LISTING_MAX_AGE`` (the planner says what the
DELETE became: ``plan.recheck_delete``), and tells a 404 "gone" from "wrong id
field" by one fresh listing per scope (``plan.interpret_delete``).

With the state store lost half-way, no DELETE is sent that could not be
journaled: the execution stops, says so (``Execution.stopped``) and counts what
was deleted before; the outcomes of DELETEs already sent are still reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

from failjob_reaper.ids import is_valid_id
from failjob_reaper.outcomes import Outcome
from failjob_reaper.plan import (
    Plan,
    PlannedDelete,
    ScopeListing,
    Settlement,
    interpret_delete,
    recheck_delete,
)
from failjob_reaper.reading import Execution, Progress
from failjob_reaper.reporting import Job, Reporter
from failjob_reaper.scopes import Scope, read_scope
from failjob_reaper.sdrs import DeleteResult, SdrsError, TaskCenterClient
from failjob_reaper.state import StateUnavailable

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from failjob_reaper.exactly_once import ExactlyOnce
    from failjob_reaper.policy import Policy

log = logging.getLogger("failjob_reaper")

Emit = Callable[[Outcome], None]


class DeleteDoor:
    """Every DELETE of the deployment: journaled first, then sent."""

    def __init__(self, shared: ExactlyOnce) -> None:
        self.shared = shared

    def send(
        self, client: TaskCenterClient, delete: PlannedDelete, job: Job,
        deadline: float | None = None,
    ) -> DeleteResult:
        """Journal one planned DELETE, then send it, bounded by ``deadline`` (SdrsError
        when refused or out of retries; StateUnavailable when it could not be journaled:
        then it is not sent)."""
        record = delete.record.record
        entry = self.shared.before_delete(delete.failure_job_id, job.causation, {
            "rule": delete.decision.rule, "reason": delete.decision.reason,
            "job": dict(record), "server_group_id": delete.record.server_group_id,
        }, aliases=[str(record[f]) for f in ("job_id", "resource_id")
                    if is_valid_id(record.get(f))])
        result = client.delete_failure_job(delete.failure_job_id, deadline=deadline)
        try:
            self.shared.after_delete(delete.failure_job_id, entry, result.found,
                                     result.lost_answers > 0)
        except StateUnavailable as exc:
            # The DELETE was answered: its outcome is told all the same (the journal
            # entry expires on its own).
            log.warning("journal not updated after DELETE %s: %s", delete.failure_job_id, exc)
        return result


class PlanExecutor:
    """Sends the DELETEs of one plan and turns every answer into an outcome."""

    def __init__(
        self,
        door: DeleteDoor,
        policy: Policy,
        clock: Callable[[], datetime],
        *,
        id_field: str,
        listing_max_age: float,
        event_deadline: float,
    ) -> None:
        self.door = door
        self.policy = policy
        self.clock = clock
        self.id_field = id_field
        self.listing_max_age = listing_max_age
        self.event_deadline = event_deadline

    def run(
        self,
        plan: Plan,
        listings: Sequence[ScopeListing],
        job: Job,
        client: TaskCenterClient,
        report: Reporter,
        emit: Emit,
        execution: Execution,
        *,
        deadline_at: float | None,
        concurrency: int,
        stop: Callable[[], bool],
        progress: Progress | None,
    ) -> None:
        total = len(plan.deletes)
        if not total:
            return
        fresh = _Freshness(self, job, client, listings, deadline_at)
        done = 0
        lock = threading.Lock()
        halted = threading.Event()
        not_found: list[tuple[PlannedDelete, DeleteResult]] = []

        def delete_one(delete: PlannedDelete) -> None:
            nonlocal done
            if halted.is_set() or stop():
                return  # left for the next run; the summary says partial
            if plan.dry_run:
                emit(report.of(delete, "would_delete", dry_run=True))
            else:
                # No DELETE rests on a listing older than LISTING_MAX_AGE: re-list first.
                current = fresh.recheck(delete, report)
                if isinstance(current, Outcome):
                    emit(current)
                else:
                    try:
                        result = self._delete(client, current, job, report, emit,
                                              deadline_at)
                    except StateUnavailable as exc:
                        # Not journaled, so not sent: stop here and say so.
                        with lock:
                            execution.stopped = execution.stopped or (
                                f"state store unavailable ({exc})")
                        halted.set()
                        return
                    if result is not None:
                        with lock:
                            not_found.append((current, result))
            with lock:
                done += 1
                if progress is not None:
                    progress("deleting", done, total)

        # `concurrency` workers pull from one iterator: no Future per task, and an
        # unexpected error still propagates.
        pending = iter(plan.deletes)

        def worker() -> None:
            while True:
                with lock:
                    delete = next(pending, None)
                if delete is None:
                    return
                delete_one(delete)

        workers = min(concurrency, total) or 1
        if workers == 1:
            worker()
        else:
            with ThreadPoolExecutor(workers) as pool:
                for future in [pool.submit(worker) for _ in range(workers)]:
                    future.result()
        execution.left_over = total - done
        self._settle_not_found(client, not_found, report, emit)

    def _delete(
        self,
        client: TaskCenterClient,
        delete: PlannedDelete,
        job: Job,
        report: Reporter,
        emit: Emit,
        deadline_at: float | None = None,
    ) -> DeleteResult | None:
        """Send one DELETE and report it, or return the 404 that needs a re-listing."""
        try:
            result = self.door.send(client, delete, job, deadline_at)
        except SdrsError as exc:
            emit(report.failed(exc, _delete_failure(exc), delete))
            return None
        verdict = interpret_delete(result.status_code, earlier_answer_lost=result.lost_answers
                                   > 0, still_listed=None, id_field=self.id_field)
        if verdict.outcome is None:
            return result
        emit(report.of(delete, verdict.outcome, reason=verdict.reason,
                       status_code=result.status_code, attempts=result.attempts))
        return None

    def _settle_not_found(
        self,
        client: TaskCenterClient,
        not_found: list[tuple[PlannedDelete, DeleteResult]],
        report: Reporter,
        emit: Emit,
    ) -> None:
        # One re-listing per scope tells "gone" from "wrong id field" for every 404 in it.
        id_field = self.id_field
        fresh: dict[str | None, set[str] | SdrsError] = {}
        for delete, result in not_found:
            still: bool | None = False
            failure: SdrsError | None = None
            for group in delete.scopes:
                if group not in fresh:
                    try:
                        listing = read_scope(client, Scope(group), self.clock,
                                             time.monotonic() + self.event_deadline)
                        fresh[group] = {str(r.get(id_field)) for r in listing.records}
                    except SdrsError as exc:
                        fresh[group] = exc
                ids = fresh[group]
                if isinstance(ids, SdrsError):
                    failure = ids
                elif delete.failure_job_id in ids:
                    still = True
            if not still and failure is not None:
                emit(report.failed(failure, "DELETE answered 404 and the re-check failed",
                                   delete))
                continue
            verdict = interpret_delete(404, earlier_answer_lost=False, still_listed=still,
                                       id_field=id_field)
            emit(report.of(delete, verdict.outcome or "delete_failed", reason=verdict.reason,
                           status_code=404, attempts=result.attempts, error=verdict.error))


class _Freshness:
    """Re-lists the scopes of a DELETE whose listing is older than LISTING_MAX_AGE and
    asks the planner what that DELETE is now (a new failure of the resource may have
    appeared meanwhile). Fresh re-listings are shared by the DELETEs of a scope."""

    def __init__(self, executor: PlanExecutor, job: Job, client: TaskCenterClient,
                 listings: Sequence[ScopeListing], deadline_at: float | None) -> None:
        self.executor = executor
        self.job = job
        self.client = client
        self.deadline_at = deadline_at
        self.max_age = timedelta(seconds=executor.listing_max_age)
        self._current = {listing.server_group_id: listing for listing in listings}
        self._lock = threading.Lock()
        self._scope_locks: dict[str | None, threading.Lock] = {}

    def recheck(self, delete: PlannedDelete, report: Reporter) -> PlannedDelete | Outcome:
        clock = self.executor.clock
        now = clock()
        if all(not self._stale(group, now) for group in delete.scopes):
            return delete
        try:
            listings = [self._listing(group) for group in delete.scopes]
        except SdrsError as exc:
            return report.failed(exc, "could not list again before the DELETE: "
                                 f"{exc.message}", delete)
        now = clock()
        current = recheck_delete(delete, listings, self.executor.policy, now,
                                 id_field=self.executor.id_field, force=self.job.force)
        if isinstance(current, Settlement):
            return report.settled(current)
        return current

    def _stale(self, group: str | None, now: datetime) -> bool:
        with self._lock:
            listing = self._current.get(group)
        return (listing is None or listing.listed_at is None
                or now - listing.listed_at > self.max_age)

    def _listing(self, group: str | None) -> ScopeListing:
        with self._lock:
            scope_lock = self._scope_locks.setdefault(group, threading.Lock())
        with scope_lock:  # one re-listing per scope, whichever worker asks first
            if self._stale(group, self.executor.clock()):
                listing = read_scope(self.client, Scope(group), self.executor.clock,
                                     self.deadline_at)
                with self._lock:
                    self._current[group] = listing
            with self._lock:
                return self._current[group]


def _delete_failure(exc: SdrsError) -> str:
    # A 2xx/3xx other than 204 is no refusal: say what came back (sdrs/_errors.py).
    if exc.status_code is not None and exc.status_code < 400:
        return f"DELETE got an {exc.message}"
    return f"DELETE refused: {exc.message}"
