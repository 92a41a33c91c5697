"""Scope views (lookup.LookupIndex): when a scope's last complete listing may stand for
reading it again, for an event that deletes. Run on both state backends; the clock is
the test's, so the ages are exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from failjob_reaper.plan import OneTask, ScopeListing
from failjob_reaper.scopes import TOP_LEVEL, LookupIndex, Scope
from failjob_reaper.state import StateStore

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
MAX_AGE = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def index(any_store: StateStore, clock: Clock) -> LookupIndex:
    return LookupIndex(any_store, "resource_id", view_max_age=MAX_AGE, clock=clock)


def rec(resource_id: str, job_id: str) -> dict[str, Any]:
    return {"resource_id": resource_id, "job_id": job_id, "job_status": "FAIL"}


def listing(group: str | None, *records: dict[str, Any], complete: bool = True,
            at: datetime = T0) -> ScopeListing:
    return ScopeListing(group, records, complete=complete, listed_at=at)


G1, G2, G3 = Scope("g1"), Scope("g2"), Scope("g3")


def vouched(index: LookupIndex, scopes: list[Scope], *keys: str | None) -> set[str | None]:
    return {v.server_group_id for v in index.vouch(scopes, keys)}


def test_a_recent_complete_listing_vouches_for_a_scope_without_the_keys(
    index: LookupIndex, clock: Clock
) -> None:
    index.record([listing("g1", rec("r1", "j1")), listing("g2", rec("r2", "j2")),
                  listing(None)], whole=False)
    clock.now = T0 + timedelta(seconds=MAX_AGE)

    assert vouched(index, [G1, G2, TOP_LEVEL], "resource_id:r2") == {"g1", None}
    assert vouched(index, [G1, G2], "resource_id:r3", "job_id:j2") == {"g1"}
    got = index.vouch([G1], ["resource_id:r9"])
    assert [(v.records, v.listed_at, v.complete) for v in got] == [((), T0, True)]


def test_a_view_older_than_the_max_age_or_from_the_future_vouches_for_nothing(
    index: LookupIndex, clock: Clock
) -> None:
    index.record([listing("g1")], whole=False)
    clock.now = T0 + timedelta(seconds=MAX_AGE + 0.001)
    assert vouched(index, [G1], "resource_id:r1") == set()
    clock.now = T0 - timedelta(seconds=1)  # another instance's clock ahead of ours
    assert vouched(index, [G1], "resource_id:r1") == set()


def test_an_incomplete_listing_leaves_no_view(index: LookupIndex) -> None:
    index.record([listing("g1", rec("r1", "j1"), complete=False)], whole=False)
    assert vouched(index, [G1], "resource_id:r9") == set()


def test_a_scope_never_listed_or_a_key_that_cannot_be_one_vouches_for_nothing(
    index: LookupIndex
) -> None:
    index.record([listing("g1")], whole=False)
    assert vouched(index, [G2], "resource_id:r1") == set()
    assert vouched(index, [G1], "resource_id:r1", None) == set()
    assert vouched(index, [G1]) == set()


def test_each_listing_replaces_its_scopes_view_whole(
    index: LookupIndex, clock: Clock
) -> None:
    index.record([listing("g1", rec("r1", "j1"))], whole=False)
    assert vouched(index, [G1], "resource_id:r1") == set()
    later = T0 + timedelta(seconds=5)
    index.record([listing("g1", rec("r2", "j2"), at=later)], whole=False)  # r1 is gone
    clock.now = later
    assert vouched(index, [G1], "resource_id:r1") == {"g1"}
    assert vouched(index, [G1], "resource_id:r2") == set()


def test_the_group_list_is_used_while_recent(index: LookupIndex, clock: Clock) -> None:
    assert index.recent_groups() is None
    index.record_groups([G1, G2], T0)
    clock.now = T0 + timedelta(seconds=MAX_AGE)
    assert index.recent_groups() == ([G1, G2], T0)
    clock.now = T0 + timedelta(seconds=MAX_AGE + 1)
    assert index.recent_groups() is None


def test_the_keys_to_weigh_follow_shared_ids_and_resources_transitively(
    index: LookupIndex
) -> None:
    # The target j1 (resource r1); r1 also failed as j2; j2's record is reached by its
    # resource, and a record of another resource r3 shares nothing: it is not weighed.
    target = OneTask("job_id", "j1")
    read = [listing("g1", rec("r1", "j1"), rec("r1", "j2"), rec("r3", "j3"))]

    keys = index.keys_to_weigh(target, read)

    assert set(keys) == {"resource_id:r1", "job_id:j1"}
    by_id = LookupIndex(index.store, "job_id", clock=index.clock)
    keys = by_id.keys_to_weigh(target, read)
    assert set(keys) == {"job_id:j1", "job_id:j2", "resource_id:r1"}


def test_a_value_that_cannot_be_a_key_makes_the_keys_unusable(index: LookupIndex) -> None:
    index.record([listing("g1")], whole=False)
    assert vouched(index, [G1], "job_id:j1") == {"g1"}
    target = OneTask("job_id", "j1")
    read = [listing("g1", {"resource_id": "r" * 200, "job_id": "j1"})]
    assert None in index.keys_to_weigh(target, read)
    assert vouched(index, [G1], *index.keys_to_weigh(target, read)) == set()
