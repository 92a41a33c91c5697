"""The framework-neutral HTTP core, called as a plain function: no Flask, no WSGI.

``serve(app, HttpRequest) -> HttpResponse`` over an app built from settings; the
task-center stand-in answers over loopback and outcomes land in a real HTTP sink.
The adapters' own tests (tests/test_http_api.py through functions-framework,
tests/test_functiongraph.py through ``main.handler``) cover the same paths end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from failjob_reaper.components import Components, build_components
from failjob_reaper.http_api import HttpRequest, HttpResponse, header_map, serve
from standin import OutcomeSink, TaskCenterStandIn
from tests.conftest import EXPIRED, FRESH, PROJECT, ROOT, data_of, failed_task
from tests.reliability_support import settings_for

API_TOKEN = "core-token-Vb7Rk2mQ"
LIMIT = 16384
AUTH = {"authorization": f"Bearer {API_TOKEN}"}
JSON_BODY = {**AUTH, "content-type": "application/json"}


@pytest.fixture
def app(standin: TaskCenterStandIn, sink: OutcomeSink) -> Iterator[Components]:
    built = build_components(settings_for(standin.url, K_SINK=sink.url, RETRY_API_TOKEN=API_TOKEN,
                                   HTTP_MAX_BODY_BYTES=str(LIMIT)))
    yield built


class Reader:
    """A streamed body that records whether (and with which limit) it was read."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data
        self.limits: list[int] = []

    def __call__(self, limit: int) -> bytes | None:
        self.limits.append(limit)
        return self.data if self.data is not None and len(self.data) <= limit else None


def post(app: Components, path: str, body: Any = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> HttpResponse:
    data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
    return serve(app, HttpRequest("POST", path, JSON_BODY if headers is None else headers, data))


def error_of(response: HttpResponse) -> dict[str, str]:
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    return dict(body["error"])


def test_retry_deletes_and_answers_the_outcome_it_emitted(
    app: Components, standin: TaskCenterStandIn, sink: OutcomeSink
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)

    response = post(app, "/retry", {"failure_job_id": record["resource_id"]},
                    headers={**JSON_BODY, "idempotency-key": "ticket-7"})

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert isinstance(body, dict)
    assert (body["outcome"], body["trigger"], body["causation"]["id"]) == (
        "deleted", "http", "ticket-7")
    assert standin.deletes() == [record["resource_id"]]
    assert data_of(sink.wait_for(1)[0]) == body


def test_sweep_answers_its_summary(
    app: Components, standin: TaskCenterStandIn, sink: OutcomeSink
) -> None:
    expired, fresh = failed_task(EXPIRED), failed_task(FRESH)
    standin.add_job(expired)
    standin.add_job(fresh)

    dry = post(app, "/sweep", {"dry_run": True})
    real = serve(app, HttpRequest("POST", "/sweep", AUTH))  # no body at all: a real sweep

    assert dry.status == real.status == 200
    dry_body, real_body = dry.json(), real.json()
    assert isinstance(dry_body, dict) and isinstance(real_body, dict)
    assert (dry_body["dry_run"], dry_body["outcomes"]["would_delete"]) == (True, 1)
    assert (real_body["dry_run"], real_body["deleted"]) == (False, 1)
    assert standin.deletes() == [expired["resource_id"]]


def test_a_sweep_of_one_protection_group_lists_only_there(
    app: Components, standin: TaskCenterStandIn
) -> None:
    group = "a1b2c3d4-0000-4000-8000-00000000000c"
    standin.add_group(group, "group-c")
    inside, outside = failed_task(EXPIRED), failed_task(EXPIRED)
    standin.add_job(inside, group)
    standin.add_job(outside)

    response = post(app, "/sweep", {"server_group_id": group})

    body = response.json()
    assert isinstance(body, dict)
    assert (response.status, body["server_group_id"], body["deleted"]) == (200, group, 1)
    assert standin.deletes() == [inside["resource_id"]]


REFUSED_BEFORE_THE_BODY: list[tuple[str, str, dict[str, str], int]] = [
    ("POST", "/nowhere", AUTH, 404),
    ("GET", "/retry", AUTH, 405),
    ("PUT", "/sweep", AUTH, 405),
    ("POST", "/retry", {}, 401),
    ("POST", "/sweep", {"authorization": "Bearer wrong-token-0000"}, 401),
    ("POST", "/retry", {"authorization": f"Basic {API_TOKEN}"}, 401),
]


@pytest.mark.parametrize(("method", "path", "headers", "status"), REFUSED_BEFORE_THE_BODY)
def test_404_405_and_401_come_before_the_body_is_read(
    app: Components, standin: TaskCenterStandIn, method: str, path: str, headers: dict[str, str],
    status: int,
) -> None:
    reader = Reader(b'{"failure_job_id": "0123456789abcdef"}')

    response = serve(app, HttpRequest(method, path, headers, reader))

    assert response.status == status
    assert reader.limits == []  # not a byte of it was read
    assert standin.requests == []
    if status == 405:
        assert response.headers["Allow"] == "POST"
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_body_is_read_once_and_never_past_the_limit(
    app: Components, standin: TaskCenterStandIn
) -> None:
    over = Reader(None)  # a stream longer than the limit
    response = serve(app, HttpRequest("POST", "/retry", JSON_BODY, over))
    assert (response.status, error_of(response)["code"]) == (413, "payload_too_large")
    assert over.limits == [LIMIT]

    too_long = post(app, "/retry", raw=b"{" + b" " * LIMIT + b"}")
    assert too_long.status == 413
    assert standin.requests == []


@pytest.mark.parametrize(("raw", "code"), [
    (b'{"failure_job_id": "a", "failure_job_id": "b"}', "invalid_json"),
    (b'{"failure_job_id": "a", "dry_run": NaN}', "invalid_json"),
    (b'{"failure_job_id": "a", "n": ' + b"9" * 5000 + b"}", "invalid_json"),
    (b"[" * 5000 + b"]" * 5000, "invalid_json"),
    (b'{"failure_job_id": "\xff"}', "invalid_json"),
    (b'["0123456789abcdef"]', "invalid_request"),
    (b'{"failure_job_id": "0123456789abcdef", "forse": true}', "invalid_request"),
    (b'{"failure_job_id": 5}', "invalid_request"),
    (b'{"failure_job_id": "../other"}', "invalid_input"),
    (b'{"failure_job_id": "ok", "server_group_id": "a/b"}', "invalid_input"),
], ids=["duplicate-key", "nan", "5000-digits", "deep", "not-utf8", "array", "unknown-field",
        "number-id", "path-trick", "group-trick"])
def test_bad_bodies_are_400_with_a_code_and_no_request(
    app: Components, standin: TaskCenterStandIn, sink: OutcomeSink, raw: bytes, code: str
) -> None:
    response = post(app, "/retry", raw=raw)

    assert response.status == 400
    assert error_of(response)["code"] == code
    assert standin.requests == []
    assert sink.events == []


def test_a_delete_failed_event_is_retried_and_another_project_is_refused(
    app: Components, standin: TaskCenterStandIn, sink: OutcomeSink
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    def event(project_id: str) -> dict[str, Any]:
        return {"specversion": "1.0", "id": "e-1", "source": "failjob-reaper",
                "type": "sdrs.failurejob.delete_failed",
                "data": {"failure_job_id": record["resource_id"], "force": True,
                         "project_id": project_id}}

    headers = {**AUTH, "content-type": "application/cloudevents+json; charset=utf-8"}

    other = event("someoneelsesproject")
    refused = post(app, "/retry", other, headers=headers)
    assert (refused.status, error_of(refused)["code"]) == (400, "invalid_input")
    assert "someoneelsesproject" in error_of(refused)["message"]
    assert standin.requests == []

    same = event(PROJECT)
    answered = post(app, "/retry", same, headers=headers)
    body = answered.json()
    assert isinstance(body, dict)
    assert (answered.status, body["outcome"], body["forced"]) == (200, "deleted", False)
    assert standin.deletes() == [record["resource_id"]]


def test_health_head_and_the_document_need_no_token(app: Components) -> None:
    health = serve(app, HttpRequest("GET", "/healthz"))
    head = serve(app, HttpRequest("HEAD", "/healthz"))
    document = serve(app, HttpRequest("GET", "/openapi.json"))

    assert (health.status, health.json()) == (200, {"status": "ok"})
    assert (head.status, head.body) == (200, b"")
    body = document.json()
    assert isinstance(body, dict) and body["openapi"].startswith("3.1")


def test_a_query_string_is_refused_not_ignored(app: Components, standin: TaskCenterStandIn) -> None:
    request = HttpRequest("POST", "/sweep", JSON_BODY, b'{"dry_run": false}', "dry_run=true")
    response = serve(app, request)
    assert (response.status, error_of(response)["code"]) == (400, "invalid_request")
    assert standin.requests == []


def test_an_unexpected_error_is_a_bare_500(
    app: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> None:
        raise ValueError("secret internals")

    monkeypatch.setattr(app.reaper, "handle", boom)
    response = post(app, "/retry", {"failure_job_id": "0123456789abcdef"})
    assert (response.status, error_of(response)["code"]) == (500, "internal_error")
    assert b"secret" not in response.body


def test_header_names_are_case_insensitive_and_the_first_value_wins() -> None:
    headers = header_map([("Authorization", "Bearer one"), ("AUTHORIZATION", "Bearer two"),
                          ("Content-Type", "application/json")])
    request = HttpRequest("POST", "/retry", headers)
    assert request.header("authorization") == "Bearer one"
    assert request.header("Content-Type") == "application/json"




def test_the_core_and_the_functiongraph_adapter_import_no_web_framework() -> None:
    code = ("import sys, failjob_reaper.http_api, handlers.functiongraph; "
            "loaded = sorted(m for m in ('flask', 'werkzeug') if m in sys.modules); "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
