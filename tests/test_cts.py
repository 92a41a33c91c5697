"""CTS traces in, the pure part: which resource a trace names, or why it is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failjob_reaper.cts import (
    TraceRefused,
    cloudevent_service,
    is_cloudtrace_event,
    trace_target,
    unwrap_trigger_payload,
)
from failjob_reaper.ids import is_valid_id
from standin.sample_data import cts_trace, eventgrid_cloudtrace

PROJECT = "0605767f0a00d5762fe0c0148c8ba0d3"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RESOURCE = "8c2e4f5a-1b7d-4a39-9c1e-6f0d3b2a7e10"
GROUP = "a3f1c9e2-44b0-4d8e-9a61-0c7b5e2f9d31"


def trace(**fields: Any) -> dict[str, Any]:
    return cts_trace(fields.pop("resource_id", RESOURCE), now=NOW, **fields)


def test_an_sdrs_trace_names_its_resource() -> None:
    target = trace_target(trace(), project_id=PROJECT)
    assert target.resource_id == RESOURCE
    assert target.server_group_id is None
    assert target.trace_name == "createProtectedInstance"


def test_brs_the_new_name_of_sdrs_is_accepted_too() -> None:
    assert trace_target(trace(service_type="BRS"), project_id=PROJECT).resource_id == RESOURCE


def test_the_request_body_gives_the_protection_group_hint() -> None:
    request = {"protected_instance": {"server_group_id": GROUP, "name": "web-01"}}
    target = trace_target(trace(request=request), project_id=PROJECT)
    assert target.server_group_id == GROUP


def test_a_hostile_group_hint_in_the_request_is_ignored_not_used() -> None:
    request = {"protected_instance": {"server_group_id": "../../batch"}}
    assert trace_target(trace(request=request), project_id=PROJECT).server_group_id is None


def test_a_protection_group_trace_looks_at_the_top_level_first() -> None:
    request = {"server_group": {"server_group_id": GROUP}}
    target = trace_target(
        trace(resource_type="protectionGroup", trace_name="protectionGroupAction",
              request=request),
        project_id=PROJECT,
    )
    assert target.resource_id == RESOURCE and target.server_group_id is None


def test_resource_id_as_an_object_like_the_trigger_sample() -> None:
    assert trace_target(trace(resource_id={"id": RESOURCE}), project_id=PROJECT).resource_id \
        == RESOURCE


@pytest.mark.parametrize("resource_id", [{}, None, ""])
def test_a_trace_without_a_resource_is_refused(resource_id: object) -> None:
    with pytest.raises(TraceRefused, match="names no resource"):
        trace_target(trace(resource_id=resource_id), project_id=PROJECT)


@pytest.mark.parametrize("resource_id", ["../../v1/other", "a/b", "x" * 65, "batch?x=1", 42,
                                         "id1,id2"])
def test_a_resource_id_that_is_not_a_plain_token_is_refused(resource_id: object) -> None:
    with pytest.raises(TraceRefused, match="resource_id must be"):
        trace_target(trace(resource_id=resource_id), project_id=PROJECT)


@pytest.mark.parametrize("service", ["VPC", "ECS", "FunctionGraph", None, 7])
def test_traces_of_other_services_are_refused(service: object) -> None:
    with pytest.raises(TraceRefused, match="not SDRS"):
        trace_target(trace(service_type=service), project_id=PROJECT)


def test_the_envelope_names_the_service_when_the_trace_does_not() -> None:
    data = trace()
    del data["service_type"]
    assert trace_target(data, project_id=PROJECT, service="SDRS").resource_id == RESOURCE
    with pytest.raises(TraceRefused):
        trace_target(data, project_id=PROJECT)


@pytest.mark.parametrize("fields", [
    {"read_only": True},
    {"trace_name": "listFailureJobs"},
    {"trace_name": "showProtectedInstance"},
    {"trace_name": "queryServerGroups"},
])
def test_read_only_operations_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(TraceRefused, match="read-only"):
        trace_target(trace(**fields), project_id=PROJECT)


def test_a_name_that_only_starts_like_a_read_is_not_one() -> None:
    # "getaway..." is no "get" + capital: only camelCase read verbs count.
    assert trace_target(trace(trace_name="listenerUpdate", read_only=False),
                        project_id=PROJECT).resource_id == RESOURCE


def test_a_trace_of_another_project_is_refused() -> None:
    with pytest.raises(TraceRefused, match="for project other"):
        trace_target(trace(project_id="other"), project_id=PROJECT)
    with pytest.raises(TraceRefused, match="project_id must be"):
        trace_target(trace(project_id="../x"), project_id=PROJECT)
    assert trace_target(trace(project_id=PROJECT), project_id=PROJECT).resource_id == RESOURCE


@pytest.mark.parametrize("not_a_trace", [None, [], "trace", 3])
def test_a_trace_that_is_no_object_is_refused(not_a_trace: object) -> None:
    with pytest.raises(TraceRefused, match="JSON object"):
        trace_target(not_a_trace, project_id=PROJECT)


def test_the_trigger_payload_and_its_older_shape_unwrap_to_the_trace() -> None:
    data = trace()
    assert unwrap_trigger_payload({"cts": data}) is data
    assert unwrap_trigger_payload({"data": data}) is data
    assert unwrap_trigger_payload({"data": {"failure_job_id": "x"}}) is None
    assert unwrap_trigger_payload({"cts": data, "other": 1}) is None
    assert unwrap_trigger_payload({"trigger_type": "TIMER"}) is None


def test_cloudtrace_cloudevents_are_recognised_by_their_type() -> None:
    event = eventgrid_cloudtrace(trace())
    assert event["source"] == "HC.SDRS" and event["type"] == "SDRS:CloudTrace:ApiCall"
    assert is_cloudtrace_event(event) and cloudevent_service(event) == "SDRS"
    assert is_cloudtrace_event({"type": "VPC:CloudTrace:ConsoleAction"})
    assert cloudevent_service({"type": "VPC:CloudTrace:ConsoleAction"}) == "VPC"
    assert not is_cloudtrace_event({"type": "sdrs.job.failed", "source": "HC.SDRS"})
    assert not is_cloudtrace_event({"type": None})


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=150)
@given(st.dictionaries(st.sampled_from(["service_type", "resource_id", "trace_name", "read_only",
                                        "project_id", "request", "resource_type"]),
                       st.none() | st.booleans() | st.integers() | st.text(max_size=80)
                       | st.dictionaries(st.text(max_size=5), st.text(max_size=70), max_size=2)))
def test_any_trace_gives_a_plain_token_or_a_refusal(data: dict[str, Any]) -> None:
    try:
        target = trace_target(data, project_id=PROJECT)
    except TraceRefused:
        return
    assert is_valid_id(target.resource_id)
    assert target.server_group_id is None or is_valid_id(target.server_group_id)
