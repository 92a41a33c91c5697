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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from failjob_reaper.ids import is_valid_id
from failjob_reaper.outcomes import Outcome
from failjob_reaper.plan import (
    Plan,
    PlannedDelete,
    ScopeListing,
    Settlement,
    interpret_delete,
    recheck_deletes,
)
from failjob_reaper.reading import Execution, Progress
from failjob_reaper.reporting import Job, Reporter
from failjob_reaper.scopes import Scope, read_scope
from failjob_reaper.sdrs import DeleteResult, IncompleteListing, SdrsError, TaskCenterClient
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
        fresh = _Freshness(self, job, client, listings, deadline_at, plan.deletes)
        done = 0
        lock = threading.Lock()
        halted = threading.Event()
        not_found: list[tuple[PlannedDelete, DeleteResult]] = []

        def delete_one(position: int, delete: PlannedDelete) -> None:
            nonlocal done
            if halted.is_set() or stop():
                return  # left for the next run; the summary says partial
            if plan.dry_run:
                emit(report.of(delete, "would_delete", dry_run=True))
            else:
                # No DELETE rests on a listing older than LISTING_MAX_AGE: re-list first.
                current = fresh.recheck(position, delete, report)
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
        pending = enumerate(plan.deletes)

        def worker() -> None:
            while True:
                with lock:
                    position, delete = next(pending, (0, None))
                if delete is None:
                    return
                delete_one(position, delete)

        workers = min(concurrency, total) or 1
        if workers == 1:
            worker()
        else:
            with ThreadPoolExecutor(workers) as pool:
                for future in [pool.submit(worker) for _ in range(workers)]:
                    future.result()
        execution.left_over = total - done
        sizes = {listing.server_group_id: len(listing.records) for listing in listings}
        self._settle_not_found(client, not_found, report, emit, sizes)

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
        sizes: Mapping[str | None, int],
    ) -> None:
        # One re-listing per scope tells "gone" from "wrong id field" for every 404 in
        # it, keeping only the records with those ids (a scope may hold 1,000,000).
        id_field = self.id_field
        wanted = {delete.failure_job_id for delete, _ in not_found}
        fresh: dict[str | None, set[str] | SdrsError] = {}

        def answered_404(record: Mapping[str, Any]) -> bool:
            return str(record.get(id_field)) in wanted

        for delete, result in not_found:
            still: bool | None = False
            failure: SdrsError | None = None
            for group in delete.scopes:
                if group not in fresh:
                    try:
                        listing = read_scope(client, Scope(group), self.clock,
                                             time.monotonic() + self.event_deadline,
                                             only=answered_404,
                                             expect=2 * sizes.get(group, 0))
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


RECHECK_WINDOW = 10_000
"""How many of a sweep's next DELETEs one re-listing re-checks (docs/safety.md, "Fresh
before delete"): what a sweep can send in a LISTING_MAX_AGE at the API's rate, about."""


class _Freshness:
    """No DELETE rests on a listing older than LISTING_MAX_AGE (docs/safety.md). When the
    plan's listing of a DELETE's scopes has grown older, those scopes are listed again,
    once for the next ``RECHECK_WINDOW`` DELETEs of the plan: the new listing keeps only
    the records those DELETEs must weigh (their ids and resources), the planner answers
    for all of them at once (``plan.recheck_deletes``), and each DELETE is then the
    DELETE again or what it became. A backlog of 1,000,000 is re-checked by windows, in
    memory for a window, not a second copy of the backlog."""

    def __init__(self, executor: PlanExecutor, job: Job, client: TaskCenterClient,
                 listings: Sequence[ScopeListing], deadline_at: float | None,
                 deletes: Sequence[PlannedDelete]) -> None:
        self.executor = executor
        self.job = job
        self.client = client
        self.deadline_at = deadline_at
        self.deletes = deletes
        self.max_age = timedelta(seconds=executor.listing_max_age)
        self._listed_at = {listing.server_group_id: listing.listed_at for listing in listings}
        self._sizes = {listing.server_group_id: len(listing.records) for listing in listings}
        self._lock = threading.Lock()
        self._window: _Window | None = None

    def recheck(
        self, position: int, delete: PlannedDelete, report: Reporter
    ) -> PlannedDelete | Outcome:
        now = self.executor.clock()
        if all(self._young(self._listed_at.get(group), now) for group in delete.scopes):
            return delete
        with self._lock:  # one re-listing at a time, whichever worker asks first
            window = self._window
            if window is None or not window.answers_for(delete, self, now):
                try:
                    window = self._window = self._relist(position)
                except SdrsError as exc:
                    return report.failed(exc, "could not list again before the DELETE: "
                                         f"{exc.message}", delete)
        current = window.answers[delete.failure_job_id]  # every window holds its first
        if isinstance(current, Settlement):
            return report.settled(current)
        return current

    def _young(self, listed_at: datetime | None, now: datetime) -> bool:
        return listed_at is not None and now - listed_at <= self.max_age

    def _relist(self, position: int) -> _Window:
        executor = self.executor
        ahead = [self.deletes[n] for n in range(position, min(position + RECHECK_WINDOW,
                                                             len(self.deletes)))]
        ids = {d.failure_job_id for d in ahead}
        resources = {resource for d in ahead for r in d.removes
                     if isinstance(resource := r.record.get("resource_id"), str)}
        scopes: dict[str | None, None] = {}
        for delete in ahead:
            scopes.update(dict.fromkeys(delete.scopes))
        id_field = executor.id_field

        def weighed(record: Mapping[str, Any]) -> bool:
            # Every record that carries one of these ids, and every record of their
            # resources: what the plan for these DELETEs reads (a record of a resource
            # that turns up only now ranks among fewer: kept, never deleted, by that).
            value, resource = record.get(id_field), record.get("resource_id")
            return (isinstance(value, str) and value in ids) or (
                isinstance(resource, str) and resource in resources)

        listings = [self._read(group, weighed) for group in scopes]
        answers = recheck_deletes(ahead, listings, executor.policy, executor.clock(),
                                  id_field=id_field, force=self.job.force)
        listed_at = [listing.listed_at for listing in listings]
        oldest = min((at for at in listed_at if at is not None), default=None)
        return _Window(answers, frozenset(scopes), oldest)


    def _read(self, group: str | None,
              weighed: Callable[[Mapping[str, Any]], bool]) -> ScopeListing:
        """One scope listed again, kept to what the window weighs. A listing cut short is
        an incomplete listing for the planner (it keeps the window's tasks, once); any
        other failure propagates (this DELETE fails, the next one tries again)."""
        listed_at = self.executor.clock()
        try:
            return read_scope(self.client, Scope(group), self.executor.clock,
                              self.deadline_at, only=weighed,
                              expect=2 * self._sizes.get(group, 0))
        except IncompleteListing as exc:
            return ScopeListing(group, exc.records, complete=False, listed_at=listed_at,
                                why_incomplete=exc.message, retryable=exc.retryable)


class _Window:
    """One re-listing's answers for a window of DELETEs, and when it was listed."""

    def __init__(self, answers: dict[str, PlannedDelete | Settlement],
                 scopes: frozenset[str | None], listed_at: datetime | None) -> None:
        self.answers = answers
        self.scopes = scopes
        self.listed_at = listed_at

    def answers_for(self, delete: PlannedDelete, freshness: _Freshness, now: datetime) -> bool:
        return (delete.failure_job_id in self.answers
                and self.scopes.issuperset(delete.scopes)
                and freshness._young(self.listed_at, now))


def _delete_failure(exc: SdrsError) -> str:
    # A 2xx/3xx other than 204 is no refusal: say what came back (sdrs/_errors.py).
    if exc.status_code is not None and exc.status_code < 400:
        return f"DELETE got an {exc.message}"
    return f"DELETE refused: {exc.message}"
