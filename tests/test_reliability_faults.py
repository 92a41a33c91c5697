"""Reliability under scripted faults, end to end: a CloudEvent through functions-framework,
the task-center stand-in and the outcome sink over loopback, one fault at a time.

Timeouts here are short (a few hundred ms) so that "slower than the client's
timeout" costs little; every wait is bounded by the fault's own delay.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest

from failjob_reaper import delivery
from standin import Fault, OutcomeSink, TaskCenterStandIn
from tests.conftest import (
    EXPIRED,
    FRESH,
    PROJECT,
    TOKEN,
    Function,
    FunctionFactory,
    data_of,
    failed_task,
)
from tests.reliability_support import (
    GatedStandIn,
    applied_deletes,
    bad_delete_paths,
    delete_requests,
    kinds,
    track,
)

FAILED = "sdrs.job.failed"
EXPIRY = "sdrs.failurejob.expired"
PING = "dev.knative.sources.ping"
GROUP = "5ff3c7a2-0000-4000-8000-0000000000aa"
DELETE_RE = r"/task-center/failure-jobs/[^/]+$"
LIST_RE = r"/task-center/failure-jobs$"

# The client gives up on an answer after TIMEOUT; a SLOW answer comes after it.
TIMEOUT = "0.4"
SLOW = 0.8


def fast(**env: str) -> dict[str, str]:
    return {"SDRS_REQUEST_TIMEOUT": TIMEOUT, "SDRS_BACKOFF_INITIAL": "0.001",
            "SDRS_BACKOFF_MAX": "0.01", **env}


def only_outcome(sink: OutcomeSink) -> dict[str, Any]:
    [event] = sink.wait_for(1)
    return data_of(event)


# -- answers slower than the client's timeout ----------------------------------------------


def test_delete_slower_than_the_timeout_is_retried_and_deleted_on_attempt_2(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", DELETE_RE, Fault(503, delay=SLOW))  # not applied, answered late
    response = make_function(**fast()).send(FAILED, record)

    assert response.status_code == 200
    data = only_outcome(sink)
    assert (data["outcome"], data["attempts"], data["status_code"]) == ("deleted", 2, 204)
    assert applied_deletes(standin.requests) == [record["resource_id"]]


def test_listing_slower_than_the_timeout_is_retried(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("GET", LIST_RE, Fault(200, delay=SLOW, passthrough=True))
    response = make_function(**fast()).send(EXPIRY, {"failure_job_id": record["resource_id"]})

    assert response.status_code == 200
    assert only_outcome(sink)["outcome"] == "deleted"
    assert applied_deletes(standin.requests) == [record["resource_id"]]


def test_timed_out_delete_applied_server_side_then_404_is_reported_deleted(
    sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    # The first DELETE is applied after the client gave up on it; the retry finds it gone:
    # our own first attempt deleted it (docs/safety.md), not "someone else".
    # The gate holds the retry until then: at most the 0.15 s between the client's
    # timeout and the late apply, far inside the retry's own 1 s timeout.
    gated = GatedStandIn(project_id=PROJECT, token=TOKEN)
    with gated:
        record = failed_task(EXPIRED)
        gated.add_job(record)
        gated.inject("DELETE", DELETE_RE, Fault(delay=1.15, passthrough=True))
        function = make_function(**fast(SDRS_ENDPOINT=gated.url, SDRS_REQUEST_TIMEOUT="1"))
        response = function.send(FAILED, record)

        assert response.status_code == 200
        data = only_outcome(sink)
        assert (data["outcome"], data["status_code"], data["attempts"]) == (
            "deleted", 404, 2)
        assert "answer was lost" in data["reason"]
        assert data["error"] is None
        first, second = delete_requests(gated.requests)
        assert gated.first_applied.is_set()
        assert (first.status, second.status) == (204, 404)
        assert applied_deletes(gated.requests) == [record["resource_id"]]
        assert not gated.listed(record["resource_id"])


# -- connections closed mid-response --------------------------------------------------------


@pytest.mark.parametrize("method,path", [("DELETE", DELETE_RE), ("GET", LIST_RE),
                                         ("GET", r"/server-groups$")])
@pytest.mark.parametrize("body", [None, b'{"error": {"code": "SDRS.0500", "message": "x"}}'],
                         ids=["no-answer", "half-a-body"])
def test_connection_closed_mid_response_is_retried(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    method: str, path: str, body: bytes | None,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record, None)
    standin.add_group(GROUP)
    hidden = failed_task(EXPIRED)
    standin.add_job(hidden, GROUP)  # forces the groups listing
    standin.inject(method, path, Fault(500, body=body, close=True))
    response = make_function(**fast()).send(FAILED, {"job_id": hidden["job_id"]})

    assert response.status_code == 200
    data = only_outcome(sink)
    assert data["outcome"] == "deleted"
    assert data["attempts"] == (2 if method == "DELETE" else 1)
    assert applied_deletes(standin.requests) == [hidden["resource_id"]]
    dropped = [r for r in standin.requests if r.fault is not None]
    assert len(dropped) == 1


# -- 429 storms ----------------------------------------------------------------------------


def test_429_storm_within_the_budget_ends_deleted(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    storm = [Fault(429, headers={"Retry-After": "0"})] * 4
    standin.inject("DELETE", DELETE_RE, *storm)
    response = make_function(**fast(SDRS_MAX_ATTEMPTS="5")).send(FAILED, record)

    assert response.status_code == 200
    data = only_outcome(sink)
    assert (data["outcome"], data["attempts"]) == ("deleted", 5)
    assert len(delete_requests(standin.requests)) == 5


@pytest.mark.parametrize("method,path", [("DELETE", DELETE_RE), ("GET", LIST_RE)])
def test_429_storm_beyond_the_budget_never_exceeds_max_attempts_per_delivery(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    method: str, path: str,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    max_attempts = 4
    standin.inject(method, path, *[Fault(429, headers={"Retry-After": "0"})] * 10)
    function = make_function(**fast(SDRS_MAX_ATTEMPTS=str(max_attempts)))

    statuses = []
    for redelivery in range(6):  # the trigger redelivers until acknowledged (bounded)
        before = len(standin.requests)
        response = function.send(FAILED, record, event_id="storm-1")
        statuses.append(response.status_code)
        during = [r for r in standin.requests[before:]
                  if r.method == method and re.search(path, r.path)]
        assert len(during) <= max_attempts, f"delivery {redelivery}: {len(during)} {method}s"
        if response.status_code == 200:
            break

    assert statuses == [503, 503, 200]
    events = sink.wait_for(3)
    assert kinds(events) == ["delete_failed", "delete_failed", "deleted"]
    for event in events[:2]:
        data = data_of(event)
        assert data["error"]["retryable"] is True
        assert data["attempts"] == max_attempts
    assert all(data_of(e)["attempts"] <= max_attempts for e in events)
    assert events[0]["id"] == events[1]["id"]  # same input, same outcome: same id
    assert applied_deletes(standin.requests) == [record["resource_id"]]


# -- Retry-After -----------------------------------------------------------------------------


def test_retry_after_as_an_http_date_is_honoured(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    when = formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1-2 s from now
    standin.inject("DELETE", DELETE_RE, Fault(503, headers={"Retry-After": when}))
    with delivery.testing() as waits:  # the waits asked for, recorded, not slept
        make_function(**fast()).send(FAILED, record)

    assert len(delete_requests(standin.requests)) == 2
    assert len(waits) == 1 and 0.5 <= waits[0] <= 2.0
    data = only_outcome(sink)
    assert (data["outcome"], data["attempts"]) == ("deleted", 2)


def test_retry_after_in_the_past_is_no_wait(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    when = "Wed, 21 Oct 2015 07:28:00 GMT"
    standin.inject("DELETE", DELETE_RE, Fault(429, headers={"Retry-After": when}))
    with delivery.testing() as waits:
        make_function(**fast()).send(FAILED, record)

    assert waits == [0.0]
    assert only_outcome(sink)["outcome"] == "deleted"


@pytest.mark.parametrize("retry_after", ["3600", "Fri, 01 Jan 2100 00:00:00 GMT"])
def test_retry_after_beyond_the_deadline_gives_up_at_once(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    retry_after: str,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", DELETE_RE, Fault(503, headers={"Retry-After": retry_after}))
    function = make_function(**fast(SDRS_RETRY_DEADLINE="3"))
    with delivery.testing() as waits:
        response = function.send(FAILED, record)

    assert waits == [], "waited for a Retry-After it could never honour"
    assert response.status_code == 503  # the trigger redelivers later
    data = only_outcome(sink)
    assert data["outcome"] == "delete_failed"
    assert data["error"]["retryable"] is True
    assert data["attempts"] == 1
    assert len(delete_requests(standin.requests)) == 1
    assert standin.listed(record["resource_id"])


# -- wrong `count` ----------------------------------------------------------------------------


def test_wrong_count_during_lookup_still_finds_a_task_on_a_later_page(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    standin.add_group(GROUP)
    standin.add_jobs((failed_task(FRESH), GROUP) for _ in range(1500))
    target = failed_task(EXPIRED)  # oldest: listed last, on the second page
    standin.add_job(target, GROUP)
    standin.count_mode = "wrong"
    standin.inject("GET", LIST_RE, Fault(200, passthrough=True))  # observed, not changed
    response = make_function(**fast()).send(EXPIRY, {"failure_job_id": target["resource_id"]})

    assert response.status_code == 200
    assert only_outcome(sink)["outcome"] == "deleted"
    offsets = [r.query.get("offset") for r in standin.requests
               if r.method == "GET" and r.query.get("server_group_id") == GROUP]
    assert offsets == ["0", "1000", "1501"]  # until an empty page: `count` is no guide


def test_wrong_count_and_a_failing_second_page_during_a_sweep(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    standin.add_jobs((failed_task(FRESH), None) for _ in range(1200))
    old = [failed_task(EXPIRED) for _ in range(5)]
    standin.add_jobs((record, None) for record in old)
    standin.count_mode = "wrong"
    standin.inject("GET", LIST_RE, Fault(200, passthrough=True), Fault(503))  # page 2 fails once
    response = make_function(**fast(SWEEP_CONCURRENCY="2")).send(PING, {})

    assert response.status_code == 200
    assert sorted(applied_deletes(standin.requests)) == sorted(r["resource_id"] for r in old)
    [summary] = [data_of(e) for e in sink.events if kinds([e]) == ["sweep_completed"]]
    assert summary["listed"] == 1205
    assert summary["partial"] is False


def test_page_capped_below_the_requested_limit_still_finds_the_task(
    sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    with TaskCenterStandIn(project_id=PROJECT, token=TOKEN, max_page=100,
                           count_mode="total") as capped:
        capped.add_jobs((failed_task(FRESH), None) for _ in range(150))
        target = failed_task(EXPIRED)  # oldest: listed last, on the second page
        capped.add_job(target)
        function = make_function(**fast(SDRS_ENDPOINT=capped.url))
        function.send(EXPIRY, {"failure_job_id": target["resource_id"]})

        assert only_outcome(sink)["outcome"] == "deleted"
        assert capped.deletes() == [target["resource_id"]]


# -- listing failures -----------------------------------------------------------------------


@pytest.mark.parametrize("path", [LIST_RE, r"/server-groups$"])
def test_listing_failures_during_lookup_answer_503_and_delete_nothing(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory, path: str
) -> None:
    record = failed_task(EXPIRED)
    standin.add_group(GROUP)
    standin.add_job(record, GROUP)
    standin.inject("GET", path, *[Fault(500)] * 3)
    # One listing at a time, so that the three faults all land on the same listing.
    function = make_function(**fast(SDRS_MAX_ATTEMPTS="3", SWEEP_CONCURRENCY="1"))
    response = function.send(FAILED, {"job_id": record["job_id"]}, event_id="lst-1")

    assert response.status_code == 503
    assert delete_requests(standin.requests) == []
    data = only_outcome(sink)
    assert data["outcome"] == "delete_failed"
    assert data["error"]["retryable"] is True
    assert "could not list" in data["reason"]

    again = function.send(FAILED, {"job_id": record["job_id"]}, event_id="lst-1")
    assert again.status_code == 200
    assert applied_deletes(standin.requests) == [record["resource_id"]]


# -- a sink that fails, flaps or hangs --------------------------------------------------------


def test_sink_always_failing_answers_503_after_its_attempts(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(FRESH)
    standin.add_job(record)
    sink.inject(*[Fault(503)] * 3)
    response = make_function(**fast(OUTCOME_SINK_ATTEMPTS="3")).send(FAILED, record)

    assert response.status_code == 503
    assert len(sink.requests) == 3
    assert sink.events == []


def test_sink_flapping_is_absorbed_by_its_internal_retry(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    sink.inject(Fault(503))
    response = make_function(**fast(OUTCOME_SINK_ATTEMPTS="3")).send(FAILED, record)

    assert response.status_code == 200
    assert [r.status for r in sink.requests] == [503, 202]
    assert kinds(sink.events) == ["deleted"]


def test_sink_hanging_once_is_retried_after_its_timeout(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    sink.inject(Fault(202, delay=1.0))  # answered long after OUTCOME_SINK_TIMEOUT
    response = make_function(**fast(OUTCOME_SINK_TIMEOUT="0.3")).send(FAILED, record)

    assert response.status_code == 200
    assert [r.fault is not None for r in sink.requests] == [True, False]  # timed out, again
    assert kinds(sink.wait_for(1)) == ["deleted"]


def test_sink_hanging_every_time_answers_503_within_its_bounds(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    sink.inject(*[Fault(202, delay=1.0)] * 2)
    function = make_function(**fast(OUTCOME_SINK_TIMEOUT="0.3", OUTCOME_SINK_ATTEMPTS="2"))
    response = function.send(FAILED, record, event_id="hang-1")

    assert response.status_code == 503
    assert len(sink.requests) == 2  # each attempt cut off by its timeout, then given up
    assert applied_deletes(standin.requests) == [record["resource_id"]]
    # The redelivery sends the outcome decided the first time; nothing is deleted twice.
    assert function.send(FAILED, record, event_id="hang-1").status_code == 200
    assert kinds(sink.wait_for(1)) == ["deleted"]
    assert len(delete_requests(standin.requests)) == 1


# -- faults inside a sweep ----------------------------------------------------------------------


def test_sweep_with_mixed_delete_faults_deletes_each_expired_task_once(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    log = track(standin)
    old = [failed_task(EXPIRED) for _ in range(12)]
    keep = [failed_task(FRESH) for _ in range(5)]
    standin.add_jobs((record, None) for record in old + keep)
    standin.inject(
        "DELETE", DELETE_RE,
        Fault(503), Fault(429, headers={"Retry-After": "0"}), Fault(500, close=True),
        Fault(delay=SLOW, passthrough=True), Fault(502, body=b"{}", close=True),
    )
    response = make_function(**fast(SWEEP_CONCURRENCY="4")).send(PING, {})

    assert response.status_code == 200
    assert log.wait_settled(5)
    assert sorted(applied_deletes(standin.requests)) == sorted(r["resource_id"] for r in old)
    assert bad_delete_paths(standin.requests) == []
    outcomes = kinds(sink.events)
    assert outcomes.count("sweep_completed") == 1
    assert outcomes.count("deleted") + outcomes.count("already_deleted") == len(old)
    assert all(standin.listed(r["resource_id"]) for r in keep)


def test_sweep_deletion_whose_outcome_the_sink_refused_is_still_reported(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    old = [failed_task(EXPIRED) for _ in range(3)]
    standin.add_jobs((record, None) for record in old)
    sink.inject(Fault(503), Fault(503))  # the first outcome is refused twice
    function = make_function(**fast(SWEEP_CONCURRENCY="1", OUTCOME_SINK_ATTEMPTS="2"))
    statuses = [function.send(PING, {}, event_id="tick-1").status_code for _ in range(2)]

    assert statuses == [503, 200]
    assert sorted(applied_deletes(standin.requests)) == sorted(r["resource_id"] for r in old)
    told = {e["subject"] for e in sink.events if kinds([e])[0] in ("deleted", "already_deleted")}
    assert told == {r["resource_id"] for r in old}


# -- two function instances at once -----------------------------------------------------------


@pytest.fixture
def slow_standin(standin: TaskCenterStandIn) -> Iterator[TaskCenterStandIn]:
    standin.latency = 0.005
    yield standin
    standin.latency = 0.0


def test_two_instances_sweeping_at_once_delete_each_task_at_most_once(
    slow_standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    standin = slow_standin
    log = track(standin)
    standin.add_group(GROUP)
    old = [failed_task(EXPIRED) for _ in range(40)]
    young = [failed_task(FRESH) for _ in range(10)]
    standin.add_jobs((r, GROUP if i % 2 else None) for i, r in enumerate(old + young))
    first = make_function(**fast(SWEEP_CONCURRENCY="4"))
    second = make_function(**fast(SWEEP_CONCURRENCY="4"))
    assert first.app is not second.app

    start = threading.Barrier(2, timeout=10)
    statuses: dict[str, int] = {}

    def sweep(name: str, function: Function) -> None:
        start.wait()
        statuses[name] = function.send(PING, {}, event_id=f"tick-{name}").status_code

    threads = [threading.Thread(target=sweep, args=(name, fn))
               for name, fn in (("a", first), ("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert statuses == {"a": 200, "b": 200}
    assert log.wait_settled(5)

    expired = {r["resource_id"] for r in old}
    applied = applied_deletes(standin.requests)
    assert sorted(applied) == sorted(expired)  # each applied exactly once between them
    deleted_by: dict[str, list[str]] = {"tick-a": [], "tick-b": []}
    already: dict[str, list[str]] = {"tick-a": [], "tick-b": []}
    for event in sink.events:
        data = data_of(event)
        if data["outcome"] == "deleted":
            deleted_by[data["causation"]["id"]].append(event["subject"])
        elif data["outcome"] == "already_deleted":
            already[data["causation"]["id"]].append(event["subject"])
    union = deleted_by["tick-a"] + deleted_by["tick-b"]
    assert sorted(union) == sorted(expired)
    # Whatever one deleted and the other also tried is already_deleted for the other.
    losers = [r for r in delete_requests(standin.requests) if r.status == 404]
    assert len(already["tick-a"]) + len(already["tick-b"]) == len(losers)
    assert set(already["tick-a"]) <= set(deleted_by["tick-b"])
    assert set(already["tick-b"]) <= set(deleted_by["tick-a"])
    assert all(standin.listed(r["resource_id"]) for r in young)
    assert bad_delete_paths(standin.requests) == []
