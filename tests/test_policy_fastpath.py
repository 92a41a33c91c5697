"""The fast ``decide`` (issue 19) gives exactly the answers of the obvious one it replaced.

``reference_*`` below are the policy code as it stood before the fast paths (main at
8f4f610), kept verbatim but for names: every field read through ``get``, every time parsed
from text, every duration formatted anew. The properties compare the two on generated
records, policies, clocks and siblings - as plain dicts and as the planner's compact
``Record``s - and compare each fast helper (the begin_time parser, a Record's packed time,
the duration formatting) with its reference on generated input. Equal means equal in
every field of the Decision, ``retain_until`` to the microsecond and in its printed form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failjob_reaper.policy import Decision, Holds, Match, Policy, Rule, decide
from failjob_reaper.policy import _decide as fast
from failjob_reaper.policy._decide import begin_micros, parse_begin_time
from failjob_reaper.policy._durations import format_age, format_duration, format_micros
from failjob_reaper.records import FIELDS, Record, RecordTable
from tests.test_policy_properties import cases, records


class Compactor:
    """Each record as a listing keeps it: the row of a table of its own."""

    def __call__(self, record: Mapping[str, Any]) -> Record:
        return RecordTable([record])[0]

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- the reference: the code before the fast paths ---------------------------------------

_MAX_TIME_LEN = 64
_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def reference_format_duration(td: timedelta | None, *, parts: int | None = None) -> str:
    if td is None:
        return "forever"
    sign = "-" if td < timedelta(0) else ""
    micros = abs(td) // timedelta(microseconds=1)
    whole, frac = divmod(micros, 1_000_000)
    out: list[str] = []
    for unit, size in _UNITS:
        count, whole = divmod(whole, size)
        if count:
            out.append(f"{count}{unit}")
    if out and parts is not None:
        if whole:
            out.append(f"{whole}s")
    elif whole or frac:
        out.append(f"{whole}.{frac:06d}".rstrip("0").rstrip(".") + "s")
    if parts is not None:
        out = out[:parts]
    return sign + (" ".join(out) or "0s")


def reference_parse_begin_time(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > _MAX_TIME_LEN:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def reference_decide(
    record: Mapping[str, Any],
    policy: Policy,
    now: datetime,
    *,
    siblings: Iterable[Mapping[str, Any]] = (),
    force: bool = False,
    server_group_id: str | None = None,
) -> Decision:
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

    begin = reference_parse_begin_time(record.get("begin_time"))
    if begin is None:
        return Decision(
            "retain", "begin-time-unparsable", "begin_time is missing or unreadable", None
        )

    ahead = begin - now
    if ahead > policy.clock_skew_tolerance:
        return Decision(
            "retain",
            "clock-skew",
            f"begin_time is {reference_format_duration(ahead, parts=2)} in the future, "
            "beyond the clock skew tolerance of "
            f"{reference_format_duration(policy.clock_skew_tolerance)}",
            None,
        )

    keep = policy.keep_latest_per_resource
    if keep > 0:
        newer = _newer_count(record, begin, siblings)
        if newer is None:
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
    kept = reference_format_duration(retention)
    try:
        until = begin + retention
    except OverflowError:
        return Decision(
            "retain", rule_name, f"retention {kept} {of_rule} outlasts the calendar", None
        )

    age = reference_format_duration(max(now - begin, timedelta(0)), parts=2)
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
    resource_id = _text(record, "resource_id")
    if not resource_id:
        return None
    own_job = _text(record, "job_id")
    mine = (begin, own_job or "")
    by_job: dict[str, tuple[datetime, str]] = {}
    anonymous: list[tuple[datetime, str]] = []
    for sibling in siblings:
        if sibling is record or not isinstance(sibling, Mapping):
            continue
        if _text(sibling, "resource_id") != resource_id:
            continue
        job = _text(sibling, "job_id")
        if job is not None and job == own_job:
            continue
        when = reference_parse_begin_time(sibling.get("begin_time"))
        key = (when if when is not None else datetime.max.replace(tzinfo=UTC), job or "")
        if job is None:
            anonymous.append(key)
        elif job not in by_job or key > by_job[job]:
            by_job[job] = key
    return sum(1 for key in (*by_job.values(), *anonymous) if key > mine)


def _matches(match: Match, record: Mapping[str, Any], group: str | None) -> bool:
    for field, wanted in match.given().items():
        actual = group if field == "server_group_id" else _text(record, field)
        if actual is None:
            return False
        if field in ("error_code", "resource_name", "job_type"):
            if not any(fnmatchcase(actual, pattern) for pattern in wanted):
                return False
        elif field == "resource_type":
            spelled = _type_key(actual)
            if not any(_type_key(value) == spelled for value in wanted):
                return False
        elif actual not in wanted:
            return False
    return True


def _type_key(value: str) -> str:
    return value.replace("_", "").lower().removesuffix("s")


# -- comparing -------------------------------------------------------------------------


def assert_same(got: Decision, want: Decision) -> None:
    assert got == want
    # Equal datetimes may still print differently (another zone): compare the text too.
    assert (got.retain_until is None) == (want.retain_until is None)
    if got.retain_until is not None and want.retain_until is not None:
        assert got.retain_until.isoformat() == want.retain_until.isoformat()


def assert_same_time(got: datetime | None, want: datetime | None) -> None:
    assert got == want
    if got is not None and want is not None:
        assert got.isoformat() == want.isoformat()
        assert got.tzinfo is want.tzinfo


# -- begin_time ------------------------------------------------------------------------

moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                       timezones=st.just(UTC))
zones = st.sampled_from([UTC, timezone(timedelta(hours=8)),
                         timezone(timedelta(hours=-5, minutes=-30)), timezone(timedelta(0))])


def api_form(moment: datetime) -> str:
    """The task center's fixed form, "2019-01-21T12:56:15.591Z"."""
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


@st.composite
def timestamps(draw: st.DrawFn) -> object:
    moment = draw(moments)
    form = draw(st.integers(0, 7))
    if form == 0:
        return api_form(moment)
    if form == 1:
        return moment.astimezone(draw(zones)).isoformat() if moment.year > 1 else moment.isoformat()
    if form == 2:
        return moment.replace(tzinfo=None).isoformat(timespec=draw(st.sampled_from(
            ["auto", "seconds", "milliseconds", "microseconds"])))
    if form == 3:  # padded, lowercase, odd zones
        text = draw(st.sampled_from([" ", "\t", ""])) + api_form(moment) + draw(
            st.sampled_from([" ", "\n", ""]))
        return text.replace("Z", draw(st.sampled_from(["Z", "+00:00", "-00:00", "+14:00"])))
    if form == 4:  # one character of the API's form changed
        text = api_form(moment)
        at = draw(st.integers(0, len(text) - 1))
        return text[:at] + draw(st.sampled_from("0123456789-:.TZz+ ")) + text[at + 1:]
    if form == 5:
        return draw(st.text(max_size=30))
    if form == 6:
        return draw(st.one_of(st.none(), st.integers(), st.floats(), st.just(["2019"])))
    return api_form(moment) + "0" * draw(st.integers(0, 50))  # past the length limit


@SETTINGS
@given(timestamps())
def test_parse_begin_time_equals_the_general_parser(value: object) -> None:
    assert_same_time(parse_begin_time(value), reference_parse_begin_time(value))


@SETTINGS
@given(moments)
def test_a_records_packed_begin_time_is_the_instant_its_text_names(moment: datetime) -> None:
    text = api_form(moment)
    compact = Compactor()({"begin_time": text, "job_id": "j"})
    assert isinstance(compact, Record)
    want = reference_parse_begin_time(text)
    got = begin_micros(compact)
    if want is None:
        assert got is None
    else:
        assert got == (want - EPOCH) // timedelta(microseconds=1)
    assert begin_micros({"begin_time": text}) == got  # the same from the plain dict


# -- durations -------------------------------------------------------------------------

durations = st.one_of(
    st.timedeltas(),
    st.integers(0, 10**12).map(lambda us: timedelta(microseconds=us)),
    st.builds(timedelta, days=st.integers(0, 400), hours=st.integers(0, 23),
              minutes=st.integers(0, 59), seconds=st.integers(0, 59)),
)


@SETTINGS
@given(durations, st.sampled_from([None, 0, 1, 2, 3, 5]))
def test_format_duration_equals_the_reference(td: timedelta, parts: int | None) -> None:
    assert format_duration(td, parts=parts) == reference_format_duration(td, parts=parts)
    assert format_duration(td) == reference_format_duration(td)
    assert format_duration(None) == "forever"


@SETTINGS
@given(st.one_of(st.integers(0, 10**17), st.integers(0, 10**11)))
def test_an_age_in_micros_reads_as_format_duration_of_two_parts(micros: int) -> None:
    want = reference_format_duration(timedelta(microseconds=micros), parts=2)
    assert format_age(micros) == want
    assert format_micros(micros, parts=2) == want


# -- decide ----------------------------------------------------------------------------


def compact(record: object, compactor: Compactor) -> Any:
    return compactor(record) if isinstance(record, Mapping) else record


@SETTINGS
@given(cases(), st.booleans(), st.booleans(), st.booleans())
def test_decide_equals_the_reference(case: Any, force: bool, as_record: bool,
                                     naive_now: bool) -> None:
    record, _, policy, now, siblings, group = case
    if naive_now:
        now = now.replace(tzinfo=None)
    if as_record:  # as the planner passes them: compact, the record among its siblings
        compactor = Compactor()
        record = compact(record, compactor)
        siblings = [record, *(compact(s, compactor) for s in siblings)]
    want = reference_decide(record, policy, now, siblings=siblings, force=force,
                            server_group_id=group)
    for _ in range(2):  # the second time from the policy's compiled form and cached words
        got = decide(record, policy, now, siblings=siblings, force=force, server_group_id=group)
        assert_same(got, want)


@SETTINGS
@given(records(), st.lists(st.sampled_from([timedelta(days=7), timedelta(hours=12), None]),
                           min_size=2, max_size=6))
def test_a_new_policy_object_is_never_answered_from_an_old_ones_form(
        record: tuple[dict[str, Any], datetime | None], retentions: list[timedelta | None]
) -> None:
    """Policies come and go (tests, reloads); each is decided by its own settings, even
    when a new one takes the place (and the id) of one that is gone."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for retention in retentions:
        policy = Policy(default_retention=retention)
        want = reference_decide(record[0], policy, now)
        assert_same(decide(record[0], policy, now), want)
        del policy


def test_a_decision_for_every_age_of_a_long_backlog_under_a_small_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ages of every hour over a year and some odd ones, deleted and retained, with the
    cache of words kept small so that it is emptied again and again."""
    monkeypatch.setattr(fast, "_CACHE_MAX", 5)
    policy = Policy(
        default_retention=timedelta(days=7),
        rules=[Rule(name="short", match=Match(error_code="EVS.*"), retention=timedelta(hours=1)),
               Rule(name="year", match=Match(resource_type="protected_instances"),
                    retention=timedelta(days=365))],
        holds=Holds(resource_names=["keep-*"]),
    )
    now = datetime(2031, 6, 1, 12, tzinfo=UTC)
    compactor = Compactor()
    ages = [timedelta(hours=h, milliseconds=h * 7919 % 3_600_000) for h in range(0, 24 * 400, 5)]
    ages += [timedelta(days=d, minutes=m, seconds=s) for d in (0, 1, 7, 8)
             for m in (0, 1, 59) for s in (0, 1)]
    for n, age in enumerate(ages):
        record = {"begin_time": api_form(now - age), "job_id": f"j{n}",
                  "resource_name": ("keep-" if n % 11 == 0 else "r-") + str(n),
                  "error_code": "EVS.1" if n % 3 == 0 else "SDRS.1",
                  "resource_type": "protectedInstance" if n % 5 == 0 else "replication"}
        want = reference_decide(record, policy, now)
        assert_same(decide(record, policy, now), want)
        assert_same(decide(compactor(record), policy, now), want)


def test_each_field_is_read_once_and_only_when_a_step_needs_it() -> None:
    """The planner's records answer ``get`` at a cost: the default policy reads the time
    alone; holds and rules read their fields, once each."""

    class Counting(dict[str, Any]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.reads: list[str] = []

        def get(self, key: str, default: Any = None) -> Any:
            self.reads.append(key)
            return super().get(key, default)

    now = datetime(2030, 1, 1, tzinfo=UTC)
    fields = {"begin_time": "2029-12-01T00:00:00.000Z", "resource_id": "r1", "job_id": "j1",
              "resource_name": "web-1", "error_code": "EVS.1", "server_group_id": "g1"}
    plain = Counting(fields)
    assert decide(plain, Policy(), now).action == "delete"
    assert plain.reads == ["begin_time"]

    busy = Policy(
        holds=Holds(resource_ids=["other"], job_ids=["other"], resource_names=["keep-*"]),
        rules=[Rule(name="a", match=Match(resource_id="r2", error_code="EVS.*"),
                    retention=timedelta(days=1)),
               Rule(name="b", match=Match(error_code="EVS.*", server_group_id="g1",
                                          resource_name="web-*"),
                    retention=timedelta(days=2))],
    )
    read = Counting(fields)
    assert decide(read, busy, now).rule == "b"
    assert sorted(read.reads) == sorted(set(read.reads))
    assert set(read.reads) == {"begin_time", "resource_id", "job_id", "resource_name",
                               "error_code", "server_group_id"}


field_values = st.one_of(st.text(max_size=8), st.none(), st.integers(), st.booleans(),
                         st.just(["x"]), moments.map(api_form))


@SETTINGS
@given(st.dictionaries(st.sampled_from([*FIELDS, "server_group_id", "other"]), field_values))
def test_a_records_text_fields_read_once_are_what_get_gives(raw: dict[str, Any]) -> None:
    record = Compactor()(raw)
    for key in (*FIELDS, "server_group_id", "other"):
        value = record.get(key)
        want = value if isinstance(value, str) else None
        if key != "begin_time":  # the time is read by begin_micros, compared above
            assert fast._read(record, {}, key) == want
            assert fast._read(raw, {}, key) == want
