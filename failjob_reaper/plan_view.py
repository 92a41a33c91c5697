"""A plan as an operator reviews it: one row per listed task, as a table, JSON lines or CSV.

Every distinct record the sweep read gets a row: what happens to it (``would_delete``,
``retained``; after a real sweep ``deleted``, ``already_deleted``, ``delete_failed``, or
``left_over`` when the deadline came first), its DELETE id, where it was listed, the rule
that decided and ``retain_until``. The guard verdict says, with numbers, whether a guard
stops the sweep and how far the plan is over it.

Output carries record fields, which anyone who can name a resource writes: the table
shows control characters escaped (``_text.escape_control``), a CSV cell that would start
a spreadsheet formula gets a leading ``'`` (``_text.csv_cell``), JSON escapes both itself.
Filters (``RowFilter``) choose the rows shown; the plan and its guard are always computed
on everything listed.
"""

from __future__ import annotations

import csv
import io
import json
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from failjob_reaper._text import csv_cell, escape_control, iso_utc
from failjob_reaper.plan import GUARD_RULE, GuardVerdict, Plan, PlannedRecord
from failjob_reaper.policy import Decision, format_duration, parse_begin_time

OutputFormat = Literal["table", "json", "csv"]

DELETING = ("would_delete", "deleted", "already_deleted", "delete_failed", "left_over")
"""The actions of a row a DELETE was (or would be) sent for."""
_ORDER = {action: n for n, action in enumerate((*DELETING, "retained"))}


@dataclass(frozen=True, slots=True)
class Row:
    action: str
    failure_job_id: str | None
    job_id: str | None
    resource_id: str | None
    resource_name: str | None
    server_group_id: str | None
    rule: str | None
    retain_until: str | None
    begin_time: str | None
    reason: str


def plan_rows(
    plan: Plan, done: Mapping[str, Mapping[str, Any]] | None = None, *,
    stopped: str | None = None,
) -> Rows:
    """One row per distinct record of ``plan``, the deletes first.

    ``done``: after a real sweep, the outcome data of each DELETE id (what the DELETE
    answered); None for a dry run, where a planned DELETE is ``would_delete``.
    ``stopped``: why the planned DELETEs missing from ``done`` were not sent, when the
    caller knows (``--limit N reached``); else the deadline or the sink.
    """
    # Each record's fate, 4 bytes: a code into the few distinct fates (its row is made
    # when it is read: a plan of 1,000,000 records is never 1,000,000 rows at once, nor
    # a dictionary of them; docs/performance.md).
    fates = _Fates(plan)
    for delete in plan.deletes:
        answer = (done or {}).get(delete.failure_job_id)
        for planned in delete.removes:
            fates.set(planned, _deleting_fate(delete.decision, answer, done is None, stopped))
    for settlement in plan.settled:
        lead = settlement.record
        if lead is None:
            continue
        members = plan.sharing(lead) if settlement.failure_job_id is not None else [lead]
        for member in members:
            if fates.has(member):
                continue
            decision = settlement.decision
            if decision is not None and decision.rule == GUARD_RULE:
                # Stopped by a guard: show what the policy says, the guard line says why not.
                fates.set(member, ("would_delete", None, None, True) if done is None
                          else ("retained", decision, None, False))
            elif settlement.outcome == "retained" and member.decision.action == "retain":
                fates.set(member, ("retained", None, None, True))
            else:
                fates.set(member, (settlement.outcome, decision, settlement.reason, False))
    return Rows(plan, fates)


_Fate = tuple[str, "Decision | None", "str | None", bool]
"""(action, decision, reason when it is not the decision's, whether the decision is the
record's own: then it is not in the tuple, which stays one of few)."""


class _Fates:
    """Each record's fate, by its place in the plan: a 4-byte code per record."""

    def __init__(self, plan: Plan) -> None:
        self.codes = array("I", bytes(4 * plan.size))
        self.fates: list[_Fate] = [("", None, None, False)]
        self._lookup: dict[_Fate, int] = {}

    def set(self, planned: PlannedRecord, fate: _Fate) -> None:
        code = self._lookup.get(fate)
        if code is None:
            code = self._lookup[fate] = len(self.fates)
            self.fates.append(fate)
        self.codes[planned.index] = code

    def has(self, planned: PlannedRecord) -> bool:
        return self.codes[planned.index] != 0


class Rows(Sequence[Row]):
    """The rows of a plan, deletes first, each made as it is read."""

    def __init__(self, plan: Plan, fates: _Fates,
                 keep: Callable[[Row], bool] | None = None) -> None:
        self._plan = plan
        self._fates = fates
        self._keep = keep
        self._length: int | None = None if keep is not None else sum(
            1 for code in fates.codes if code)

    def __iter__(self) -> Iterator[Row]:
        fates, codes = self._fates.fates, self._fates.codes
        ranks = [_ORDER.get(fate[0], len(_ORDER)) for fate in fates]
        for rank in range(len(_ORDER) + 1):
            for index, code in enumerate(codes):
                if not code or ranks[code] != rank:
                    continue
                action, decision, reason, own = fates[code]
                planned = self._plan.planned(index)
                row = _row(action, planned, planned.decision if own else decision,
                           reason=reason)
                if self._keep is None or self._keep(row):
                    yield row

    def __len__(self) -> int:
        if self._length is None:
            self._length = sum(1 for _ in self)
        return self._length

    def __getitem__(self, index: int) -> Row:  # type: ignore[override]
        if index < 0:
            index += len(self)
        for n, row in enumerate(self):
            if n == index:
                return row
        raise IndexError(index)

    def where(self, keep: Callable[[Row], bool]) -> Rows:
        """The rows ``keep`` keeps, made as they are read too."""
        return Rows(self._plan, self._fates, keep)


def _deleting_fate(
    decision: Decision, answer: Mapping[str, Any] | None, dry: bool, stopped: str | None,
) -> _Fate:
    """What a record a planned DELETE removes shows: would go (dry run), left over (not
    sent), or what the DELETE answered."""
    if dry:
        return ("would_delete", decision, None, False)
    if answer is None:
        why = stopped or "the sweep stopped first (deadline or sink down)"
        return ("left_over", decision, f"not sent: {why}; left for the next sweep", False)
    reason = str(answer.get("reason") or decision.reason)
    return (str(answer.get("outcome")), decision,
            reason if reason != decision.reason else None, False)


def _row(
    action: str, planned: PlannedRecord, decision: Decision | None, *, reason: str | None = None
) -> Row:
    record = planned.record
    return Row(
        action=action,
        failure_job_id=planned.failure_job_id,
        job_id=planned.job_id,
        resource_id=_text(record.get("resource_id")),
        resource_name=_text(record.get("resource_name")),
        server_group_id=planned.server_group_id,
        rule=decision.rule if decision else None,
        retain_until=iso_utc(decision.retain_until) if decision else None,
        begin_time=_text(record.get("begin_time")),
        reason=reason if reason is not None else (decision.reason if decision else ""),
    )


# -- the guard, in numbers -------------------------------------------------------------------


def guard_data(guard: GuardVerdict) -> dict[str, Any]:
    """The verdict with how far over (or under) each guard the plan is."""
    fraction = guard.planned / guard.listed if guard.listed else 0.0
    return {
        "planned": guard.planned,
        "listed": guard.listed,
        "max_deletions_per_sweep": guard.max_deletions,
        "max_deletion_fraction": guard.max_fraction,
        "planned_fraction": round(fraction, 4),
        "tripped": guard.tripped,
        "over_by": (guard.planned - guard.max_deletions
                    if guard.tripped == "max_deletions_per_sweep" else
                    round(fraction - guard.max_fraction, 4)
                    if guard.tripped == "max_deletion_fraction" else 0),
        "reason": guard.reason,
    }


def guard_text(guard: GuardVerdict, *, dry_run: bool) -> str:
    data = guard_data(guard)
    if guard.tripped is None:
        fraction = (f"at most {guard.max_fraction:.1%}" if guard.max_fraction < 1 else "off")
        return (f"guards: {guard.planned} records planned for deletion, at most "
                f"{guard.max_deletions} (max_deletions_per_sweep); "
                f"{data['planned_fraction']:.1%} of the {guard.listed} listed, "
                f"max_deletion_fraction {fraction}")
    stops = "would stop this sweep" if dry_run else "stopped this sweep"
    if guard.tripped == "max_deletions_per_sweep":
        numbers = (f"{guard.planned} records planned for deletion, the limit is "
                   f"{guard.max_deletions} ({data['over_by']} over)")
        raise_to = f"guards.max_deletions_per_sweep to {guard.planned} or more"
    else:
        numbers = (f"{guard.planned} of {guard.listed} listed records planned "
                   f"({data['planned_fraction']:.1%}), the limit is {guard.max_fraction:.1%}")
        raise_to = f"guards.max_deletion_fraction to {data['planned_fraction']:g} or more"
    return (f"guard {guard.tripped} {stops}: {numbers}; nothing "
            f"{'would be' if dry_run else 'was'} deleted. After reviewing the plan above, "
            f"raise {raise_to} in the policy file (RETENTION_POLICY_FILE) to let it run"
            + (f", or pass --max-deletions {guard.planned} for one run."
               if guard.tripped == "max_deletions_per_sweep" else "."))


# -- rendering -------------------------------------------------------------------------------

_COLUMNS = ("action", "failure_job_id", "server_group_id", "rule", "retain_until", "reason")
_HEADINGS = {"failure_job_id": "task (failure_job_id)", "server_group_id": "group"}


def render_table(rows: Sequence[Row]) -> str:
    """Aligned columns, the reason last and unpadded (it is the long one)."""
    return "\n".join(table_lines(rows))


def table_lines(rows: Sequence[Row]) -> Iterator[str]:
    """``render_table`` a line at a time: a plan of 100,000 rows is never one string."""
    head = [_HEADINGS.get(c, c).upper() for c in _COLUMNS]
    widths = [len(h) for h in head[:-1]]
    for row in rows:
        for i, column in enumerate(_COLUMNS[:-1]):
            widths[i] = max(widths[i], len(_cell(getattr(row, column))))

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=False)) \
            + "  " + values[-1]

    yield line(head)
    for row in rows:
        yield line([_cell(getattr(row, c)) for c in _COLUMNS])


def render_json_lines(rows: Sequence[Row]) -> str:
    return "\n".join(json_lines(rows))


def json_lines(rows: Sequence[Row]) -> Iterator[str]:
    for row in rows:
        yield json.dumps({"type": "task", **_fields(row)})


def render_csv(rows: Sequence[Row]) -> str:
    """A header and one line per row; no cell starts a spreadsheet formula."""
    return "\n".join(csv_lines(rows))


def csv_lines(rows: Sequence[Row]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(Row.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    for row in [None, *rows]:
        if row is not None:
            writer.writerow({key: csv_cell(value) if isinstance(value, str) else value
                             for key, value in _fields(row).items()})
        yield out.getvalue().rstrip("\n")
        out.seek(0)
        out.truncate()


def _fields(row: Row) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies every value, a plan of 100,000 rows twice over.
    return {name: getattr(row, name) for name in Row.__dataclass_fields__}


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else escape_control(str(value))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None



# -- choosing the rows shown -----------------------------------------------------------------


@dataclass(frozen=True)
class RowFilter:
    """Which rows to show: all given conditions hold (a list matches any of its values)."""

    older_than: timedelta | None = None
    """begin_time at least this long before ``now`` (a row without one is not shown)."""
    rules: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    now: datetime | None = None

    @property
    def active(self) -> bool:
        return self.older_than is not None or bool(self.rules) or bool(self.actions)

    def describe(self) -> str:
        parts = []
        if self.older_than is not None:
            parts.append(f"begun more than {_duration_text(self.older_than)} ago")
        if self.rules:
            parts.append("rule " + " or ".join(self.rules))
        if self.actions:
            parts.append("action " + " or ".join(self.actions))
        return ", ".join(parts)

    def keep(self, row: Row) -> bool:
        if self.rules and row.rule not in self.rules:
            return False
        if self.actions and row.action not in self.actions:
            return False
        if self.older_than is not None:
            began = parse_begin_time(row.begin_time)
            if began is None or self.now is None or self.now - began < self.older_than:
                return False
        return True


def filter_rows(rows: Sequence[Row], chosen: RowFilter) -> Sequence[Row]:
    if not chosen.active:
        return rows
    if isinstance(rows, Rows):
        return rows.where(chosen.keep)
    return [row for row in rows if chosen.keep(row)]


def _duration_text(value: timedelta) -> str:
    return format_duration(value)
