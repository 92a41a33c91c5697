"""Decide one failed task: look it up, ask the policy, delete when it says so.

This is the one code path behind job-failed and expiry events, manual retries
and each task of a sweep. It returns an ``Outcome``; publishing is the
caller's (``Reaper.handle``) so that a sweep can batch and count.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from failjob_reaper.coordination import Shared, Timing
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.events import Rejected, TaskRequest
from failjob_reaper.ids import is_valid_id
from failjob_reaper.lookup import Found, Scope, find_task, still_listed
from failjob_reaper.outcomes import Causation, Outcome, Publisher
from failjob_reaper.policy import Decision, Policy, decide
from failjob_reaper.sdrs import DeleteResult, SdrsError, TaskCenterClient

log = logging.getLogger("failjob_reaper")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReaperConfig:
    project_id: str
    id_field: str = "resource_id"
    dry_run: bool = False


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
        # Idempotency records, the delete journal, the lease: in the publisher's store.
        self.shared = shared or Shared(publisher.state, Timing(task_seconds=120,
                                                               sweep_seconds=600))

    # -- one task ---------------------------------------------------------------

    def handle(self, request: TaskRequest | Rejected) -> Outcome:
        """Decide, act, publish; return the outcome (publishing errors propagate).

        Idempotent per input (SPEC section 10): a repeat of an input decided before
        gets its first outcome; the same identity asking something else is refused
        (IdempotencyConflict on http, a ``rejected`` outcome otherwise).
        """
        pending = self.publisher.flush()  # outcomes any instance left, before new work
        return self.shared.run_task(self, request, pending)

    def decide_and_publish(self, request: TaskRequest | Rejected,
                           recorded: Callable[[Outcome], None] | None = None) -> Outcome:
        outcome = self.reject(request) if isinstance(request, Rejected) else self.decide(request)
        try:
            return self.publish_outcome(outcome, recorded=recorded)
        except OutcomeDeliveryError as exc:
            exc.outcome, exc.failure_job_id = outcome.outcome, outcome.failure_job_id
            raise

    # -- the two doors: every DELETE and every outcome passes here -----------------

    def send_delete(self, client: TaskCenterClient, failure_job_id: str, causation: Causation,
                    decision: Mapping[str, Any]) -> DeleteResult:
        """Journal the DELETE, then send it (StateUnavailable: not sent)."""
        self.shared.before_delete(failure_job_id, causation, decision)
        return client.delete_failure_job(failure_job_id)

    def publish_outcome(self, outcome: Outcome,
                        recorded: Callable[[Outcome], None] | None = None) -> Outcome:
        """Settle against the journal, log and publish one outcome; return it as published
        (OutcomeDeliveryError when the sink refuses: it stays in the outbox)."""
        outcome = self.shared.settle(outcome)
        _log_outcome(outcome)
        self.publisher.outcome(
            outcome, recorded=(lambda: recorded(outcome)) if recorded is not None else None)
        return outcome

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
        base = _OutcomeBase(self, request)
        try:
            found = find_task(
                self.client, request.match_field, request.task_id, request.server_group_id
            )
        except SdrsError as exc:
            return base.failed(exc, f"could not list failed tasks: {exc.message}")
        if found is None:
            return base.make(
                "already_deleted",
                reason="not listed at the top level nor in any protection group",
            )
        failure_job_id = found.record.get(self.config.id_field)
        if not is_valid_id(failure_job_id):
            return base.make(
                "delete_failed",
                found=found,
                reason=(
                    f"the listed record has no usable {self.config.id_field!r}; "
                    "check SDRS_FAILURE_JOB_ID_FIELD"
                ),
                error={"code": "reaper.no_id", "message": "no failure_job_id", "retryable": False},
            )
        listing = Listing(found.scope_records, self.config.id_field)
        decision = self.decide_record(found.record, listing, found.scope, force=request.force)
        return self.act(base, found, str(failure_job_id), decision, self.dry_run(request.dry_run))

    def decide_record(
        self,
        record: Mapping[str, Any],
        listing: Listing,
        scope: Scope,
        *,
        force: bool = False,
        now: datetime | None = None,
    ) -> Decision:
        """The policy's word on ``record``, given the other records of its listing."""
        now = now or self.clock()
        siblings = listing.same_resource(record)
        decision = decide(
            record, self.policy, now, siblings=siblings, force=force,
            server_group_id=scope.server_group_id,
        )
        if decision.action != "delete":
            return decision
        # One DELETE path may name several listed records (the id field is a setting):
        # delete only when the policy lets every one of them go.
        for other in listing.same_delete_id(record):
            if other is record:
                continue
            other_decision = decide(
                other, self.policy, now, siblings=listing.same_resource(other), force=force,
                server_group_id=scope.server_group_id,
            )
            if other_decision.action != "delete":
                return Decision(
                    action="retain",
                    rule=other_decision.rule,
                    reason=(
                        f"another failed task with the same {self.config.id_field} is kept: "
                        f"{other_decision.reason}"
                    ),
                    retain_until=other_decision.retain_until,
                )
        return decision

    def act(
        self,
        base: _OutcomeBase,
        found: Found,
        failure_job_id: str,
        decision: Decision,
        dry_run: bool,
    ) -> Outcome:
        """Turn a decision into an outcome, sending the DELETE when it is due."""
        if decision.action == "retain":
            return base.make("retained", found=found, failure_job_id=failure_job_id,
                             decision=decision, dry_run=dry_run)
        if dry_run:
            return base.make("would_delete", found=found, failure_job_id=failure_job_id,
                             decision=decision, dry_run=True)
        try:
            result = self.send_delete(self.client, failure_job_id, base.request.causation,
                                      journal_entry(found, decision))
        except SdrsError as exc:
            return base.failed(exc, f"DELETE refused: {exc.message}", found=found,
                               failure_job_id=failure_job_id, decision=decision)
        if result.found:
            return base.make("deleted", found=found, failure_job_id=failure_job_id,
                             decision=decision, status_code=result.status_code,
                             attempts=result.attempts)
        return self._after_404(base, found, failure_job_id, decision, result.attempts)

    def _after_404(
        self, base: _OutcomeBase, found: Found, failure_job_id: str, decision: Decision,
        attempts: int,
    ) -> Outcome:
        # 404 means gone - unless the record is still listed, then the id field is wrong.
        try:
            listed = still_listed(self.client, found.scope, self.config.id_field, failure_job_id)
        except SdrsError as exc:
            return base.failed(exc, "DELETE answered 404 and the re-check failed",
                               found=found, failure_job_id=failure_job_id, decision=decision)
        if listed:
            return base.make(
                "delete_failed", found=found, failure_job_id=failure_job_id, decision=decision,
                status_code=404, attempts=attempts,
                reason=(
                    f"DELETE by {self.config.id_field} answered 404 but the task is still "
                    "listed: SDRS_FAILURE_JOB_ID_FIELD probably names the wrong field"
                ),
                error={"code": "HTTP.404", "message": "still listed after 404",
                       "retryable": False},
            )
        return base.make("already_deleted", found=found, failure_job_id=failure_job_id,
                         decision=decision, status_code=404, attempts=attempts,
                         reason="DELETE answered 404: deleted by someone else")

    def dry_run(self, requested: bool) -> bool:
        """A request may turn dry run on, never off."""
        return requested or self.config.dry_run or self.policy.dry_run


class Listing:
    """The records of one listing, indexed for keep-latest and shared DELETE ids."""

    def __init__(self, records: Iterable[Mapping[str, Any]], id_field: str) -> None:
        self.records = list(records)
        self._by_resource: dict[object, list[Mapping[str, Any]]] = defaultdict(list)
        self._by_id: dict[object, list[Mapping[str, Any]]] = defaultdict(list)
        for record in self.records:
            self._by_resource[_hashable(record.get("resource_id"))].append(record)
            self._by_id[_hashable(record.get(id_field))].append(record)
        self._id_field = id_field

    def same_resource(self, record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        key = _hashable(record.get("resource_id"))
        return self._by_resource.get(key, []) if key is not None else []

    def same_delete_id(self, record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        key = _hashable(record.get(self._id_field))
        return self._by_id.get(key, []) if key is not None else []


def _hashable(value: object) -> object:
    return value if isinstance(value, str | int) else None


class _OutcomeBase:
    """Fills in the fields every outcome of one request shares."""

    def __init__(self, reaper: Reaper, request: TaskRequest) -> None:
        self.reaper = reaper
        self.request = request

    def make(
        self,
        outcome: str,
        *,
        found: Found | None = None,
        failure_job_id: str | None = None,
        decision: Decision | None = None,
        reason: str | None = None,
        status_code: int | None = None,
        attempts: int = 0,
        error: Mapping[str, Any] | None = None,
        dry_run: bool | None = None,
    ) -> Outcome:
        request = self.request
        return Outcome(
            outcome=outcome,
            project_id=self.reaper.config.project_id,
            failure_job_id=failure_job_id or request.task_id,
            trigger=request.trigger,
            dry_run=self.reaper.dry_run(request.dry_run) if dry_run is None else dry_run,
            causation=request.causation,
            rule=decision.rule if decision else None,
            reason=reason if reason is not None else (decision.reason if decision else ""),
            retain_until=decision.retain_until if decision else None,
            status_code=status_code,
            attempts=attempts,
            job=found.record if found else None,
            error=error,
            forced=bool(decision and decision.forced),
            server_group_id=found.scope.server_group_id if found else request.server_group_id,
        )

    def failed(
        self,
        exc: SdrsError,
        reason: str,
        *,
        found: Found | None = None,
        failure_job_id: str | None = None,
        decision: Decision | None = None,
    ) -> Outcome:
        return self.make(
            "delete_failed", found=found, failure_job_id=failure_job_id, decision=decision,
            reason=reason, status_code=exc.status_code, attempts=exc.attempts,
            error=exc.as_dict(),
        )


def journal_entry(found: Found, decision: Decision) -> dict[str, Any]:
    """What the delete journal keeps, to report the DELETE if its sender cannot."""
    return {"rule": decision.rule, "reason": decision.reason, "job": dict(found.record),
            "server_group_id": found.scope.server_group_id}


def _log_outcome(outcome: Outcome) -> None:
    log.info(
        "%s failure_job_id=%s trigger=%s rule=%s status=%s attempts=%d reason=%s",
        outcome.outcome, outcome.failure_job_id, outcome.trigger, outcome.rule,
        outcome.status_code, outcome.attempts, outcome.reason,
    )
