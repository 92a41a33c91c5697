"""The lookup index: one event for a task in the last of many groups costs O(1) calls once
any listing has seen it; an event that deletes also weighs every other scope, by reading
it or by its view when that scope was listed less than LISTING_MAX_AGE ago without a
record the DELETE must weigh (the DELETE path is project-wide); a cold index costs one
scan; a wrong entry is only a hint."""

from __future__ import annotations

from typing import Any

from failjob_reaper.scopes import LookupIndex, scope_code
from failjob_reaper.state import MemoryStore
from standin import OutcomeSink, TaskCenterStandIn
from standin.redis_server import RedisServer
from tests.conftest import EXPIRED, FRESH, FunctionFactory, data_of, failed_task

EXPIRED_TYPE = "sdrs.failurejob.expired"
FAILED = "sdrs.job.failed"


def groups_with_tasks(
    standin: TaskCenterStandIn, n: int, age: Any = EXPIRED
) -> list[tuple[str, dict[str, Any]]]:
    """``n`` groups, one task of ``age`` in each: (group id, record)."""
    world = []
    for i in range(n):
        group = f"group-{i:03d}"
        standin.add_group(group)
        record = failed_task(age)
        standin.add_job(record, group)
        world.append((group, record))
    return world


def scopes_listed(standin: TaskCenterStandIn) -> set[str | None]:
    """The scopes whose failed tasks were listed (each listing pages to an empty page)."""
    return {r.query.get("server_group_id") for r in standin.requests
            if r.method == "GET" and r.path.endswith("/failure-jobs")}


def expire(function: Any, record: dict[str, Any]) -> None:
    response = function.send(EXPIRED_TYPE, {"failure_job_id": record["resource_id"]})
    assert response.status_code == 200


def test_a_cold_index_costs_one_scan_then_a_task_in_the_last_group_costs_one_listing(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    world = groups_with_tasks(standin, 30, age=FRESH)
    function = make_function()

    expire(function, world[0][1])  # cold: the groups, the top level and all 30 groups
    cold = scopes_listed(standin)
    standin.reset_log()
    last_group, last = world[-1]
    expire(function, last)

    assert cold == {None, *(group for group, _ in world)}
    assert scopes_listed(standin) == {last_group}
    assert all(r.method == "GET" for r in standin.requests)  # no DELETE, no groups listing
    assert len(standin.requests) <= 2  # one listing: its page and the empty page after it
    assert standin.deletes() == []
    assert data_of(sink.events[-1])["outcome"] == "retained"


def test_a_warm_event_that_deletes_reads_only_its_scope_when_every_other_was_listed_recently(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    # 30 groups, one expired task in each; the first event's scan lists every scope, so
    # the last group's task costs its own listing (its page and the empty page) and its
    # DELETE: the other 30 scopes were listed moments ago without its id or resource.
    world = groups_with_tasks(standin, 30)
    function = make_function()
    expire(function, world[0][1])  # cold: the groups, the top level and all 30 groups
    standin.reset_log()
    last_group, last = world[-1]

    expire(function, last)

    assert standin.deletes() == [last["resource_id"]]
    assert scopes_listed(standin) == {last_group}
    assert len(standin.requests) <= 3
    assert data_of(sink.events[-1])["outcome"] == "deleted"


def test_an_event_that_deletes_reads_again_every_scope_listed_longer_ago_than_the_max_age(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    # Indexed in the last group; since then a fresh record with the same DELETE id
    # (resource_id) appeared at the top level. DELETE by that id would remove it too.
    # The top level's last listing is older than LISTING_MAX_AGE (1 ms here), so it
    # cannot stand for a listing: the event reads it, sees the fresh twin, deletes nothing.
    world = groups_with_tasks(standin, 6)
    function = make_function(LISTING_MAX_AGE="0.001")
    expire(function, world[0][1])  # warms the index
    _, expired = world[-1]
    standin.add_job(failed_task(FRESH, resource_id=expired["resource_id"]))
    standin.reset_log()

    expire(function, expired)

    assert standin.deletes() == []
    assert standin.listed(expired["resource_id"])
    assert {None, "group-005"} <= scopes_listed(standin)
    assert data_of(sink.events[-1])["outcome"] == "retained"


def test_a_sweep_warms_the_index_for_the_events_after_it(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    world = groups_with_tasks(standin, 12, age=FRESH)
    function = make_function()
    function.send("sdrs.failurejob.sweep", {"dry_run": True})
    standin.reset_log()

    expire(function, world[-1][1])

    assert scopes_listed(standin) == {world[-1][0]}
    assert len(standin.requests) <= 2
    assert data_of(sink.events[-1])["outcome"] == "retained"


def test_a_wrong_index_entry_falls_back_to_the_scan(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    world = groups_with_tasks(standin, 5)
    function = make_function()
    expire(function, world[0][1])  # warms the index: the last task is in group-004
    _, moved = world[-1]
    standin.remove_job(moved["resource_id"])  # it moves to group-001
    standin.add_job(moved, world[1][0])
    standin.reset_log()

    expire(function, moved)

    assert standin.deletes() == [moved["resource_id"]]
    listed = [r.query.get("server_group_id") for r in standin.requests if r.method == "GET"]
    assert listed[0] == "group-004"  # the index's hint first, then the scan
    assert "group-001" in listed
    assert data_of(sink.events[-1])["outcome"] == "deleted"


def test_the_index_names_every_scope_holding_the_same_delete_id(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    # The DELETE path is project-wide: the expired record in group-000 shares its
    # resource_id (the DELETE id) with a fresh record in group-003, which the policy keeps.
    # Found through the index, the event must still weigh group-003: no DELETE at all.
    world = groups_with_tasks(standin, 4)
    _, expired = world[0]
    twin = failed_task(FRESH, resource_id=expired["resource_id"])
    standin.add_job(twin, world[3][0])
    function = make_function()
    expire(function, world[1][1])  # warms the index
    standin.reset_log()

    response = function.send(FAILED, {"job_id": expired["job_id"]})

    assert response.status_code == 200
    assert standin.deletes() == []
    listed = {r.query.get("server_group_id") for r in standin.requests if r.method == "GET"}
    assert listed == {"group-000", "group-003"}
    assert standin.listed(expired["resource_id"])
    assert data_of(sink.events[-1])["outcome"] == "retained"


def test_instances_share_the_index_through_redis(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    redis_url: str,
) -> None:
    world = groups_with_tasks(standin, 10, age=FRESH)
    first = make_function(STATE_URL=redis_url)
    expire(first, world[0][1])  # this instance's scan warms the shared index
    second = make_function(STATE_URL=redis_url)  # a fresh instance
    standin.reset_log()

    expire(second, world[-1][1])

    assert scopes_listed(standin) == {world[-1][0]}
    assert len(standin.requests) <= 2


def test_a_hint_that_lost_a_scope_is_made_whole_by_that_scopes_view(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    redis_url: str, redis_server: RedisServer,
) -> None:
    # The expired task in group-001 shares its resource (the DELETE id) with a fresh
    # failure in group-003. Two instances' index writes raced and the hint for that
    # resource lost group-003 (what a lost update between get and put leaves). The
    # event reads group-001 alone, but group-003's view holds the resource: it reads
    # group-003 too, sees the fresh twin and deletes nothing.
    world = groups_with_tasks(standin, 5)
    _, expired = world[1]
    standin.add_job(failed_task(FRESH, resource_id=expired["resource_id"]), world[3][0])
    function = make_function(STATE_URL=redis_url)
    expire(function, world[0][1])  # warms the hints and the views
    bucket, field = LookupIndex(MemoryStore(), "resource_id").slot(
        "resource_id", expired["resource_id"])
    with redis_server.client() as client:
        [hint] = client.keys(f"*{bucket}")
        assert set(client.hget(hint, field).split(",")) == {
            scope_code("group-001"), scope_code("group-003")}
        client.hset(hint, field, scope_code("group-001"))
    standin.reset_log()

    expire(function, expired)

    assert standin.deletes() == []
    assert scopes_listed(standin) == {"group-001", "group-003"}
    assert data_of(sink.events[-1])["outcome"] == "retained"
