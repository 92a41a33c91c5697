"""Sweeps through on_event (PingSource and sdrs.failurejob.sweep) against the stand-in."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from standin import Fault, OutcomeSink, TaskCenterStandIn
from tests.conftest import EXPIRED, FRESH, FunctionFactory, data_of, failed_task

PING = "dev.knative.sources.ping"
SWEEP = "sdrs.failurejob.sweep"
GROUPS = [f"5ff3c7a2-0000-4000-8000-00000000000{i}" for i in range(1, 4)]


def summary_of(sink: OutcomeSink) -> dict[str, Any]:
    [summary] = sink.of_type("sdrs.failurejob.sweep_completed")
    return data_of(summary)


def build_mixed_world(standin: TaskCenterStandIn) -> dict[str, list[dict[str, Any]]]:
    for group in GROUPS:
        standin.add_group(group, f"group-{group[-1]}")
    world: dict[str, list[dict[str, Any]]] = {"delete": [], "keep": []}
    scopes: list[str | None] = [None, *GROUPS]
    for i, scope in enumerate(scopes):
        expired = failed_task(EXPIRED)
        fresh = failed_task(FRESH)
        held = failed_task(EXPIRED, resource_name=f"prod-db-{i}")
        drill_old = failed_task(timedelta(days=2), resource_type="disaster_recovery_drills")
        drill_young = failed_task(timedelta(hours=3), resource_type="disaster_recovery_drills")
        failover = failed_task(timedelta(days=400), failure_status="failoverFail")
        for record in (expired, fresh, held, drill_old, drill_young, failover):
            standin.add_job(record, scope)
        world["delete"] += [expired, drill_old]
        world["keep"] += [fresh, held, drill_young, failover]
    return world


MIXED_POLICY = {
    "rules": [
        {"name": "drills", "match": {"resource_type": ["disaster_recovery_drills"]},
         "retention": "1d"},
        {"name": "keep-failovers", "match": {"failure_status": ["failoverFail", "reverseFail"]},
         "retention": "forever"},
    ],
    "holds": {"resource_names": ["prod-*"]},
}


@pytest.mark.parametrize("event_type", [PING, SWEEP])
def test_mixed_world_loses_exactly_its_expired_tasks(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    event_type: str,
) -> None:
    world = build_mixed_world(standin)
    response = make_function(policy=MIXED_POLICY).send(event_type, {})

    assert response.status_code == 200
    assert sorted(standin.deletes()) == sorted(r["resource_id"] for r in world["delete"])
    for record in world["keep"]:
        assert standin.listed(record["resource_id"])
    summary = summary_of(sink)
    assert summary["listed"] == 24
    assert summary["groups"] == 3
    assert summary["deleted"] == 8
    assert summary["outcomes"]["retained"] == 16
    assert summary["rules"] == {"default": 8, "drills": 8, "keep-failovers": 4, "hold": 4}
    assert summary["trigger"] == ("timer" if event_type == PING else "event")
    assert (summary["partial"], summary["aborted"]) == (False, False)
    # Retained tasks are counted, not announced one by one.
    assert Counter(e["type"] for e in sink.events) == {
        "sdrs.failurejob.deleted": 8,
        "sdrs.failurejob.sweep_completed": 1,
    }
    assert not [r for r in standin.requests if r.path.endswith("/batch")]


def test_retained_tasks_are_emitted_when_asked(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    standin.add_job(failed_task(FRESH))
    make_function(SWEEP_EMIT_RETAINED="true").send(PING, {})
    assert [e["type"] for e in sink.events] == [
        "sdrs.failurejob.retained", "sdrs.failurejob.sweep_completed",
    ]


@pytest.mark.parametrize("count_mode", ["page", "total", "wrong"])
def test_more_than_1000_tasks_in_one_listing_are_all_seen(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    count_mode: str,
) -> None:
    standin.add_group(GROUPS[0], "big")
    standin.add_jobs((failed_task(FRESH), GROUPS[0]) for _ in range(2345))
    standin.add_jobs((failed_task(FRESH), None) for _ in range(1000))  # exactly one full page
    standin.count_mode = count_mode  # type: ignore[assignment]
    make_function().send(PING, {})

    summary = summary_of(sink)
    assert summary["listed"] == 3345
    assert summary["outcomes"]["retained"] == 3345


def test_count_guard_trips_and_nothing_is_deleted(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    for _ in range(3):
        standin.add_job(failed_task(EXPIRED))
    response = make_function(policy={"guards": {"max_deletions_per_sweep": 2}}).send(PING, {})

    assert response.status_code == 200  # decided: a tripped guard is no reason to redeliver
    assert standin.deletes() == []
    summary = summary_of(sink)
    assert summary["aborted"] is True
    assert "max_deletions_per_sweep 2" in summary["aborted_reason"]
    assert summary["rules"] == {"guard": 3}


def test_fraction_guard_trips_and_nothing_is_deleted(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    for age in (EXPIRED, EXPIRED, FRESH):
        standin.add_job(failed_task(age))
    make_function(policy={"guards": {"max_deletion_fraction": 0.5}}).send(PING, {})

    assert standin.deletes() == []
    assert "max_deletion_fraction 0.5" in summary_of(sink)["aborted_reason"]


def test_deadline_gives_a_partial_sweep_and_the_next_one_finishes(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    records = [failed_task(EXPIRED) for _ in range(12)]
    for record in records:
        standin.add_job(record)
    # The first DELETE is applied at once and answered after the whole deadline: the
    # deadline passes while it is in flight, however fast or loaded the machine, and the
    # listing before it (no latency) has the whole deadline to finish.
    standin.inject("DELETE", "/failure-jobs/", Fault(passthrough=True, late=2.1))
    make_function(SWEEP_DEADLINE="2", SWEEP_CONCURRENCY="1", SDRS_REQUEST_TIMEOUT="10",
                  ).send(PING, {}, event_id="t1")

    first = summary_of(sink)
    assert first["partial"] is True
    assert first["partial_reason"] == "deadline reached: 11 of 12 deletions left for the next sweep"
    # The DELETE in flight is bounded by the sweep's deadline too: cut off there, its
    # answer lost (the server applied it), told as a retryable failure; no other started.
    assert (first["deleted"], first["outcomes"]["delete_failed"]) == (0, 1)
    left = [r for r in records if standin.listed(r["resource_id"])]
    assert len(left) == 11

    sink.clear()
    # Settings given to make_function stay set: the next sweep gets the default deadline
    # and concurrency back (under the first one's deadline it would race the clock).
    make_function(SWEEP_DEADLINE="", SWEEP_CONCURRENCY="").send(PING, {}, event_id="t2")
    second = summary_of(sink)
    assert (second["partial"], second["partial_reason"]) == (False, None)
    assert second["deleted"] == len(left)
    assert not any(standin.listed(r["resource_id"]) for r in records)
    assert len(standin.deletes()) == 12  # nothing deleted twice


def test_rate_limit_holds_across_concurrent_workers(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    for _ in range(30):
        standin.add_job(failed_task(EXPIRED))
    make_function(SWEEP_RATE_LIMIT="10", SWEEP_CONCURRENCY="8").send(PING, {})

    assert len(standin.deletes()) == 30
    # Start slots are 0.1 s apart, so a 1 s window holds 11 of them; arrival jitter on a
    # loaded machine can shift a couple more into one window, never the 8 workers' burst.
    assert standin.max_requests_per_second() <= 13
    starts = sorted(r.started for r in standin.requests)
    assert starts[-1] - starts[0] >= (len(starts) - 1) / 10 * 0.9  # the average rate holds


def test_dry_run_sweep_deletes_nothing(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    world = build_mixed_world(standin)
    make_function(policy=MIXED_POLICY).send(SWEEP, {"dry_run": True})

    assert standin.deletes() == []
    assert len(sink.of_type("sdrs.failurejob.would_delete")) == len(world["delete"])
    assert summary_of(sink)["dry_run"] is True


def test_sweep_of_one_group_lists_only_that_group(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    world = build_mixed_world(standin)
    make_function(policy=MIXED_POLICY).send(SWEEP, {"server_group_id": GROUPS[1]})

    in_group = {r["resource_id"] for r in world["delete"]} & set(standin.deletes())
    assert len(in_group) == 2
    listings = [r for r in standin.requests if r.method == "GET"]
    assert {r.query.get("server_group_id") for r in listings} == {GROUPS[1]}


def test_transient_delete_failures_are_reported_and_the_rest_goes_on(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    records = [failed_task(EXPIRED) for _ in range(3)]
    for record in records:
        standin.add_job(record)
    standin.inject("DELETE", records[1]["resource_id"], *[Fault(503)] * 3)
    response = make_function(SDRS_MAX_ATTEMPTS="3", SWEEP_CONCURRENCY="1").send(PING, {})

    assert response.status_code == 200  # the next sweep picks it up
    summary = summary_of(sink)
    assert summary["outcomes"]["deleted"] == 2
    assert summary["outcomes"]["delete_failed"] == 1
    [failed] = sink.of_type("sdrs.failurejob.delete_failed")
    assert data_of(failed)["error"]["retryable"] is True


def test_sweep_stops_deleting_when_the_sink_is_down(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    for _ in range(5):
        standin.add_job(failed_task(EXPIRED))
    sink.inject(*[Fault(503)] * 100)
    response = make_function(SWEEP_CONCURRENCY="1", OUTCOME_SINK_ATTEMPTS="2").send(PING, {})

    assert response.status_code == 503
    assert len(standin.deletes()) == 1  # the first outcome could not be told: stop there


def test_groups_listing_failure_aborts_and_asks_for_redelivery(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    standin.add_job(failed_task(EXPIRED))
    standin.inject("GET", r"/server-groups", *[Fault(502)] * 2)
    response = make_function(SDRS_MAX_ATTEMPTS="2").send(PING, {})

    assert response.status_code == 503
    assert standin.deletes() == []
    assert summary_of(sink)["aborted"] is True


def test_records_sharing_a_delete_id_get_one_decision_and_no_delete_if_one_is_kept(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    # Three failures of one resource; the DELETE path is the resource_id they share.
    shared = failed_task(EXPIRED)["resource_id"]
    for age in (timedelta(days=30), timedelta(days=20), timedelta(days=10)):
        standin.add_job(failed_task(age, resource_id=shared))
    make_function(policy={"keep_latest_per_resource": 1}, SWEEP_EMIT_RETAINED="true").send(
        PING, {}
    )

    assert standin.deletes() == []  # deleting would take the kept newest one with it
    [retained] = sink.of_type("sdrs.failurejob.retained")
    assert data_of(retained)["rule"] == "keep-latest"
    assert summary_of(sink)["listed"] == 3


def test_keep_latest_with_job_id_as_the_delete_field_deletes_the_older_ones(
    sink: OutcomeSink, make_function: FunctionFactory, base_env: dict[str, str]
) -> None:
    with TaskCenterStandIn(project_id=base_env["SDRS_PROJECT_ID"], id_field="job_id",
                           token=base_env["SDRS_AUTH_TOKEN"]) as by_job:
        shared = failed_task(EXPIRED)["resource_id"]
        records = [failed_task(timedelta(days=d), resource_id=shared) for d in (30, 20, 10)]
        for record in records:
            by_job.add_job(record)
        function = make_function(policy={"keep_latest_per_resource": 1},
                                 SDRS_ENDPOINT=by_job.url, SDRS_FAILURE_JOB_ID_FIELD="job_id")
        function.send(PING, {})

        assert sorted(by_job.deletes()) == sorted(r["job_id"] for r in records[:2])
        assert by_job.listed(records[2]["job_id"])
