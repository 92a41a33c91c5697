"""Building outcomes, and the one door every outcome leaves by.

:class:`Reporter` fills in what every outcome of one job shares (project,
trigger, causation, dry run) and turns plan entries and DELETE answers into
:class:`~failjob_reaper.outcomes.Outcome` objects. :class:`OutcomeDoor` is the
only way an outcome reaches consumers: it settles the outcome against the
delete journal (``deleted`` exactly once per DELETE this deployment sent), logs
it and hands it to the publisher, or keeps it in the outbox when the caller
knows the sink is down. Sweeps, single events and manual calls all use it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from failjob_reaper.logs import outcome_fields
from failjob_reaper.outcomes import Causation, Outcome, OutcomeName, Publisher, Trigger
from failjob_reaper.plan import PlannedDelete, PlannedRecord, Settlement, Target
from failjob_reaper.state import StateUnavailable

if TYPE_CHECKING:
    from failjob_reaper.exactly_once import ExactlyOnce
    from failjob_reaper.policy import Decision
    from failjob_reaper.sdrs import SdrsError

log = logging.getLogger("failjob_reaper")


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
    task_field: str | None = None
    """The record field ``task_id`` names (reported when nothing is found)."""


class Reporter:
    """Fills in the fields every outcome of one job shares."""

    def __init__(self, project_id: str, id_field: str, job: Job) -> None:
        self.project_id = project_id
        self.id_field = id_field
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
            project_id=self.project_id,
            # The record's own id when a record was found (None: it has no usable one);
            # else the id the input gave.
            failure_job_id=failure_job_id if planned is not None else (
                failure_job_id or job.task_id),
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
            # Which record field failure_job_id is: the configured one for a record found,
            # else the field the input named the task by.
            failure_job_id_field=self.id_field if planned is not None or failure_job_id
            else job.task_field,
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


class OutcomeDoor:
    """The one way out for outcomes: settle against the journal, log, publish."""

    def __init__(self, shared: ExactlyOnce, publisher: Publisher) -> None:
        self.shared = shared
        self.publisher = publisher

    def publish(
        self, outcome: Outcome, recorded: Callable[[Outcome], None] | None = None
    ) -> Outcome:
        """Settle, log and publish one outcome; return it as published.
        OutcomeDeliveryError when the sink refuses (it stays in the outbox); ``recorded``
        is called once it is in the outbox, before it is sent."""
        outcome = self.settle(outcome)
        _log_outcome(outcome)
        self.publisher.outcome(
            outcome, recorded=(lambda: recorded(outcome)) if recorded is not None else None)
        return outcome

    def publish_many(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """``publish`` for several, in batches where the emitter takes batches
        (EventGrid); on a refusal what was not taken stays in the outbox."""
        settled = [self.settle(outcome) for outcome in outcomes]
        for outcome in settled:
            _log_outcome(outcome)
        self.publisher.outcomes(settled)
        return settled

    def keep(self, outcome: Outcome) -> Outcome:
        """Settle, log and keep one outcome for a later delivery, without trying now
        (the caller knows the sink is down)."""
        outcome = self.settle(outcome)
        _log_outcome(outcome)
        self.publisher.defer(outcome)
        return outcome

    def settle(self, outcome: Outcome) -> Outcome:
        """``deleted`` exactly once per DELETE sent (the journal); with the state store
        unreachable the outcome is told as it is, never dropped (the journal's report
        then waits for the next instance that finds the task gone)."""
        try:
            return self.shared.settle(outcome)
        except StateUnavailable as exc:
            log.warning("outcome %s for %s not settled against the journal: %s",
                        outcome.outcome, outcome.failure_job_id or "-", exc)
            return outcome


def _log_outcome(outcome: Outcome) -> None:
    log.info(
        "%s failure_job_id=%s trigger=%s rule=%s status=%s attempts=%d reason=%s",
        outcome.outcome, outcome.failure_job_id, outcome.trigger, outcome.rule,
        outcome.status_code, outcome.attempts, outcome.reason, extra=outcome_fields(outcome),
    )
