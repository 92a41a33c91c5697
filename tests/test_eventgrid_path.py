"""EventGrid out through ``main.handler`` as FunctionGraph calls it: sweeps publish in
batches, the agency's temporary credentials sign PutEvents, and a batch answer that
fails one event gets that event resent alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from standin import EventGridStandIn, TaskCenterStandIn, cts_trace
from tests.conftest import EXPIRED, FRESH, PROJECT, TOKEN, failed_task
from tests.test_functiongraph import (  # noqa: F401 - fixture
    AGENCY,
    FunctionGraph,
    agency_context,
    functiongraph,
    timer_event,
)

CHANNEL = "outcomes-1"


@pytest.fixture
def eventgrid() -> Iterator[EventGridStandIn]:
    ak, sk, _ = AGENCY[1]
    with EventGridStandIn(project_id=PROJECT, channel_id=CHANNEL, token=TOKEN,
                          credentials={ak: sk}) as server:
        yield server


def eg_env(eventgrid: EventGridStandIn, **extra: str) -> dict[str, str]:
    return {"EG_ENDPOINT": eventgrid.url, "EG_CHANNEL_ID": CHANNEL, "K_SINK": "", **extra}


def test_a_sweep_publishes_its_outcomes_ten_at_a_time(
    standin: TaskCenterStandIn, eventgrid: EventGridStandIn,
    functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    expired = [failed_task(EXPIRED) for _ in range(25)]
    for record in expired:
        standin.add_job(record)

    functiongraph(**eg_env(eventgrid))(timer_event())

    assert sorted(standin.deletes()) == sorted(r["resource_id"] for r in expired)
    deleted = eventgrid.of_type("sdrs.failurejob.deleted")
    assert sorted(e["subject"] for e in deleted) == sorted(r["resource_id"] for r in expired)
    assert len(eventgrid.of_type("sdrs.failurejob.sweep_completed")) == 1
    sizes = [len(batch) for batch in eventgrid.batches]
    assert max(sizes) <= 10 and sum(sizes) == 26
    assert len(sizes) <= 5  # 25 outcomes in batches, then the summary: not 26 calls


def test_the_agency_credentials_of_the_invocation_sign_put_events(
    standin: TaskCenterStandIn, eventgrid: EventGridStandIn,
    functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    ak, sk, security_token = AGENCY[1]
    standin._token, standin._credentials = None, {ak: sk}
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = functiongraph(**eg_env(eventgrid, SDRS_AUTH_TOKEN=""))

    function({"cts": cts_trace(record["resource_id"], now=datetime.now(UTC))}, agency_context(1))

    assert standin.deletes() == [record["resource_id"]]
    (request,) = eventgrid.requests
    assert request.status == 200
    assert request.headers["authorization"].startswith(f"SDK-HMAC-SHA256 Access={ak},")
    assert request.headers["x-security-token"] == security_token


def test_one_event_failed_in_a_batch_is_resent_alone_and_no_other(
    standin: TaskCenterStandIn, eventgrid: EventGridStandIn,
    functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    resource = "7d1c0b9e-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
    records = [failed_task(EXPIRED, resource_id=resource, job_id=f"job-{i}") for i in range(2)]
    records.append(failed_task(FRESH, resource_id=resource, job_id="job-fresh"))
    standin.id_field = "job_id"
    for record in records:
        standin.add_job(record)
    eventgrid.fail_positions(1)

    functiongraph(**eg_env(eventgrid, SDRS_FAILURE_JOB_ID_FIELD="job_id"))(
        {"cts": cts_trace(resource, now=datetime.now(UTC))})

    first, second = eventgrid.batches
    assert len(first) == 3 and second == [first[1]]
    assert sorted(eventgrid.received_ids) == sorted(first)  # each outcome taken once
    assert sorted(standin.deletes()) == ["job-0", "job-1"]
