"""The lookup index at a backlog's size (docs/state.md): the "where" entries in bucketed
hashes, the scope views as Bloom filters, ``record`` bounded in the process. Run on both
state backends where the store matters; the clock is the test's."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import pytest

from failjob_reaper import scopes
from failjob_reaper.plan import OneResource, OneTask, ScopeListing
from failjob_reaper.scopes import TOP_LEVEL, LookupIndex, Scope
from failjob_reaper.state import StateStore, open_store
from failjob_reaper.state import keys as state_keys
from standin.redis_server import RedisServer

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
TTL = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Rows(Sequence[dict[str, Any]]):
    """``n`` records named ``<prefix>-<i>``, each made on access (as compact listings hand
    them out)."""

    def __init__(self, prefix: str, n: int) -> None:
        self._prefix, self._n = prefix, n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | Sequence[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if not 0 <= i < self._n:
            raise IndexError(i)
        return rec(f"r-{self._prefix}-{i}", f"j-{self._prefix}-{i}")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(self._n))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def index(any_store: StateStore, clock: Clock) -> LookupIndex:
    return LookupIndex(any_store, "resource_id", ttl=TTL, view_max_age=60.0, clock=clock)


def rec(resource_id: str, job_id: str) -> dict[str, Any]:
    return {"resource_id": resource_id, "job_id": job_id, "job_status": "FAIL"}


def listing(group: str | None, *records: dict[str, Any]) -> ScopeListing:
    return ScopeListing(group, records, listed_at=T0)


def where(index: LookupIndex, resource_id: str) -> set[str | None] | None:
    found = index.scopes_for(OneResource(resource_id))
    return None if found is None else {s.server_group_id for s in found}


# -- where ----------------------------------------------------------------------------


def test_a_sweep_names_each_records_scope_and_replaces_what_the_last_one_said(
    index: LookupIndex
) -> None:
    index.record([listing("g1", rec("r1", "j1")), listing(None, rec("r2", "j2")),
                  listing("g2")], whole=True)
    assert where(index, "r1") == {"g1"}
    assert where(index, "r2") == {None}
    assert index.scopes_for(OneTask("job_id", "j2")) == [TOP_LEVEL]
    assert where(index, "r3") is None  # never listed: the index cannot say

    index.record([listing("g1"), listing("g2", rec("r1", "j1"))], whole=True)  # r1 moved
    assert where(index, "r1") == {"g2"}


def test_a_key_in_two_scopes_of_one_sweep_names_both(index: LookupIndex) -> None:
    index.record([listing("g1", rec("r1", "j1")), listing("g2", rec("r1", "j9"))],
                 whole=True)
    assert where(index, "r1") == {"g1", "g2"}


def test_listings_of_single_events_add_to_what_the_index_said(index: LookupIndex) -> None:
    index.record([listing("g1", rec("r1", "j1"))], whole=True)
    index.record([listing("g2", rec("r1", "j2"))], whole=False)
    index.record([listing(None, rec("r1", "j3"))], whole=False)
    assert where(index, "r1") == {"g1", "g2", None}


def test_a_key_in_more_scopes_than_an_entry_names_sends_the_search_everywhere(
    index: LookupIndex
) -> None:
    for n in range(8):
        index.record([listing(f"g{n}", rec("r1", f"j{n}"))], whole=False)
    assert where(index, "r1") is None
    assert index.scopes_for(OneTask("job_id", "j7")) == [Scope("g7")]


def test_an_entry_is_used_in_its_generation_and_the_next_then_forgotten(
    index: LookupIndex, clock: Clock
) -> None:
    clock.now = datetime.fromtimestamp((T0.timestamp() // TTL + 1) * TTL - 1, UTC)
    index.record([listing("g1", rec("r1", "j1"))], whole=True)  # the generation's last second
    clock.now += timedelta(seconds=TTL)
    assert where(index, "r1") == {"g1"}
    index.record([listing("g2", rec("r1", "j1"))], whole=True)  # moved, in the new one
    assert where(index, "r1") == {"g2"}  # this generation's word first
    clock.now += timedelta(seconds=TTL)
    assert where(index, "r1") == {"g2"}
    clock.now += timedelta(seconds=TTL)
    assert where(index, "r1") is None


def test_an_entry_whose_scope_cannot_be_resolved_is_no_hint(
    index: LookupIndex, any_store: StateStore
) -> None:
    index.record([listing("g1", rec("r1", "j1"))], whole=True)
    any_store.delete(state_keys.INDEX_SCOPES)  # the code table evicted
    assert where(index, "r1") is None
    index.record([listing("g2", rec("r2", "j2"))], whole=True)
    any_store.hash_put(state_keys.INDEX_SCOPES, scopes.scope_code("g2"), "g3", 60)
    assert where(index, "r2") is None  # a table that does not match its code


def test_every_index_key_has_a_ttl_and_its_buckets_stay_compact_in_redis(
    redis_server: RedisServer, redis_url: str, clock: Clock
) -> None:
    # 20,000 tasks (40,000 keys) over 5 scopes: every bucket a listpack, every key a TTL.
    store = open_store(redis_url, namespace="t:")
    index = LookupIndex(store, "resource_id", ttl=TTL, clock=clock)
    index.record([ScopeListing(f"g{n}", Rows(str(n), 4_000), listed_at=T0)
                  for n in range(5)], whole=True)
    with redis_server.client() as client:
        keys = list(client.scan_iter(match="t:*", count=10_000))
        kinds = {state_keys.declared(k.removeprefix("t:")) for k in keys}
        encodings = {str(client.object("encoding", k)) for k in keys
                     if k.startswith("t:ix:") and k != "t:" + state_keys.INDEX_SCOPES}
        ttls = [client.pttl(k) for k in keys]
    assert kinds == {"index", "index_scopes", "scope_view"}
    assert encodings == {"listpack"}
    assert all(0 < ttl <= 2 * TTL * 1000 for ttl in ttls)
    assert index.scopes_for(OneTask("job_id", "j-3-3999")) == [Scope("g3")]
    store.close()


# -- views ----------------------------------------------------------------------------


def test_a_view_never_misses_a_key_its_listing_held_and_seldom_claims_one_it_did_not(
    index: LookupIndex
) -> None:
    index.record([ScopeListing("g1", Rows("held", 2_000), listed_at=T0)], whole=False)
    g1 = [Scope("g1")]

    held = [key for i in range(2_000)
            for key in (f"resource_id:r-held-{i}", f"job_id:j-held-{i}")]
    assert [key for key in held if index.vouch(g1, [key])] == []
    claimed = [i for i in range(4_000) if not index.vouch(g1, [f"job_id:j-absent-{i}"])]
    assert len(claimed) <= 4  # 0.1 %; the filter is sized for about 0.02 %


def test_a_view_in_another_format_vouches_for_nothing(
    index: LookupIndex, any_store: StateStore
) -> None:
    index.record([listing("g1")], whole=False)
    assert index.vouch([Scope("g1")], ["job_id:j1"])
    any_store.bits_put(state_keys.scope_view("g1"), f"bf0 7 {T0.isoformat()}", b"", 60)
    assert index.vouch([Scope("g1")], ["job_id:j1"]) == []
    any_store.bits_put(state_keys.scope_view("g1"), "bf1 7 not-a-time", b"", 60)
    assert index.vouch([Scope("g1")], ["job_id:j1"]) == []


# -- the process ------------------------------------------------------------------------


def test_record_holds_no_object_per_task(
    redis_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks, so that both runs write many: what grows from 10,000 to 40,000 tasks
    # in one scope is the view alone (2.5 bytes per key, 2 keys per task). Anything
    # kept per task (a dict entry, a string) would cost 50 bytes or more each.
    monkeypatch.setattr(scopes, "CHUNK", 4_096)
    store = open_store(redis_url, namespace="t:")
    index = LookupIndex(store, "resource_id", ttl=TTL, clock=clock)

    def peak(n: int) -> int:
        rows = Rows(str(n), n)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        index.record([ScopeListing("g1", rows, listed_at=T0)], whole=True)
        top = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        return top

    small, large = peak(10_000), peak(40_000)
    store.close()
    assert large - small <= 30_000 * 2 * (scopes.BLOOM_BITS / 8) * 1.5 + 20_000


def test_an_indexed_task_costs_redis_a_few_dozen_bytes(
    redis_server: RedisServer, redis_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 256 buckets for 10,000 tasks (20,000 entries, about 80 a bucket, as 32,768 buckets
    # hold 1,000,000 tasks at 61): what each entry costs, with the buckets' own overhead
    # shared as at a backlog's size (MEMORY USAGE of every key the index wrote). A key
    # per entry (the index before) cost 724 bytes a task; a bucket in Redis's plain
    # encoding about three times its listpack.
    monkeypatch.setattr(scopes, "BUCKET_BITS", 8)
    store = open_store(redis_url, namespace="t:")
    index = LookupIndex(store, "resource_id", ttl=TTL, clock=clock)
    index.record([ScopeListing(f"g{n}", Rows(str(n), 2_500), listed_at=T0)
                  for n in range(4)], whole=True)
    store.close()
    with redis_server.client() as client:
        keys = list(client.scan_iter(match="t:*", count=1_000))
        used = sum(int(client.memory_usage(key, samples=0) or 0) for key in keys)
        buckets = [key for key in keys if state_keys.declared(key[2:]) == "index"]
        encodings = {str(client.object("encoding", key)) for key in buckets}
    assert len(buckets) == 256 and encodings == {"listpack"}
    assert used / 10_000 <= 60
