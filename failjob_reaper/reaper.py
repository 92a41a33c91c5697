"""The one executor of plans: list, plan (``failjob_reaper.plan``), delete, report.

A single event, a resource request (a CTS trace) and a sweep are the same
thing here: read the scopes the target may live in, build one pure
:class:`~failjob_reaper.plan.Plan`, send its DELETEs, interpret each answer.
Every DELETE goes through :meth:`Reaper.send_delete` and every outcome through
:meth:`Reaper.publish_outcome`: the one place to record what was decided
before a DELETE, and what came of it after.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from failjob_reaper.coordination import Shared, Timing
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.events import Rejected, ResourceRequest, TaskRequest, Trigger
from failjob_reaper.ids import is_valid_id
from failjob_reaper.logs import outcome_fields
from failjob_reaper.lookup import (
    LookupIndex,
    Scope,
    read_scope,
    scopes_to_search,
    search_order,
)
from failjob_reaper.outcomes import Causation, Outcome, OutcomeName, Publisher
from failjob_reaper.plan import (
    INCOMPLETE_RULE,
    Everything,
    OneResource,
    OneTask,
    Plan,
    PlannedDelete,
    PlannedRecord,
    ScopeListing,
    Settlement,
    Target,
    interpret_delete,
    make_plan,
)
from failjob_reaper.policy import Decision, Policy, decide
from failjob_reaper.sdrs import DeleteResult, IncompleteListing, SdrsError, TaskCenterClient

if TYPE_CHECKING:
    from failjob_reaper.alerts import Alerts

log = logging.getLogger("failjob_reaper")

Clock = Callable[[], datetime]
Emit = Callable[[Outcome], None]
Progress = Callable[[str, int, int], None]
"""Called with (phase, done, total); phases: "listing", "deleting"."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReaperConfig:
    project_id: str
    id_field: str = "resource_id"
    dry_run: bool = False
    listing_max_age: float = 60.0
    """Seconds a listing may be old when a DELETE rests on it (LISTING_MAX_AGE)."""
    event_deadline: float = 60.0
    """Seconds one event (or resource request) may spend listing and deleting."""
    list_concurrency: int = 1
    """Scopes one event lists at once (SWEEP_CONCURRENCY)."""


@dataclass(frozen=True)
class Job:
    """What one execution is for, and how it reports."""

    target: Target
    trigger: Trigger
    causation: Causation
    dry_run: bool
    force: bool = False
    task_id: str | None = None
    """The id the request named (reported when nothing is found)."""
    hint_group: str | None = None


@dataclass
class Execution:
    """What happened in one execution besides its outcomes (the sweep summary uses it)."""

    plan: Plan | None = None
    scopes: list[Scope] = field(default_factory=list)
    partial_reasons: list[str] = field(default_factory=list)
    listing_error: SdrsError | None = None
    """The first listing failure (single events report it as their outcome)."""
    left_over: int = 0


class Reaper:
    """The core use cases, over one client, one policy and one publisher."""

    def __init__(
        self,
        client: TaskCenterClient,
        policy: Policy,
        publisher: Publisher,
        config: ReaperConfig,
        *,
        clock: Clock = utc_now,
        shared: Shared | None = None,
    ) -> None:
        self.client = client
        self.policy = policy
        self.publisher = publisher
        self.config = config
        self.clock = clock
        self.index: LookupIndex | None = None
        """Where tasks were last listed (app.py sets it): one event reads one scope."""
        # Idempotency records, the delete journal, the lease: in the publisher's store.
        self.shared = shared or Shared(publisher.state, Timing(task_seconds=120,
                                                               sweep_seconds=600))
        self.alerts: Alerts | None = None
        """SMN alerts (app wiring): permanent failures outside sweeps, sweep digests."""

    # -- entry points -----------------------------------------------------------

    def handle(self, request: TaskRequest | Rejected) -> Outcome:
        """Decide, act, publish; return the outcome (publishing errors propagate).

        Idempotent per input (SPEC section 10): a repeat of an input decided before, on
        any instance, gets its first outcome; the same identity asking something else is
        refused (IdempotencyConflict on http, a ``rejected`` outcome otherwise).
        """
        pending = self.publisher.flush()  # outcomes any instance left, before new work
        return self.shared.run_task(self, request, pending)

    def decide_and_publish(
        self, request: TaskRequest | Rejected,
        recorded: Callable[[Outcome], None] | None = None,
    ) -> Outcome:
        outcome = self.reject(request) if isinstance(request, Rejected) else self.decide(request)
        if self.alerts is not None:
            self.alerts.task_failed(outcome)  # never raises: a person's mailbox waits
        try:
            return self.publish_outcome(outcome, recorded)
        except OutcomeDeliveryError as exc:
            exc.outcome, exc.failure_job_id = outcome.outcome, outcome.failure_job_id
            raise

    def handle_resource(self, request: ResourceRequest) -> list[Outcome]:
        """Decide every failed task of one resource; publish and return the outcomes.

        Publishing errors propagate after every outcome was tried (the rest are kept in
        the publisher's outbox).
        """
        self.publisher.flush()
        outcomes = self.decide_resource(request)
        if self.alerts is not None:
            for outcome in outcomes:
                self.alerts.task_failed(outcome)
        return self.publish_outcomes(outcomes)

    def reject(self, request: Rejected) -> Outcome:
        return Outcome(
            outcome="rejected",
            project_id=self.config.project_id,
            failure_job_id=request.task_id,
            trigger=request.trigger,
            dry_run=self.dry_run(False),
            causation=request.causation,
            reason=request.reason,
        )

    def decide(self, request: TaskRequest) -> Outcome:
        """Decide one task and act on it; the outcome is not published."""
        job = self.task_job(request)
        outcomes: list[Outcome] = []
        self.execute(job, outcomes.append)
        # One task named, one outcome: the first is the one for the record named.
        return outcomes[0]

    def decide_resource(self, request: ResourceRequest) -> list[Outcome]:
        job = Job(OneResource(request.resource_id), request.trigger, request.causation,
                  self.dry_run(request.dry_run), task_id=request.resource_id,
                  hint_group=request.server_group_id)
        outcomes: list[Outcome] = []
        self.execute(job, outcomes.append)
        return outcomes

    def task_job(self, request: TaskRequest) -> Job:
        return Job(OneTask(request.match_field, request.task_id), request.trigger,
                   request.causation, self.dry_run(request.dry_run), force=request.force,
                   task_id=request.task_id, hint_group=request.server_group_id)

    def dry_run(self, requested: bool) -> bool:
        """A request may turn dry run on, never off."""
        return requested or self.config.dry_run or self.policy.dry_run

    # -- the two doors: every DELETE and every outcome passes here -----------------

    def send_delete(
        self, client: TaskCenterClient, delete: PlannedDelete, job: Job
    ) -> DeleteResult:
        """Journal one planned DELETE, then send it (SdrsError when refused or out of
        retries; StateUnavailable when it could not be journaled: then it is not sent)."""
        record = delete.record.record
        entry = self.shared.before_delete(delete.failure_job_id, job.causation, {
            "rule": delete.decision.rule, "reason": delete.decision.reason,
            "job": dict(record), "server_group_id": delete.record.server_group_id,
        }, aliases=[str(record[f]) for f in ("job_id", "resource_id")
                    if is_valid_id(record.get(f))])
        result = client.delete_failure_job(delete.failure_job_id)
        self.shared.after_delete(delete.failure_job_id, entry, result.found,
                                 result.lost_answers > 0)
        return result

    def publish_outcome(
        self, outcome: Outcome, recorded: Callable[[Outcome], None] | None = None
    ) -> Outcome:
        """Settle against the delete journal, log and publish one outcome; return it as
        published. OutcomeDeliveryError when the sink refuses (it stays in the outbox);
        ``recorded`` is called once it is in the outbox, before it is sent."""
        outcome = self.shared.settle(outcome)
        _log_outcome(outcome)
        self.publisher.outcome(
            outcome, recorded=(lambda: recorded(outcome)) if recorded is not None else None)
        return outcome

    def publish_outcomes(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """``publish_outcome`` for several, in batches where the emitter takes batches
        (EventGrid); on a refusal what was not taken stays in the outbox."""
        settled = [self.shared.settle(outcome) for outcome in outcomes]
        for outcome in settled:
            _log_outcome(outcome)
        self.publisher.outcomes(settled)
        return settled

    # -- the executor ---------------------------------------------------------------

    def read(
        self,
        job: Job,
        *,
        client: TaskCenterClient | None = None,
        scopes: Sequence[Scope] | None = None,
        concurrency: int = 1,
        stop_at: Callable[[], bool] = lambda: False,
        deadline_at: float | None = None,
        progress: Progress | None = None,
        execution: Execution | None = None,
    ) -> tuple[list[ScopeListing], Execution]:
        """List what the plan for ``job`` needs. A scope that could not be listed (error,
        deadline) is an incomplete listing, with the reason."""
        client = client or self.client
        execution = execution or Execution()
        if scopes is None:
            scopes = scopes_to_search(client, job.hint_group, deadline_at, self.index)
        execution.scopes = list(scopes)
        lock = threading.Lock()
        done = 0

        def list_one(scope: Scope) -> ScopeListing:
            nonlocal done
            if stop_at():
                listing = ScopeListing(scope.server_group_id, (), complete=False,
                                       why_incomplete="deadline reached while listing")
            elif not isinstance(job.target, Everything) and execution.listing_error \
                    is not None and not isinstance(execution.listing_error, IncompleteListing):
                # One task's search that already failed: its outcome is that failure.
                listing = ScopeListing(scope.server_group_id, (), complete=False,
                                       why_incomplete="not listed after an earlier failure")
            else:
                try:
                    listing = read_scope(client, scope, self.clock, deadline_at)
                except IncompleteListing as exc:
                    with lock:
                        execution.listing_error = execution.listing_error or exc
                    listing = ScopeListing(scope.server_group_id, exc.records, complete=False,
                                           why_incomplete=exc.message)
                except SdrsError as exc:
                    with lock:
                        execution.listing_error = execution.listing_error or exc
                    listing = ScopeListing(scope.server_group_id, (), complete=False,
                                           why_incomplete=f"listing failed: {exc.message}")
            with lock:
                done += 1
                if progress is not None:
                    progress("listing", done, len(scopes))
            return listing

        if concurrency > 1 and len(scopes) > 1:
            with ThreadPoolExecutor(min(concurrency, len(scopes))) as pool:
                listings = list(pool.map(list_one, scopes))
        else:
            listings = [list_one(scope) for scope in scopes]
        for listing in listings:
            if not listing.complete:
                execution.partial_reasons.append(
                    f"{listing.where}: {listing.why_incomplete}"
                    if listing.why_incomplete and "deadline" not in listing.why_incomplete
                    else "deadline reached while listing")
        execution.partial_reasons[:] = list(dict.fromkeys(execution.partial_reasons))
        if self.index is not None:
            self.index.record(listings, whole=isinstance(job.target, Everything)
                              and job.hint_group is None
                              and all(listing.complete for listing in listings))
        return listings, execution

    def plan(self, job: Job, listings: Sequence[ScopeListing]) -> Plan:
        return make_plan(listings, self.policy, self.clock(), id_field=self.config.id_field,
                         target=job.target, force=job.force, dry_run=job.dry_run)

    def preview(self, job: Job, **read: Any) -> tuple[Plan, Execution]:
        """List and plan without executing (``sweep --dry-run``, ``plan``)."""
        listings, execution = self.read(job, **read)
        execution.plan = self.plan(job, listings)
        return execution.plan, execution

    def execute(
        self,
        job: Job,
        emit: Emit,
        *,
        client: TaskCenterClient | None = None,
        scopes: Sequence[Scope] | None = None,
        concurrency: int = 1,
        deadline_at: float | None = None,
        stop_deleting: Callable[[], bool] = lambda: False,
        progress: Progress | None = None,
        on_plan: Callable[[Plan], None] | None = None,
    ) -> Execution:
        """List, plan, delete, interpret; hand every outcome to ``emit``.

        ``deadline_at``: a ``time.monotonic()`` instant; single events default to
        ``event_deadline`` from now.
        """
        client = client or self.client
        report = _Reporter(self, job)
        if deadline_at is None:
            deadline_at = time.monotonic() + self.config.event_deadline
        end = deadline_at

        def stop_at() -> bool:
            return time.monotonic() >= end

        groups_incomplete: IncompleteListing | None = None
        # A single event weighs every scope its id may live in: the ones it reads, in
        # parallel (it waits for the slowest listing, not their sum), and with a warm
        # index the others by their recent views (_read_beyond_the_index).
        listing_concurrency = max(concurrency, self.config.list_concurrency)
        indexed = False
        if scopes is None and self.index is not None:
            scopes = self.index.scopes_for(job.target)  # where it was last listed, if known
            indexed = scopes is not None
        if scopes is None:
            try:
                scopes = scopes_to_search(client, job.hint_group, deadline_at, self.index)
            except IncompleteListing as exc:
                # Search the groups that are known; the plan deletes nothing (complete or
                # nothing), but what the policy keeps is still told as retained.
                groups_incomplete, scopes = exc, list(exc.scopes)
            except SdrsError as exc:
                emit(report.failed(exc, f"could not list protection groups: {exc.message}"))
                return Execution()
        listings, execution = self.read(job, client=client, scopes=scopes,
                                         concurrency=listing_concurrency, stop_at=stop_at,
                                         deadline_at=deadline_at, progress=progress)
        if indexed and execution.listing_error is None:
            try:
                listings, groups_incomplete = self._read_beyond_the_index(
                    job, client, listings, execution, stop_at=stop_at,
                    deadline_at=deadline_at, concurrency=listing_concurrency)
            except SdrsError as exc:
                emit(report.failed(exc, f"could not list protection groups: {exc.message}"))
                return Execution()
        if groups_incomplete is not None:
            listings.append(ScopeListing(None, (), complete=False, why_incomplete=(
                f"protection groups: {groups_incomplete.message}")))
            execution.listing_error = execution.listing_error or groups_incomplete
        error = execution.listing_error
        if error is not None and not isinstance(job.target, Everything):
            hard = any((listing.why_incomplete or "").startswith("listing failed")
                       for listing in listings)
            if hard or not isinstance(error, IncompleteListing):
                # A single event whose search could not finish: a redelivery may do better.
                emit(report.failed(error, f"could not list failed tasks: {error.message}"))
            else:
                self._incomplete(job, listings, error, report, emit)
            return execution
        plan = self.plan(job, listings)
        execution.plan = plan
        if on_plan is not None:
            on_plan(plan)
        for settlement in plan.settled:
            emit(report.settled(settlement))
        fresh = _Freshness(self, job, client, listings, deadline_at)
        self._delete_all(plan, job, client, report, emit, execution, fresh,
                         concurrency=concurrency,
                         stop=lambda: stop_at() or stop_deleting(), progress=progress)
        return execution

    def _read_beyond_the_index(
        self,
        job: Job,
        client: TaskCenterClient,
        listings: list[ScopeListing],
        execution: Execution,
        *,
        stop_at: Callable[[], bool],
        deadline_at: float | None,
        concurrency: int,
    ) -> tuple[list[ScopeListing], IncompleteListing | None]:
        """The index named where to look; read what it did not cover. The target not
        there: every other scope (the index was wrong). Found: any scope the index knows
        for the same DELETE id or resource that was not read yet. And when the plan on
        that view would DELETE, every other scope must be weighed too (the DELETE path is
        project-wide: complete or nothing) - each one either by its recent view (listed
        less than LISTING_MAX_AGE ago, without any record this DELETE must weigh) or by
        reading it now. So a warm index costs one listing also for an event that
        deletes; a view too old, or one that holds a key of interest, costs that scope's
        listing."""
        assert self.index is not None
        more = self.index.scopes_to_weigh(job.target, listings)
        read = [Scope(listing.server_group_id) for listing in listings]
        if more:
            extra, _ = self.read(job, client=client, scopes=more, stop_at=stop_at,
                                 deadline_at=deadline_at, concurrency=concurrency,
                                 execution=execution)
            read, listings = [*read, *more], [*listings, *extra]
        incomplete: IncompleteListing | None = None
        if more is None or self.plan(job, listings).deletes:
            recent = self.index.recent_groups() if more is not None else None
            if recent is not None:
                everywhere = search_order(job.hint_group, recent[0])
            else:
                try:
                    everywhere = scopes_to_search(client, job.hint_group, deadline_at,
                                                  self.index)
                except IncompleteListing as exc:  # the groups known; the plan deletes nothing
                    incomplete, everywhere = exc, list(exc.scopes)
            rest = [s for s in everywhere if s not in read]
            vouched: list[ScopeListing] = []
            while rest:
                # Every record read so far that the DELETE must weigh: a scope is vouched
                # for only if its view holds none of their keys; what is read may bring
                # new keys, so the views are asked again until nothing new is read.
                if more is not None and incomplete is None:
                    keys = self.index.keys_to_weigh(job.target, listings)
                    vouched = self.index.vouch(rest, keys)
                skip = {v.server_group_id for v in vouched}
                to_read = [s for s in rest if s.server_group_id not in skip]
                if not to_read:
                    break
                extra, _ = self.read(job, client=client, scopes=to_read, stop_at=stop_at,
                                     deadline_at=deadline_at, concurrency=concurrency,
                                     execution=execution)
                read, listings = [*read, *to_read], [*listings, *extra]
                rest = [s for s in rest if s.server_group_id in skip]
                vouched = []
            listings = [*listings, *vouched]
        execution.scopes = read
        return listings, incomplete

    def _incomplete(
        self, job: Job, listings: Sequence[ScopeListing], error: IncompleteListing,
        report: _Reporter, emit: Emit,
    ) -> None:
        """A single event whose listings are incomplete: no DELETE. What the policy keeps
        on its own is retained; the rest (and a task not found) is delete_failed."""
        plan = self.plan(job, listings)
        for settlement in plan.settled:
            decision = settlement.decision
            if settlement.outcome == "retained" and decision is not None \
                    and decision.rule != INCOMPLETE_RULE:
                emit(report.settled(settlement))
                continue
            emit(report.make(
                "delete_failed", planned=settlement.record,
                failure_job_id=settlement.failure_job_id, decision=decision,
                reason=f"not deleted: the listing is incomplete ({error.message})",
                attempts=error.attempts, error=error.as_dict()))
        if not plan.settled:
            emit(report.failed(error, f"not deleted: the listing is incomplete "
                                      f"({error.message})"))

    def _delete_all(
        self,
        plan: Plan,
        job: Job,
        client: TaskCenterClient,
        report: _Reporter,
        emit: Emit,
        execution: Execution,
        fresh: _Freshness,
        *,
        concurrency: int,
        stop: Callable[[], bool],
        progress: Progress | None,
    ) -> None:
        total = len(plan.deletes)
        if not total:
            return
        done = 0
        lock = threading.Lock()
        not_found: list[tuple[PlannedDelete, DeleteResult]] = []

        def delete_one(delete: PlannedDelete) -> None:
            nonlocal done
            if stop():
                return  # left for the next run; the summary says partial
            if plan.dry_run:
                emit(report.of(delete, "would_delete", dry_run=True))
            else:
                # No DELETE rests on a listing older than LISTING_MAX_AGE: re-list first.
                current = fresh.recheck(delete, report)
                if isinstance(current, Outcome):
                    emit(current)
                else:
                    result = self._delete(client, current, job, report, emit)
                    if result is not None:
                        with lock:
                            not_found.append((current, result))
            with lock:
                done += 1
                if progress is not None:
                    progress("deleting", done, total)

        # `concurrency` workers pull from one iterator: no Future per task (a 20,000-task
        # sweep would hold 20,000 of them), and an unexpected error still propagates.
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
        report: _Reporter,
        emit: Emit,
    ) -> DeleteResult | None:
        """Send one DELETE and report it, or return the 404 that needs a re-listing."""
        try:
            result = self.send_delete(client, delete, job)
        except SdrsError as exc:
            emit(report.failed(exc, _delete_failure(exc), delete))
            return None
        verdict = interpret_delete(result.status_code, earlier_answer_lost=result.lost_answers
                                   > 0, still_listed=None, id_field=self.config.id_field)
        if verdict.outcome is None:
            return result
        emit(report.of(delete, verdict.outcome, reason=verdict.reason,
                       status_code=result.status_code, attempts=result.attempts))
        return None

    def _settle_not_found(
        self,
        client: TaskCenterClient,
        not_found: list[tuple[PlannedDelete, DeleteResult]],
        report: _Reporter,
        emit: Emit,
    ) -> None:
        # One re-listing per scope tells "gone" from "wrong id field" for every 404 in it.
        id_field = self.config.id_field
        fresh: dict[str | None, set[str] | SdrsError] = {}
        for delete, result in not_found:
            still: bool | None = False
            failure: SdrsError | None = None
            for group in delete.scopes:
                if group not in fresh:
                    try:
                        listing = read_scope(client, Scope(group), self.clock,
                                             time.monotonic() + self.config.event_deadline)
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

    # -- compatibility for explain ------------------------------------------------------

    def decide_record(
        self,
        record: Mapping[str, Any],
        listing: Listing,
        scope: Scope,
        *,
        force: bool = False,
        now: datetime | None = None,
    ) -> Decision:
        """The plan's word on ``record`` within one scope's listing (``explain``)."""
        now = now or self.clock()
        raw_id = record.get(self.config.id_field)
        target: Target = (OneTask(self.config.id_field, raw_id) if isinstance(raw_id, str)
                          else OneTask("job_id", str(record.get("job_id"))))
        plan = make_plan([ScopeListing(scope.server_group_id, listing.records)], self.policy,
                         now, id_field=self.config.id_field, target=target, force=force)
        for settlement in plan.settled:
            if settlement.decision is not None:
                return settlement.decision
        for delete in plan.deletes:
            return delete.decision
        return decide(record, self.policy, now, siblings=listing.records, force=force,
                      server_group_id=scope.server_group_id)


class _Freshness:
    """Re-lists the scopes of a DELETE whose listing is older than LISTING_MAX_AGE and
    plans that one DELETE again on what is listed now (a new failure of the resource may
    have appeared meanwhile). Fresh re-listings are shared by the DELETEs of a scope."""

    def __init__(self, reaper: Reaper, job: Job, client: TaskCenterClient,
                 listings: Sequence[ScopeListing], deadline_at: float | None) -> None:
        self.reaper = reaper
        self.job = job
        self.client = client
        self.deadline_at = deadline_at
        self.max_age = timedelta(seconds=reaper.config.listing_max_age)
        self._current = {listing.server_group_id: listing for listing in listings}
        self._lock = threading.Lock()
        self._scope_locks: dict[str | None, threading.Lock] = {}

    def recheck(self, delete: PlannedDelete, report: _Reporter) -> PlannedDelete | Outcome:
        now = self.reaper.clock()
        if all(not self._stale(group, now) for group in delete.scopes):
            return delete
        try:
            listings = [self._listing(group) for group in delete.scopes]
        except SdrsError as exc:
            return report.failed(exc, "could not list again before the DELETE: "
                                 f"{exc.message}", delete)
        id_field = self.reaper.config.id_field
        plan = make_plan(listings, self.reaper.policy, self.reaper.clock(), id_field=id_field,
                         target=OneTask(id_field, delete.failure_job_id),
                         force=self.job.force, dry_run=False)
        if plan.deletes:
            return plan.deletes[0]
        settlement = plan.settled[0]
        if settlement.outcome == "already_deleted":
            return report.of(delete, "already_deleted",
                             reason="not listed any more when listed again before the DELETE")
        return report.settled(settlement)

    def _stale(self, group: str | None, now: datetime) -> bool:
        with self._lock:
            listing = self._current.get(group)
        return (listing is None or listing.listed_at is None
                or now - listing.listed_at > self.max_age)

    def _listing(self, group: str | None) -> ScopeListing:
        with self._lock:
            scope_lock = self._scope_locks.setdefault(group, threading.Lock())
        with scope_lock:  # one re-listing per scope, whichever worker asks first
            if self._stale(group, self.reaper.clock()):
                listing = read_scope(self.client, Scope(group), self.reaper.clock,
                                     self.deadline_at)
                with self._lock:
                    self._current[group] = listing
            with self._lock:
                return self._current[group]


class Listing:
    """The records of one listing (kept for ``explain``)."""

    def __init__(self, records: Iterable[Mapping[str, Any]], id_field: str) -> None:
        self.records = list(records)
        self._id_field = id_field


class _Reporter:
    """Fills in the fields every outcome of one job shares."""

    def __init__(self, reaper: Reaper, job: Job) -> None:
        self.reaper = reaper
        self.job = job

    def make(
        self,
        outcome: OutcomeName,
        *,
        planned: PlannedRecord | None = None,
        failure_job_id: str | None = None,
        decision: Decision | None = None,
        reason: str | None = None,
        status_code: int | None = None,
        attempts: int = 0,
        error: Mapping[str, Any] | None = None,
        dry_run: bool | None = None,
    ) -> Outcome:
        job = self.job
        return Outcome(
            outcome=outcome,
            project_id=self.reaper.config.project_id,
            failure_job_id=failure_job_id or job.task_id,
            trigger=job.trigger,
            dry_run=job.dry_run if dry_run is None else dry_run,
            causation=job.causation,
            rule=decision.rule if decision else None,
            reason=reason if reason is not None else (decision.reason if decision else ""),
            retain_until=decision.retain_until if decision else None,
            status_code=status_code,
            attempts=attempts,
            job=planned.record if planned else None,
            error=error,
            forced=bool(decision and decision.forced),
            server_group_id=planned.server_group_id if planned else job.hint_group,
        )

    def of(
        self, delete: PlannedDelete, outcome: OutcomeName, *, reason: str | None = None,
        status_code: int | None = None, attempts: int = 0,
        error: Mapping[str, Any] | None = None, dry_run: bool | None = None,
    ) -> Outcome:
        return self.make(outcome, planned=delete.record, failure_job_id=delete.failure_job_id,
                         decision=delete.decision, reason=reason, status_code=status_code,
                         attempts=attempts, error=error, dry_run=dry_run)

    def settled(self, settlement: Settlement) -> Outcome:
        return self.make(settlement.outcome, planned=settlement.record,
                         failure_job_id=settlement.failure_job_id,
                         decision=settlement.decision, reason=settlement.reason,
                         error=settlement.error)

    def failed(
        self, exc: SdrsError, reason: str, delete: PlannedDelete | None = None
    ) -> Outcome:
        if delete is None:
            return self.make("delete_failed", reason=reason, status_code=exc.status_code,
                             attempts=exc.attempts, error=exc.as_dict())
        return self.of(delete, "delete_failed", reason=reason, status_code=exc.status_code,
                       attempts=exc.attempts, error=exc.as_dict())


def _delete_failure(exc: SdrsError) -> str:
    # A 2xx/3xx other than 204 is no refusal: say what came back (sdrs/_errors.py).
    if exc.status_code is not None and exc.status_code < 400:
        return f"DELETE got an {exc.message}"
    return f"DELETE refused: {exc.message}"


def _log_outcome(outcome: Outcome) -> None:
    log.info(
        "%s failure_job_id=%s trigger=%s rule=%s status=%s attempts=%d reason=%s",
        outcome.outcome, outcome.failure_job_id, outcome.trigger, outcome.rule,
        outcome.status_code, outcome.attempts, outcome.reason, extra=outcome_fields(outcome),
    )
