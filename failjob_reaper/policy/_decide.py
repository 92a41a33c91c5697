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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, Literal

from ._durations import format_duration
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
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


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
    if not isinstance(record, Mapping):
        record = {}
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)

    held = _held(record, policy)
    if held:
        return Decision("retain", "hold", f"held: {held}", None)

    if force:
        return Decision(
            "delete",
            "forced",
            "forced by an operator: age, rules and keep-latest not consulted (holds were)",
            None,
            forced=True,
        )

    begin = parse_begin_time(record.get("begin_time"))
    if begin is None:
        return Decision(
            "retain", "begin-time-unparsable", "begin_time is missing or unreadable", None
        )

    ahead = begin - now
    if ahead > policy.clock_skew_tolerance:
        return Decision(
            "retain",
            "clock-skew",
            f"begin_time is {format_duration(ahead, parts=2)} in the future, beyond the "
            f"clock skew tolerance of {format_duration(policy.clock_skew_tolerance)}",
            None,
        )

    keep = policy.keep_latest_per_resource
    if keep > 0:
        newer = _newer_count(record, begin, siblings)
        if newer is None:
            # Without a resource_id the record cannot be ranked: keep it, to be safe.
            return Decision(
                "retain", "keep-latest", "no resource_id to rank it among its resource", None
            )
        if newer < keep:
            return Decision(
                "retain",
                "keep-latest",
                f"one of the {keep} newest failed tasks of its resource",
                None,
            )

    group = server_group_id if server_group_id is not None else _text(record, "server_group_id")
    rule_name, retention = "default", policy.default_retention
    for rule in policy.rules:
        if _matches(rule.match, record, group):
            rule_name, retention = rule.name, rule.retention
            break

    of_rule = f"of rule {rule_name!r}"
    if retention is None:
        return Decision("retain", rule_name, f"retention forever {of_rule}", None)
    kept = format_duration(retention)
    try:
        until = begin + retention
    except OverflowError:  # later than year 9999: as good as forever
        return Decision(
            "retain", rule_name, f"retention {kept} {of_rule} outlasts the calendar", None
        )

    age = format_duration(max(now - begin, timedelta(0)), parts=2)
    if now >= until:
        verb = "reached" if now == until else "exceeds"
        return Decision("delete", rule_name, f"age {age} {verb} retention {kept} {of_rule}", None)
    return Decision("retain", rule_name, f"age {age} is within retention {kept} {of_rule}", until)


def _text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) else None


def _held(record: Mapping[str, Any], policy: Policy) -> str | None:
    holds = policy.holds
    resource_id = _text(record, "resource_id")
    if resource_id is not None and resource_id in holds.resource_ids:
        return f"resource_id {resource_id} is on hold"
    job_id = _text(record, "job_id")
    if job_id is not None and job_id in holds.job_ids:
        return f"job_id {job_id} is on hold"
    name = _text(record, "resource_name")
    if name is not None:
        for pattern in holds.resource_names:
            if fnmatchcase(name, pattern):
                return f"resource_name {name} matches hold {pattern}"
    return None


def _newer_count(
    record: Mapping[str, Any], begin: datetime, siblings: Iterable[Mapping[str, Any]]
) -> int | None:
    """How many distinct records of the record's resource are newer than it;
    None when the record names no resource."""
    resource_id = _text(record, "resource_id")
    if not resource_id:
        return None
    own_job = _text(record, "job_id")
    mine = (begin, own_job or "")
    # Newest sort key per distinct sibling: duplicates of one job count once,
    # and the newest copy wins so that listing order cannot change the result.
    by_job: dict[str, tuple[datetime, str]] = {}
    anonymous: list[tuple[datetime, str]] = []
    for sibling in siblings:
        if sibling is record or not isinstance(sibling, Mapping):
            continue
        if _text(sibling, "resource_id") != resource_id:
            continue
        job = _text(sibling, "job_id")
        if job is not None and job == own_job:
            continue  # the record itself, as listed
        when = parse_begin_time(sibling.get("begin_time"))
        key = (when if when is not None else datetime.max.replace(tzinfo=UTC), job or "")
        if job is None:
            anonymous.append(key)
        elif job not in by_job or key > by_job[job]:
            by_job[job] = key
    # Strictly newer only: a full tie (no job_id on either side) keeps the record.
    return sum(1 for key in (*by_job.values(), *anonymous) if key > mine)


def _matches(match: Match, record: Mapping[str, Any], group: str | None) -> bool:
    for field, wanted in match.given().items():
        actual = group if field == "server_group_id" else _text(record, field)
        if actual is None:
            return False
        if field in _GLOB_FIELDS:
            if not any(fnmatchcase(actual, pattern) for pattern in wanted):
                return False
        elif field == "resource_type":
            spelled = _type_key(actual)
            if not any(_type_key(value) == spelled for value in wanted):
                return False
        elif actual not in wanted:
            return False
    return True


_GLOB_FIELDS = frozenset({"error_code", "resource_name", "job_type"})


def _type_key(value: str) -> str:
    # The list API filters by "protected_instances" but listings say
    # "protectedInstance": compare without case, "_" or a trailing "s".
    return value.replace("_", "").lower().removesuffix("s")
