"""The decision: order of the steps, matching, boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from failjob_reaper.policy import (
    Decision,
    Holds,
    Match,
    Policy,
    Rule,
    decide,
    default_policy,
    parse_begin_time,
)

BEGIN = datetime(2019, 1, 21, 12, 56, 15, 591000, tzinfo=UTC)

# The listing example of the API reference.
RECORD: dict[str, Any] = {
    "job_status": "FAIL",
    "resource_id": "897f57b2-6e94-4179-b414-9532726c59f2",
    "resource_name": "Protected-Instance-5e2e",
    "resource_type": "protectedInstance",
    "failure_status": "createFail",
    "job_id": "ff808082686f229a0168707b9be9013e",
    "job_type": "createProtectedInstance",
    "begin_time": "2019-01-21T12:56:15.591Z",
    "error_code": "EVS.2024",
    "fail_reason": "SdrsGenerateNativeServerParamsTask-fail:volume is error!",
}


def rec(**changes: Any) -> dict[str, Any]:
    out = {**RECORD, **changes}
    return {k: v for k, v in out.items() if v is not ...}  # ... drops a field


def rule(name: str, retention: str, **match: Any) -> Rule:
    return Rule(name=name, match=Match(**match), retention=retention)


def at(**delta: float) -> datetime:
    return BEGIN + timedelta(**delta)


# -- parse_begin_time ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2019-01-21T12:56:15.591Z", BEGIN),
        ("2019-01-21T12:56:15.591+00:00", BEGIN),
        ("2019-01-21T20:56:15.591+08:00", BEGIN),
        ("2019-01-21T12:56:15.591", BEGIN),  # naive: UTC
        ("2019-01-21 12:56:15.591Z", BEGIN),
        ("20190121T125615.591Z", BEGIN),
        ("2019-01-21T12:56:15.5910001Z", BEGIN),  # beyond microseconds: truncated
        ("2019-01-21", datetime(2019, 1, 21, tzinfo=UTC)),
    ],
)
def test_parse_begin_time(value: str, expected: datetime) -> None:
    parsed = parse_begin_time(value)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        None,
        1548075375591,
        1.5,
        b"2019-01-21",
        ["2019-01-21"],
        "",
        "yesterday",
        "2019-13-01T00:00:00Z",
        "2019-01-21T25:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "2" * 200,
    ],
)
def test_parse_begin_time_garbage(value: object) -> None:
    assert parse_begin_time(value) is None


# -- the decision order ------------------------------------------------------


def test_default_retention_deletes_old_task() -> None:
    decision = decide(RECORD, default_policy(), at(days=9, hours=2, minutes=3))
    assert decision == Decision(
        "delete", "default", "age 9d 2h exceeds retention 7d of rule 'default'", None
    )


def test_default_retention_retains_young_task() -> None:
    decision = decide(RECORD, default_policy(), at(days=2))
    assert decision.action == "retain"
    assert decision.rule == "default"
    assert decision.retain_until == at(days=7)
    assert "within retention 7d" in decision.reason


def test_exact_boundary_instant() -> None:
    policy = default_policy()
    before = decide(RECORD, policy, at(days=7, microseconds=-1))
    assert before.action == "retain" and before.retain_until == at(days=7)
    exactly = decide(RECORD, policy, at(days=7))
    assert exactly.action == "delete" and exactly.retain_until is None
    assert "reached retention 7d" in exactly.reason


def test_zero_retention_deletes_at_begin_time() -> None:
    policy = Policy(default_retention="0s")
    assert decide(RECORD, policy, BEGIN).action == "delete"
    assert decide(RECORD, policy, at(microseconds=-1)).action == "retain"


def test_forever_retains_without_retain_until() -> None:
    policy = Policy(default_retention="forever")
    decision = decide(RECORD, policy, at(days=10_000))
    assert decision.action == "retain"
    assert decision.rule == "default"
    assert decision.retain_until is None
    assert "forever" in decision.reason


def test_forever_rule() -> None:
    policy = Policy(rules=[rule("keep-failovers", "forever", failure_status="createFail")])
    decision = decide(RECORD, policy, at(days=10_000))
    assert (decision.action, decision.rule, decision.retain_until) == (
        "retain",
        "keep-failovers",
        None,
    )


def test_retention_beyond_the_calendar() -> None:
    policy = Policy(default_retention=timedelta(days=999_999_999))
    decision = decide(RECORD, policy, at(days=1))
    assert (decision.action, decision.retain_until) == ("retain", None)


@pytest.mark.parametrize(
    ("holds", "record"),
    [
        (Holds(resource_ids=(RECORD["resource_id"],)), RECORD),
        (Holds(job_ids=(RECORD["job_id"],)), RECORD),
        (Holds(resource_names=("Protected-*",)), RECORD),
        (Holds(resource_names=("nope", "*-5e2e")), RECORD),
    ],
)
@pytest.mark.parametrize("force", [False, True])
def test_holds_win_even_over_force(holds: Holds, record: dict[str, Any], force: bool) -> None:
    policy = Policy(default_retention="0s", holds=holds)
    decision = decide(record, policy, at(days=365), force=force)
    assert decision == Decision("retain", "hold", decision.reason, None, forced=False)
    assert decision.reason.startswith("held: ")


def test_hold_globs_are_case_sensitive() -> None:
    policy = Policy(default_retention="0s", holds=Holds(resource_names=("protected-*",)))
    assert decide(RECORD, policy, at(days=1)).action == "delete"


def test_hold_beats_unparsable_time() -> None:
    policy = Policy(holds=Holds(job_ids=(RECORD["job_id"],)))
    assert decide(rec(begin_time="junk"), policy, BEGIN).rule == "hold"


@pytest.mark.parametrize(
    "record",
    [
        RECORD,
        rec(begin_time="junk"),
        rec(begin_time=...),
        rec(begin_time="2100-01-01T00:00:00Z"),
    ],
)
def test_force_deletes_anything_not_held(record: dict[str, Any]) -> None:
    policy = Policy(
        default_retention="forever",
        keep_latest_per_resource=5,
        rules=[rule("r", "forever")],
    )
    decision = decide(record, policy, at(seconds=1), force=True)
    assert (decision.action, decision.rule, decision.forced, decision.retain_until) == (
        "delete",
        "forced",
        True,
        None,
    )


@pytest.mark.parametrize("value", [..., None, "", "not a time", 1548075375591, {"t": 1}])
def test_unparsable_begin_time_retains(value: object) -> None:
    policy = Policy(default_retention="0s")
    decision = decide(rec(begin_time=value), policy, at(days=365))
    assert decision == Decision(
        "retain", "begin-time-unparsable", "begin_time is missing or unreadable", None
    )


def test_clock_skew() -> None:
    policy = Policy(default_retention="0s", clock_skew_tolerance="5m")
    now = at(minutes=-5, microseconds=-1)  # begin_time is 5m + 1us ahead of now
    decision = decide(RECORD, policy, now)
    assert (decision.action, decision.rule, decision.retain_until) == ("retain", "clock-skew", None)
    assert "in the future" in decision.reason
    # Within the tolerance the normal rules apply: a 0s retention still
    # waits until begin_time itself.
    within = decide(RECORD, policy, at(minutes=-5))
    assert (within.action, within.rule, within.retain_until) == ("retain", "default", BEGIN)


def test_clock_skew_checked_before_keep_latest_and_rules() -> None:
    policy = Policy(keep_latest_per_resource=3, rules=[rule("r", "forever")])
    assert decide(RECORD, policy, at(hours=-1)).rule == "clock-skew"


def test_naive_now_is_utc() -> None:
    naive = at(days=7).replace(tzinfo=None)
    assert decide(RECORD, default_policy(), naive).action == "delete"


def test_now_in_another_zone() -> None:
    now = at(days=7).astimezone(timezone(timedelta(hours=8)))
    assert decide(RECORD, default_policy(), now).action == "delete"


# -- rules ------------------------------------------------------------------


def test_first_match_wins() -> None:
    policy = Policy(
        rules=[
            rule("first", "1d", failure_status="createFail"),
            rule("second", "0s", failure_status="createFail"),
        ]
    )
    decision = decide(RECORD, policy, at(hours=12))
    assert (decision.rule, decision.retain_until) == ("first", at(days=1))


def test_non_matching_rules_fall_through_to_default() -> None:
    policy = Policy(rules=[rule("other", "0s", failure_status="deleteFail")])
    assert decide(RECORD, policy, at(days=1)).rule == "default"


def test_empty_match_matches_everything() -> None:
    policy = Policy(rules=[rule("all", "1h")])
    assert decide({"begin_time": RECORD["begin_time"]}, policy, at(hours=2)).rule == "all"


def test_all_given_fields_must_match() -> None:
    both = rule("both", "0s", failure_status="createFail", error_code="EVS.*")
    policy = Policy(rules=[both])
    assert decide(RECORD, policy, at(days=1)).rule == "both"
    assert decide(rec(error_code="SDRS.1"), policy, at(days=1)).rule == "default"
    assert decide(rec(failure_status="deleteFail"), policy, at(days=1)).rule == "default"


def test_list_matches_any_element() -> None:
    policy = Policy(rules=[rule("r", "0s", failure_status=["deleteFail", "createFail"])])
    assert decide(RECORD, policy, at(days=1)).rule == "r"
    assert decide(rec(failure_status="stopFail"), policy, at(days=1)).rule == "default"


@pytest.mark.parametrize(
    ("field", "pattern", "hit"),
    [
        ("error_code", "EVS.*", True),
        ("error_code", "EVS.20??", True),
        ("error_code", "evs.*", False),  # case-sensitive
        ("error_code", "EVS", False),
        ("resource_name", "Protected-Instance-[0-9]*", True),
        ("resource_name", "*-5e2e", True),
        ("job_type", "create*", True),
        ("job_type", "delete*", False),
        # exact fields are not globs
        ("failure_status", "create*", False),
        ("failure_status", "createFail", True),
        ("resource_id", "897f57b2-*", False),
        ("resource_id", RECORD["resource_id"], True),
        ("job_id", RECORD["job_id"], True),
        ("job_id", RECORD["job_id"].upper(), False),
    ],
)
def test_globs_and_exact_fields(field: str, pattern: str, hit: bool) -> None:
    policy = Policy(rules=[rule("r", "0s", **{field: pattern})])
    assert (decide(RECORD, policy, at(days=1)).rule == "r") is hit


@pytest.mark.parametrize(
    ("configured", "listed", "hit"),
    [
        ("protected_instances", "protectedInstance", True),
        ("protectedInstance", "protected_instances", True),
        ("protected_instances", "protected_instances", True),
        ("PROTECTED_INSTANCES", "protectedinstance", True),
        ("disaster_recovery_drills", "disasterRecoveryDrill", True),
        ("server_groups", "serverGroup", True),
        ("replications", "replication", True),
        ("replications", "protectedInstance", False),
        ("server_groups", "disasterRecoveryDrill", False),
    ],
)
def test_resource_type_spellings(configured: str, listed: str, hit: bool) -> None:
    policy = Policy(rules=[rule("r", "0s", resource_type=configured)])
    assert (decide(rec(resource_type=listed), policy, at(days=1)).rule == "r") is hit


def test_missing_or_mistyped_field_does_not_match() -> None:
    policy = Policy(rules=[rule("r", "0s", error_code="*")])
    assert decide(rec(error_code=...), policy, at(days=1)).rule == "default"
    assert decide(rec(error_code=2024), policy, at(days=1)).rule == "default"
    assert decide(rec(error_code=None), policy, at(days=1)).rule == "default"


def test_server_group_id_match() -> None:
    policy = Policy(rules=[rule("group", "0s", server_group_id="g1")])
    now = at(days=1)
    assert decide(RECORD, policy, now).rule == "default"
    assert decide(RECORD, policy, now, server_group_id="g1").rule == "group"
    assert decide(RECORD, policy, now, server_group_id="g2").rule == "default"
    # The record's own field is the fallback; the keyword wins over it.
    assert decide(rec(server_group_id="g1"), policy, now).rule == "group"
    assert decide(rec(server_group_id="g1"), policy, now, server_group_id="g2").rule == "default"


def test_spec_rules() -> None:
    policy = Policy(
        rules=[
            rule("drills-are-noise", "1d", resource_type=["disaster_recovery_drills"]),
            rule("keep-failovers", "forever", failure_status=["failoverFail", "reverseFail"]),
            rule("evs-volume-errors", "0s", error_code="EVS.*"),
        ]
    )
    now = at(hours=1)
    drill = rec(resource_type="disasterRecoveryDrill", error_code="SDRS.1")
    assert decide(drill, policy, now).retain_until == at(days=1)
    failover = rec(failure_status="failoverFail")  # EVS error too, but earlier rule wins
    assert decide(failover, policy, at(days=1000)).rule == "keep-failovers"
    assert decide(RECORD, policy, now).rule == "evs-volume-errors"
    assert decide(RECORD, policy, now).action == "delete"


# -- keep-latest ------------------------------------------------------------


def sibling(
    job_id: str | None, hours: float, resource_id: str = RECORD["resource_id"]
) -> dict[str, Any]:
    when = (BEGIN + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
    out: dict[str, Any] = {"resource_id": resource_id, "begin_time": when}
    if job_id is not None:
        out["job_id"] = job_id
    return out


KEEP2 = Policy(default_retention="0s", keep_latest_per_resource=2)
LATER = at(days=30)


def test_keep_latest_alone_is_kept() -> None:
    decision = decide(RECORD, KEEP2, LATER)
    assert (decision.action, decision.rule, decision.retain_until) == (
        "retain",
        "keep-latest",
        None,
    )


def test_keep_latest_with_newer_siblings() -> None:
    one_newer = [sibling("a", 1)]
    assert decide(RECORD, KEEP2, LATER, siblings=one_newer).rule == "keep-latest"
    two_newer = [sibling("a", 1), sibling("b", 2)]
    assert decide(RECORD, KEEP2, LATER, siblings=two_newer).action == "delete"


def test_keep_latest_older_siblings_do_not_count() -> None:
    older = [sibling("a", -1), sibling("b", -2), sibling("c", -3)]
    assert decide(RECORD, KEEP2, LATER, siblings=older).rule == "keep-latest"


def test_keep_latest_ignores_other_resources() -> None:
    others = [sibling("a", 1, "other"), sibling("b", 2, "other"), {"job_id": "c"}]
    assert decide(RECORD, KEEP2, LATER, siblings=others).rule == "keep-latest"


def test_keep_latest_dedupes_by_job_id() -> None:
    dupes = [sibling("a", 1), sibling("a", 1), sibling("a", 3)]
    assert decide(RECORD, KEEP2, LATER, siblings=dupes).rule == "keep-latest"
    # The record listed among its own siblings counts once, as itself.
    itself = [dict(RECORD), sibling(RECORD["job_id"], 5), sibling("a", 1)]
    assert decide(RECORD, KEEP2, LATER, siblings=itself).rule == "keep-latest"
    assert decide(RECORD, KEEP2, LATER, siblings=[RECORD, RECORD, RECORD]).rule == "keep-latest"


def test_keep_latest_siblings_without_job_id_count_separately() -> None:
    anonymous = [sibling(None, 1), sibling(None, 1)]
    assert decide(RECORD, KEEP2, LATER, siblings=anonymous).action == "delete"


def test_keep_latest_unparsable_sibling_counts_as_newest() -> None:
    junk = [sibling("a", 1) | {"begin_time": "junk"}, sibling("b", 0) | {"begin_time": None}]
    assert decide(RECORD, KEEP2, LATER, siblings=junk).action == "delete"
    assert decide(RECORD, KEEP2, LATER, siblings=junk[:1]).rule == "keep-latest"


def test_keep_latest_ties_broken_by_job_id() -> None:
    same_time = [sibling("0", 0), sibling("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", 0)]
    # Keep 2 of 3 records at the same instant: the smallest job_id goes.
    policy = KEEP2
    smallest = decide(sibling("0", 0), policy, LATER, siblings=[RECORD, *same_time])
    assert smallest.action == "delete"
    assert decide(RECORD, policy, LATER, siblings=same_time).rule == "keep-latest"


@pytest.mark.parametrize("resource_id", [..., "", None, 42])
def test_keep_latest_without_resource_id_retains(resource_id: object) -> None:
    siblings = [sibling("a", 1, ""), sibling("b", 2, ""), {"job_id": "c", "begin_time": "junk"}]
    decision = decide(rec(resource_id=resource_id), KEEP2, LATER, siblings=siblings)
    assert (decision.action, decision.rule, decision.retain_until) == (
        "retain",
        "keep-latest",
        None,
    )
    assert "no resource_id" in decision.reason
    # With keep-latest off the rules decide as usual.
    assert decide(rec(resource_id=resource_id), Policy(default_retention="0s"), LATER).action == (
        "delete"
    )


def test_keep_latest_then_rules() -> None:
    policy = Policy(keep_latest_per_resource=1, rules=[rule("r", "1d")])
    newer = [sibling("a", 1)]
    decision = decide(RECORD, policy, at(hours=2), siblings=newer)
    assert (decision.rule, decision.retain_until) == ("r", at(days=1))


def test_siblings_are_only_read_when_needed() -> None:
    def exploding() -> Any:
        raise AssertionError("siblings read with keep-latest off")
        yield  # pragma: no cover

    assert decide(RECORD, default_policy(), LATER, siblings=exploding()).action == "delete"


def test_siblings_may_be_a_generator_and_contain_junk() -> None:
    items: list[Any] = [None, 3, "x", sibling("a", 1), sibling("b", 2)]
    assert decide(RECORD, KEEP2, LATER, siblings=iter(items)).action == "delete"


# -- robustness ---------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"begin_time": 5},
        {k: 1 for k in RECORD},
        {k: None for k in RECORD},
        {k: ["x"] for k in RECORD},
    ],
)
def test_never_crashes_on_odd_records(record: dict[str, Any]) -> None:
    policy = Policy(
        keep_latest_per_resource=2,
        rules=[rule("r", "1d", resource_type="x", error_code="*", server_group_id="g")],
        holds=Holds(resource_ids=("a",), resource_names=("*",), job_ids=("j",)),
    )
    decision = decide(record, policy, LATER, siblings=[record, {}])
    assert decision.action == "retain"
    assert decision.rule == "begin-time-unparsable"


def test_not_a_mapping_is_treated_as_empty() -> None:
    decision = decide(None, default_policy(), LATER)  # type: ignore[arg-type]
    assert decision.rule == "begin-time-unparsable"
