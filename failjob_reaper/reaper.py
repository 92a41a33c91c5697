"""The use cases: decide one task, every task of one resource, or plan for a preview.

A single event, a resource request (a CTS trace) and a sweep are the same
thing here: read the scopes the target may live in (``reading``), build one
pure :class:`~failjob_reaper.plan.Plan`, send its DELETEs (``executing``),
turn each answer into an outcome (``reporting``). Every DELETE goes through
the DELETE door (``executing.DeleteDoor``) and every outcome through the
outcome door (``reporting.OutcomeDoor``), sweeps included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.events import Rejected, ResourceRequest, TaskRequest
from failjob_reaper.exactly_once import ExactlyOnce, Timing
from failjob_reaper.executing import DeleteDoor, Emit, PlanExecutor
from failjob_reaper.outcomes import Outcome, Publisher
from failjob_reaper.plan import (
    Everything,
    OneResource,
    OneTask,
    Plan,
    PlannedDelete,
    ScopeListing,
    make_plan,
)
from failjob_reaper.policy import Policy
from failjob_reaper.reading import Execution, Progress, ScopeReader
from failjob_reaper.reporting import Job, OutcomeDoor, Reporter
from failjob_reaper.scopes import LookupIndex, Scope
from failjob_reaper.sdrs import DeleteResult, IncompleteListing, SdrsError, TaskCenterClient

if TYPE_CHECKING:
    from failjob_reaper.alerts import Alerts

__all__ = ["Clock", "Emit", "Execution", "Job", "Progress", "Reaper", "ReaperConfig",
           "utc_now"]

log = logging.getLogger("failjob_reaper")

Clock = Callable[[], datetime]


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
        shared: ExactlyOnce | None = None,
    ) -> None:
        self.client = client
        self.policy = policy
        self.publisher = publisher
        self.config = config
        self.clock = clock
        # Idempotency records, the delete journal, the lease: in the publisher's store.
        self.shared = shared or ExactlyOnce(publisher.state, Timing(task_seconds=120,
                                                               sweep_seconds=600))
        self.alerts: Alerts | None = None
        """SMN alerts (app wiring): permanent failures outside sweeps, sweep digests."""
        self.reader = ScopeReader(client, self.plan, clock,
                                  list_concurrency=config.list_concurrency)
        self.deletes = DeleteDoor(self.shared)
        self.outcomes = OutcomeDoor(self.shared, publisher)
        self.executor = PlanExecutor(self.deletes, policy, clock, id_field=config.id_field,
                                     listing_max_age=config.listing_max_age,
                                     event_deadline=config.event_deadline)

    @property
    def index(self) -> LookupIndex | None:
        """Where tasks were last listed (app.py sets it): one event reads one scope."""
        return self.reader.index

    @index.setter
    def index(self, index: LookupIndex | None) -> None:
        self.reader.index = index

    # -- entry points -----------------------------------------------------------

    def handle(self, request: TaskRequest | Rejected) -> Outcome:
        """Decide, act, publish; return the outcome (publishing errors propagate).

        Idempotent per input (docs/state.md): a repeat of an input decided before, on
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

    def explain(self, request: TaskRequest) -> tuple[Plan, Execution]:
        """The plan an event naming this task would act on (``failjob-reaper explain``):
        the same job, the same reading, the same planner; nothing is executed. A listing
        that failed outright raises its SdrsError, as the event reports it."""
        plan, execution = self.preview(self.task_job(request),
                                       concurrency=self.config.list_concurrency)
        error = execution.listing_error
        if error is not None and not isinstance(error, IncompleteListing):
            raise error
        return plan, execution

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
                  hint_group=request.server_group_id, task_field="resource_id")
        outcomes: list[Outcome] = []
        self.execute(job, outcomes.append)
        return outcomes

    def task_job(self, request: TaskRequest) -> Job:
        return Job(OneTask(request.match_field, request.task_id), request.trigger,
                   request.causation, self.dry_run(request.dry_run), force=request.force,
                   task_id=request.task_id, hint_group=request.server_group_id,
                   task_field=request.match_field)

    def dry_run(self, requested: bool) -> bool:
        """A request may turn dry run on, never off."""
        return requested or self.config.dry_run or self.policy.dry_run

    # -- the two doors: every DELETE and every outcome passes here -----------------

    def send_delete(
        self, client: TaskCenterClient, delete: PlannedDelete, job: Job,
        deadline: float | None = None,
    ) -> DeleteResult:
        """The DELETE door (``executing.DeleteDoor``)."""
        return self.deletes.send(client, delete, job, deadline)

    def publish_outcome(
        self, outcome: Outcome, recorded: Callable[[Outcome], None] | None = None
    ) -> Outcome:
        """The outcome door (``reporting.OutcomeDoor``): settle, log, publish one."""
        return self.outcomes.publish(outcome, recorded)

    def publish_outcomes(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """The outcome door for several (batched where the emitter takes batches)."""
        return self.outcomes.publish_many(outcomes)

    def keep_outcome(self, outcome: Outcome) -> Outcome:
        """The outcome door, when the sink is known to be down: kept in the outbox."""
        return self.outcomes.keep(outcome)

    # -- list, plan, execute ----------------------------------------------------------

    def plan(self, job: Job, listings: Sequence[ScopeListing]) -> Plan:
        return make_plan(listings, self.policy, self.clock(), id_field=self.config.id_field,
                         target=job.target, force=job.force, dry_run=job.dry_run)

    def preview(
        self,
        job: Job,
        *,
        client: TaskCenterClient | None = None,
        scopes: Sequence[Scope] | None = None,
        concurrency: int = 1,
        deadline_at: float | None = None,
        stop_at: Callable[[], bool] | None = None,
        progress: Progress | None = None,
    ) -> tuple[Plan, Execution]:
        """List and plan without executing (``sweep --dry-run``, ``plan``, ``explain``):
        the same listings and the same plan an execution of ``job`` would act on."""
        if deadline_at is None:
            deadline_at = time.monotonic() + self.config.event_deadline
        end = deadline_at
        listings, execution = self.reader.gather(
            job, client=client, scopes=scopes, concurrency=concurrency,
            deadline_at=deadline_at, progress=progress,
            stop_at=stop_at or (lambda: time.monotonic() >= end))
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
        report = self.reporter(job)
        if deadline_at is None:
            deadline_at = time.monotonic() + self.config.event_deadline
        end = deadline_at

        def stop_at() -> bool:
            return time.monotonic() >= end

        try:
            listings, execution = self.reader.gather(
                job, client=client, scopes=scopes, concurrency=concurrency,
                deadline_at=deadline_at, stop_at=stop_at, progress=progress)
        except SdrsError as exc:
            emit(report.failed(exc, f"could not list protection groups: {exc.message}"))
            return Execution()
        error = execution.listing_error
        if error is not None and not isinstance(job.target, Everything) and (
                not isinstance(error, IncompleteListing)
                or any((listing.why_incomplete or "").startswith("listing failed")
                       for listing in listings)):
            # A single event whose search could not finish: a redelivery may do better.
            emit(report.failed(error, f"could not list failed tasks: {error.message}"))
            return execution
        plan = self.plan(job, listings)
        execution.plan = plan
        if on_plan is not None:
            on_plan(plan)
        for settlement in plan.settled:
            emit(report.settled(settlement))
        self.executor.run(plan, listings, job, client, report, emit, execution,
                          deadline_at=deadline_at, concurrency=concurrency,
                          stop=lambda: stop_at() or stop_deleting(), progress=progress)
        return execution

    def reporter(self, job: Job) -> Reporter:
        return Reporter(self.config.project_id, self.config.id_field, job)


