"""The event path end to end: a CloudEvent through functions-framework, the
stand-in over loopback, outcomes in a real HTTP sink."""

from __future__ import annotations

from datetime import timedelta

import pytest

from standin import Fault, OutcomeSink, TaskCenterStandIn, parse_begin_time
from tests.conftest import (
    EXPIRED,
    FRESH,
    PROJECT,
    TOKEN,
    FunctionFactory,
    data_of,
    failed_task,
)

FAILED = "sdrs.job.failed"
EXPIRED_TYPE = "sdrs.failurejob.expired"


def deletes(standin: TaskCenterStandIn) -> list[str]:
    return standin.deletes()


def test_expired_task_gets_one_delete_and_a_deleted_outcome(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    traceparent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    response = make_function().send(FAILED, record, traceparent=traceparent)

    assert response.status_code == 200
    assert deletes(standin) == [record["resource_id"]]
    [event] = sink.wait_for(1)
    assert event["type"] == "sdrs.failurejob.deleted"
    assert event["subject"] == record["resource_id"]
    assert event["traceparent"].startswith("00-aaaa")
    data = data_of(event)
    assert data["outcome"] == "deleted"
    assert data["status_code"] == 204
    assert data["attempts"] == 1
    assert data["rule"] == "default"
    assert data["trigger"] == "event"
    assert data["job"]["job_id"] == record["job_id"]
    assert data["causation"]["type"] == FAILED
    assert not standin.listed(record["resource_id"])


def test_fresh_task_is_retained_until_begin_time_plus_retention(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(FRESH)
    standin.add_job(record)
    response = make_function().send(EXPIRED_TYPE, {"failure_job_id": record["resource_id"]})

    assert response.status_code == 200
    assert deletes(standin) == []
    data = data_of(sink.wait_for(1)[0])
    assert data["outcome"] == "retained"
    begin = parse_begin_time(record["begin_time"])
    assert begin is not None
    expected = (begin + timedelta(days=7)).replace(microsecond=0).isoformat()
    assert data["retain_until"] == expected.replace("+00:00", "Z")  # the one format


def test_payload_lying_about_begin_time_cannot_force_a_delete(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(FRESH)
    standin.add_job(record)
    lie = {**record, "begin_time": "2001-01-01T00:00:00.000Z", "force": False}
    make_function().send(FAILED, lie)

    assert deletes(standin) == []
    assert data_of(sink.wait_for(1)[0])["outcome"] == "retained"


def test_task_no_longer_listed_is_already_deleted_without_delete(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)  # never added: nobody lists it
    response = make_function().send(FAILED, record)

    assert response.status_code == 200
    assert deletes(standin) == []
    event = sink.wait_for(1)[0]
    assert event["type"] == "sdrs.failurejob.already_deleted"


def test_task_inside_a_protection_group_is_found_without_a_group_hint(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    standin.add_group("a1b2c3d4-0000-4000-8000-000000000001", "group-a")
    standin.add_group("a1b2c3d4-0000-4000-8000-000000000002", "group-b")
    record = failed_task(EXPIRED)
    standin.add_job(record, "a1b2c3d4-0000-4000-8000-000000000002")
    make_function().send(FAILED, {"job_id": record["job_id"]})

    assert deletes(standin) == [record["resource_id"]]
    data = data_of(sink.wait_for(1)[0])
    assert data["outcome"] == "deleted"
    assert data["server_group_id"] == "a1b2c3d4-0000-4000-8000-000000000002"


BAD_IDS = [
    "a/b",
    "../../v1/other",
    "..",
    "%2e%2e",
    "abc%2Fdef",
    "has space",
    "x" * 65,
    "",
    "tab\there",
    "new\nline",
    "ünïcode",
    123,
    None,
    ["a"],
    {"id": "a"},
    True,
]


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
@pytest.mark.parametrize("key", ["failure_job_id", "job_id", "resource_id", "server_group_id"])
def test_bad_ids_are_rejected_without_any_request(
    standin: TaskCenterStandIn,
    sink: OutcomeSink,
    make_function: FunctionFactory,
    key: str,
    bad_id: object,
) -> None:
    data: dict[str, object] = {"failure_job_id": "0123456789abcdef"}
    data[key] = bad_id
    if bad_id is None:  # null next to a good id means "absent"; alone it names nothing
        data = {key: None}
    response = make_function().send(EXPIRED_TYPE, data)

    assert response.status_code == 200
    assert standin.requests == []
    event = sink.wait_for(1)[0]
    assert event["type"] == "sdrs.failurejob.rejected"
    assert data_of(event)["reason"]


def test_event_for_another_project_is_rejected_without_any_request(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    make_function().send(FAILED, {**record, "project_id": "someoneelsesproject"})

    assert standin.requests == []
    data = data_of(sink.wait_for(1)[0])
    assert data["outcome"] == "rejected"
    assert "someoneelsesproject" in data["reason"]


def test_unknown_type_and_malformed_data_are_rejected_and_acknowledged(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    function = make_function()
    assert function.send("com.example.other", {"failure_job_id": "abc"}).status_code == 200
    assert function.send(FAILED, ["not", "an", "object"]).status_code == 200
    assert function.send(FAILED, {"nothing": "useful"}).status_code == 200

    events = sink.wait_for(3)
    assert [e["type"] for e in events] == ["sdrs.failurejob.rejected"] * 3
    assert standin.requests == []


def test_503_503_204_is_deleted_after_three_attempts(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/", Fault(503), Fault(503))
    response = make_function().send(FAILED, record)

    assert response.status_code == 200
    assert deletes(standin) == [record["resource_id"]] * 3
    data = data_of(sink.wait_for(1)[0])
    assert (data["outcome"], data["attempts"], data["status_code"]) == ("deleted", 3, 204)


def test_429_with_retry_after_waits_that_long(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/", Fault(429, headers={"Retry-After": "2"}))
    make_function().send(FAILED, record)

    first, second = [r for r in standin.requests if r.method == "DELETE"]
    assert first.finished is not None
    assert second.started - first.finished >= 1.9  # the client waited what it was told
    assert data_of(sink.wait_for(1)[0])["outcome"] == "deleted"


def test_403_is_a_permanent_delete_failed_with_one_delete_and_2xx(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    body = b'{"error": {"code": "SDRS.0403", "message": "policy does not allow sdrs:job:delete"}}'
    standin.inject("DELETE", r"/failure-jobs/", Fault(403, body=body))
    response = make_function().send(FAILED, record)

    assert response.status_code == 200
    assert len(deletes(standin)) == 1
    data = data_of(sink.wait_for(1)[0])
    assert data["outcome"] == "delete_failed"
    assert data["status_code"] == 403
    assert data["error"] == {
        "code": "SDRS.0403",
        "message": "policy does not allow sdrs:job:delete",
        "retryable": False,
    }


def test_transient_failure_outlasting_the_budget_answers_5xx(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/", *[Fault(503)] * 3)
    response = make_function(SDRS_MAX_ATTEMPTS="3").send(FAILED, record)

    assert response.status_code == 503
    assert len(deletes(standin)) == 3
    data = data_of(sink.wait_for(1)[0])
    assert data["outcome"] == "delete_failed"
    assert data["error"]["retryable"] is True
    assert data["attempts"] == 3


def test_sink_down_gives_5xx_and_redelivery_deletes_nothing_twice(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    sink.inject(Fault(503), Fault(503), Fault(503))
    function = make_function(OUTCOME_SINK_ATTEMPTS="3")
    first = function.send(FAILED, record, event_id="evt-1")
    assert first.status_code == 503
    assert sink.events == []

    second = function.send(FAILED, record, event_id="evt-1")  # the trigger redelivers
    assert second.status_code == 200
    assert deletes(standin) == [record["resource_id"]]
    # The outcome decided the first time is the one delivered: one input, one outcome.
    [event] = sink.wait_for(1)
    assert event["type"] == "sdrs.failurejob.deleted"


def test_sink_down_for_one_event_delivers_its_outcome_before_the_next_one(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    first, second = failed_task(EXPIRED), failed_task(EXPIRED)
    standin.add_job(first)
    standin.add_job(second)
    sink.inject(Fault(503), Fault(503))
    function = make_function(OUTCOME_SINK_ATTEMPTS="2")
    assert function.send(FAILED, first).status_code == 503
    assert function.send(FAILED, second).status_code == 200

    events = sink.wait_for(2)
    assert [e["subject"] for e in events] == [first["resource_id"], second["resource_id"]]


def test_same_event_twice_deletes_once_and_gets_its_first_outcome(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    fresh = failed_task(FRESH)
    expired = failed_task(EXPIRED)
    standin.add_job(fresh)
    standin.add_job(expired)
    function = make_function()
    for _ in range(2):
        function.send(FAILED, expired, event_id="dup-1")
        function.send(FAILED, fresh, event_id="dup-2")

    assert deletes(standin) == [expired["resource_id"]]
    # The repeats get the first answers and decide nothing again (docs/state.md).
    events = sink.events
    types = [e["type"].rsplit(".", 1)[1] for e in events]
    assert types == ["deleted", "retained"]
    assert len({e["id"] for e in events}) == 2


def test_dry_run_deletes_nothing_and_says_would_delete(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    make_function(RETENTION_DRY_RUN="true").send(FAILED, record)

    assert deletes(standin) == []
    data = data_of(sink.wait_for(1)[0])
    assert (data["outcome"], data["dry_run"]) == ("would_delete", True)


def test_event_cannot_turn_configured_dry_run_off(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    make_function(policy={"dry_run": True}).send(FAILED, {**record, "dry_run": False})

    assert deletes(standin) == []
    assert data_of(sink.wait_for(1)[0])["outcome"] == "would_delete"


def test_structured_mode_event_is_decided_like_binary(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    make_function().send(FAILED, record, structured=True)

    assert deletes(standin) == [record["resource_id"]]
    assert sink.wait_for(1)[0]["type"] == "sdrs.failurejob.deleted"


def test_404_for_a_still_listed_record_points_at_the_id_field_setting(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)  # the stand-in deletes by resource_id
    make_function(SDRS_FAILURE_JOB_ID_FIELD="job_id").send(FAILED, record)

    assert deletes(standin) == [record["job_id"]]
    assert standin.listed(record["resource_id"])
    data = data_of(sink.wait_for(1)[0])
    assert data["outcome"] == "delete_failed"
    assert data["status_code"] == 404
    assert "SDRS_FAILURE_JOB_ID_FIELD" in data["reason"]


def test_policy_rule_and_hold_decide(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    held = failed_task(EXPIRED, resource_name="prod-db-01")
    drill = failed_task(timedelta(days=2), resource_type="disaster_recovery_drills")
    standin.add_job(held)
    standin.add_job(drill)
    policy = {
        "rules": [{"name": "drills", "match": {"resource_type": "disaster_recovery_drills"},
                   "retention": "1d"}],
        "holds": {"resource_names": ["prod-*"]},
    }
    function = make_function(policy=policy)
    function.send(FAILED, held)
    function.send(FAILED, drill)

    assert deletes(standin) == [drill["resource_id"]]
    first, second = (data_of(e) for e in sink.wait_for(2))
    assert (first["outcome"], first["rule"]) == ("retained", "hold")
    assert (second["outcome"], second["rule"]) == ("deleted", "drills")


def test_secrets_never_reach_logs_or_outcomes(
    standin: TaskCenterStandIn,
    sink: OutcomeSink,
    make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str],
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/", Fault(401))
    function = make_function(LOG_LEVEL="DEBUG", RETRY_API_TOKEN="retry-token-Kx77-long-enough")
    function.send(FAILED, record)
    function.send(FAILED, {"failure_job_id": "../" + TOKEN})
    sink.wait_for(2)

    out, err = capfd.readouterr()
    everything = out + err + "".join(str(e.get_attributes()) + str(e.data) for e in sink.events)
    assert TOKEN not in everything
    assert "retry-token-Kx77-long-enough" not in everything
    assert standin.requests[0].headers["x-auth-token"] == TOKEN  # it was really used


def test_project_id_from_the_sdk_variable_is_accepted(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = make_function(SDRS_PROJECT_ID="", HUAWEICLOUD_SDK_PROJECT_ID=PROJECT)
    function.send(FAILED, record)
    assert deletes(standin) == [record["resource_id"]]


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        "00-" + "0" * 32 + "-" + "b" * 16 + "-01",
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",
    ],
)
def test_an_invalid_traceparent_is_not_copied(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    traceparent: str,
) -> None:
    make_function().send(FAILED, {"failure_job_id": "nosuchtask"}, traceparent=traceparent)
    event = sink.wait_for(1)[0]
    assert "traceparent" not in event.get_attributes()


def test_k_ce_overrides_extensions_are_set_on_outcomes(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    overrides = '{"extensions": {"reaperentry": "event", "cluster": "prod1"}}'
    make_function(K_CE_OVERRIDES=overrides, OUTCOME_SOURCE="/failjob-reaper/test").send(
        FAILED, {"failure_job_id": "nosuchtask"}
    )
    event = sink.wait_for(1)[0]
    assert (event["reaperentry"], event["cluster"]) == ("event", "prod1")
    assert event["source"] == "/failjob-reaper/test"
