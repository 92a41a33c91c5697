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
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from failjob_reaper.ids import is_valid_id
from failjob_reaper.policy import Decision, Policy, decide, parse_begin_time

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
    retryable: bool = True
    """Incomplete only: whether listing again may complete it (the deadline, a 5xx)."""

    @property
    def where(self) -> str:
        return f"group {self.server_group_id}" if self.server_group_id else "the top level"


# -- output ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedRecord:
    """One distinct record, where it was listed and the policy's word on it alone."""

    record: Record
    scopes: tuple[str | None, ...]
    decision: Decision
    id_field: str
    targeted: bool
    other_ids: tuple[str, ...] = ()
    """DELETE ids other copies carry besides ``failure_job_id`` (almost always none)."""

    # Derived, not stored: a plan of 100,000 records keeps only what it must
    # (docs/performance.md).
    @property
    def key(self) -> str:
        return record_key(self.record)

    @property
    def failure_job_id(self) -> str | None:
        """The record's id field, when it is a usable DELETE id; else None."""
        raw = self.record.get(self.id_field)
        return str(raw) if is_valid_id(raw) else None

    @property
    def ids(self) -> tuple[str, ...]:
        """Every usable DELETE id its copies carry (usually just ``failure_job_id``)."""
        own = self.failure_job_id
        return ((own,) if own is not None else ()) + self.other_ids

    @property
    def server_group_id(self) -> str | None:
        return self.scopes[0]

    @property
    def job_id(self) -> str | None:
        value = self.record.get("job_id")
        return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
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


Settled = Literal["retained", "already_deleted", "delete_failed", "would_delete"]


@dataclass(frozen=True, slots=True)
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
    return "content:" + _canonical(record)


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
    """Decide every distinct record of ``listings`` and plan the DELETEs for ``target``.

    Nothing here depends on the order in which records or scopes were read: copies of
    one record are weighed all (the copy that keeps it wins), DELETE groups are reported
    for a canonical member, and a named task's match is chosen canonically.
    """
    distinct = _distinct(listings)
    by_resource: dict[str, list[Record]] = defaultdict(list)
    if policy.keep_latest_per_resource > 0:  # siblings matter to keep-latest only
        for copies, _ in distinct.values():
            for copy in copies:
                resource_id = copy.get("resource_id")
                if isinstance(resource_id, str) and resource_id:
                    by_resource[resource_id].append(copy)

    records: list[PlannedRecord] = []
    # Equal decisions are one object: a backlog's expired tasks mostly share their words
    # ("age 30d 2h exceeds retention 7d ..."), and a plan of 100,000 keeps each once.
    shared: dict[Decision, Decision] = {}
    for copies, scopes in distinct.values():
        record, decision = _decide_everywhere(copies, scopes, policy, now, by_resource, force)
        decision = shared.setdefault(decision, decision)
        raw_id = record.get(id_field)
        own = str(raw_id) if is_valid_id(raw_id) else None
        records.append(PlannedRecord(
            record=record, scopes=scopes, decision=decision, id_field=id_field,
            targeted=any(_targeted(copy, target) for copy in copies),
            other_ids=tuple(i for i in _ids_of(copies, id_field) if i != own)
            if len(copies) > 1 else (),
        ))
    if isinstance(target, OneTask):
        # One task named: one match, chosen canonically (the newest, then by identity),
        # never by the order in which scopes happened to be read.
        chosen = _canonical_match([p for p in records if p.targeted])
        records = [replace(p, targeted=p is chosen) for p in records]

    by_id: dict[str, list[PlannedRecord]] = defaultdict(list)
    for planned in records:
        for delete_id in planned.ids:
            by_id[delete_id].append(planned)

    incomplete = tuple(
        f"listing {listing.where} incomplete: {listing.why_incomplete or 'unknown reason'}"
        for listing in listings if not listing.complete
    )
    incomplete_error = _incomplete_error(listings, incomplete)
    deletes: list[PlannedDelete] = []
    settled: list[Settlement] = []
    done_ids: set[str] = set()
    for planned in records:
        if not planned.targeted:
            continue
        if planned.failure_job_id is None:
            settled.append(_no_usable_id(planned, id_field, dry_run))
            continue
        if planned.failure_job_id in done_ids:
            continue  # one DELETE path is one task to the API: one decision, one outcome
        done_ids.add(planned.failure_job_id)
        sharing = by_id[planned.failure_job_id]
        lead, decision = _shared_decision(sharing, id_field, target)
        if decision.action == "retain":
            settled.append(_retained(lead, decision))
        elif incomplete:
            settled.append(Settlement(
                "retained", lead, lead.failure_job_id, Decision(
                    "retain", INCOMPLETE_RULE,
                    "not deleted: a listing was incomplete and could hide a record this "
                    "DELETE would remove (" + "; ".join(incomplete) + ")", None),
                "not deleted: a listing was incomplete and could hide a record this DELETE "
                "would remove (" + "; ".join(incomplete) + ")", incomplete_error))
        else:
            deletes.append(PlannedDelete(planned.failure_job_id, lead, tuple(sharing),
                                         decision))

    if isinstance(target, OneTask) and not any(p.targeted for p in records):
        if incomplete:
            settled.append(Settlement(
                "retained", None, None, Decision("retain", INCOMPLETE_RULE, "", None),
                "not found, and a listing was incomplete: it may be in what was not listed "
                "(" + "; ".join(incomplete) + ")", incomplete_error))
        else:
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


def recheck_delete(
    delete: PlannedDelete,
    listings: Sequence[ScopeListing],
    policy: Policy,
    now: datetime,
    *,
    id_field: str,
    force: bool = False,
) -> PlannedDelete | Settlement:
    """The same plan for one planned DELETE, on its scopes listed again (the listing it
    rested on grew older than LISTING_MAX_AGE): the DELETE again, or what it became."""
    plan = make_plan(listings, policy, now, id_field=id_field,
                     target=OneTask(id_field, delete.failure_job_id), force=force)
    if plan.deletes:
        return plan.deletes[0]
    settlement = plan.settled[0]
    if settlement.outcome == "already_deleted":
        return replace(settlement, record=delete.record, failure_job_id=delete.failure_job_id,
                       decision=delete.decision,
                       reason="not listed any more when listed again before the DELETE")
    return settlement


def keys_to_weigh(
    target: Target, listings: Sequence[ScopeListing], id_field: str
) -> list[tuple[str, object]]:
    """The (field, value) pairs of every record a DELETE for ``target`` must weigh: the
    target's own, then every record sharing a DELETE id or a resource with one of those,
    transitively (the same grouping ``make_plan`` applies). A scope that holds none of
    them cannot change what the DELETE does."""
    records = [r for listing in listings for r in listing.records if isinstance(r, Mapping)]
    pairs: dict[tuple[str, object], None] = {}
    if isinstance(target, OneTask):
        pairs[(target.field, target.value)] = None
    elif isinstance(target, OneResource):
        pairs[("resource_id", target.resource_id)] = None
    pending = [r for r in records if _targeted(r, target)]
    weighed = {id(r) for r in pending}
    while pending:
        record = pending.pop()
        for name in (id_field, "resource_id"):
            value = record.get(name)
            if value is None or value == "" or (name, _hashable(value)) in pairs:
                continue
            pairs[(name, _hashable(value))] = None
            for other in records:
                if id(other) not in weighed and other.get(name) == value:
                    weighed.add(id(other))
                    pending.append(other)
    return list(pairs)


def targets_in(target: Target, listings: Sequence[ScopeListing]) -> list[Record]:
    """The records of ``listings`` that ``target`` names (before the plan picks one)."""
    return [r for listing in listings for r in listing.records
            if isinstance(r, Mapping) and _targeted(r, target)]


def _tripped(verdict: GuardVerdict, which: str, reason: str) -> GuardVerdict:
    return GuardVerdict(verdict.planned, verdict.listed, verdict.max_deletions,
                        verdict.max_fraction, which, reason)


def _distinct(
    listings: Sequence[ScopeListing],
) -> dict[str, tuple[tuple[Record, ...], tuple[str | None, ...]]]:
    """Each distinct record (by ``record_key``): its distinct copies and every scope it
    was listed in."""
    out: dict[str, tuple[tuple[Record, ...], tuple[str | None, ...]]] = {}
    for listing in listings:
        for record in listing.records:
            if not isinstance(record, Mapping):
                continue
            key = record_key(record)
            known = out.get(key)
            if known is None:
                out[key] = ((record,), (listing.server_group_id,))
                continue
            copies, scopes = known
            if not any(copy is record or copy == record for copy in copies):
                copies = (*copies, record)
            if listing.server_group_id not in scopes:
                scopes = (*scopes, listing.server_group_id)
            out[key] = (copies, scopes)
    return out


def _decide_everywhere(
    copies: tuple[Record, ...],
    scopes: tuple[str | None, ...],
    policy: Policy,
    now: datetime,
    by_resource: Mapping[str, Sequence[Record]],
    force: bool,
) -> tuple[Record, Decision]:
    """The copy to report and the decision: a record goes only if every copy may go in
    every scope it was listed in (a rule may match on the group); the first copy that
    keeps it, in a canonical order, says why."""
    ordered = copies if len(copies) == 1 else tuple(sorted(copies, key=_canonical))
    in_order = sorted(scopes, key=lambda scope: (scope is not None, scope or ""))
    first: tuple[Record, Decision] | None = None
    for copy in ordered:
        resource_id = copy.get("resource_id")
        siblings = by_resource.get(resource_id, ()) if isinstance(resource_id, str) else ()
        for scope in in_order:
            decision = decide(copy, policy, now, siblings=siblings, force=force,
                              server_group_id=scope)
            if decision.action == "retain":
                return copy, decision
            first = first or (copy, decision)
    assert first is not None
    return first


def _ids_of(copies: Sequence[Record], id_field: str) -> tuple[str, ...]:
    """Every usable DELETE id the record's copies carry (a DELETE by any of them would
    remove it)."""
    ids: dict[str, None] = {}
    for copy in copies:
        raw = copy.get(id_field)
        if is_valid_id(raw):
            ids[str(raw)] = None
    return tuple(ids)


def _canonical_match(matches: Sequence[PlannedRecord]) -> PlannedRecord | None:
    if not matches:
        return None
    return max(matches, key=lambda p: (_begin_key(p.record), p.key))


def _begin_key(record: Record) -> str:
    begin = parse_begin_time(record.get("begin_time"))
    return begin.isoformat() if begin is not None else ""


def _targeted(record: Record, target: Target) -> bool:
    if isinstance(target, Everything):
        return True
    if isinstance(target, OneResource):
        return record.get("resource_id") == target.resource_id
    return record.get(target.field) == target.value


def _shared_decision(
    sharing: Sequence[PlannedRecord], id_field: str, target: Target
) -> tuple[PlannedRecord, Decision]:
    """The record a DELETE group is reported for, and the group's decision: retained
    when any member is kept. Reported for the member the target names (its own reason)
    when it keeps the group, else for the canonically first member that keeps it."""
    named = [p for p in sharing if p.targeted] if not isinstance(target, Everything) else []
    lead = min(named or sharing, key=lambda p: p.key)
    if lead.decision.action == "retain":
        return lead, lead.decision
    keeping = sorted((p for p in sharing if p.decision.action == "retain"),
                     key=lambda p: p.key)
    if keeping:
        other = keeping[0]
        return lead, Decision(
            "retain", other.decision.rule,
            f"{SHARED_ID_PREFIX}{id_field} is kept: {other.decision.reason}",
            other.decision.retain_until,
        )
    return lead, lead.decision


def _retained(planned: PlannedRecord, decision: Decision) -> Settlement:
    return Settlement("retained", planned, planned.failure_job_id, decision, decision.reason)


def _incomplete_error(
    listings: Sequence[ScopeListing], incomplete: Sequence[str]
) -> Mapping[str, Any] | None:
    if not incomplete:
        return None
    return {"code": "SDRS.IncompleteListing", "message": "; ".join(incomplete),
            "retryable": any(listing.retryable for listing in listings
                             if not listing.complete)}


def _no_usable_id(planned: PlannedRecord, id_field: str, dry_run: bool) -> Settlement:
    if planned.decision.action == "retain":
        return _retained(planned, planned.decision)
    why = f"the listed record has no usable {id_field!r}; check SDRS_FAILURE_JOB_ID_FIELD"
    if dry_run:
        # What a dry run can say without a DELETE: the policy lets it go, a real run
        # could not send the DELETE. Not a failure of this run.
        return Settlement("would_delete", planned, None, planned.decision,
                          f"{planned.decision.reason}; but {why}: a real run reports "
                          "delete_failed")
    return Settlement(
        "delete_failed", planned, None, planned.decision, why,
        {"code": "reaper.no_id", "message": "no failure_job_id", "retryable": False},
    )


def _canonical(record: Record) -> str:
    return json.dumps(dict(record), sort_keys=True, default=str)


def _hashable(value: object) -> object:
    return value if isinstance(value, str | int | float | bool) else _canonical({"v": value})


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
