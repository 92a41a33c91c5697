"""CTS traces in, end to end: the FunctionGraph CTS trigger, EventGrid cloud-service events
(bare or in an ``{"events": [...]}`` envelope) through ``main.handler`` and ``on_event``.

Every test seeds its own world and states the DELETEs from it: a resource with three
failures, two of them past the 7-day default retention and one fresh. The DELETE path
names a record by ``job_id`` here (``SDRS_FAILURE_JOB_ID_FIELD=job_id``): with the
default ``resource_id`` the three records of one resource share one DELETE path, and
the fresh one would (rightly) keep all three.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from standin import (
    EventGridStandIn,
    OutcomeSink,
    TaskCenterStandIn,
    cts_trace,
    eventgrid_cloudtrace,
)
from tests.conftest import EXPIRED, FRESH, PROJECT, TOKEN, FunctionFactory, data_of, failed_task
from tests.test_functiongraph import FunctionGraph, functiongraph  # noqa: F401 - fixture

ID_FIELD = {"SDRS_FAILURE_JOB_ID_FIELD": "job_id"}


@pytest.fixture
def standin() -> Iterator[TaskCenterStandIn]:
    """The task center deleting by job_id (what SDRS_FAILURE_JOB_ID_FIELD says here)."""
    with TaskCenterStandIn(project_id=PROJECT, token=TOKEN, id_field="job_id") as server:
        yield server
GROUP = "a3f1c9e2-44b0-4d8e-9a61-0c7b5e2f9d31"


def seed_resource(
    standin: TaskCenterStandIn, *, group: str | None = None
) -> tuple[str, list[str]]:
    """Three failures of one resource: two expired, one fresh. Returns the resource id and
    the job ids the policy lets go (the two expired)."""
    resource = str(uuid.uuid4())
    expired = [failed_task(EXPIRED, resource_id=resource) for _ in range(2)]
    fresh = failed_task(FRESH, resource_id=resource)
    if group is not None and group not in standin.group_ids():
        standin.add_group(group, "pg-web")
    for record in [*expired, fresh]:
        standin.add_job(record, group)
    return resource, [record["job_id"] for record in expired]


def trace_of(resource: object, **fields: Any) -> dict[str, Any]:
    return cts_trace(resource, now=datetime.now(UTC), **fields)


# -- main.handler -------------------------------------------------------------------------


def test_a_cts_trigger_trace_deletes_exactly_the_two_expired_failures_of_its_resource(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    resource, expired = seed_resource(standin)
    other, _ = seed_resource(standin)  # another resource's failures stay untouched

    result = functiongraph(**ID_FIELD)({"cts": trace_of(resource)})

    assert result["status"] == "done"
    assert sorted(standin.deletes()) == sorted(expired)
    assert len(standin.records()) == 4  # the fresh one and all three of the other resource
    kinds = sorted(event["type"] for event in sink.wait_for(3))
    assert kinds == ["sdrs.failurejob.deleted"] * 2 + ["sdrs.failurejob.retained"]
    assert {data_of(e)["causation"]["source"] for e in sink.events} == {
        "/functiongraph/triggers/cts"}
    assert other not in {data_of(e)["job"]["resource_id"] for e in sink.events}


def test_the_older_data_shape_of_the_cts_trigger_is_served_the_same(
    standin: TaskCenterStandIn, functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    resource, expired = seed_resource(standin)
    functiongraph(**ID_FIELD)({"data": trace_of({"id": resource})})  # resource_id as an object
    assert sorted(standin.deletes()) == sorted(expired)


def test_a_trace_whose_request_names_the_group_finds_the_tasks_inside_it(
    standin: TaskCenterStandIn, functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    resource, expired = seed_resource(standin, group=GROUP)
    trace = trace_of(resource, request={"protected_instance": {"server_group_id": GROUP}})
    functiongraph(**ID_FIELD)({"cts": trace})
    assert sorted(standin.deletes()) == sorted(expired)


def test_an_eventgrid_envelope_of_two_traces_decides_each_on_its_own(
    standin: TaskCenterStandIn, functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    first, first_expired = seed_resource(standin)
    second, second_expired = seed_resource(standin, group=GROUP)
    envelope = {"events": [eventgrid_cloudtrace(trace_of(first)),
                           eventgrid_cloudtrace(trace_of(second, trace_type="ConsoleAction"))]}

    result = functiongraph(**ID_FIELD)(envelope)

    assert result == {"status": "done", "events": 2, "refused": [], "retry": []}
    assert sorted(standin.deletes()) == sorted(first_expired + second_expired)


def test_a_bare_eventgrid_cloudtrace_event_on_main_handler(
    standin: TaskCenterStandIn, functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    resource, expired = seed_resource(standin)
    functiongraph(**ID_FIELD)(eventgrid_cloudtrace(trace_of(resource, service_type="BRS"),
                                                   service="BRS"))
    assert sorted(standin.deletes()) == sorted(expired)


@pytest.mark.parametrize("fields", [
    {"service_type": "VPC", "resource_type": "vpc", "trace_name": "deleteVpc"},
    {"trace_name": "listFailureJobs", "read_only": True},
    {"resource_id": {}},
    {"resource_id": "../../v1/other-project/task-center/failure-jobs/batch"},
])
def test_traces_that_name_nothing_to_decide_touch_nothing_and_are_acknowledged(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph,  # noqa: F811
    fields: dict[str, Any],
) -> None:
    resource, _ = seed_resource(standin)
    fields.setdefault("resource_id", resource)
    function = functiongraph(**ID_FIELD)
    standin.reset_log()

    result = function({"cts": trace_of(fields.pop("resource_id"), **fields)})

    assert result["status"] == "done"
    assert standin.requests == []  # not even a listing
    (rejected,) = sink.wait_for(1)
    assert rejected["type"] == "sdrs.failurejob.rejected"


def test_an_envelope_with_one_malformed_event_still_decides_the_other(
    standin: TaskCenterStandIn, functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    resource, expired = seed_resource(standin)
    envelope = {"events": [{"specversion": "1.0", "type": "x"},
                           eventgrid_cloudtrace(trace_of(resource))]}
    result = functiongraph(**ID_FIELD)(envelope)
    assert result["events"] == 1 and len(result["refused"]) == 1
    assert sorted(standin.deletes()) == sorted(expired)


def test_cts_outcomes_reach_eventgrid_in_one_signed_batch(
    standin: TaskCenterStandIn, functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    resource, expired = seed_resource(standin)
    with EventGridStandIn(project_id=PROJECT, channel_id="chan-1",
                          token=TOKEN) as eventgrid:
        functiongraph(**ID_FIELD, K_SINK="", EG_ENDPOINT=eventgrid.url,
                      EG_CHANNEL_ID="chan-1")({"cts": trace_of(resource)})
        assert [len(batch) for batch in eventgrid.batches] == [3]
        assert sorted(e["subject"] for e in eventgrid.of_type("sdrs.failurejob.deleted")) \
            == sorted(expired)
        assert eventgrid.requests[0].headers["x-auth-token"] == TOKEN


# -- on_event -----------------------------------------------------------------------------


def test_on_event_a_cloudtrace_event_deletes_exactly_the_two_expired(
    standin: TaskCenterStandIn, make_function: FunctionFactory,
) -> None:
    resource, expired = seed_resource(standin)
    event = eventgrid_cloudtrace(trace_of(resource))
    response = make_function(**ID_FIELD).send(event["type"], event["data"],
                                              source=event["source"], event_id=event["id"])
    assert response.status_code == 200
    assert sorted(standin.deletes()) == sorted(expired)


def test_on_event_serves_an_eventgrid_envelope_of_two_events(
    standin: TaskCenterStandIn, make_function: FunctionFactory,
) -> None:
    first, first_expired = seed_resource(standin)
    second, second_expired = seed_resource(standin)
    envelope = {"events": [eventgrid_cloudtrace(trace_of(first)),
                           eventgrid_cloudtrace(trace_of(second))]}
    function = make_function(**ID_FIELD)
    response = function.post_raw({"content-type": "application/json"},
                                 json.dumps(envelope).encode())
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["events"] == 2
    assert sorted(standin.deletes()) == sorted(first_expired + second_expired)


def test_on_event_envelope_with_the_sink_down_asks_for_redelivery(
    standin: TaskCenterStandIn, make_function: FunctionFactory, sink: OutcomeSink,
) -> None:
    from standin import Fault

    resource, expired = seed_resource(standin)
    sink.inject(*[Fault(503)] * 9)
    envelope = {"events": [eventgrid_cloudtrace(trace_of(resource))]}
    response = make_function(**ID_FIELD).post_raw({"content-type": "application/json"},
                                                  json.dumps(envelope).encode())
    assert response.status_code == 503
    assert sorted(standin.deletes()) == sorted(expired)  # done; only the report is owed


def test_on_event_a_trace_of_another_service_touches_nothing(
    standin: TaskCenterStandIn, make_function: FunctionFactory, sink: OutcomeSink,
) -> None:
    resource, _ = seed_resource(standin)
    function = make_function(**ID_FIELD)
    standin.reset_log()
    event = CloudEvent({"type": "ECS:CloudTrace:ApiCall", "source": "HC.ECS",
                        "id": str(uuid.uuid4())},
                       trace_of(resource, service_type="ECS", trace_name="deleteServer"))
    headers, body = to_structured(event)
    assert function.post_raw(dict(headers), body).status_code == 200
    assert standin.requests == []
    assert sink.wait_for(1)[0]["type"] == "sdrs.failurejob.rejected"
