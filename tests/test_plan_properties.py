"""Property tests of the pure planner: for any world, the plan keeps what the world keeps.

The oracle is the world as the test states it (which records a hold, a rule or their
age keeps), never ``decide()`` or the planner.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from failjob_reaper.ids import ENDPOINT_NAMES
from failjob_reaper.plan import Everything, OneTask, Plan, ScopeListing, make_plan
from failjob_reaper.policy import parse_policy

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
G1, G2 = "group-one", "group-two"  # G1: a rule keeps everything listed in it
SCOPES: list[str | None] = [None, G1, G2]
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")

# begin_time kinds: whether the world's 7-day policy lets a record of that age go.
TIMES: dict[str, tuple[object, bool]] = {
    "expired": ((NOW - timedelta(days=30)).isoformat(), True),
    "exactly-at-retention": ((NOW - timedelta(days=7)).isoformat(), True),
    "expired-z": ((NOW - timedelta(days=9)).strftime("%Y-%m-%dT%H:%M:%S.000Z"), True),
    "fresh": ((NOW - timedelta(hours=1)).isoformat(), False),
    "future": ((NOW + timedelta(days=1)).isoformat(), False),
    "unparsable": ("yesterday-ish", False),
    "missing": (None, False),
    "year-1-east": ("0001-01-01T00:00:00+05:00", False),
    "year-9999": ("9999-12-31T23:59:59+00:00", False),
    "a-number": (1_700_000_000, False),
}
RESOURCES = ["r0", "r1", "r2", "batch", "Batch", "../x", "", None, 7]
POLICY = {
    "default_retention": "7d",
    "rules": [
        {"name": "keep-group-one", "match": {"server_group_id": G1}, "retention": "forever"},
        {"name": "keep-failovers", "match": {"failure_status": "failoverFail"},
         "retention": "forever"},
    ],
    "holds": {"resource_names": ["prod-*"], "job_ids": ["j3"]},
}


@dataclass(frozen=True)
class Spec:
    """One record of the world and why the world keeps it (or not)."""

    job_id: str | None
    record: dict[str, Any]
    kept_anywhere: bool  # a hold, a rule or its age keeps it wherever it is listed


@st.composite
def specs(draw: st.DrawFn, index: int) -> Spec:
    time_kind = draw(st.sampled_from(sorted(TIMES)))
    begin, old_enough = TIMES[time_kind]
    held_name = draw(st.booleans())
    failover = draw(st.booleans())
    job_id = f"j{index}" if draw(st.integers(0, 9)) else None
    record: dict[str, Any] = {
        "job_id": job_id,
        "resource_id": draw(st.sampled_from(RESOURCES)),
        "resource_name": "prod-db" if held_name else f"inst-{index}",
        "failure_status": "failoverFail" if failover else "createFail",
        "begin_time": begin,
        "n": index,  # records without a job_id stay distinct
    }
    if job_id is None:
        del record["job_id"]
    kept = (not old_enough) or held_name or failover or job_id == "j3"
    return Spec(job_id, record, kept)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Spec], list[ScopeListing], str]:
    count = draw(st.integers(1, 10))
    world = [draw(specs(i)) for i in range(count)]
    listings = []
    for scope in SCOPES:
        placed = draw(st.lists(st.integers(0, count - 1), max_size=12))  # repeats = pages
        complete = draw(st.integers(0, 5)) > 0
        listings.append(ScopeListing(scope, [world[i].record for i in placed],
                                     complete=complete,
                                     why_incomplete=None if complete else "no progress"))
    return world, listings, draw(st.sampled_from(["resource_id", "job_id"]))


Rec = Mapping[str, Any]


def key(record: Rec) -> object:
    return record.get("job_id") or ("n", record["n"])


def listed_in(listings: list[ScopeListing]) -> dict[object, tuple[Rec, set[str | None]]]:
    out: dict[object, tuple[Rec, set[str | None]]] = {}
    for listing in listings:
        for record in listing.records:
            out.setdefault(key(record), (record, set()))[1].add(listing.server_group_id)
    return out


def kept_by_world(spec_of: dict[object, Spec], record: Rec, scopes: set[str | None]) -> bool:
    return spec_of[key(record)].kept_anywhere or G1 in scopes


def plan_of(listings: list[ScopeListing], id_field: str, guards: dict[str, Any]) -> Plan:
    policy = parse_policy({**POLICY, "guards": guards})
    return make_plan(listings, policy, NOW, id_field=id_field, target=Everything())


GUARDS = st.fixed_dictionaries({
    "max_deletions_per_sweep": st.integers(0, 12),
    "max_deletion_fraction": st.sampled_from([0.25, 0.5, 1.0]),
})


@settings(max_examples=200, deadline=None)
@given(worlds(), GUARDS)
def test_no_planned_delete_removes_a_record_the_world_keeps(
    world: tuple[list[Spec], list[ScopeListing], str], guards: dict[str, Any]
) -> None:
    specs_, listings, id_field = world
    spec_of = {key(s.record): s for s in specs_}
    plan = plan_of(listings, id_field, guards)
    everything = listed_in(listings)
    for delete in plan.deletes:
        sharing = [(r, scopes) for r, scopes in everything.values()
                   if r.get(id_field) == delete.failure_job_id]
        assert sharing, "a DELETE for an id nothing listed carries"
        for record, scopes in sharing:
            assert not kept_by_world(spec_of, record, scopes), (delete.failure_job_id, record)


@settings(max_examples=200, deadline=None)
@given(worlds(), GUARDS)
def test_planned_ids_are_plain_tokens_once_each_and_no_endpoint(
    world: tuple[list[Spec], list[ScopeListing], str], guards: dict[str, Any]
) -> None:
    _, listings, id_field = world
    ids = [d.failure_job_id for d in plan_of(listings, id_field, guards).deletes]
    assert len(ids) == len(set(ids))
    for failure_job_id in ids:
        assert TOKEN.fullmatch(failure_job_id)
        assert failure_job_id.lower() not in ENDPOINT_NAMES


@settings(max_examples=200, deadline=None)
@given(worlds(), GUARDS)
def test_guards_count_distinct_records_and_incomplete_listings_delete_nothing(
    world: tuple[list[Spec], list[ScopeListing], str], guards: dict[str, Any]
) -> None:
    specs_, listings, id_field = world
    spec_of = {key(s.record): s for s in specs_}
    plan = plan_of(listings, id_field, guards)
    everything = listed_in(listings)
    assert plan.listed == len(everything)
    assert plan.guard is not None and plan.guard.listed == len(everything)
    if not all(listing.complete for listing in listings):
        assert plan.deletes == ()
        return
    # What the world lets go: every record of an id goes, or none of them.
    by_id: dict[str, list[tuple[Rec, set[str | None]]]] = {}
    for record, scopes in everything.values():
        value = record.get(id_field)
        if isinstance(value, str) and TOKEN.fullmatch(value) \
                and value.lower() not in ENDPOINT_NAMES:
            by_id.setdefault(value, []).append((record, scopes))
    may_go = {i for i, group in by_id.items()
              if not any(kept_by_world(spec_of, r, s) for r, s in group)}
    removed = sum(len(by_id[i]) for i in may_go)
    assert plan.guard.planned == removed
    over = removed > guards["max_deletions_per_sweep"] or (
        bool(everything) and removed / len(everything) > guards["max_deletion_fraction"])
    assert (plan.guard.tripped is not None) == over
    assert {d.failure_job_id for d in plan.deletes} == (set() if over else may_go)


@settings(max_examples=100, deadline=None)
@given(worlds())
def test_one_task_plans_at_most_one_delete_and_only_for_its_own_id(
    world: tuple[list[Spec], list[ScopeListing], str]
) -> None:
    specs_, listings, id_field = world
    spec_of = {key(s.record): s for s in specs_}
    for spec in specs_:
        if spec.job_id is None:
            continue
        policy = parse_policy(POLICY)
        plan = make_plan(listings, policy, NOW, id_field=id_field,
                         target=OneTask("job_id", spec.job_id))
        assert len(plan.deletes) <= 1
        for delete in plan.deletes:
            assert delete.failure_job_id == spec.record.get(id_field)
            for record, scopes in listed_in(listings).values():
                if record.get(id_field) == delete.failure_job_id:
                    assert not kept_by_world(spec_of, record, scopes)
