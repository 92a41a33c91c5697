"""Property tests of decide(): safety (never delete what must stay), the
retain_until contract, and determinism, over generated records, policies and
clocks. The oracle below is written independently of the implementation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from fnmatch import fnmatchcase
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from failjob_reaper.policy import Decision, Holds, Match, Policy, Rule, decide

IDS = ["r1", "r2", "r3"]
JOBS = ["j1", "j2", "j3", "j4", "j5"]
NAMES = ["prod-db", "dev-web", "Protected-Instance-5e2e"]
TYPES = [
    "protectedInstance",
    "protected_instances",
    "serverGroup",
    "server_groups",
    "disasterRecoveryDrill",
    "disaster_recovery_drills",
    "replication",
]
STATUSES = ["createFail", "deleteFail", "failoverFail", "reverseFail"]
CODES = ["EVS.2024", "EVS.1", "SDRS.0001"]
JOB_TYPES = ["createProtectedInstance", "deleteServerGroup"]
GROUPS = ["g1", "g2"]

RETENTIONS = [
    None,
    timedelta(0),
    timedelta(seconds=1),
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=7),
    timedelta(days=30),
]
FINITE = [r for r in RETENTIONS if r is not None]
TOLERANCES = [timedelta(0), timedelta(minutes=5), timedelta(hours=1)]
JITTERS = [timedelta(microseconds=n) for n in (0, 1, -1, 1_000_000, -1_000_000)]

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

instants = st.datetimes(
    min_value=datetime(2015, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
).map(lambda dt: dt.replace(microsecond=dt.microsecond // 1000 * 1000))


def _formats(dt: datetime) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z",  # the API's
            dt.astimezone(timezone(timedelta(hours=8))).isoformat(),
            dt.replace(tzinfo=None).isoformat(),
        ]
    )


wrong_type = st.one_of(st.none(), st.integers(), st.booleans(), st.just(["x"]))
unparsable = st.one_of(
    wrong_type, st.text(alphabet="abcxyz -:TZ", max_size=12), st.just("2019-13-45T99:00:00Z")
)


def _field(values: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(values), wrong_type)


@st.composite
def records(draw: st.DrawFn) -> tuple[dict[str, Any], datetime | None]:
    """A record and, independently of any parser, its begin time (None if
    the begin_time field is unusable)."""
    record = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "job_status": st.just("FAIL"),
                "resource_id": _field(IDS),
                "resource_name": _field(NAMES),
                "resource_type": _field(TYPES),
                "failure_status": _field(STATUSES),
                "job_id": _field(JOBS),
                "job_type": _field(JOB_TYPES),
                "error_code": _field(CODES),
                "server_group_id": _field(GROUPS),
            },
        )
    )
    if draw(st.integers(0, 5)) == 3:  # not 0: Hypothesis favours it
        bad = draw(st.one_of(st.just(...), unparsable))
        if bad is not ...:
            record["begin_time"] = bad
        return record, None
    begin = draw(instants)
    record["begin_time"] = draw(_formats(begin))
    return record, begin


def _values(values: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(values), st.lists(st.sampled_from(values), min_size=1, max_size=3)
    )


matches = st.fixed_dictionaries(
    {},
    optional={
        "resource_type": _values(TYPES),
        "failure_status": _values(STATUSES),
        "error_code": _values(["EVS.*", "*", "SDRS.*", "EVS.2024"]),
        "resource_name": _values(["prod-*", "*-web", "*"]),
        "job_type": _values(["create*", "delete*"]),
        "resource_id": _values(IDS),
        "job_id": _values(JOBS),
        "server_group_id": _values(GROUPS),
    },
)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    rule_specs = draw(st.lists(st.tuples(matches, st.sampled_from(RETENTIONS)), max_size=4))
    rules = [
        Rule(name=f"rule-{i}", match=Match(**m), retention=r) for i, (m, r) in enumerate(rule_specs)
    ]
    holds = Holds(
        resource_ids=draw(st.lists(st.sampled_from(IDS), max_size=1)),
        resource_names=draw(st.lists(st.sampled_from(["prod-*", "*-5e2e"]), max_size=1)),
        job_ids=draw(st.lists(st.sampled_from(JOBS), max_size=1)),
    )
    return Policy(
        default_retention=draw(st.sampled_from(RETENTIONS)),
        keep_latest_per_resource=draw(st.integers(0, 3)),
        clock_skew_tolerance=draw(st.sampled_from(TOLERANCES)),
        rules=rules,
        holds=holds,
    )


@st.composite
def cases(
    draw: st.DrawFn,
) -> tuple[dict[str, Any], datetime | None, Policy, datetime, list[dict[str, Any]], str | None]:
    record, begin = draw(records())
    policy = draw(policies())
    group = draw(st.one_of(st.none(), st.sampled_from(GROUPS)))
    siblings = [r for r, _ in draw(st.lists(records(), max_size=4))]
    if draw(st.booleans()):
        siblings.append(dict(record))
    # Mostly near the instants that matter: the end of the applicable
    # retention and the clock-skew limit, give or take a microsecond.
    mode = draw(st.sampled_from(["retention", "skew", "anywhere"]))
    jitter = draw(st.sampled_from(JITTERS))
    if begin is None or mode == "anywhere":
        now = draw(instants)
    elif mode == "retention":
        retention = applicable(record, policy, group)[1]
        if retention is None:
            retention = draw(st.sampled_from(FINITE))
        now = begin + retention + jitter
    else:
        now = begin - policy.clock_skew_tolerance + jitter
    return record, begin, policy, now, siblings, group


# -- the oracle ----------------------------------------------------------------


def _text(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) else None


def held(record: dict[str, Any], policy: Policy) -> bool:
    name = _text(record, "resource_name")
    return (
        _text(record, "resource_id") in policy.holds.resource_ids
        or _text(record, "job_id") in policy.holds.job_ids
        or (name is not None and any(fnmatchcase(name, p) for p in policy.holds.resource_names))
    )


def _type_key(value: str) -> str:
    key = value.lower().replace("_", "")
    return key[:-1] if key.endswith("s") else key


def _fits(match: Match, record: dict[str, Any], group: str | None) -> bool:
    for field, wanted in match.model_dump(exclude_none=True).items():
        actual = group if field == "server_group_id" else _text(record, field)
        if actual is None:
            return False
        if field in ("error_code", "resource_name", "job_type"):
            ok = any(fnmatchcase(actual, w) for w in wanted)
        elif field == "resource_type":
            ok = any(_type_key(actual) == _type_key(w) for w in wanted)
        else:
            ok = actual in wanted
        if not ok:
            return False
    return True


def applicable(
    record: dict[str, Any], policy: Policy, group: str | None
) -> tuple[str, timedelta | None]:
    if group is None:
        group = _text(record, "server_group_id")
    for rule in policy.rules:
        if _fits(rule.match, record, group):
            return rule.name, rule.retention
    return "default", policy.default_retention


def same_resource_others(record: dict[str, Any], siblings: list[dict[str, Any]]) -> int:
    rid = _text(record, "resource_id")
    jobs = {
        _text(s, "job_id") or f"anon-{i}"
        for i, s in enumerate(siblings)
        if rid and _text(s, "resource_id") == rid and s is not record
    }
    jobs.discard(_text(record, "job_id") or "")
    return len(jobs)


# -- properties ------------------------------------------------------------------
# Generating a case costs far more than deciding it, so one test checks every
# invariant of a generated case; each check says which invariant broke.


def check_never_deletes_what_must_stay(case: Any, decision: Decision) -> None:
    record, begin, policy, now, siblings, group = case
    if decision.action != "delete":
        return
    assert not held(record, policy), "deleted a held task"
    assert begin is not None, "deleted with an unparsable begin_time"
    assert begin - now <= policy.clock_skew_tolerance, "deleted from the future"
    name, retention = applicable(record, policy, group)
    assert decision.rule == name, "decided by the wrong rule"
    assert retention is not None, "deleted under a forever retention"
    assert now - begin >= retention, "deleted while younger than its retention"
    assert decision.retain_until is None and not decision.forced
    if policy.keep_latest_per_resource:
        assert _text(record, "resource_id"), "keep-latest must keep what it cannot rank"
        assert same_resource_others(record, siblings) >= policy.keep_latest_per_resource


def check_unparsable_and_future_times_are_retained(case: Any, decision: Decision) -> None:
    record, begin, policy, now, _, _ = case
    if held(record, policy):
        assert (decision.action, decision.rule) == ("retain", "hold")
    elif begin is None:
        assert (decision.action, decision.rule) == ("retain", "begin-time-unparsable")
        assert decision.retain_until is None
    elif begin - now > policy.clock_skew_tolerance:
        assert (decision.action, decision.rule) == ("retain", "clock-skew")
        assert decision.retain_until is None


def check_retain_until(case: Any, decision: Decision) -> None:
    record, begin, policy, now, _, group = case
    if decision.retain_until is None:
        return
    assert decision.action == "retain", "retain_until on a deletion"
    assert decision.retain_until.tzinfo is not None
    assert decision.retain_until > now, "retain_until already passed"
    name, retention = applicable(record, policy, group)
    assert begin is not None and retention is not None
    assert decision.rule == name
    assert decision.retain_until == begin + retention, "retain_until is not begin + retention"


def check_forced(case: Any, forced: Decision) -> None:
    record, _, policy, _, _, _ = case
    if held(record, policy):
        assert (forced.action, forced.rule, forced.forced) == ("retain", "hold", False)
    else:
        assert (forced.action, forced.rule, forced.forced) == ("delete", "forced", True)
        assert forced.retain_until is None


@SETTINGS
@given(cases(), st.randoms(use_true_random=False))
def test_decision_invariants(case: Any, rnd: random.Random) -> None:
    record, _, policy, now, siblings, group = case
    decision = decide(record, policy, now, siblings=siblings, server_group_id=group)
    check_never_deletes_what_must_stay(case, decision)
    check_unparsable_and_future_times_are_retained(case, decision)
    check_retain_until(case, decision)

    forced = decide(record, policy, now, siblings=siblings, force=True, server_group_id=group)
    check_forced(case, forced)

    # Deterministic: same inputs, same answer, whatever the order of siblings.
    shuffled = list(siblings)
    rnd.shuffle(shuffled)
    assert decide(record, policy, now, siblings=shuffled, server_group_id=group) == decision
    assert decide(record, policy, now, siblings=iter(siblings), server_group_id=group) == decision
    again = decide(record, policy, now, siblings=shuffled, force=True, server_group_id=group)
    assert again == forced


@SETTINGS
@given(cases(), st.booleans(), st.sampled_from(["resource_id", "job_id", "resource_name"]))
def test_holds_always_win(case: Any, force: bool, kind: str) -> None:
    record, _, policy, now, siblings, group = case
    # Put the record on hold by one of its own fields (giving it one if need be).
    if _text(record, kind) is None:
        record[kind] = {"resource_id": "r1", "job_id": "j1", "resource_name": "prod-db"}[kind]
    value = record[kind]
    hold = {"resource_ids": "resource_id", "job_ids": "job_id", "resource_names": "resource_name"}
    pattern = value[:2] + "*" if kind == "resource_name" else value
    holds = {key: (pattern,) if field == kind else () for key, field in hold.items()}
    policy = policy.model_copy(update={"holds": Holds(**holds)})
    assert held(record, policy)
    decision = decide(record, policy, now, siblings=siblings, force=force, server_group_id=group)
    assert (decision.action, decision.rule, decision.retain_until, decision.forced) == (
        "retain",
        "hold",
        None,
        False,
    )


@SETTINGS
@given(
    cases(),
    st.one_of(
        st.sampled_from(JITTERS),
        st.timedeltas(min_value=timedelta(days=-400), max_value=timedelta(days=400)),
    ),
)
def test_retention_boundary(case: Any, offset: timedelta) -> None:
    """With nothing else protecting it, a task goes exactly when its
    applicable retention has run out, and not a microsecond before."""
    record, begin, policy, _, siblings, group = case
    assume(begin is not None)
    policy = policy.model_copy(update={"keep_latest_per_resource": 0, "holds": Holds()})
    name, retention = applicable(record, policy, group)
    assume(retention is not None)
    now = begin + retention + offset
    decision = decide(record, policy, now, siblings=siblings, server_group_id=group)
    if offset >= timedelta(0):
        assert (decision.action, decision.rule) == ("delete", name)
    else:
        assert decision.action == "retain"
        if decision.rule == name:
            assert decision.retain_until == begin + retention


BASE = datetime(2024, 3, 1, tzinfo=UTC)
NEVER = datetime.max.replace(tzinfo=UTC)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@SETTINGS
@given(
    keep=st.integers(1, 3),
    own_job=st.sampled_from(["j0", None]),
    own_hour=st.integers(0, 3),
    others=st.lists(
        st.tuples(st.sampled_from(JOBS), st.one_of(st.none(), st.integers(0, 3))),
        unique_by=lambda t: t[0],
        max_size=5,
    ),
    noise=st.lists(st.tuples(st.sampled_from(JOBS), st.integers(0, 3)), max_size=3),
    rnd=st.randoms(use_true_random=False),
)
def test_keep_latest_ranks_by_begin_time_then_job_id(
    keep: int,
    own_job: str | None,
    own_hour: int,
    others: list[tuple[str, int | None]],
    noise: list[tuple[str, int]],
    rnd: random.Random,
) -> None:
    own_begin = BASE + timedelta(hours=own_hour)
    record: dict[str, Any] = {"resource_id": "r1", "begin_time": _stamp(own_begin)}
    if own_job is not None:
        record["job_id"] = own_job
    siblings: list[dict[str, Any]] = [
        {
            "resource_id": "r1",
            "job_id": job,
            # None: an unreadable begin_time, which ranks as newest
            "begin_time": "junk" if hour is None else _stamp(BASE + timedelta(hours=hour)),
        }
        for job, hour in others
    ]
    other_resource = [
        {"resource_id": "r2", "job_id": job, "begin_time": _stamp(BASE + timedelta(hours=hour))}
        for job, hour in noise
    ]
    mine = (own_begin, own_job or "")
    newer = sum(
        1
        for job, hour in others
        if (NEVER if hour is None else BASE + timedelta(hours=hour), job) > mine
    )
    policy = Policy(default_retention="0s", keep_latest_per_resource=keep)
    now = BASE + timedelta(days=30)

    decision = decide(record, policy, now, siblings=siblings + other_resource)
    if newer < keep:
        assert (decision.action, decision.rule) == ("retain", "keep-latest")
    else:
        assert (decision.action, decision.rule) == ("delete", "default")

    # Duplicates (the same jobs listed twice, the record itself) and order change nothing.
    crowd = siblings + other_resource + [dict(s) for s in siblings] + [dict(record), record]
    rnd.shuffle(crowd)
    assert decide(record, policy, now, siblings=crowd) == decision
