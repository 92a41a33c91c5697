"""The manual HTTP API (on_http) end to end: requests through functions-framework's
WSGI app, the stand-in over loopback, outcomes in a real HTTP sink."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cloudevents.conversion import to_structured
from hypothesis import given
from hypothesis import strategies as st
from openapi_spec_validator import validate
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from failjob_reaper.http_api import _models, _openapi, token_matches
from failjob_reaper.http_api._types import DELETE_FAILED_TYPE
from failjob_reaper.ids import is_valid_id
from failjob_reaper.outcomes import OUTCOMES, TYPE_PREFIX, Outcome, SweepSummary
from failjob_reaper.reaper import Reaper
from standin import Fault, OutcomeSink, TaskCenterStandIn
from tests.conftest import (
    EXPIRED,
    FRESH,
    PROJECT,
    ROOT,
    TOKEN,
    Function,
    FunctionFactory,
    data_of,
    failed_task,
)

API_TOKEN = "retry-api-token-Jb42xQ"
LIMIT = 8192
TRACEPARENT = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"

Call = Callable[..., TestResponse]


def call(
    function: Function,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    token: str | None = API_TOKEN,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> TestResponse:
    """One request to the function; ``body`` is sent as JSON unless ``raw`` is given."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers.setdefault("Authorization", f"Bearer {token}")
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if content_type is not None and data is not None:
        all_headers.setdefault("Content-Type", content_type)
    response: TestResponse = function.app.test_client().open(
        path, method=method, data=data, headers=all_headers, **kwargs
    )
    return response


@pytest.fixture
def api(make_function: FunctionFactory) -> Callable[..., Function]:
    """The on_http target with RETRY_API_TOKEN set (pass RETRY_API_TOKEN="" to unset it)."""

    def make(policy: dict[str, Any] | None = None, **env: str) -> Function:
        settings = {"RETRY_API_TOKEN": API_TOKEN, "HTTP_MAX_BODY_BYTES": str(LIMIT), **env}
        return make_function(target="on_http", signature="http", policy=policy, **settings)

    return make


def error_of(response: TestResponse) -> dict[str, str]:
    body = response.get_json()
    assert isinstance(body, dict) and set(body) == {"error"}, response.data
    error = body["error"]
    assert set(error) == {"code", "message"} and all(isinstance(v, str) for v in error.values())
    assert "Traceback" not in response.get_data(as_text=True)
    return dict(error)


# -- auth -------------------------------------------------------------------------


def test_without_a_configured_token_every_mutating_call_is_refused(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = api(RETRY_API_TOKEN="")

    for path, body in (("/retry", {"failure_job_id": record["resource_id"]}), ("/sweep", {})):
        for token in (None, API_TOKEN, ""):
            response = call(function, "POST", path, body, token=token)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "RETRY_API_TOKEN is not configured" in error_of(response)["message"]

    health = call(function, "GET", "/healthz", token=None)
    assert (health.status_code, health.get_json()) == (200, {"status": "ok"})
    assert call(function, "GET", "/openapi.json", token=None).status_code == 200
    assert standin.requests == []
    assert sink.events == []


AUTHORIZATIONS = [None, "", "Bearer", "Bearer ", f"Basic {API_TOKEN}", f"Bearer {API_TOKEN}x",
                  f"Bearer {API_TOKEN[:-1]}", "Bearer wrong", API_TOKEN, "Bearer ünï",
                  f"Bearer {API_TOKEN} x"]


def test_wrong_or_missing_token_is_401_before_anything_else(
    standin: TaskCenterStandIn,
    sink: OutcomeSink,
    api: Callable[..., Function],
    subtests: pytest.Subtests,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = api()
    # Even a body that would be 400/413/415 is refused for the token first.
    bodies: list[tuple[bytes, str]] = [
        (json.dumps({"failure_job_id": record["resource_id"]}).encode(), "application/json"),
        (b"{not json", "application/json"),
        (b"x" * (LIMIT * 4), "application/json"),
        (b"plain", "text/plain"),
    ]
    for authorization in AUTHORIZATIONS:
        headers = {} if authorization is None else {"Authorization": authorization}
        for path in ("/retry", "/sweep"):
            for raw, content_type in bodies:
                with subtests.test(authorization=authorization, path=path, body=raw[:12]):
                    response = call(function, "POST", path, raw=raw, content_type=content_type,
                                    token=None, headers=headers)
                    assert response.status_code == 401
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
                    assert error_of(response)["code"] == "unauthorized"
    assert standin.requests == []
    assert sink.events == []


def test_health_reveals_nothing_and_needs_no_token(
    standin: TaskCenterStandIn, api: Callable[..., Function]
) -> None:
    function = api()
    response = call(function, "GET", "/healthz", token=None)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    text = response.get_data(as_text=True) + str(response.headers)
    for secret_or_detail in (PROJECT, standin.url, API_TOKEN, TOKEN, "0.1.0"):
        assert secret_or_detail not in text
    head = call(function, "HEAD", "/healthz", token=None)
    assert (head.status_code, head.data) == (200, b"")
    assert standin.requests == []


def test_the_api_token_never_reaches_logs_outcomes_or_answers(
    standin: TaskCenterStandIn,
    sink: OutcomeSink,
    api: Callable[..., Function],
    capfd: pytest.CaptureFixture[str],
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = api(LOG_LEVEL="DEBUG")
    answers = [
        call(function, "POST", "/retry", {"failure_job_id": record["resource_id"]}),
        call(function, "POST", "/retry", {"failure_job_id": "x"}, token=API_TOKEN + "x"),
        call(function, "POST", "/retry", {"failure_job_id": "../" + API_TOKEN}),
        call(function, "POST", "/sweep", {"dry_run": True}),
    ]
    assert [a.status_code for a in answers] == [200, 401, 400, 200]
    out, err = capfd.readouterr()
    everything = out + err + "".join(str(e.get_attributes()) + str(e.data) for e in sink.events)
    everything += "".join(a.get_data(as_text=True) + str(a.headers) for a in answers)
    assert API_TOKEN not in everything
    assert TOKEN not in everything


def test_token_compare_is_exact() -> None:
    assert token_matches("abc", "abc")
    assert not token_matches("abc", "abcd")
    assert not token_matches("", "abc")
    assert token_matches("pässwörd", "pässwörd")
    assert not token_matches("passwort", "pässwörd")


# -- /retry -----------------------------------------------------------------------


def test_retry_deletes_an_expired_task_and_answers_the_outcome_it_emitted(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    response = call(
        api(), "POST", "/retry", {"failure_job_id": record["resource_id"]},
        headers={"Idempotency-Key": "op-ticket-42", "traceparent": TRACEPARENT},
    )

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert standin.deletes() == [record["resource_id"]]
    body = response.get_json()
    assert (body["outcome"], body["trigger"], body["status_code"]) == ("deleted", "http", 204)
    assert body["forced"] is False
    assert body["causation"] == {"id": "op-ticket-42", "source": "/http",
                                 "type": "http.retry"}
    [event] = sink.wait_for(1)
    assert event["type"] == "sdrs.failurejob.deleted"
    assert event["traceparent"] == TRACEPARENT
    assert data_of(event) == body
    assert Outcome.from_data(body).as_data() == body  # exactly the model's data


def test_retry_without_idempotency_key_gets_a_fresh_causation_id(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    function = api()
    ids = set()
    bad_traceparents = ["garbage", TRACEPARENT.upper(), "00-" + "0" * 32 + "-" + "d" * 16 + "-01",
                        "ff" + TRACEPARENT[2:]]
    # (A key that is no key is refused with 400: tests/test_hostile_edges.py.)
    for traceparent in bad_traceparents:
        headers = {"traceparent": traceparent, "tracestate": "k=v"}
        response = call(function, "POST", "/retry", {"failure_job_id": "gone-1"},
                        headers=headers)
        body = response.get_json()
        assert body["outcome"] == "already_deleted"
        ids.add(body["causation"]["id"])
    assert len(ids) == 4
    assert all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in ids)
    for event in sink.wait_for(4):
        assert "traceparent" not in event.get_attributes()
        assert "tracestate" not in event.get_attributes()


def test_retry_of_a_young_task_is_retained_unless_forced(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    record = failed_task(FRESH)
    standin.add_job(record)
    function = api()

    kept = call(function, "POST", "/retry", {"failure_job_id": record["resource_id"]})
    assert kept.get_json()["outcome"] == "retained"
    assert standin.deletes() == []

    dry = call(function, "POST", "/retry",
               {"failure_job_id": record["resource_id"], "force": True, "dry_run": True})
    assert (dry.get_json()["outcome"], dry.get_json()["forced"]) == ("would_delete", True)
    assert standin.deletes() == []

    forced = call(function, "POST", "/retry",
                  {"failure_job_id": record["resource_id"], "force": True})
    body = forced.get_json()
    assert (forced.status_code, body["outcome"], body["forced"], body["rule"]) == (
        200, "deleted", True, "forced")
    assert standin.deletes() == [record["resource_id"]]
    assert [data_of(e)["outcome"] for e in sink.wait_for(3)] == [
        "retained", "would_delete", "deleted"]


def test_force_never_deletes_a_held_task(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    held = failed_task(EXPIRED, resource_name="prod-db-01")
    standin.add_job(held)
    function = api(policy={"holds": {"resource_names": ["prod-*"]}})
    response = call(function, "POST", "/retry",
                    {"failure_job_id": held["resource_id"], "force": True})

    body = response.get_json()
    assert (response.status_code, body["outcome"], body["rule"], body["forced"]) == (
        200, "retained", "hold", False)
    assert standin.deletes() == []
    assert standin.listed(held["resource_id"])


def test_retry_with_a_server_group_hint_looks_there(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    group = "a1b2c3d4-0000-4000-8000-000000000009"
    standin.add_group(group, "group-z")
    record = failed_task(EXPIRED)
    standin.add_job(record, group)
    response = call(api(), "POST", "/retry",
                    {"failure_job_id": record["resource_id"], "server_group_id": group})

    body = response.get_json()
    assert (body["outcome"], body["server_group_id"]) == ("deleted", group)


def test_a_delete_failed_outcome_event_can_be_posted_back_as_is(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/", Fault(403))
    function = api()
    first = call(function, "POST", "/retry", {"failure_job_id": record["resource_id"]})
    assert (first.status_code, first.get_json()["outcome"]) == (200, "delete_failed")
    [failed] = sink.wait_for(1)
    assert failed["type"] == TYPE_PREFIX + "delete_failed"

    headers, body = to_structured(failed)  # exactly what an alerting consumer would hold
    retried = call(function, "POST", "/retry", raw=body,
                   content_type=headers["content-type"])

    assert headers["content-type"].startswith("application/cloudevents+json")
    assert retried.status_code == 200
    assert retried.get_json()["outcome"] == "deleted"
    assert retried.get_json()["causation"]["type"] == "http.retry"
    assert standin.deletes() == [record["resource_id"]] * 2


def test_an_event_cannot_force(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    record = failed_task(FRESH)
    standin.add_job(record)
    event = _delete_failed_event({"failure_job_id": record["resource_id"], "force": True,
                                  "project_id": PROJECT})
    response = call(api(), "POST", "/retry", event, content_type="application/cloudevents+json")

    assert response.get_json()["outcome"] == "retained"
    assert standin.deletes() == []


def test_transient_failure_is_answered_200_with_a_retryable_outcome(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/", *[Fault(503)] * 2)
    response = call(api(SDRS_MAX_ATTEMPTS="2"), "POST", "/retry",
                    {"failure_job_id": record["resource_id"]})

    body = response.get_json()
    assert response.status_code == 200
    assert (body["outcome"], body["error"]["retryable"], body["attempts"]) == (
        "delete_failed", True, 2)
    assert data_of(sink.wait_for(1)[0]) == body


def test_sink_down_is_503_and_the_call_can_be_repeated(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    sink.inject(Fault(503))
    function = api(OUTCOME_SINK_ATTEMPTS="1")
    body = {"failure_job_id": record["resource_id"]}

    first = call(function, "POST", "/retry", body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 503
    assert error_of(first)["code"] == "outcome_not_delivered"
    assert "Retry-After" in first.headers

    # The same Idempotency-Key gets the outcome decided the first time, now delivered.
    second = call(function, "POST", "/retry", body, headers={"Idempotency-Key": "k1"})
    assert (second.status_code, second.get_json()["outcome"]) == (200, "deleted")
    assert standin.deletes() == [record["resource_id"]]
    assert [e["type"] for e in sink.wait_for(1)] == [TYPE_PREFIX + "deleted"]


# -- /sweep -----------------------------------------------------------------------


def test_sweep_dry_run_answers_a_summary_and_deletes_nothing(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    standin.add_job(failed_task(EXPIRED))
    standin.add_job(failed_task(EXPIRED))
    standin.add_job(failed_task(FRESH))
    response = call(api(), "POST", "/sweep", {"dry_run": True})

    body = response.get_json()
    assert response.status_code == 200
    assert (body["outcome"], body["trigger"], body["dry_run"]) == ("sweep_completed", "http", True)
    assert (body["listed"], body["deleted"]) == (3, 0)
    assert body["outcomes"]["would_delete"] == 2
    assert body["outcomes"]["retained"] == 1
    assert body["causation"]["type"] == "http.sweep"
    assert standin.deletes() == []
    assert SweepSummary.from_data(body).as_data() == body
    completed = sink.of_type(TYPE_PREFIX + "sweep_completed")
    assert [data_of(e) for e in completed] == [body]


@pytest.mark.parametrize("raw", [None, b"", b"  \n", b"{}"], ids=repr)
def test_sweep_without_options_deletes_what_expired(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function],
    raw: bytes | None,
) -> None:
    expired, fresh = failed_task(EXPIRED), failed_task(FRESH)
    standin.add_job(expired)
    standin.add_job(fresh)
    content_type = None if raw is None else "application/json"
    response = call(api(), "POST", "/sweep", raw=raw, content_type=content_type)

    assert response.status_code == 200
    assert response.get_json()["deleted"] == 1
    assert standin.deletes() == [expired["resource_id"]]


# -- bad input --------------------------------------------------------------------


def _delete_failed_event(data: Any, **attributes: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "e-1", "source": "failjob-reaper",
            "type": TYPE_PREFIX + "delete_failed", "datacontenttype": "application/json",
            "data": data, **attributes}


GOOD = "0123456789abcdef"
BAD_ID_STRINGS = ["a/b", "../../v1/other", "..", "%2e%2e", "abc%2Fdef", "has space", "x" * 65,
                  "", "tab\there", "new\nline", "ünïcode", "abc\n"]
CE = "application/cloudevents+json"

BAD_REQUESTS: list[tuple[str, dict[str, Any], int]] = [
    ("malformed json", {"raw": b'{"failure_job_id": '}, 400),
    ("json array", {"body": [{"failure_job_id": GOOD}]}, 400),
    ("json string", {"body": GOOD}, 400),
    ("json null", {"raw": b"null"}, 400),
    ("empty body", {"raw": b""}, 400),
    ("no body", {"raw": None, "content_type": None}, 400),
    ("not utf-8", {"raw": b'{"failure_job_id": "\xff"}'}, 400),
    ("NaN", {"raw": b'{"failure_job_id": "a", "attempts": NaN}'}, 400),
    ("duplicate key", {"raw": b'{"failure_job_id": "a", "failure_job_id": "../b"}'}, 400),
    ("deep nesting", {"raw": b"[" * 1000 + b"]" * 1000}, 400),
    ("unknown field", {"body": {"failure_job_id": GOOD, "forse": True}}, 400),
    ("project_id field", {"body": {"failure_job_id": GOOD, "project_id": PROJECT}}, 400),
    ("job_id instead", {"body": {"job_id": GOOD}}, 400),
    ("missing id", {"body": {"dry_run": True}}, 400),
    ("id is a number", {"body": {"failure_job_id": 123}}, 400),
    ("id is null", {"body": {"failure_job_id": None}}, 400),
    ("id is a list", {"body": {"failure_job_id": [GOOD]}}, 400),
    ("dry_run is a string", {"body": {"failure_job_id": GOOD, "dry_run": "yes"}}, 400),
    ("force is 1", {"body": {"failure_job_id": GOOD, "force": 1}}, 400),
    ("force is null", {"body": {"failure_job_id": GOOD, "force": None}}, 400),
    ("group is a number", {"body": {"failure_job_id": GOOD, "server_group_id": 7}}, 400),
    *[(f"bad id {bad!r}", {"body": {"failure_job_id": bad}}, 400) for bad in BAD_ID_STRINGS],
    *[(f"bad group {bad!r}", {"body": {"failure_job_id": GOOD, "server_group_id": bad}}, 400)
      for bad in BAD_ID_STRINGS],
    ("query string", {"body": {"failure_job_id": GOOD}, "query_string": "dry_run=true"}, 400),
    ("text/plain", {"raw": b'{"failure_job_id": "a"}', "content_type": "text/plain"}, 415),
    ("form", {"raw": b"failure_job_id=a",
              "content_type": "application/x-www-form-urlencoded"}, 415),
    ("json look-alike", {"body": {"failure_job_id": GOOD},
                         "content_type": "application/json-patch+json"}, 415),
    ("latin-1 charset", {"body": {"failure_job_id": GOOD},
                         "content_type": "application/json; charset=latin-1"}, 415),
    ("body without content type", {"body": {"failure_job_id": GOOD}, "content_type": None}, 415),
    ("too large by length", {"body": {"failure_job_id": GOOD, "pad": "x" * LIMIT}}, 413),
    ("ce of another type", {"body": {**_delete_failed_event({"failure_job_id": GOOD}),
                                     "type": TYPE_PREFIX + "deleted"}, "content_type": CE}, 400),
    ("ce of the input type", {"body": {**_delete_failed_event({"failure_job_id": GOOD}),
                                       "type": "sdrs.job.failed"}, "content_type": CE}, 400),
    ("ce without data", {"body": {k: v for k, v in _delete_failed_event({}).items()
                                  if k != "data"}, "content_type": CE}, 400),
    ("ce with a bad id", {"body": _delete_failed_event({"failure_job_id": "../x"}),
                          "content_type": CE}, 400),
    ("ce of another project", {"body": _delete_failed_event(
        {"failure_job_id": GOOD, "project_id": "someoneelsesproject"}), "content_type": CE}, 400),
    ("ce with data as a string", {"body": _delete_failed_event(json.dumps(
        {"failure_job_id": GOOD})), "content_type": CE}, 400),
    ("ce without specversion", {"body": {k: v for k, v in _delete_failed_event(
        {"failure_job_id": GOOD}).items() if k != "specversion"}, "content_type": CE}, 400),
    ("ce posted as json", {"body": _delete_failed_event({"failure_job_id": GOOD})}, 400),
]

BAD_SWEEPS: list[tuple[str, dict[str, Any], int]] = [
    ("unknown field", {"body": {"dry_run": True, "dryrun": True}}, 400),
    ("dry_run is a string", {"body": {"dry_run": "false"}}, 400),
    ("dry_run is null", {"body": {"dry_run": None}}, 400),
    ("dry_run twice", {"raw": b'{"dry_run": true, "dry_run": false}'}, 400),
    ("json string", {"body": "true"}, 400),
    ("bad group", {"body": {"server_group_id": "../x"}}, 400),
    ("another project", {"body": {"project_id": "someoneelsesproject"}}, 400),
    ("array", {"body": [True]}, 400),
    ("malformed", {"raw": b"{dry_run: true}"}, 400),
    ("text/plain", {"raw": b"{}", "content_type": "text/plain"}, 415),
    ("cloudevent", {"body": {}, "content_type": CE}, 415),
    ("query string", {"body": {}, "query_string": "dry_run=true"}, 400),
    ("too large", {"body": {"dry_run": True, "x": "y" * LIMIT}}, 413),
]


def test_bad_input_gets_a_4xx_error_body_and_no_request_at_all(
    standin: TaskCenterStandIn,
    sink: OutcomeSink,
    api: Callable[..., Function],
    subtests: pytest.Subtests,
) -> None:
    standin.add_job(failed_task(EXPIRED, resource_id=GOOD))
    function = api()
    for path, cases in (("/retry", BAD_REQUESTS), ("/sweep", BAD_SWEEPS)):
        for name, kwargs, status in cases:
            with subtests.test(f"{path} {name}"):
                response = call(function, "POST", path, **kwargs)
                assert response.status_code == status, response.get_data(as_text=True)
                assert error_of(response)["message"]
                assert standin.requests == []
    assert sink.events == []


def test_bad_id_errors_name_the_rule(api: Callable[..., Function]) -> None:
    response = call(api(), "POST", "/retry", {"failure_job_id": "../../etc"})
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert "letters, digits" in error["message"]


ROUTING: list[tuple[str, str, int, str | None]] = [
    ("GET", "/", 404, None),
    ("POST", "/", 404, None),
    ("POST", "/retry/", 404, None),
    ("POST", "/v1/retry", 404, None),
    ("GET", "/openapi.yaml", 404, None),
    ("GET", "/retry", 405, "POST"),
    ("PUT", "/retry", 405, "POST"),
    ("DELETE", "/sweep", 405, "POST"),
    ("OPTIONS", "/sweep", 405, "POST"),
    ("POST", "/healthz", 405, "GET, HEAD"),
    ("DELETE", "/openapi.json", 405, "GET, HEAD"),
]


def test_unknown_paths_and_methods(
    standin: TaskCenterStandIn,
    sink: OutcomeSink,
    api: Callable[..., Function],
    subtests: pytest.Subtests,
) -> None:
    function = api()
    for method, path, status, allow in ROUTING:
        with subtests.test(method=method, path=path):
            response = call(function, method, path, {"failure_job_id": GOOD})
            assert response.status_code == status
            code = "not_found" if status == 404 else "method_not_allowed"
            assert error_of(response)["code"] == code
            assert response.headers.get("Allow") == allow
    assert standin.requests == []


class _CountingStream(io.RawIOBase):
    """An upload of ``size`` bytes that records how much of it was read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self.consumed)
        buffer[:n] = b" " * n
        self.consumed += n
        return n


def test_a_chunked_upload_is_never_read_past_the_limit(
    standin: TaskCenterStandIn,
    sink: OutcomeSink,
    api: Callable[..., Function],
    subtests: pytest.Subtests,
) -> None:
    function = api()
    for path in ("/retry", "/sweep", "/nowhere"):
        for token in (API_TOKEN, "wrong"):
            with subtests.test(path=path, token=token):
                stream = _CountingStream(50 * LIMIT)
                response = call(
                    function, "POST", path, token=token,
                    headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                    environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True},
                )
                expected = 404 if path == "/nowhere" else 401 if token == "wrong" else 413
                assert response.status_code == expected
                error_of(response)
                # Neither the adapter nor functions-framework read the rest of it.
                assert stream.consumed <= LIMIT + 1
    assert standin.requests == []


@contextlib.contextmanager
def served_over_a_socket(function: Function) -> Iterator[http.client.HTTPConnection]:
    server = make_server("127.0.0.1", 0, function.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    try:
        yield connection
    finally:
        connection.close()
        server.shutdown()
        thread.join()


def test_over_a_real_socket_a_chunked_upload_gets_413(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"failure_job_id": "abc", "pad": "'
        for _ in range(64):
            yield b"x" * LIMIT
        yield b'"}'

    with served_over_a_socket(api()) as connection:
        connection.request("POST", "/retry", body=chunks(), encode_chunked=True, headers={
            "Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})
        response = connection.getresponse()
        payload = json.loads(response.read())
    assert response.status == 413
    assert payload["error"]["code"] == "payload_too_large"
    assert standin.requests == []


def test_over_a_real_socket_a_non_ascii_token_is_compared_as_its_utf8_bytes(
    standin: TaskCenterStandIn, sink: OutcomeSink, api: Callable[..., Function]
) -> None:
    token = "pässwörd-token-Ünï-42"
    answers = []
    with served_over_a_socket(api(RETRY_API_TOKEN=token)) as connection:
        for sent in (token.encode(), token.encode("latin-1"), b"p\xe4ssw\xf6rd"):
            connection.request("POST", "/sweep", body=b'{"dry_run": true}', headers={
                "Authorization": b"Bearer " + sent, "Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            answers.append(response.status)
    assert answers == [200, 401, 401]
    assert standin.deletes() == []


def test_unexpected_errors_are_a_bare_500(
    standin: TaskCenterStandIn, api: Callable[..., Function], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals /etc/passwd")

    function = api()
    monkeypatch.setattr(Reaper, "handle", boom)
    response = call(function, "POST", "/retry", {"failure_job_id": GOOD})

    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_error"
    assert "secret internals" not in response.get_data(as_text=True)
    assert standin.requests == []


# -- the OpenAPI document -----------------------------------------------------------


def test_the_openapi_document_is_public_valid_and_complete(
    standin: TaskCenterStandIn, api: Callable[..., Function]
) -> None:
    function = api(RETRY_API_TOKEN="")
    response = call(function, "GET", "/openapi.json", token=None)
    assert response.status_code == 200
    document = response.get_json()
    validate(document)

    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "The value of RETRY_API_TOKEN."}
    paths = document["paths"]
    assert set(paths) == {"/retry", "/sweep", "/healthz", "/openapi.json"}
    for path in ("/retry", "/sweep"):
        operation = paths[path]["post"]
        assert operation["security"] == [{"bearerAuth": []}]
        assert set(operation["responses"]) == {
            "200", "400", "401", "405", "409", "413", "415", "422", "500", "503"}
        for code, answer in operation["responses"].items():
            if code != "200":
                assert answer["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"}
    assert set(paths["/retry"]["post"]["requestBody"]["content"]) == {
        "application/json", "application/cloudevents+json"}
    for path in ("/healthz", "/openapi.json"):
        assert paths[path]["get"]["security"] == []
    retry = document["components"]["schemas"]["RetryRequest"]
    assert retry["additionalProperties"] is False
    assert retry["required"] == ["failure_job_id"]
    # Nothing deployment-specific in a public document.
    text = response.get_data(as_text=True)
    assert PROJECT not in text and standin.url not in text
    assert call(function, "GET", "/openapi.json", token=None).data == response.data


def test_the_documented_sweep_body_is_what_the_one_sweep_parser_accepts() -> None:
    from failjob_reaper import events

    assert set(_models.SweepBody.model_fields) == events._SWEEP_KEYS
    schema = json.loads(_openapi.document_bytes())["components"]["schemas"]["SweepBody"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == events._SWEEP_KEYS - {"project_id"}  # names no project


def test_openapi_outcome_names_match_the_core() -> None:
    schemas = json.loads(_openapi.document_bytes())["components"]["schemas"]
    assert tuple(schemas["Outcome"]["properties"]["outcome"]["enum"]) == OUTCOMES
    assert tuple(schemas["OutcomeCounts"]["properties"]) == OUTCOMES
    assert DELETE_FAILED_TYPE == TYPE_PREFIX + "delete_failed"


def _ecma_pattern_matches(value: str) -> bool:
    # JSON Schema patterns are ECMA 262: `$` does not match before a trailing newline.
    python = _models.ID_PATTERN.removesuffix("$") + r"\Z"
    return re.search(python, value) is not None


@given(st.one_of(st.text(max_size=70), st.from_regex(r"[A-Za-z0-9_-]{0,66}\n?", fullmatch=True)))
def test_the_documented_id_pattern_is_the_id_rule(value: str) -> None:
    assert _ecma_pattern_matches(value) == is_valid_id(value)


def test_importing_the_adapters_builds_no_model_and_no_document() -> None:
    code = ("import sys, handlers.http, handlers.functiongraph; "
            "assert 'failjob_reaper.http_api._models' not in sys.modules, 'models built'; "
            "assert 'failjob_reaper.http_api._openapi' not in sys.modules, 'document built'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
