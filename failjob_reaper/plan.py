"""The one pure planner: what is deleted, what is kept, and what each answer means.

Pure functions of (listings, policy, now, target): no I/O, no clock, no client.
``reading.py`` lists the scopes, :func:`make_plan` decides, ``executing.py`` sends
the planned DELETEs (re-checked on fresh listings by :func:`recheck_deletes`) and
turns each answer into an outcome with :func:`interpret_delete`.

A plan over 1,000,000 records keeps a few bytes per record (docs/performance.md):
the listings are ``records.RecordTable`` columns, the plan's own part is a decision
code per record in an array, and its records, DELETEs and outcomes are made when
they are read.

The safety rules, all here and nowhere else:

* one record is one record: the same ``job_id`` on two pages or in two scopes
  is decided once and counted once by the guards (records without a
  ``job_id`` are told apart by their content);
* a record listed in several scopes is retained if any scope's view retains
  it (a rule may match on ``server_group_id``);
* keep-latest ranks a record among every distinct record of its
  ``resource_id`` in every scope read (against the ``keep + 1`` newest of them,
  which gives the same rank);
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
from array import array
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from failjob_reaper.ids import is_valid_id
from failjob_reaper.policy import Decision, Policy, decide, parse_begin_time
from failjob_reaper.records import RecordTable, identity

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
    index: int = -1
    """Its place in its plan (``plan_view`` keys its rows by it)."""
    failure_job_id: str | None = None
    """The record's id field, when it is a usable DELETE id; else None (the plan sets
    it: a PlannedRecord is made when it is read, from the plan's columns)."""

    @property
    def key(self) -> str:
        return record_key(self.record)

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


class Plan:
    """The plan: every distinct record read with its own decision, the DELETEs to send and
    the outcomes that need none. Its sequences are made as they are read: a plan of
    1,000,000 records keeps a few bytes per record in arrays, not an object per record
    (docs/performance.md)."""

    def __init__(self, target: Target, book: _Book, deletes: Sequence[int],
                 settled: _SettledLog, guard: GuardVerdict | None, dry_run: bool,
                 incomplete: tuple[str, ...]) -> None:
        self.target = target
        self.guard = guard
        """Sweeps only; when it tripped, ``deletes`` is empty and the tasks are settled."""
        self.dry_run = dry_run
        self.incomplete = incomplete
        """Why listings were not complete; non-empty means no DELETE was planned."""
        self._book = book
        self.records: Sequence[PlannedRecord] = _Records(book)
        """Every distinct record read, in listing order, with its own decision."""
        self.deletes: Sequence[PlannedDelete] = _Deletes(book, deletes)
        """The DELETEs to send (dry run: to report as would_delete)."""
        self.settled: Sequence[Settlement] = _Settled(book, settled)
        """Outcomes that need no DELETE."""

    @property
    def listed(self) -> int:
        return self._book.distinct

    @property
    def size(self) -> int:
        """One more than the largest ``PlannedRecord.index`` of this plan."""
        return self._book.total

    def planned(self, index: int) -> PlannedRecord:
        """The record at ``PlannedRecord.index`` ``index``."""
        return self._book.planned(index)

    def sharing(self, planned: PlannedRecord) -> list[PlannedRecord]:
        """Every distinct record a DELETE of ``planned.failure_job_id`` removes (``planned``
        among them), in listing order."""
        book = self._book
        return [planned if d == planned.index else book.planned(d)
                for d in book.group_of(planned.index)]


# -- planning ----------------------------------------------------------------------------


def record_key(record: Record) -> str:
    """The identity of a listed record: its job_id, else its whole content."""
    return identity(record)


def make_plan(
    listings: Sequence[ScopeListing],
    policy: Policy,
    now: datetime,
    *,
    id_field: str,
    target: Target,
    force: bool = False,
    dry_run: bool = False,
    guards: bool = True,
) -> Plan:
    """Decide every distinct record of ``listings`` and plan the DELETEs for ``target``.
    ``guards``: whether a sweep's guards apply (not to the re-check of DELETEs a sweep's
    plan already passed them with).

    Nothing here depends on the order in which records or scopes were read: copies of
    one record are weighed all (the copy that keeps it wins), DELETE groups are reported
    for a canonical member, and a named task's match is chosen canonically.
    """
    book = _Book(listings, id_field)
    book.decide(policy, now, force)
    targeted = book.target(target)

    incomplete = tuple(
        f"listing {listing.where} incomplete: {listing.why_incomplete or 'unknown reason'}"
        for listing in listings if not listing.complete
    )
    settled = _SettledLog(dry_run)
    if incomplete:
        text = ("not deleted: a listing was incomplete and could hide a record this "
                "DELETE would remove (" + "; ".join(incomplete) + ")")
        settled.incomplete = (Decision("retain", INCOMPLETE_RULE, text, None), text,
                              _incomplete_error(listings, incomplete))
    deletes = array("q")
    done: set[str] = set()
    for d in (range(book.total) if targeted is None else targeted):
        if targeted is None and d in book.alias:
            continue
        own = book.own_id(d)
        if own is None:
            settled.add(d, _NO_ID)
            continue
        members = book.group_of(d)
        if len(members) > 1 or targeted is not None:
            if own in done:
                continue  # one DELETE path is one task to the API: one decision, one outcome
            done.add(own)
        lead, shared = _shared_decision(book, members, targeted, id_field)
        if shared is not None:
            settled.add(lead, _EXPLICIT, Settlement("retained", book.planned(lead), own,
                                                    shared, shared.reason))
        elif book.decision(lead).action == "retain":
            settled.add(lead, _OWN)
        elif incomplete:
            settled.add(lead, _INCOMPLETE)
        else:
            deletes.append(lead)

    if isinstance(target, OneTask) and not targeted:
        if incomplete:
            settled.add(-1, _EXPLICIT, Settlement(
                "retained", None, None, Decision("retain", INCOMPLETE_RULE, "", None),
                "not found, and a listing was incomplete: it may be in what was not listed "
                "(" + "; ".join(incomplete) + ")", _incomplete_error(listings, incomplete)))
        else:
            settled.add(-1, _EXPLICIT, Settlement(
                "already_deleted", None, None, None,
                "not listed at the top level nor in any protection group"))

    guard = None
    if isinstance(target, Everything) and guards:
        guard = _guard(book, deletes, policy)
        if guard.tripped is not None:
            assert guard.reason is not None
            settled.guard = Decision("retain", GUARD_RULE, guard.reason, None)
            for lead in deletes:
                settled.add(lead, _GUARD)
            deletes = array("q")
    return Plan(target, book, deletes, settled, guard, dry_run, incomplete)


def guard_verdict(
    deletes: Sequence[PlannedDelete], listed: int, policy: Policy
) -> GuardVerdict:
    """The count and fraction guards over the distinct records the DELETEs remove."""
    return _verdict(len({r.key for d in deletes for r in d.removes}), listed, policy)


def _guard(book: _Book, deletes: Sequence[int], policy: Policy) -> GuardVerdict:
    if not book.other_ids:  # every record in one DELETE group at most: count the groups
        planned = sum(len(book.group_of(lead)) for lead in deletes)
    else:
        planned = len({d for lead in deletes for d in book.group_of(lead)})
    return _verdict(planned, book.distinct, policy)


def _verdict(planned: int, listed: int, policy: Policy) -> GuardVerdict:
    guards = policy.guards
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
    return recheck_deletes([delete], listings, policy, now, id_field=id_field,
                           force=force)[delete.failure_job_id]


def recheck_deletes(
    deletes: Sequence[PlannedDelete],
    listings: Sequence[ScopeListing],
    policy: Policy,
    now: datetime,
    *,
    id_field: str,
    force: bool = False,
) -> dict[str, PlannedDelete | Settlement]:
    """The same plan for planned DELETEs, on their scopes listed again: for each id, the
    DELETE again (its group as listed now), or what it became. One plan for all of them:
    a sweep re-checks a window of its DELETEs with one listing and one plan, not one
    plan per DELETE. ``listings`` must hold every record that carries one of these ids,
    and every record of their resources (keep-latest ranks among them); a listing that
    holds more is fine."""
    plan = make_plan(listings, policy, now, id_field=id_field, target=Everything(),
                     force=force, guards=False)
    wanted = {delete.failure_job_id: delete for delete in deletes}
    answers: dict[str, PlannedDelete | Settlement] = {}
    for again in plan.deletes:
        if again.failure_job_id in wanted:
            answers[again.failure_job_id] = again
    for settlement in plan.settled:
        if settlement.failure_job_id in wanted and settlement.failure_job_id not in answers:
            answers[settlement.failure_job_id] = settlement
    for failure_job_id, delete in wanted.items():
        if failure_job_id in answers:
            continue
        if plan.incomplete:  # not listed, and it may be in what was not listed
            reason = ("not listed when listed again before the DELETE, and a listing was "
                      "incomplete (" + "; ".join(plan.incomplete) + ")")
            answers[failure_job_id] = Settlement(
                "retained", delete.record, failure_job_id,
                Decision("retain", INCOMPLETE_RULE, reason, None), reason,
                _incomplete_error(listings, plan.incomplete))
        else:
            answers[failure_job_id] = Settlement(
                "already_deleted", delete.record, failure_job_id, delete.decision,
                "not listed any more when listed again before the DELETE")
    return answers


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
    weighed = bytearray(len(records))
    names = (id_field, "resource_id")
    grown = True
    while grown:  # one pass per step of the closure: linear in the records each time
        grown = False
        for n, record in enumerate(records):
            if weighed[n]:
                continue
            values = [(name, record.get(name)) for name in names]
            if not (_targeted(record, target) or any(
                    v is not None and v != "" and (name, _hashable(v)) in pairs
                    for name, v in values)):
                continue
            weighed[n] = 1
            for name, value in values:
                if value is None or value == "" or (name, _hashable(value)) in pairs:
                    continue
                pairs[(name, _hashable(value))] = None
                grown = True
    return list(pairs)


def targets_in(target: Target, listings: Sequence[ScopeListing]) -> list[Record]:
    """The records of ``listings`` that ``target`` names (before the plan picks one)."""
    return [r for listing in listings for r in listing.records
            if isinstance(r, Mapping) and _targeted(r, target)]


def _tripped(verdict: GuardVerdict, which: str, reason: str) -> GuardVerdict:
    return GuardVerdict(verdict.planned, verdict.listed, verdict.max_deletions,
                        verdict.max_fraction, which, reason)


# -- the plan's columns ------------------------------------------------------------------

_OWN, _INCOMPLETE, _GUARD, _NO_ID, _EXPLICIT = range(5)
"""How a settled record is told: by its own decision, as kept for an incomplete listing,
as kept by a guard, as a record without a usable id, or by a Settlement of its own."""
_NO_UNTIL = -(2**63)
_MANY_TABLES = 32
"""Beyond this many listings, one dictionary of identities instead of asking each."""


class _Book:
    """Every record read, by global row ``g`` (listing after listing); a distinct record
    is ``d``, the global row of its first copy. A few bytes per record: the listing's own
    table, a decision code, and dictionaries only for what is rare (copies, records
    listed in several scopes, DELETE ids shared by several records)."""

    def __init__(self, listings: Sequence[ScopeListing], id_field: str) -> None:
        self.id_field = id_field
        self.tables: list[RecordTable] = []
        self.scopes: list[str | None] = []
        for listing in listings:
            for table in _tables(listing.records):
                self.tables.append(table)
                self.scopes.append(listing.server_group_id)
        self.starts: list[int] = []
        total = 0
        for table in self.tables:
            self.starts.append(total)
            total += len(table)
        self.total = total
        self.alias: dict[int, int] = {}
        """Global row of a later copy -> ``d`` of its record."""
        self.more_scopes: dict[int, tuple[str | None, ...]] = {}
        """``d`` -> every scope it was listed in, when more than one."""
        self.copies: dict[int, list[int]] = {}
        """``d`` -> the global rows of its copies whose content differs (beside ``d``)."""
        self.other_ids: dict[int, tuple[str, ...]] = {}
        self.reported: dict[int, int] = {}
        """``d`` -> the copy it is reported as, when not its first (the copy that keeps it)."""
        self._distinct_copies()
        self.distinct = total - len(self.alias)
        self._shared: dict[str, list[int]] = {}
        """DELETE id -> its records, for the ids that more than one record carries."""
        self._codes = array("I")
        self._until = array("q")
        self._decisions: list[Decision] = []
        self._targeted: set[int] | None = None
        self._valid: bytearray | None = None
        """Per ``d``: whether its id is a usable DELETE id (``ids.is_valid_id``, asked once)."""

    # -- reading ----------------------------------------------------------------

    def locate(self, g: int) -> tuple[RecordTable, int, int]:
        if len(self.starts) == 1:
            return self.tables[0], g, 0
        n = bisect_right(self.starts, g) - 1
        return self.tables[n], g - self.starts[n], n

    def record(self, g: int) -> Record:
        table, row, _ = self.locate(g)
        return table[row]

    def value(self, g: int, name: str) -> Any:
        table, row, _ = self.locate(g)
        return table.value(row, name)

    def scopes_of(self, d: int) -> tuple[str | None, ...]:
        more = self.more_scopes.get(d)
        return more if more is not None else (self.scopes[self.locate(d)[2]],)

    def own_id(self, d: int) -> str | None:
        g = self.reported.get(d, d) if self.reported else d
        table, row, _ = self.locate(g)
        raw = table.value(row, self.id_field)
        if self._valid is not None and type(raw) is str:  # checked once, when decided
            return raw if self._valid[d] else None
        return str(raw) if is_valid_id(raw) else None

    def key(self, d: int) -> str:
        return identity(self.record(d))

    def group_of(self, d: int) -> Sequence[int]:
        """The distinct records a DELETE of ``d``'s id removes (``d`` among them), in
        listing order."""
        own = self.own_id(d)
        return (self._shared.get(own) or (d,)) if own is not None else (d,)

    def decision(self, d: int) -> Decision:
        decision = self._decisions[self._codes[d]]
        until = self._until[d] if self._until else _NO_UNTIL
        if until == _NO_UNTIL:
            return decision
        return replace(decision, retain_until=_EPOCH + timedelta(microseconds=until))

    def targeted(self, d: int) -> bool:
        return self._targeted is None or d in self._targeted

    def planned(self, d: int) -> PlannedRecord:
        return PlannedRecord(record=self.record(self.reported.get(d, d)), scopes=self.scopes_of(d),
                             decision=self.decision(d), id_field=self.id_field,
                             targeted=self.targeted(d), other_ids=self.other_ids.get(d, ()),
                             index=d, failure_job_id=self.own_id(d))

    def distinct_rows(self) -> Iterator[int]:
        alias = self.alias
        return (g for g in range(self.total) if g not in alias)

    # -- building ---------------------------------------------------------------

    def _distinct_copies(self) -> None:
        """One record is one record: a later listing's copy is an alias of the first."""
        tables = [(n, t) for n, t in enumerate(self.tables) if len(t)]
        if len(tables) < 2:
            return
        many = len(tables) > _MANY_TABLES
        first: dict[Any, int] = {}
        for position, (n, table) in enumerate(tables):
            start = self.starts[n]
            for row in range(len(table)):
                key = table.identity_of(row)
                d: int | None
                if many:
                    known = first.setdefault(key, start + row)
                    d = None if known == start + row else known
                else:
                    d = None
                    for m, earlier in tables[:position]:
                        if earlier.holds(key):
                            d = self.starts[m] + (earlier.row_of(key) or 0)
                            break
                if d is None:
                    continue
                g = start + row
                self.alias[g] = d
                scopes = self.scopes_of(d)
                if self.scopes[n] not in scopes:
                    self.more_scopes[d] = (*scopes, self.scopes[n])
                copy = table[row]
                if not any(copy == self.record(c) for c in (d, *self.copies.get(d, ()))):
                    self.copies.setdefault(d, []).append(g)

    def _ids(self) -> dict[str, list[int]]:
        """The DELETE ids more than one record carries -> those records. Two passes and
        a bitmap while they run: an id carried once (the usual case) costs nothing in
        the plan."""
        for d, rows in self.copies.items():
            own = self.own_id(d)
            ids = dict.fromkeys(i for i in (_usable(self.value(g, self.id_field))
                                             for g in rows) if i is not None and i != own)
            if ids:
                self.other_ids[d] = tuple(ids)
        if self.id_field == "job_id" and not self.other_ids:
            return {}  # the id field is the identity: one record per id

        def carried() -> Iterator[tuple[str, int]]:
            for d in self.distinct_rows():
                own = self.own_id(d)
                if own is not None:
                    yield own, d
                for other in self.other_ids.get(d, ()):
                    yield other, d

        # Which ids are carried twice, in bits, not a set of every id (each one is a
        # string made anew from the table's columns): a bitmap of their hashes, 32 bits
        # a record, finds the candidates, and only those are grouped by the ids
        # themselves; what is alone after all is dropped.
        bits = max(1 << 16, 1 << (self.distinct * 32).bit_length())
        mask = bits - 1
        bitmap = bytearray(bits >> 3)
        twice: set[int] = set()
        for delete_id, _ in carried():
            h = hash(delete_id) & mask
            if bitmap[h >> 3] & (1 << (h & 7)):
                twice.add(h)
            bitmap[h >> 3] |= 1 << (h & 7)
        del bitmap
        shared: dict[str, list[int]] = {}
        if twice:
            for delete_id, d in carried():
                if hash(delete_id) & mask in twice:
                    shared.setdefault(delete_id, []).append(d)
            shared = {k: v for k, v in shared.items() if len(v) > 1}
        return shared

    def decide(self, policy: Policy, now: datetime, force: bool) -> None:
        newest = _newest_by_resource(self, policy.keep_latest_per_resource)
        lookup: dict[Decision, int] = {}
        codes, until, decisions = self._codes, self._until, self._decisions
        alias = self.alias
        for g in range(self.total):
            if g in alias:
                codes.append(0)
                if until:
                    until.append(_NO_UNTIL)
                continue
            copy, decision = _decide_everywhere(self, g, policy, now, newest, force)
            if copy != g:
                self.reported[g] = copy
            stamp = decision.retain_until
            if stamp is not None:
                if not until:
                    until.extend([_NO_UNTIL] * g)
                until.append((stamp - _EPOCH) // timedelta(microseconds=1))
                decision = replace(decision, retain_until=None)
            elif until:
                until.append(_NO_UNTIL)
            code = lookup.get(decision)
            if code is None:
                code = lookup[decision] = len(decisions)
                decisions.append(decision)
            codes.append(code)
        valid = bytearray(self.total)
        for d in self.distinct_rows():
            valid[d] = self.own_id(d) is not None
        self._valid = valid
        self._shared = self._ids()

    def target(self, target: Target) -> list[int] | None:
        """The records ``target`` names, in listing order (None: every record)."""
        if isinstance(target, Everything):
            return None
        named = [d for d in self.distinct_rows()
                 if any(_targeted(self.record(g), target)
                        for g in (d, *self.copies.get(d, ())))]
        if isinstance(target, OneTask) and named:
            # One task named: one match, chosen canonically (the newest, then by identity),
            # never by the order in which scopes happened to be read.
            named = [max(named, key=lambda d: (_begin_key(self.record(d)), self.key(d)))]
        self._targeted = set(named)
        return named


def _tables(records: Sequence[Record]) -> list[RecordTable]:
    """A listing as tables of distinct records: a listing's own table, or, for records
    given as they are (tests, callers), as many tables as a record has copies that
    differ, so that every copy is weighed."""
    if isinstance(records, RecordTable):
        return [records]
    tables = [RecordTable()]
    for record in records:
        if not isinstance(record, Mapping):
            continue
        for table in tables:
            if table.add(record):
                break
            row = table.row_of(table.identity_of_record(record))
            if row is not None and table[row] == record:
                break
        else:
            tables.append(RecordTable([record]))
    return tables


def _usable(raw: object) -> str | None:
    return str(raw) if is_valid_id(raw) else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _newest_by_resource(book: _Book, keep: int) -> dict[str, list[tuple[Any, int]]]:
    """Per resource_id, its ``keep + 1`` newest distinct records: all keep-latest needs
    to rank any record of it (one newer than all of them is among them; one that is not
    has ``keep + 1`` newer). O(keep) per record, not O(records of the resource)."""
    if keep <= 0:
        return {}
    newest: dict[str, list[tuple[Any, int]]] = {}
    for d in book.distinct_rows():
        for g in (d, *book.copies.get(d, ())):
            resource_id = book.value(g, "resource_id")
            if not isinstance(resource_id, str) or not resource_id:
                continue
            job = book.value(g, "job_id")
            job = job if isinstance(job, str) else None
            when = parse_begin_time(book.value(g, "begin_time"))
            key = (when if when is not None else datetime.max.replace(tzinfo=UTC), job or "")
            top = newest.setdefault(resource_id, [])
            same = next((i for i, (_, other) in enumerate(top)
                         if job is not None and book.value(other, "job_id") == job), None)
            if same is not None:
                if key > top[same][0]:
                    top[same] = (key, g)
            else:
                top.append((key, g))
            top.sort(key=lambda item: item[0], reverse=True)
            del top[keep + 1:]
    return newest


def _decide_everywhere(
    book: _Book, d: int, policy: Policy, now: datetime,
    newest: Mapping[str, list[tuple[Any, int]]], force: bool,
) -> tuple[int, Decision]:
    """A record goes only if every copy may go in every scope it was listed in (a rule
    may match on the group); the first copy that keeps it, in a canonical order, says
    why."""
    rows = [d, *book.copies.get(d, ())]
    if len(rows) > 1:
        rows.sort(key=lambda g: _canonical(book.record(g)))
    scopes = book.scopes_of(d)
    in_order = sorted(scopes, key=lambda scope: (scope is not None, scope or "")) \
        if len(scopes) > 1 else scopes
    first: tuple[int, Decision] | None = None
    for g in rows:
        copy = book.record(g)
        resource_id = copy.get("resource_id")
        siblings = [book.record(g) for _, g in newest.get(resource_id, ())] \
            if isinstance(resource_id, str) and newest else ()
        for scope in in_order:
            decision = decide(copy, policy, now, siblings=siblings, force=force,
                              server_group_id=scope)
            if decision.action == "retain":
                return g, decision
            first = first or (g, decision)
    assert first is not None
    return first


def _shared_decision(
    book: _Book, members: Sequence[int], targeted: Sequence[int] | None, id_field: str
) -> tuple[int, Decision | None]:
    """The member a DELETE group is reported for, and, when another member keeps the
    group, the group's decision (None: the lead's own). Reported for the member the
    target names when there is one, else the canonically first member."""
    if len(members) == 1:
        return members[0], None
    named = [d for d in members if book.targeted(d)] if targeted is not None else []
    lead = min(named or members, key=book.key)
    if book.decision(lead).action == "retain":
        return lead, None
    keeping = sorted((d for d in members if book.decision(d).action == "retain"),
                     key=book.key)
    if keeping:
        other = book.decision(keeping[0])
        return lead, Decision("retain", other.rule,
                              f"{SHARED_ID_PREFIX}{id_field} is kept: {other.reason}",
                              other.retain_until)
    return lead, None


class _SettledLog:
    """The settled outcomes, 8 bytes each: ``d`` and how it is told."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.entries = array("q")
        self.explicit: list[Settlement] = []
        self.incomplete: tuple[Decision, str, Mapping[str, Any] | None] | None = None
        self.guard: Decision | None = None

    def add(self, d: int, kind: int, settlement: Settlement | None = None) -> None:
        if settlement is not None:
            d = len(self.explicit)
            self.explicit.append(settlement)
        self.entries.append(d * 8 + kind)


class _Made(Sequence[Any]):
    """A plan's sequence, made as it is read; equal to any sequence of the same items."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(
                a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"[{', '.join(map(repr, self))}]"


class _Records(_Made, Sequence[PlannedRecord]):
    def __init__(self, book: _Book) -> None:
        self._book = book
        self._order: array[int] | None = None

    def __len__(self) -> int:
        return self._book.distinct

    def __iter__(self) -> Iterator[PlannedRecord]:
        return map(self._book.planned, self._book.distinct_rows())

    def __getitem__(self, index: int) -> PlannedRecord:  # type: ignore[override]
        book = self._book
        if not book.alias:
            return book.planned(range(book.total)[index])
        if self._order is None:
            self._order = array("q", book.distinct_rows())
        return book.planned(self._order[index])


class _Deletes(_Made, Sequence[PlannedDelete]):
    def __init__(self, book: _Book, leads: Sequence[int]) -> None:
        self._book = book
        self._leads = leads

    def __len__(self) -> int:
        return len(self._leads)

    def __iter__(self) -> Iterator[PlannedDelete]:
        return map(self._make, self._leads)

    def __getitem__(self, index: int) -> PlannedDelete:  # type: ignore[override]
        return self._make(self._leads[index])

    def _make(self, lead: int) -> PlannedDelete:
        book = self._book
        planned = book.planned(lead)
        own = planned.failure_job_id
        assert own is not None
        removes = tuple(planned if m == lead else book.planned(m) for m in book.group_of(lead))
        return PlannedDelete(own, planned, removes, planned.decision)


class _Settled(_Made, Sequence[Settlement]):
    def __init__(self, book: _Book, log: _SettledLog) -> None:
        self._book = book
        self._log = log

    def __len__(self) -> int:
        return len(self._log.entries)

    def __iter__(self) -> Iterator[Settlement]:
        return map(self._make, self._log.entries)

    def __getitem__(self, index: int) -> Settlement:  # type: ignore[override]
        return self._make(self._log.entries[index])

    def _make(self, entry: int) -> Settlement:
        d, kind = divmod(entry, 8)
        log = self._log
        if kind == _EXPLICIT:
            return log.explicit[d]
        planned = self._book.planned(d)
        if kind == _OWN:
            return _retained(planned, planned.decision)
        if kind == _GUARD:
            assert log.guard is not None
            return _retained(planned, log.guard)
        if kind == _INCOMPLETE:
            assert log.incomplete is not None
            decision, reason, error = log.incomplete
            return Settlement("retained", planned, planned.failure_job_id, decision, reason,
                              error)
        return _no_usable_id(planned, self._book.id_field, log.dry_run)


def _begin_key(record: Record) -> str:
    begin = parse_begin_time(record.get("begin_time"))
    return begin.isoformat() if begin is not None else ""


def _targeted(record: Record, target: Target) -> bool:
    if isinstance(target, Everything):
        return True
    if isinstance(target, OneResource):
        return record.get("resource_id") == target.resource_id
    return record.get(target.field) == target.value


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
