"""Hostile and malformed input: it is refused (the framework's 400, or an acknowledged
``rejected`` outcome), never answered with a 500 stack trace, and never reaches the
task-center API, let alone a URL path."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failjob_reaper.components import build_components, load_components_or_exit
from failjob_reaper.errors import ConfigError
from failjob_reaper.events import (
    EventTypes,
    Rejected,
    SweepRequest,
    TaskRequest,
    parse_cloudevent,
)
from failjob_reaper.policy import PolicyError, parse_policy
from failjob_reaper.reaper import Reaper
from standin import OutcomeSink, TaskCenterStandIn
from tests.conftest import EXPIRED, PROJECT, FunctionFactory, data_of, failed_task
from tests.reliability_support import (
    ID_TOKEN,
    bad_delete_paths,
    fresh_reaper_logger,
    kinds,
    settings_for,
)

pytestmark = pytest.mark.usefixtures(fresh_reaper_logger.__name__)

FAILED = "sdrs.job.failed"
EXPIRY = "sdrs.failurejob.expired"
SWEEP = "sdrs.failurejob.sweep"
PING = "dev.knative.sources.ping"
TYPES = EventTypes()
CE_JSON = "application/cloudevents+json"

ID_FIELDS = ["failure_job_id", "job_id", "resource_id", "server_group_id", "project_id"]
PATH_TRICKS = [
    "../other", "..", ".", "a/b", "/abs", "a\\b", "%2e%2e", "a%2Fb", "..%2f..", "a?x=1",
    "a#frag", "a;b", "a b", "a\tb", "a\nb", "a\rb", "a\x00b", "\u2215etc", "\uff0fetc",
    "abc\u202e", "caf\u00e9", "\U0001f4a3", "x" * 65, "", " ",
]
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def binary_headers(event_type: str = FAILED, **extra: str) -> dict[str, str]:
    headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-source": "/test/bus",
               "ce-type": event_type, "content-type": "application/json"}
    headers.update(extra)
    return headers


def structured(**attributes: Any) -> bytes:
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/test/bus",
             "type": EXPIRY, "datacontenttype": "application/json",
             "data": {"failure_job_id": "abc"}}
    event.update(attributes)
    for key in [k for k, v in attributes.items() if v is _DROP]:
        del event[key]
    return json.dumps(event).encode()


_DROP: Any = object()


def assert_refused_quietly(
    status: int, body: bytes, standin: TaskCenterStandIn, sink: OutcomeSink, err: str
) -> None:
    """A 4xx, or a 200 whose every outcome is `rejected`; no API call; no traceback."""
    assert status != 500 and status < 500, f"answered {status}: {body[:200]!r}"
    assert standin.requests == [], [r.path for r in standin.requests]
    if status == 200:
        assert kinds(sink.events) and set(kinds(sink.events)) == {"rejected"}
    assert "Traceback" not in err


# -- CloudEvent attributes ----------------------------------------------------------------


@pytest.mark.parametrize("drop", ["ce-id", "ce-source", "ce-type", "ce-specversion"])
def test_binary_event_missing_a_required_attribute_gets_400(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str], drop: str,
) -> None:
    headers = {k: v for k, v in binary_headers().items() if k != drop}
    response = make_function().post_raw(headers, b'{"failure_job_id": "abc"}')

    assert response.status_code == 400
    assert_refused_quietly(response.status_code, response.data, standin, sink,
                           capfd.readouterr().err)
    assert sink.events == []


@pytest.mark.parametrize("version", ["0.9", "2.0", "", "1.0.0"])
def test_bad_specversion_gets_400(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    version: str,
) -> None:
    headers = binary_headers(**{"ce-specversion": version})
    response = make_function().post_raw(headers, b'{"failure_job_id": "abc"}')
    assert response.status_code == 400
    assert standin.requests == []


@pytest.mark.parametrize("event_type", ["", " ", "sdrs.job.failed\n", "sdrs.job.failed\x00",
                                        "SDRS.JOB.FAILED", "sdrs.job.failed ", "\u202esdrs"])
def test_empty_or_mangled_type_is_rejected_without_any_request(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    event_type: str,
) -> None:
    response = make_function().post_raw({"content-type": CE_JSON},
                                        structured(type=event_type))
    assert response.status_code == 200
    assert standin.requests == []
    [event] = sink.wait_for(1)
    data = data_of(event)
    assert data["outcome"] == "rejected"
    assert "unsupported event type" in data["reason"]
    assert not CONTROL.search(data["reason"])  # printed escaped, never raw


@pytest.mark.parametrize("attribute", ["id", "source"])
@pytest.mark.parametrize("value", ["", 5, {"a": 1}], ids=["empty", "int", "object"])
def test_event_without_a_usable_id_or_source_is_refused_without_any_request(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str], attribute: str, value: object,
) -> None:
    response = make_function().post_raw({"content-type": CE_JSON},
                                        structured(**{attribute: value}))
    assert_refused_quietly(response.status_code, response.data, standin, sink,
                           capfd.readouterr().err)


def test_structured_event_with_null_id_is_a_4xx_not_a_500(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str],
) -> None:
    response = make_function().post_raw({"content-type": CE_JSON}, structured(id=None))
    assert_refused_quietly(response.status_code, response.data, standin, sink,
                           capfd.readouterr().err)


def test_structured_event_missing_its_id_gets_400(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    response = make_function().post_raw({"content-type": CE_JSON}, structured(id=_DROP))
    assert response.status_code == 400
    assert standin.requests == []


def test_not_json_at_all_in_structured_mode_gets_400(
    standin: TaskCenterStandIn, make_function: FunctionFactory
) -> None:
    response = make_function().post_raw({"content-type": CE_JSON}, b"{not json")
    assert response.status_code == 400
    assert standin.requests == []


@pytest.mark.parametrize("shape", ["string", "array", "number", "null", "true"])
def test_structured_body_that_is_json_but_not_an_object_gets_400_and_no_delete(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str], shape: str,
) -> None:
    # The framework would try it as a legacy background event and crash (500, redelivered
    # forever); each of these wraps a valid event for a task that would be deleted.
    record = failed_task(EXPIRED)
    standin.add_job(record)
    event = json.loads(structured(data={"failure_job_id": record["resource_id"]}))
    body = {"string": json.dumps(json.dumps(event)), "array": json.dumps([event]),
            "number": "42", "null": "null", "true": "true"}[shape]

    response = make_function().post_raw({"content-type": CE_JSON}, body.encode())

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_cloudevent"
    assert standin.requests == []
    assert sink.events == []
    assert "Traceback" not in capfd.readouterr().err


def test_the_guard_leaves_the_frameworks_own_routing_answers_alone(
    standin: TaskCenterStandIn, make_function: FunctionFactory
) -> None:
    client = make_function().app.test_client()
    assert client.get("/").status_code == 405  # not a 400 "invalid CloudEvent"
    assert client.put("/", data=b"x").status_code == 405
    assert standin.requests == []


def test_a_value_error_from_our_own_code_is_a_500_not_a_dropped_event(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The guard decides by where the error is raised: the SDK's parse. The old one read
    # the traceback's file names, and a ValueError out of the json package (a json.loads
    # in our code) became a 400: the trigger dropped an event we had failed to handle.
    def our_bug(self: Reaper, request: object) -> object:
        return json.loads("{not json")

    record = failed_task(EXPIRED)
    standin.add_job(record)
    monkeypatch.setattr(Reaper, "handle", our_bug)

    response = make_function().send(FAILED, record)

    assert response.status_code == 500  # redelivered: a fixed version decides it
    assert standin.deletes() == []


# -- size and depth ------------------------------------------------------------------------


MEGABYTE = 1 << 20


@pytest.mark.parametrize("data", [
    {"failure_job_id": "a" * MEGABYTE},
    {"failure_job_id": ["x"] * (MEGABYTE // 5)},
    ["x" * MEGABYTE],
    {"nothing": "y" * MEGABYTE},
], ids=["huge-id", "huge-list-id", "huge-array", "huge-junk"])
def test_megabyte_bodies_are_rejected_without_any_request(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str], data: object,
) -> None:
    response = make_function().send(FAILED, data)
    assert_refused_quietly(response.status_code, response.data, standin, sink,
                           capfd.readouterr().err)
    [event] = sink.wait_for(1)
    assert len(json.dumps(data_of(event))) < 4096  # the input is not echoed


def test_megabyte_of_padding_around_a_real_task_is_decided_on_the_listing_not_the_payload(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    # The payload is a hint: its size buys nothing; the outcome carries the listed record.
    record = failed_task(EXPIRED)
    standin.add_job(record)
    response = make_function().send(FAILED, {**record, "padding": "p" * MEGABYTE})

    assert response.status_code == 200
    [event] = sink.wait_for(1)
    data = data_of(event)
    assert data["outcome"] == "deleted"
    assert "padding" not in data["job"]
    assert len(json.dumps(data)) < 8192


DEEP = 10_000


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("shape", ["arrays", "objects"])
def test_deeply_nested_json_is_refused_without_a_500(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str], mode: str, shape: str,
) -> None:
    nested = (b"[" * DEEP + b"]" * DEEP if shape == "arrays"
              else b'{"a":' * DEEP + b"1" + b"}" * DEEP)
    if mode == "binary":
        headers, body = binary_headers(), nested
    else:
        head = structured(data=None)[:-1]  # ..., "data": null}  ->  ..., "data": <nested>}
        headers, body = {"content-type": CE_JSON}, head.rsplit(b"null", 1)[0] + nested + b"}"
    response = make_function().post_raw(headers, body)
    assert_refused_quietly(response.status_code, response.data, standin, sink,
                           capfd.readouterr().err)


def test_deep_json_as_a_string_inside_data_is_rejected(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    # Data that is a JSON *string* holding deep JSON reaches our decoder, which copes.
    text = "[" * DEEP + "]" * DEEP
    response = make_function().send(FAILED, text)
    assert response.status_code == 200
    assert standin.requests == []
    assert kinds(sink.wait_for(1)) == ["rejected"]


# -- wrong types, path tricks, wrong projects --------------------------------------------------


WRONG_TYPES: list[object] = [0, 1.5, True, [], ["abc"], {}, {"id": "abc"}, float("inf")]


@pytest.mark.parametrize("field", [*ID_FIELDS, "dry_run", "force"])
def test_wrong_type_in_any_field_is_rejected_without_any_request(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory, field: str
) -> None:
    function = make_function()
    values = [v for v in WRONG_TYPES if not (field in ("dry_run", "force") and v is True)]
    for value in values:
        function.send(EXPIRY, {"failure_job_id": "0123456789abcdef", field: value})
    assert standin.requests == []
    assert kinds(sink.wait_for(len(values))) == ["rejected"] * len(values)


@pytest.mark.parametrize("event_type", [FAILED, EXPIRY])
def test_data_of_the_wrong_shape_is_rejected(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    event_type: str,
) -> None:
    function = make_function()
    shapes: list[object] = [[], "text", 42, 4.2, True, None, "", {}, {"job": {"job_id": "a"}}]
    for data in shapes:
        assert function.send(event_type, data).status_code == 200
    assert standin.requests == []
    assert kinds(sink.wait_for(len(shapes))) == ["rejected"] * len(shapes)


@pytest.mark.parametrize("field", ID_FIELDS)
def test_path_tricks_in_any_id_field_never_reach_the_api(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory, field: str
) -> None:
    function = make_function()
    for trick in PATH_TRICKS:
        response = function.send(FAILED, {"failure_job_id": "0123456789abcdef", field: trick})
        assert response.status_code == 200
    assert standin.requests == []
    events = sink.wait_for(len(PATH_TRICKS))
    for trick, event in zip(PATH_TRICKS, events, strict=True):
        outcome = data_of(event)
        assert outcome["outcome"] == "rejected", trick
        if len(trick) > 1:
            assert trick not in outcome["reason"]  # the hostile value is not echoed
        assert not CONTROL.search(json.dumps(dict(event.get_attributes())))
        assert not CONTROL.search(outcome["reason"])


@pytest.mark.parametrize("event_type", [SWEEP, FAILED])
def test_path_tricks_in_sweep_and_group_hints_never_reach_the_api(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    event_type: str,
) -> None:
    function = make_function()
    tricks: list[object] = ["../x", "a/b", "%2e%2e", 7, ["g"], {"id": "g"}, ""]
    for trick in tricks:
        data: dict[str, object] = {"server_group_id": trick}
        if event_type == FAILED:
            data["job_id"] = "ff808082686f229a0168707b9be9013e"
        function.send(event_type, data)
    assert standin.requests == []
    assert kinds(sink.wait_for(len(tricks))) == ["rejected"] * len(tricks)


def test_hostile_ids_in_the_listing_itself_never_reach_a_url(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    # The API is trusted for records, not for URL safety: a listed id must be a token too.
    for trick in ("../../x", "a/b", "%2F", "x" * 65, "", "a b"):
        standin.add_job(failed_task(EXPIRED, resource_id=trick))
    standin.add_group("../evil", "evil")
    standin.add_group("g/1", "slash")
    ok = failed_task(EXPIRED)
    standin.add_job(ok)
    function = make_function(SWEEP_EMIT_RETAINED="true")
    assert function.send(PING, {}).status_code == 200

    assert bad_delete_paths(standin.requests) == []
    assert standin.deletes() == [ok["resource_id"]]
    assert not [r for r in standin.requests if r.query.get("server_group_id")]
    failed = [data_of(e) for e in sink.events if kinds([e]) == ["delete_failed"]]
    assert len(failed) == 6
    assert all(d["error"]["code"] == "reaper.no_id" for d in failed)


@pytest.mark.parametrize("event_type", [FAILED, EXPIRY, SWEEP])
def test_another_project_is_rejected_without_any_request(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    event_type: str,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = make_function()
    projects = ["someoneelsesproject", PROJECT.upper(), PROJECT + "0", PROJECT[:-1]]
    for project in projects:
        function.send(event_type, {**record, "project_id": project}
                      if event_type != SWEEP else {"project_id": project})
    assert standin.requests == []
    events = sink.wait_for(len(projects))
    assert kinds(events) == ["rejected"] * len(projects)
    assert standin.listed(record["resource_id"])


def test_null_failure_job_id_next_to_a_valid_job_id_counts_as_absent(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    make_function().send(FAILED, {**record, "failure_job_id": None})
    assert kinds(sink.wait_for(1)) == ["deleted"]


# -- PingSource payloads ---------------------------------------------------------------------


@pytest.mark.parametrize("content_type,body", [
    ("application/json", b"{}"),
    ("application/json", b""),
    ("application/json", b"null"),
    ("application/json", b'{"dry_run": true}'),
], ids=["object", "empty", "null", "dry-run"])
def test_pingsource_with_empty_or_known_data_starts_a_sweep(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    content_type: str, body: bytes,
) -> None:
    headers = binary_headers(PING, **{"content-type": content_type})
    assert make_function().post_raw(headers, body).status_code == 200
    assert kinds(sink.wait_for(1)) == ["sweep_completed"]


@pytest.mark.parametrize("event_type", [PING, SWEEP])
@pytest.mark.parametrize("content_type,body", [
    ("application/json", b'{"dryrun": true}'),
    ("application/json", b'{"dry_run": "true"}'),
    ("application/json", b'{"dry_run": 1}'),
    ("application/json", b'["anything"]'),
    ("application/json", b"42"),
    ("text/plain", b"hello from the PingSource"),
    ("application/octet-stream", b"\xff\xfe\x00"),
    ("application/json", b'"a JSON string"'),
], ids=["typo", "string-true", "one", "array", "number", "text", "binary", "json-string"])
def test_sweep_data_that_is_not_empty_nor_known_is_rejected_and_sweeps_nothing(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    event_type: str, content_type: str, body: bytes,
) -> None:
    standin.add_job(failed_task(EXPIRED))
    headers = binary_headers(event_type, **{"content-type": content_type})
    assert make_function().post_raw(headers, body).status_code == 200
    [event] = sink.wait_for(1)
    assert kinds([event]) == ["rejected"]
    assert standin.requests == []


# -- replays ----------------------------------------------------------------------------------


def test_replayed_events_give_the_same_outcome_ids_and_one_delete(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = make_function()
    for structured_mode in (False, True, False):
        function.send(FAILED, record, event_id="replay-1", structured=structured_mode)
        function.send(EXPIRY, {"failure_job_id": "gone-0001"}, event_id="replay-2",
                      structured=structured_mode)
        function.send("com.example.nope", {}, event_id="replay-3", structured=structured_mode)

    assert standin.deletes() == [record["resource_id"]]
    # A repeat gets the first answer (docs/state.md) and decides nothing again: each
    # input has one outcome, reported once (the sink took them, so none is pending).
    events = sink.events
    assert kinds(events) == ["deleted", "already_deleted", "rejected"]
    assert [data_of(e)["causation"]["id"] for e in events] == ["replay-1", "replay-2",
                                                               "replay-3"]
    assert len({e["id"] for e in events}) == 3


def test_same_id_from_another_source_is_another_input(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    function = make_function()
    function.send(EXPIRY, {"failure_job_id": "gone-0002"}, event_id="same", source="/a")
    function.send(EXPIRY, {"failure_job_id": "gone-0002"}, event_id="same", source="/b")
    first, second = sink.wait_for(2)
    assert first["id"] != second["id"]


# -- policy files ------------------------------------------------------------------------------


BAD_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"default_retention": "banana"}, "default_retention"),
    ({"default_retention": None}, "default_retention"),
    ({"default_retention": -5}, "default_retention"),
    ({"keep_latest_per_resource": -1}, "keep_latest_per_resource"),
    ({"keep_latest_per_resource": "2"}, "keep_latest_per_resource"),
    ({"keep_latest_per_resource": 1.5}, "keep_latest_per_resource"),
    ({"clock_skew_tolerance": "forever"}, "clock_skew_tolerance"),
    ({"clock_skew_tolerance": []}, "clock_skew_tolerance"),
    ({"dry_run": "yes"}, "dry_run"),
    ({"dry_run": 1}, "dry_run"),
    ({"rules": "drills"}, "rules"),
    ({"rules": [{"retention": "1d"}]}, "rules[0].name"),
    ({"rules": [{"name": "", "retention": "1d"}]}, "rules[0].name"),
    ({"rules": [{"name": "default", "retention": "1d"}]}, "rules[0].name"),
    ({"rules": [{"name": "a"}]}, "rules[0].retention"),
    ({"rules": [{"name": "a", "retention": "soon"}]}, "rules[0].retention"),
    ({"rules": [{"name": "a", "retention": "1d", "match": "all"}]}, "rules[0].match"),
    ({"rules": [{"name": "a", "retention": "1d", "match": {"colour": "x"}}]},
     "rules[0].match.colour"),
    *[({"rules": [{"name": "a", "retention": "1d", "match": {f: 5}}]}, f"rules[0].match.{f}")
      for f in ("resource_type", "failure_status", "error_code", "resource_name", "job_type",
                "resource_id", "job_id", "server_group_id")],
    ({"rules": [{"name": "a", "retention": "1d", "match": {"job_id": []}}]},
     "rules[0].match.job_id"),
    ({"rules": [{"name": "a", "retention": "1d"}, {"name": "a", "retention": "2d"}]}, "rules"),
    ({"holds": ["x"]}, "holds"),
    ({"holds": {"resource_ids": 5}}, "holds.resource_ids"),
    ({"holds": {"resource_names": {"a": 1}}}, "holds.resource_names"),
    ({"holds": {"job_ids": [1]}}, "holds.job_ids[0]"),
    ({"holds": {"names": ["x"]}}, "holds.names"),
    ({"guards": {"max_deletions_per_sweep": -1}}, "guards.max_deletions_per_sweep"),
    ({"guards": {"max_deletions_per_sweep": "500"}}, "guards.max_deletions_per_sweep"),
    ({"guards": {"max_deletion_fraction": 0}}, "guards.max_deletion_fraction"),
    ({"guards": {"max_deletion_fraction": 1.01}}, "guards.max_deletion_fraction"),
    ({"guards": {"max_deletion_fraction": "half"}}, "guards.max_deletion_fraction"),
    ({"guards": 3}, "guards"),
    ({"retention": "7d"}, "retention"),
]


@pytest.mark.parametrize("policy,field", BAD_POLICIES, ids=lambda v: v if isinstance(v, str)
                         else None)
def test_invalid_policy_field_is_a_policy_error_naming_the_field(
    policy: dict[str, Any], field: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(policy, source="p")
    assert any(line.startswith(f"p: {field}:") for line in caught.value.problems), str(
        caught.value)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@pytest.mark.parametrize("policy,field", BAD_POLICIES[::4])
def test_invalid_policy_file_is_a_startup_error_naming_the_variable_and_field(
    standin: TaskCenterStandIn, tmp_path: Path, suffix: str, policy: dict[str, Any], field: str
) -> None:
    path = tmp_path / f"policy{suffix}"
    path.write_text(json.dumps(policy))  # JSON is YAML too
    with pytest.raises(ConfigError) as caught:
        build_components(settings_for(standin.url, RETENTION_POLICY_FILE=str(path)))
    message = str(caught.value)
    assert message.startswith(f"RETENTION_POLICY_FILE: policy file {path}: ")
    assert f": {field}:" in message


def test_policy_file_with_several_problems_stops_startup_with_one_line(
    standin: TaskCenterStandIn, clean_env: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"default_retention": "banana", "dry_run": "maybe"}))
    for name, value in {"SDRS_ENDPOINT": standin.url, "SDRS_PROJECT_ID": PROJECT,
                        "RETENTION_POLICY_FILE": str(path)}.items():
        clean_env.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        load_components_or_exit()
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "RETENTION_POLICY_FILE" in lines[0]
    assert "default_retention" in lines[0] and "dry_run" in lines[0]


# -- fuzzing -------------------------------------------------------------------------------


def json_like(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    scalars = (st.none() | st.booleans() | st.integers() | st.floats()
               | st.text(max_size=20) | st.sampled_from(PATH_TRICKS))
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=max_leaves,
    )


ID_LIKE = (st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True) | st.sampled_from(PATH_TRICKS)
           | st.text(max_size=70) | json_like(4))
EVENT_DATA = st.one_of(
    json_like(),
    st.fixed_dictionaries({}, optional={
        **{name: ID_LIKE for name in ID_FIELDS},
        "project_id": st.sampled_from([PROJECT, "other", None]) | ID_LIKE,
        "dry_run": json_like(2), "force": json_like(2),
    }),
    st.binary(max_size=40),
    st.text(max_size=40),
)
ATTRIBUTES = st.fixed_dictionaries(
    {"type": st.sampled_from([FAILED, EXPIRY, SWEEP, PING, "", "other"]) | json_like(2)},
    optional={"id": json_like(2), "source": json_like(2), "specversion": json_like(2),
              "traceparent": json_like(2), "tracestate": json_like(2)},
)


@settings(max_examples=400, deadline=None)
@given(attributes=ATTRIBUTES, data=EVENT_DATA)
def test_parse_cloudevent_never_raises_and_only_lets_plain_tokens_through(
    attributes: dict[str, Any], data: object
) -> None:
    request = parse_cloudevent(attributes, data, types=TYPES, project_id=PROJECT,
                               id_field="resource_id")
    assert isinstance(request, TaskRequest | SweepRequest | Rejected)
    if isinstance(request, TaskRequest):
        assert ID_TOKEN.match(request.task_id)
        assert request.match_field in ("resource_id", "job_id")
        assert request.server_group_id is None or ID_TOKEN.match(request.server_group_id)
        assert isinstance(data, dict | str | bytes)
        assert not request.force
    elif isinstance(request, SweepRequest):
        assert request.server_group_id is None or ID_TOKEN.match(request.server_group_id)
    else:
        assert request.task_id is None or ID_TOKEN.match(request.task_id)
        assert isinstance(request.reason, str) and request.reason


def test_fuzzed_event_data_through_the_function_is_200_or_4xx_and_deletes_only_tokens(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str],
) -> None:
    known = [failed_task(EXPIRED) for _ in range(5)]
    standin.add_jobs((record, None) for record in known)
    function = make_function(SWEEP_RATE_LIMIT="0")
    hints = st.sampled_from([r["resource_id"] for r in known] + [r["job_id"] for r in known])
    data_strategy = EVENT_DATA | st.fixed_dictionaries(
        {"failure_job_id": hints}, optional={"server_group_id": ID_LIKE, "extra": json_like(4)})
    statuses: list[int] = []

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(event_type=st.sampled_from([FAILED, EXPIRY, SWEEP, "x.other"]), data=data_strategy)
    def send(event_type: str, data: Any) -> None:
        if isinstance(data, bytes):
            data = data.decode("latin-1")
        response = function.send(event_type, data)
        statuses.append(response.status_code)
        assert response.status_code == 200 or 400 <= response.status_code < 500
        assert bad_delete_paths(standin.requests) == []

    send()
    assert statuses
    assert "Traceback" not in capfd.readouterr().err
    deleted = set(standin.deletes())
    assert deleted <= {r["resource_id"] for r in known}
