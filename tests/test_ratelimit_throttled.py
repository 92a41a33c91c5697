"""The adaptive rate end to end: the function through functions-framework against the
stand-in throttling like the API gateway (429 APIG.0308 ... limit:R beyond R requests/s)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from standin import OutcomeSink, TaskCenterStandIn, Throttle
from tests.conftest import EXPIRED, FunctionFactory, failed_task

PING = "dev.knative.sources.ping"


def statuses(standin: TaskCenterStandIn) -> Counter[int]:
    return Counter(r.status for r in standin.requests)


def seed(
    standin: TaskCenterStandIn, n: int, throttle: float | None = None
) -> list[dict[str, Any]]:
    records = [failed_task(EXPIRED) for _ in range(n)]
    for record in records:
        standin.add_job(record)
    if throttle is not None:
        standin.throttle = Throttle(throttle)
    return records


def test_a_sweep_finds_the_gateways_limit_and_deletes_everything_with_few_429s(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    records = seed(standin, 90, throttle=40)
    # A ceiling far above the gateway's limit: the rate has to come down to it.
    response = make_function(SWEEP_RATE_LIMIT="1000", SWEEP_CONCURRENCY="8").send(PING, {})

    assert response.status_code == 200
    assert not any(standin.listed(r["resource_id"]) for r in records)
    counts = statuses(standin)
    assert counts[204] == len(records)
    # The first burst meets the gateway (8 workers at the ceiling); then the announced
    # limit caps the rate: a handful of 429s among ~90 requests, not one in two.
    assert counts[429] <= 12, counts


def test_without_a_client_side_limit_the_same_sweep_is_throttled_far_more(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    seed(standin, 90, throttle=40)
    make_function(SWEEP_RATE_LIMIT="0", SWEEP_CONCURRENCY="8").send(PING, {})

    counts = statuses(standin)
    assert counts[429] > 12, counts  # the contrast that makes the test above mean something


def test_single_events_learn_the_limit_and_are_paced_by_it(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    records = seed(standin, 5, throttle=4)
    function = make_function(SWEEP_RATE_LIMIT="50")
    for record in records:
        assert function.send("sdrs.job.failed", record).status_code == 200

    # Every task deleted (a DELETE answered 429 is sent again: the set, not the list).
    assert set(standin.deletes()) == {r["resource_id"] for r in records}
    assert not any(standin.listed(r["resource_id"]) for r in records)
    counts = statuses(standin)
    assert counts[429] <= 3, counts  # the first burst only, then 4/s
    admitted = [r.started for r in standin.requests if r.status != 429]
    # Ten admitted requests at 4/s after the first throttle: over a couple of seconds.
    assert max(admitted) - min(admitted) >= 1.2


def test_every_request_of_the_deployment_is_paced_under_the_ceiling(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    records = seed(standin, 4)
    function = make_function(SWEEP_RATE_LIMIT="5")  # no throttling: the ceiling paces
    for record in records:
        function.send("sdrs.job.failed", record)

    assert len(standin.deletes()) == 4
    starts = sorted(r.started for r in standin.requests)
    assert len(starts) >= 8  # a listing and a DELETE each, at least
    assert starts[-1] - starts[0] >= (len(starts) - 1) / 5 * 0.9  # five a second
