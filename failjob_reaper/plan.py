"""The one pure planner: what is deleted, what is kept, and what each answer means.

Pure functions of (listings, policy, now, target): no I/O, no clock, no client.
The executor (``reaper.Executor``) lists the scopes, calls :func:`make_plan`,
sends the planned DELETEs and turns each answer into an outcome with
:func:`interpret_delete`.

The safety rules, all here and nowhere else:

* one record is one record: the same ``job_id`` on two pages or in two scopes
  is decided once and counted once by the guards (records without a
  ``job_id`` are told apart by their content);
* a record listed in several scopes is retained if any scope's view retains
  it (a rule may match on ``server_group_id``);
* keep-latest ranks a record among every distinct record of its
  ``resource_id`` in every scope read;
* the DELETE path is project-wide, so a DELETE for id X removes every listed
  record with X in its id field, in every scope: it is planned only when each
  of them may go;
* a listing that is not complete could hide a record with any id, which a
  DELETE would remove unseen: while any scope read is incomplete, no DELETE is
  planned at all (every task that would go is retained, rule
  ``incomplete-listing``) - complete or nothing;
* the guards (sweeps only) count distinct records: those the planned DELETEs
  remove against those listed;
* an id that is not a plain token, or that names another endpoint, is never
  planned (``ids.is_valid_id``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from failjob_reaper.ids import is_valid_id
from failjob_reaper.policy import Decision, Policy, decide

Record = Mapping[str, Any]

INCOMPLETE_RULE = "incomplete-listing"
GUARD_RULE = "guard"
SHARED_ID_PREFIX = "another failed task with the same "


# -- input -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Everything:
    """A sweep: every task of the scopes read."""


@dataclass(frozen=True)
class OneTask:
    """One task, named by ``value`` in record field ``field`` (events, /retry)."""

    field: str
    value: str


@dataclass(frozen=True)
class OneResource:
    """Every failed task of one ``resource_id`` (a CTS trace names a resource)."""

    resource_id: str


Target = Everything | OneTask | OneResource


@dataclass(frozen=True)
class ScopeListing:
    """What one scope's listing said: its records, whether that was all, and when."""

    server_group_id: str | None
    records: Sequence[Record]
    complete: bool = True
    why_incomplete: str | None = None
    listed_at: datetime | None = None

    @property
    def where(self) -> str:
        return f"group {self.server_group_id}" if self.server_group_id else "the top level"


# -- output ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRecord:
    """One distinct record, where it was listed and the policy's word on it alone."""

    key: str
    record: Record
    scopes: tuple[str | None, ...]
    decision: Decision
    failure_job_id: str | None
    """The record's id field, when it is a usable DELETE id; else None."""
    targeted: bool

    @property
    def server_group_id(self) -> str | None:
        return self.scopes[0]

    @property
    def job_id(self) -> str | None:
        value = self.record.get("job_id")
        return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class PlannedDelete:
    """One DELETE to send, the record it is reported for, and every record it removes."""

    failure_job_id: str
    record: PlannedRecord
    removes: tuple[PlannedRecord, ...]
    decision: Decision

    @property
    def scopes(self) -> tuple[str | None, ...]:
        """Every scope holding a record this DELETE removes (for the 404 re-check)."""
        seen: dict[str | None, None] = {}
        for planned in self.removes:
            for scope in planned.scopes:
                seen.setdefault(scope, None)
        return tuple(seen)


Settled = Literal["retained", "already_deleted", "delete_failed"]


@dataclass(frozen=True)
class Settlement:
    """An outcome that needs no DELETE."""

    outcome: Settled
    record: PlannedRecord | None
    failure_job_id: str | None
    decision: Decision | None
    reason: str
    error: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class GuardVerdict:
    """The sweep guards, counted over distinct records."""

    planned: int
    """Distinct records the planned DELETEs would remove."""
    listed: int
    """Distinct records listed."""
    max_deletions: int
    max_fraction: float
    tripped: str | None = None
    """"max_deletions_per_sweep" or "max_deletion_fraction" when a guard trips."""
    reason: str | None = None


@dataclass(frozen=True)
class Plan:
    target: Target
    records: tuple[PlannedRecord, ...]
    """Every distinct record read, in listing order, with its own decision."""
    deletes: tuple[PlannedDelete, ...]
    """The DELETEs to send (dry run: to report as would_delete)."""
    settled: tuple[Settlement, ...]
    """Outcomes that need no DELETE."""
    guard: GuardVerdict | None
    """Sweeps only; when it tripped, ``deletes`` is empty and the tasks are settled."""
    dry_run: bool
    incomplete: tuple[str, ...] = field(default=())
    """Why listings were not complete; non-empty means no DELETE was planned."""

    @property
    def listed(self) -> int:
        return len(self.records)


# -- planning ----------------------------------------------------------------------------


def record_key(record: Record) -> str:
    """The identity of a listed record: its job_id, else its whole content."""
    job_id = record.get("job_id")
    if isinstance(job_id, str) and job_id:
        return "job:" + job_id
    return "content:" + json.dumps(record, sort_keys=True, default=str)


def make_plan(
    listings: Sequence[ScopeListing],
    policy: Policy,
    now: datetime,
    *,
    id_field: str,
    target: Target,
    force: bool = False,
    dry_run: bool = False,
) -> Plan:
    """Decide every distinct record of ``listings`` and plan the DELETEs for ``target``."""
    distinct = _distinct(listings)
    by_resource: dict[str, list[Record]] = defaultdict(list)
    for record, _ in distinct.values():
        resource_id = record.get("resource_id")
        if isinstance(resource_id, str) and resource_id:
            by_resource[resource_id].append(record)

    records: list[PlannedRecord] = []
    found_one = False
    for key, (record, scopes) in distinct.items():
        resource_id = record.get("resource_id")
        siblings = by_resource.get(resource_id, []) if isinstance(resource_id, str) else []
        decision = _decide_everywhere(record, scopes, policy, now, siblings, force)
        raw_id = record.get(id_field)
        targeted = _targeted(record, target)
        if isinstance(target, OneTask):
            # One task named: the first match in search order (the hinted scope first).
            targeted, found_one = targeted and not found_one, found_one or targeted
        records.append(PlannedRecord(
            key=key, record=record, scopes=scopes, decision=decision,
            failure_job_id=str(raw_id) if is_valid_id(raw_id) else None,
            targeted=targeted,
        ))

    by_id: dict[str, list[PlannedRecord]] = defaultdict(list)
    for planned in records:
        if planned.failure_job_id is not None:
            by_id[planned.failure_job_id].append(planned)

    incomplete = tuple(
        f"listing {listing.where} incomplete: {listing.why_incomplete or 'unknown reason'}"
        for listing in listings if not listing.complete
    )
    deletes: list[PlannedDelete] = []
    settled: list[Settlement] = []
    done_ids: set[str] = set()
    for planned in records:
        if not planned.targeted:
            continue
        if planned.failure_job_id is None:
            settled.append(_no_usable_id(planned, id_field))
            continue
        if planned.failure_job_id in done_ids:
            continue  # one DELETE path is one task to the API: one decision, one outcome
        done_ids.add(planned.failure_job_id)
        sharing = by_id[planned.failure_job_id]
        decision = _shared_decision(planned, sharing, id_field)
        if decision.action == "retain":
            settled.append(_retained(planned, decision))
        elif incomplete:
            settled.append(_retained(planned, Decision(
                "retain", INCOMPLETE_RULE,
                "not deleted: a listing was incomplete and could hide a record this DELETE "
                "would remove (" + "; ".join(incomplete) + ")", None,
            )))
        else:
            deletes.append(PlannedDelete(planned.failure_job_id, planned, tuple(sharing),
                                         decision))

    if isinstance(target, OneTask) and not any(p.targeted for p in records):
        settled.append(Settlement(
            "already_deleted", None, None, None,
            "not listed at the top level nor in any protection group",
        ))

    guard = None
    if isinstance(target, Everything):
        guard = guard_verdict(deletes, len(records), policy)
        if guard.tripped is not None:
            assert guard.reason is not None
            settled.extend(
                _retained(d.record, Decision("retain", GUARD_RULE, guard.reason, None))
                for d in deletes
            )
            deletes = []
    return Plan(target, tuple(records), tuple(deletes), tuple(settled), guard, dry_run,
                incomplete)


def guard_verdict(
    deletes: Sequence[PlannedDelete], listed: int, policy: Policy
) -> GuardVerdict:
    """The count and fraction guards over the distinct records the DELETEs remove."""
    guards = policy.guards
    planned = len({r.key for d in deletes for r in d.removes})
    verdict = GuardVerdict(planned, listed, guards.max_deletions_per_sweep,
                           guards.max_deletion_fraction)
    if planned > guards.max_deletions_per_sweep:
        return _tripped(verdict, "max_deletions_per_sweep",
                        f"{planned} deletions planned, more than max_deletions_per_sweep "
                        f"{guards.max_deletions_per_sweep}: nothing deleted")
    if listed and planned / listed > guards.max_deletion_fraction:
        return _tripped(verdict, "max_deletion_fraction",
                        f"{planned} of {listed} listed tasks planned for deletion, more than "
                        f"max_deletion_fraction {guards.max_deletion_fraction:g}: nothing "
                        "deleted")
    return verdict


def _tripped(verdict: GuardVerdict, which: str, reason: str) -> GuardVerdict:
    return GuardVerdict(verdict.planned, verdict.listed, verdict.max_deletions,
                        verdict.max_fraction, which, reason)


def _distinct(
    listings: Sequence[ScopeListing],
) -> dict[str, tuple[Record, tuple[str | None, ...]]]:
    out: dict[str, tuple[Record, tuple[str | None, ...]]] = {}
    for listing in listings:
        for record in listing.records:
            if not isinstance(record, Mapping):
                continue
            key = record_key(record)
            if key in out:
                first, scopes = out[key]
                if listing.server_group_id not in scopes:
                    out[key] = (first, (*scopes, listing.server_group_id))
            else:
                out[key] = (record, (listing.server_group_id,))
    return out


def _decide_everywhere(
    record: Record,
    scopes: tuple[str | None, ...],
    policy: Policy,
    now: datetime,
    siblings: Sequence[Record],
    force: bool,
) -> Decision:
    # A rule may match on the group: seen in two scopes, the record goes only if both agree.
    first: Decision | None = None
    for scope in scopes:
        decision = decide(record, policy, now, siblings=siblings, force=force,
                          server_group_id=scope)
        if decision.action == "retain":
            return decision
        first = first or decision
    assert first is not None
    return first


def _targeted(record: Record, target: Target) -> bool:
    if isinstance(target, Everything):
        return True
    if isinstance(target, OneResource):
        return record.get("resource_id") == target.resource_id
    return record.get(target.field) == target.value


def _shared_decision(
    planned: PlannedRecord, sharing: Sequence[PlannedRecord], id_field: str
) -> Decision:
    if planned.decision.action == "retain":
        return planned.decision
    for other in sharing:
        if other.decision.action == "retain":
            return Decision(
                "retain", other.decision.rule,
                f"{SHARED_ID_PREFIX}{id_field} is kept: {other.decision.reason}",
                other.decision.retain_until,
            )
    return planned.decision


def _retained(planned: PlannedRecord, decision: Decision) -> Settlement:
    return Settlement("retained", planned, planned.failure_job_id, decision, decision.reason)


def _no_usable_id(planned: PlannedRecord, id_field: str) -> Settlement:
    if planned.decision.action == "retain":
        return _retained(planned, planned.decision)
    return Settlement(
        "delete_failed", planned, None, planned.decision,
        f"the listed record has no usable {id_field!r}; check SDRS_FAILURE_JOB_ID_FIELD",
        {"code": "reaper.no_id", "message": "no failure_job_id", "retryable": False},
    )


# -- interpreting an answer --------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one DELETE's answer means."""

    outcome: Literal["deleted", "already_deleted", "delete_failed"] | None
    """None: a 404 that needs a re-listing (``still_listed``) before it can be told."""
    reason: str
    error: Mapping[str, Any] | None = None


def interpret_delete(
    status: int | None,
    *,
    earlier_answer_lost: bool,
    still_listed: bool | None,
    id_field: str,
    error: Mapping[str, Any] | None = None,
) -> Verdict:
    """The outcome of a DELETE answered ``status`` (None: no answer, or an error).

    ``earlier_answer_lost``: an attempt of ours before this answer got no answer
    (timeout, reset), so it may have been applied. ``still_listed`` (404 only):
    whether a fresh listing still shows the record; None if not checked yet.
    """
    if status == 204:
        return Verdict("deleted", "DELETE answered 204")
    if status == 404:
        if earlier_answer_lost:
            return Verdict("deleted", "DELETE answered 404 after an attempt of ours whose "
                           "answer was lost: that attempt deleted it")
        if still_listed is None:
            return Verdict(None, "DELETE answered 404: re-listing to tell gone from a wrong id")
        if still_listed:
            return Verdict(
                "delete_failed",
                f"DELETE by {id_field} answered 404 but the task is still listed: "
                "SDRS_FAILURE_JOB_ID_FIELD probably names the wrong field",
                {"code": "HTTP.404", "message": "still listed after 404", "retryable": False},
            )
        return Verdict("already_deleted", "DELETE answered 404: deleted by someone else")
    message = (error or {}).get("message") or "no answer"
    return Verdict("delete_failed", f"DELETE refused: {message}", error)
