"""The retention decision: a pure function of (record, policy, now).

Decision order, first step that applies wins:

1. **hold** - the record's ``resource_id`` or ``job_id`` is listed in
   ``holds``, or its ``resource_name`` matches a ``holds.resource_names``
   glob: retain. Always, even when forced.
2. **forced** - ``force=True`` (an operator's manual retry): delete, skipping
   every later step (age, rules, keep-latest, unparsable time, clock skew).
3. **begin-time-unparsable** - ``begin_time`` is missing or unreadable:
   retain; the age is unknown.
4. **clock-skew** - ``begin_time`` lies more than ``clock_skew_tolerance``
   after ``now``: retain; one of the clocks is wrong, so the age is unknown.
5. **keep-latest** - with ``keep_latest_per_resource`` N > 0, the record is
   among the N newest records of its ``resource_id`` (the record plus the
   ``siblings`` with the same ``resource_id``, de-duplicated by ``job_id``;
   a sibling with an unreadable ``begin_time`` counts as newest, to be safe;
   equal times are ordered by ``job_id``): retain. A record without a
   ``resource_id`` cannot be ranked and is retained too.
6. **rule / default** - the first rule whose match fits, else the default
   retention. Forever: retain. Otherwise the record may be deleted from
   ``begin_time + retention`` on: at that instant exactly it is deleted (it
   is no longer younger than its retention), before it, retained.

``decide`` never reads ``policy.dry_run`` or ``policy.guards``: those belong to
the caller, which turns a "delete" into a dry-run report or a guard trip.
A record field of the wrong type is treated as absent; nothing here raises.

A sweep decides up to a million records inside its deadline, so ``decide`` is
built for speed without changing a word of its answers (docs/performance.md):
what depends on the policy alone (hold sets, compiled globs, retentions in
microseconds, their text, the fixed decisions) is worked out once per policy
object; times are compared as integer microseconds since the epoch; a
:class:`~failjob_reaper.records.Record`'s packed ``begin_time`` is read as the
number it holds rather than re-printed and re-parsed; each record field is
read at most once, and only when a step needs it; equal delete decisions of
one rule are one object. tests/test_policy_fastpath.py holds the slower,
obvious form this replaced and checks the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import translate
from typing import Any, Literal

from failjob_reaper.records import Record

from ._durations import format_age, format_duration, format_micros
from ._model import Match, Policy

_MAX_TIME_LEN = 64  # no ISO 8601 timestamp is longer; skip parsing junk


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["delete", "retain"]
    rule: str
    """The deciding rule's name, or hold, forced, begin-time-unparsable,
    clock-skew, keep-latest or default."""
    reason: str
    retain_until: datetime | None
    """For a retained task, when it becomes deletable; None if never or
    unknown (forever, hold, unparsable time, clock skew, keep-latest)."""
    forced: bool = False


def parse_begin_time(value: object) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string, or None if unreadable.

    The task center writes ``2019-01-21T12:56:15.591Z``; other ISO 8601 forms
    are accepted too. A time without an offset is taken as UTC (the API's
    documented zone).
    """
    if not isinstance(value, str) or len(value) > _MAX_TIME_LEN:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        zone = parsed.tzinfo
        if zone is UTC:  # the API's "...Z": already what astimezone(UTC) would give
            return parsed
        if zone is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_MIN_US = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _US
_MAX_US = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _US
"""The instants a datetime can hold, in microseconds since the epoch: a time
outside them is an OverflowError in datetime arithmetic."""


def begin_micros(record: Mapping[str, Any]) -> int | None:
    """``parse_begin_time(record.get("begin_time"))`` in microseconds since the
    epoch. A Record's begin_time packed as milliseconds (records.py packs the
    API's fixed form only when it prints back to the very same text) is that
    number, not re-printed as text and parsed again."""
    if type(record) is Record:
        millis = record.begin_millis()
        if millis is not None:
            return millis * 1000
    begin = parse_begin_time(record.get("begin_time"))
    return None if begin is None else (begin - _EPOCH) // _US


_FORCED = Decision(
    "delete",
    "forced",
    "forced by an operator: age, rules and keep-latest not consulted (holds were)",
    None,
    forced=True,
)
_UNPARSABLE = Decision(
    "retain", "begin-time-unparsable", "begin_time is missing or unreadable", None
)
_UNRANKED = Decision(
    "retain", "keep-latest", "no resource_id to rank it among its resource", None
)
_UNSET: Any = object()


def decide(
    record: Mapping[str, Any],
    policy: Policy,
    now: datetime,
    *,
    siblings: Iterable[Mapping[str, Any]] = (),
    force: bool = False,
    server_group_id: str | None = None,
) -> Decision:
    """Decide whether one failed-task record is deleted or retained.

    ``now`` without a timezone is taken as UTC. ``siblings`` matter only for
    keep-latest; passing the whole listing works (records of other resources
    are skipped), but a sweep over many records should pass only the records
    of the same ``resource_id``, since each call scans what it is given.
    ``server_group_id`` is the protection group the record was listed in; it
    defaults to the record's own ``server_group_id`` field, if any.
    """
    kind = type(record)
    if kind is not Record and kind is not dict and not isinstance(record, Mapping):
        record = {}
    compiled = _compiled(policy)
    seen: dict[str, str | None] = {}  # each field read at most once

    if compiled.holds:
        held = compiled.held(record, seen)
        if held:
            return Decision("retain", "hold", f"held: {held}", None)

    if force:
        return _FORCED

    begin = begin_micros(record)
    if begin is None:
        return _UNPARSABLE

    current = _now_micros(now)
    ahead = begin - current
    if ahead > compiled.tolerance:
        return Decision(
            "retain",
            "clock-skew",
            f"begin_time is {format_micros(ahead, parts=2)} in the future, beyond the "
            f"clock skew tolerance of {compiled.tolerance_text}",
            None,
        )

    if compiled.keep > 0:
        resource_id = _read(record, seen, "resource_id")
        if not resource_id:
            # Without a resource_id the record cannot be ranked: keep it, to be safe.
            return _UNRANKED
        own_job = _read(record, seen, "job_id")
        if _newer_count(record, begin, siblings, resource_id, own_job) < compiled.keep:
            return compiled.kept_latest

    rule = compiled.default
    for candidate in compiled.rules:
        if candidate.fits(record, seen, server_group_id):
            rule = candidate
            break

    if rule.retention is None:
        return rule.forever
    until = begin + rule.retention
    if until > _MAX_US or until < _MIN_US:  # later than year 9999: as good as forever
        return rule.outlasts
    age = current - begin
    if age < 0:
        age = 0
    if current >= until:
        if current == until:
            return Decision("delete", rule.name, rule.reached(format_age(age)), None)
        return rule.delete(age)
    return Decision("retain", rule.name, rule.within(age), _EPOCH + _US * until)


_last_now: tuple[datetime, int] = (_EPOCH, 0)


def _now_micros(now: datetime) -> int:
    """``now`` (naive: UTC) in microseconds since the epoch; a sweep passes one ``now``
    for all its records, worked out once."""
    global _last_now
    last = _last_now
    if last[0] is now:
        return last[1]
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    micros = (aware - _EPOCH) // _US
    _last_now = (now, micros)
    return micros


def _read(record: Mapping[str, Any], seen: dict[str, str | None], key: str) -> str | None:
    """The record's text field ``key`` (None if absent or not text), read once per decision.

    """
    value = seen.get(key, _UNSET)
    if value is _UNSET:
        got = record.get(key)
        value = seen[key] = got if isinstance(got, str) else None
    return value  # type: ignore[no-any-return]


def _newer_count(
    record: Mapping[str, Any],
    begin: int,
    siblings: Iterable[Mapping[str, Any]],
    resource_id: str,
    own_job: str | None,
) -> int:
    """How many distinct records of the record's resource are newer than it."""
    mine = (begin, own_job or "")
    # Newest sort key per distinct sibling: duplicates of one job count once,
    # and the newest copy wins so that listing order cannot change the result.
    by_job: dict[str, tuple[int, str]] = {}
    anonymous: list[tuple[int, str]] = []
    for sibling in siblings:
        if sibling is record or not isinstance(sibling, Mapping):
            continue
        if _text(sibling, "resource_id") != resource_id:
            continue
        job = _text(sibling, "job_id")
        if job is not None and job == own_job:
            continue  # the record itself, as listed
        when = begin_micros(sibling)
        # An unreadable time counts as newest (datetime.max), to be safe.
        key = (when if when is not None else _MAX_US, job or "")
        if job is None:
            anonymous.append(key)
        elif job not in by_job or key > by_job[job]:
            by_job[job] = key
    # Strictly newer only: a full tie (no job_id on either side) keeps the record.
    return sum(1 for key in (*by_job.values(), *anonymous) if key > mine)


def _text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) else None


# -- what a policy alone decides, worked out once per policy object ------------------

_CACHE_MAX = 4096  # distinct age texts kept per rule; a backlog of 90 days has ~2,200


def _micros(td: timedelta) -> int:
    return (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds


def _glob(pattern: str) -> Callable[[str], object]:
    # What fnmatchcase does, compiled once: fnmatch's translate, then match.
    return re.compile(translate(pattern)).match


def _type_key(value: str) -> str:
    # The list API filters by "protected_instances" but listings say
    # "protectedInstance": compare without case, "_" or a trailing "s".
    return value.replace("_", "").lower().removesuffix("s")


_GLOB_FIELDS = frozenset({"error_code", "resource_name", "job_type"})


class _Rule:
    """One rule (or the default), ready to test records and word its decisions."""

    __slots__ = ("_deletes", "_exceeds", "_reached", "_within", "_withins", "forever",
                 "name", "outlasts", "retention", "tests")

    def __init__(self, name: str, match: Match | None, retention: timedelta | None) -> None:
        self.name = name
        self.tests: tuple[tuple[str, Callable[[str], bool]], ...] = (
            () if match is None else tuple(
                (key, _test(key, wanted)) for key, wanted in match.given().items()))
        of_rule = f"of rule {name!r}"
        self.retention = None if retention is None else _micros(retention)
        self.forever = Decision("retain", name, f"retention forever {of_rule}", None)
        kept = format_duration(retention)
        self.outlasts = Decision(
            "retain", name, f"retention {kept} {of_rule} outlasts the calendar", None)
        self._exceeds = f" exceeds retention {kept} {of_rule}"
        self._reached = f" reached retention {kept} {of_rule}"
        self._within = f" is within retention {kept} {of_rule}"
        self._deletes: dict[object, Decision] = {}
        self._withins: dict[object, str] = {}

    def fits(self, record: Mapping[str, Any], seen: dict[str, str | None],
             group: str | None) -> bool:
        for key, test in self.tests:
            if key == "server_group_id" and group is not None:
                actual: str | None = group
            else:
                actual = _read(record, seen, key)
            if actual is None or not test(actual):
                return False
        return True

    def reached(self, age: str) -> str:
        return "age " + age + self._reached

    def delete(self, age: int) -> Decision:
        key = _age_key(age)
        decision = self._deletes.get(key)
        if decision is None:
            if len(self._deletes) >= _CACHE_MAX:
                self._deletes.clear()
            decision = self._deletes[key] = Decision(
                "delete", self.name, "age " + format_age(age) + self._exceeds, None)
        return decision

    def within(self, age: int) -> str:
        key = _age_key(age)
        reason = self._withins.get(key)
        if reason is None:
            if len(self._withins) >= _CACHE_MAX:
                self._withins.clear()
            reason = self._withins[key] = "age " + format_age(age) + self._within
        return reason


def _age_key(age: int) -> object:
    """What the age's text depends on: whole hours when it reads "<d>d <h>h", else the
    text itself."""
    hours = age // 3_600_000_000
    return hours if hours >= 24 and hours % 24 else format_age(age)


def _test(key: str, wanted: tuple[str, ...]) -> Callable[[str], bool]:
    if key in _GLOB_FIELDS:
        globs = tuple(_glob(pattern) for pattern in wanted)
        return lambda actual: any(glob(actual) is not None for glob in globs)
    if key == "resource_type":
        spellings = frozenset(_type_key(value) for value in wanted)
        return lambda actual: _type_key(actual) in spellings
    values = frozenset(wanted)
    return values.__contains__


@dataclass(slots=True, eq=False)
class _Compiled:
    policy: Policy
    """Held, so that its id is not reused while this entry lives."""
    tolerance: int
    tolerance_text: str
    keep: int
    kept_latest: Decision
    rules: tuple[_Rule, ...]
    default: _Rule
    hold_ids: frozenset[str]
    hold_jobs: frozenset[str]
    hold_names: tuple[tuple[str, Callable[[str], object]], ...]
    holds: bool = field(init=False)

    def __post_init__(self) -> None:
        self.holds = bool(self.hold_ids or self.hold_jobs or self.hold_names)

    def held(self, record: Mapping[str, Any], seen: dict[str, str | None]) -> str | None:
        if self.hold_ids:
            resource_id = _read(record, seen, "resource_id")
            if resource_id is not None and resource_id in self.hold_ids:
                return f"resource_id {resource_id} is on hold"
        if self.hold_jobs:
            job_id = _read(record, seen, "job_id")
            if job_id is not None and job_id in self.hold_jobs:
                return f"job_id {job_id} is on hold"
        if self.hold_names:
            name = _read(record, seen, "resource_name")
            if name is not None:
                for pattern, glob in self.hold_names:
                    if glob(name) is not None:
                        return f"resource_name {name} matches hold {pattern}"
        return None


def _compile(policy: Policy) -> _Compiled:
    holds = policy.holds
    keep = policy.keep_latest_per_resource
    return _Compiled(
        policy=policy,
        tolerance=_micros(policy.clock_skew_tolerance),
        tolerance_text=format_duration(policy.clock_skew_tolerance),
        keep=keep,
        kept_latest=Decision(
            "retain", "keep-latest", f"one of the {keep} newest failed tasks of its resource",
            None),
        rules=tuple(_Rule(rule.name, rule.match, rule.retention) for rule in policy.rules),
        default=_Rule("default", None, policy.default_retention),
        hold_ids=frozenset(holds.resource_ids),
        hold_jobs=frozenset(holds.job_ids),
        hold_names=tuple((pattern, _glob(pattern)) for pattern in holds.resource_names),
    )


_COMPILED: dict[int, _Compiled] = {}
_COMPILED_MAX = 16  # policies alive at once: one per process, a few in tests


def _compiled(policy: Policy) -> _Compiled:
    compiled = _COMPILED.get(id(policy))
    if compiled is None or compiled.policy is not policy:
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        compiled = _COMPILED[id(policy)] = _compile(policy)
    return compiled
