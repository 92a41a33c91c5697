"""The FunctionGraph entry point ``main.handler(event, context)`` end to end.

main.py is imported the way the FunctionGraph Python runtime does it (a module
loaded from the code directory, settings in the environment), then called with
the real payload shapes of the timer, EventGrid and APIG triggers and a test
double of the FunctionGraph context. The stand-in answers over loopback; the
outcomes land in a real HTTP sink.
"""

from __future__ import annotations

import base64
import importlib.util
import itertools
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from failjob_reaper.sdrs import MissingCredentials, RotatingAkSkAuth
from failjob_reaper.settings import ENV_VARS
from handlers.functiongraph import (
    ConfigurationFailed,
    InvalidEvent,
    RetryLater,
    on_functiongraph,
    sweep_deadline,
)
from standin import Fault, OutcomeSink, TaskCenterStandIn
from tests.conftest import (
    EXPIRED,
    FRESH,
    PROJECT,
    ROOT,
    SK,
    TOKEN,
    apply_env,
    data_of,
    failed_task,
)

API_TOKEN = "fg-retry-token-Pw93"
AGENCY = {  # two generations of the agency's temporary credentials
    1: ("AGENCYAK1EXAMPLE", "agency-sk-one-Q7t", "agency-security-token-one-a1"),
    2: ("AGENCYAK2EXAMPLE", "agency-sk-two-Z2m", "agency-security-token-two-b2"),
}
TIMER_TIME = "2024-06-01T08:30:00+08:00"

_module_seq = itertools.count(1)


@dataclass
class FakeContext:
    """A test double of FunctionGraph's context object (the documented methods)."""

    remaining_ms: int = 300_000
    ak: str = ""
    sk: str = ""
    token: str = ""
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    user_data: dict[str, str] = field(default_factory=dict)

    def getRequestID(self) -> str:
        return self.request_id

    def getRemainingTimeInMilliSeconds(self) -> int:
        return self.remaining_ms

    def getSecurityAccessKey(self) -> str:
        return self.ak

    def getSecuritySecretKey(self) -> str:
        return self.sk

    def getSecurityToken(self) -> str:
        return self.token

    def getUserData(self, key: str, default: str | None = None) -> str | None:
        return self.user_data.get(key, default)

    def getLogger(self) -> logging.Logger:
        return logging.getLogger("functiongraph-test")


def agency_context(generation: int, **kwargs: Any) -> FakeContext:
    ak, sk, token = AGENCY[generation]
    return FakeContext(ak=ak, sk=sk, token=token, **kwargs)


@dataclass
class Function:
    module: ModuleType

    def __call__(self, event: Any, context: FakeContext | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.module.handler(event, context or FakeContext())
        json.dumps(result)  # FunctionGraph serialises what the handler returns
        return result


FunctionGraph = Callable[..., Function]


@pytest.fixture
def functiongraph(
    clean_env: pytest.MonkeyPatch, base_env: dict[str, str], tmp_path: Path
) -> FunctionGraph:
    """Import main.py as the FunctionGraph runtime does, with these settings."""

    def load(policy: dict[str, Any] | None = None, **env: str) -> Function:
        settings = {
            **base_env,
            "RUNTIME_FUNC_NAME": "failjob-reaper",
            "RUNTIME_PROJECT_ID": PROJECT,
            "RETRY_API_TOKEN": API_TOKEN,
            **env,
        }
        clean_env.delenv("FUNCTION_TARGET", raising=False)
        if policy is not None:
            path = tmp_path / f"policy-{next(_module_seq)}.json"
            path.write_text(json.dumps(policy))
            settings["RETENTION_POLICY_FILE"] = str(path)
        apply_env(clean_env, settings)
        spec = importlib.util.spec_from_file_location(
            f"main_functiongraph_{next(_module_seq)}", ROOT / "main.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return Function(module)

    return load


def timer_event(user_event: str | None = '{"dry_run": false}') -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "v1.0",
        "time": TIMER_TIME,
        "trigger_type": "TIMER",
        "trigger_name": "failjob-reaper-sweep",
    }
    if user_event is not None:
        event["user_event"] = user_event
    return event


def eventgrid_event(data: Any, event_type: str = "sdrs.job.failed",
                    event_id: str | None = None) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "sdrs-task-center",
        "type": event_type,
        "datacontenttype": "application/json",
        "time": "2024-06-01T00:30:00Z",
        "subject": "failure-job",
        "data": data,
    }


def apig_event(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    token: str | None = API_TOKEN,
    base64_body: bool = True,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    all_headers = {"host": "reaper.apig.example.com", "user-agent": "curl/8.5.0",
                   "x-request-id": str(uuid.uuid4()), **(headers or {})}
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    if body is not None:
        all_headers.setdefault("content-type", "application/json")
        all_headers["content-length"] = str(len(body))
    if body is None:
        encoded = ""
    elif base64_body:
        encoded = base64.b64encode(body).decode()
    else:
        encoded = body.decode()
    return {
        "body": encoded,
        "isBase64Encoded": base64_body and body is not None,
        "httpMethod": method,
        "path": path,
        "headers": all_headers,
        "queryStringParameters": {},
        "pathParameters": {},
        "requestContext": {"apiId": "8d6c0ab1", "requestId": str(uuid.uuid4()),
                           "stage": "RELEASE", "sourceIp": "192.0.2.10"},
    }


def body_of(answer: dict[str, Any]) -> Any:
    body = answer["body"]
    raw = base64.b64decode(body) if answer["isBase64Encoded"] else body.encode()
    return json.loads(raw)


# -- timer ----------------------------------------------------------------------------


def test_timer_sweep_deletes_expired_tasks_and_returns_the_summary(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    expired, fresh = failed_task(EXPIRED), failed_task(FRESH)
    standin.add_job(expired)
    standin.add_job(fresh)

    summary = functiongraph()(timer_event())

    assert standin.deletes() == [expired["resource_id"]]
    assert summary["outcome"] == "sweep_completed"
    assert (summary["trigger"], summary["dry_run"]) == ("timer", False)
    assert (summary["listed"], summary["deleted"], summary["partial"]) == (2, 1, False)
    assert summary["outcomes"]["retained"] == 1
    assert summary["causation"] == {
        "id": TIMER_TIME, "source": "/functiongraph/triggers/timer/failjob-reaper-sweep",
        "type": "functiongraph.timer",
    }
    events = sink.wait_for(2)
    assert [e["type"] for e in events] == ["sdrs.failurejob.deleted",
                                           "sdrs.failurejob.sweep_completed"]
    assert data_of(events[0])["trigger"] == "timer"


def test_timer_user_event_string_can_ask_for_a_dry_run(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    standin.add_job(failed_task(EXPIRED))

    summary = functiongraph()(timer_event('{"dry_run": true}'))

    assert standin.deletes() == []
    assert summary["dry_run"] is True
    assert summary["outcomes"]["would_delete"] == 1


@pytest.mark.parametrize("user_event", [None, "", "   ", "null", "{}"])
def test_timer_without_user_event_runs_a_normal_sweep(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph,
    user_event: str | None,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)

    summary = functiongraph()(timer_event(user_event))

    assert standin.deletes() == [record["resource_id"]]
    assert summary["deleted"] == 1


@pytest.mark.parametrize(
    ("user_event", "message"),
    [
        ('{"dry_run": "yes"}', "dry_run must be true or false"),
        ('{"dry_run": "true"}', "dry_run must be true or false"),
        ('{"dry_run": null}', "dry_run must be true or false"),
        ("hourly sweep", "not valid JSON"),
        ("{dry_run: true", "not valid JSON"),
        ('{"dryrun": true}', "unknown key"),
        ("[true]", "must be a JSON object"),
        ("true", "must be a JSON object"),
        ('"dry_run"', "must be a JSON object"),
        ('{"server_group_id": "../x"}', "server_group_id"),
        ('{"project_id": "someoneelse"}', "someoneelse"),
    ],
)
def test_timer_user_event_of_the_wrong_shape_is_rejected_without_any_request(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph,
    user_event: str, message: str,
) -> None:
    standin.add_job(failed_task(EXPIRED))
    function = functiongraph()

    with pytest.raises(ValueError, match="timer user_event") as raised:
        function(timer_event(user_event))

    assert isinstance(raised.value, InvalidEvent)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert standin.requests == []
    [event] = sink.wait_for(1)
    assert event["type"] == "sdrs.failurejob.rejected"
    assert message in data_of(event)["reason"]


def test_timer_sweep_respects_the_remaining_invocation_time(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    standin.add_group("a1b2c3d4-0000-4000-8000-000000000001", "group-a")
    standin.add_job(failed_task(EXPIRED))
    standin.add_job(failed_task(EXPIRED), "a1b2c3d4-0000-4000-8000-000000000001")
    standin.latency = 0.02  # each answer takes longer than the time left for the sweep

    # 1.5 s left: less than the 2 s safety margin, so no time at all for the sweep.
    summary = functiongraph()(timer_event(), FakeContext(remaining_ms=1500))

    assert summary["partial"] is True
    assert "deadline" in summary["partial_reason"]
    assert summary["deleted"] == 0
    assert standin.deletes() == []
    [event] = sink.wait_for(1)
    assert event["type"] == "sdrs.failurejob.sweep_completed"
    assert data_of(event)["partial"] is True


def test_sweep_deadline_keeps_a_safety_margin() -> None:
    assert sweep_deadline(300_000) == pytest.approx(270.0)  # 10 %
    assert sweep_deadline(10_000) == pytest.approx(8.0)  # at least 2 s
    assert sweep_deadline(1_500) == pytest.approx(0.001)  # nothing left, but never 0
    assert sweep_deadline(0) == pytest.approx(0.001)
    assert sweep_deadline(None) is None  # unknown: SWEEP_DEADLINE alone
    assert sweep_deadline(True) is None


def test_timer_sink_down_fails_the_invocation_so_it_is_retried(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    standin.add_job(failed_task(EXPIRED))
    sink.inject(*[Fault(503)] * 6)

    with pytest.raises(RetryLater, match="sweep not reported"):
        functiongraph(OUTCOME_SINK_ATTEMPTS="3")(timer_event())


# -- EventGrid ------------------------------------------------------------------------


def test_eventgrid_job_failed_deletes_once_and_the_sink_gets_the_outcome(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = functiongraph()
    event = eventgrid_event(record, event_id="eg-evt-1")

    first = function(event)
    second = function(event)  # EventGrid delivers at least once

    assert first == {"status": "done", "id": "eg-evt-1", "type": "sdrs.job.failed"}
    assert second == first
    assert standin.deletes() == [record["resource_id"]]
    [deleted] = sink.events  # the repeat got the first answer and decided nothing
    assert deleted["type"] == "sdrs.failurejob.deleted"
    assert deleted["subject"] == record["resource_id"]
    data = data_of(deleted)
    assert (data["trigger"], data["status_code"]) == ("event", 204)
    assert data["causation"] == {"id": "eg-evt-1", "source": "sdrs-task-center",
                                 "type": "sdrs.job.failed"}


def test_eventgrid_expiry_event_with_base64_data_is_decided(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    event = eventgrid_event(None, "sdrs.failurejob.expired")
    del event["data"]
    payload = json.dumps({"failure_job_id": record["resource_id"]}).encode()
    event["data_base64"] = base64.b64encode(payload).decode()

    functiongraph()(event)

    assert standin.deletes() == [record["resource_id"]]


def test_eventgrid_with_the_sink_down_raises_and_the_retry_deletes_nothing_twice(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    sink.inject(Fault(503), Fault(503), Fault(503))
    function = functiongraph(OUTCOME_SINK_ATTEMPTS="3")
    event = eventgrid_event(record, event_id="eg-evt-2")

    with pytest.raises(RetryLater, match="retry") as raised:
        function(event)
    assert "\n" not in str(raised.value)
    assert sink.events == []

    function(event)  # FunctionGraph's async retry
    assert standin.deletes() == [record["resource_id"]]
    # The retry gets the first decision, now delivered.
    assert sink.wait_for(1)[0]["type"] == "sdrs.failurejob.deleted"


def test_eventgrid_unknown_type_is_rejected_and_acknowledged(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    result = functiongraph()(eventgrid_event({"failure_job_id": "abc"}, "com.example.other"))

    assert result["status"] == "done"
    assert standin.requests == []
    assert sink.wait_for(1)[0]["type"] == "sdrs.failurejob.rejected"


# -- APIG -----------------------------------------------------------------------------


def test_apig_retry_with_a_base64_body_answers_in_the_apig_shape(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    body = json.dumps({"failure_job_id": record["resource_id"]}).encode()

    answer = functiongraph()(apig_event("POST", "/retry", body))

    assert set(answer) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert answer["statusCode"] == 200
    assert answer["isBase64Encoded"] is False
    assert answer["headers"]["Content-Type"] == "application/json"
    assert "Content-Length" not in answer["headers"]
    outcome = body_of(answer)
    assert (outcome["outcome"], outcome["trigger"]) == ("deleted", "http")
    assert standin.deletes() == [record["resource_id"]]
    assert data_of(sink.wait_for(1)[0])["outcome"] == "deleted"


def test_apig_sweep_with_a_text_body(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    standin.add_job(failed_task(EXPIRED))

    answer = functiongraph()(apig_event("POST", "/sweep", b'{"dry_run": true}',
                                        base64_body=False))

    assert answer["statusCode"] == 200
    summary = body_of(answer)
    assert (summary["trigger"], summary["dry_run"]) == ("http", True)
    assert summary["outcomes"]["would_delete"] == 1
    assert standin.deletes() == []


def test_apig_healthz_and_openapi_need_no_token(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    function = functiongraph()

    health = function(apig_event("GET", "/healthz", token=None))
    openapi = function(apig_event("GET", "/openapi.json", token=None))

    assert (health["statusCode"], body_of(health)) == (200, {"status": "ok"})
    assert openapi["statusCode"] == 200
    assert body_of(openapi)["openapi"].startswith("3.")
    assert standin.requests == []


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_apig_retry_without_the_token_is_401_and_never_reaches_sdrs(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph,
    token: str | None,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    body = json.dumps({"failure_job_id": record["resource_id"]}).encode()

    answer = functiongraph()(apig_event("POST", "/retry", body, token=token))

    assert answer["statusCode"] == 401
    assert answer["headers"]["WWW-Authenticate"].startswith("Bearer")
    assert body_of(answer)["error"]["code"] == "unauthorized"
    assert standin.requests == []
    assert sink.events == []


def test_apig_bad_base64_body_is_400_and_unknown_path_404(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    function = functiongraph()
    event = apig_event("POST", "/retry", b"{}")
    event["body"] = "%%% not base64 %%%"

    bad = function(event)
    unknown = function(apig_event("GET", "/admin", token=None))

    assert bad["statusCode"] == 400
    assert body_of(bad)["error"]["code"] == "invalid_request"
    assert unknown["statusCode"] == 404
    assert standin.requests == []


def test_apig_query_options_are_refused_and_head_answers_no_body(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    standin.add_job(failed_task(EXPIRED))
    function = functiongraph()
    sweep = apig_event("POST", "/sweep", b"{}")
    sweep["queryStringParameters"] = {"dry_run": ["true"]}  # APIG may hand over lists

    refused = function(sweep)
    head = function(apig_event("HEAD", "/healthz", token=None))

    assert refused["statusCode"] == 400
    assert "query parameters" in body_of(refused)["error"]["message"]
    assert (head["statusCode"], head["body"]) == (200, "")
    assert standin.requests == []


def test_apig_repeated_headers_take_the_first_and_names_ignore_case(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    event = apig_event("POST", "/retry", json.dumps({"failure_job_id": record["resource_id"]})
                       .encode(), token=None)
    event["headers"]["AUTHORIZATION"] = [f"Bearer {API_TOKEN}", "Bearer wrong-token"]

    answer = functiongraph()(event)

    assert answer["statusCode"] == 200
    assert body_of(answer)["outcome"] == "deleted"
    assert standin.deletes() == [record["resource_id"]]


# -- credentials ----------------------------------------------------------------------


def test_agency_credentials_from_the_context_sign_requests_and_rotate(
    sink: OutcomeSink, functiongraph: FunctionGraph, capfd: pytest.CaptureFixture[str]
) -> None:
    credentials = {ak: sk for ak, sk, _ in AGENCY.values()}
    with TaskCenterStandIn(project_id=PROJECT, credentials=credentials) as signed:
        first, second = failed_task(EXPIRED), failed_task(EXPIRED)
        signed.add_job(first)
        signed.add_job(second)
        function = functiongraph(SDRS_ENDPOINT=signed.url, SDRS_AUTH_TOKEN="",
                                 LOG_LEVEL="DEBUG")

        function(eventgrid_event(first), agency_context(1))
        requests_one = signed.requests
        signed.reset_log()
        function(eventgrid_event(second), agency_context(2))  # credentials rotated
        requests_two = signed.requests

        assert signed.deletes() == [second["resource_id"]]
    assert requests_one and requests_two
    for requests, generation in ((requests_one, 1), (requests_two, 2)):
        ak, _, token = AGENCY[generation]
        for request in requests:
            assert request.status in (200, 204), request
            authorization = request.headers["authorization"]
            assert authorization.startswith(f"SDK-HMAC-SHA256 Access={ak}, ")
            assert "x-security-token" in authorization.split("SignedHeaders=")[1]
            assert request.headers["x-security-token"] == token
            assert request.headers["x-project-id"] == PROJECT
            assert "x-auth-token" not in request.headers
    assert [e["type"] for e in sink.wait_for(2)] == ["sdrs.failurejob.deleted"] * 2
    out, err = capfd.readouterr()
    for _, sk, token in AGENCY.values():
        assert sk not in out + err
        assert token not in out + err


def test_environment_credentials_win_over_the_context(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)

    functiongraph()(eventgrid_event(record), agency_context(1))

    assert standin.deletes() == [record["resource_id"]]
    for request in standin.requests:
        assert request.headers["x-auth-token"] == TOKEN
        assert "x-security-token" not in request.headers
        assert "authorization" not in request.headers


def test_no_credentials_anywhere_fails_the_invocation_before_any_request(
    sink: OutcomeSink, functiongraph: FunctionGraph
) -> None:
    ak, sk, _ = AGENCY[1]
    with TaskCenterStandIn(project_id=PROJECT, credentials={ak: sk}) as signed:
        record = failed_task(EXPIRED)
        signed.add_job(record)
        function = functiongraph(SDRS_ENDPOINT=signed.url, SDRS_AUTH_TOKEN="")
        function(eventgrid_event(failed_task(EXPIRED)), agency_context(1))  # credentials set
        signed.reset_log()

        with pytest.raises(ConfigurationFailed) as raised:  # no agency: nothing stale is used
            function(eventgrid_event(record), FakeContext())
        assert signed.requests == []

        function(eventgrid_event(record), agency_context(1))  # the agency is back
        assert signed.deletes() == [record["resource_id"]]
    message = str(raised.value)
    assert message.startswith("failjob-reaper: configuration error: HUAWEICLOUD_SDK_AK: ")
    assert "\n" not in message


def test_rotating_auth_is_explicit_about_missing_credentials_and_hides_secrets() -> None:
    auth = RotatingAkSkAuth(project_id=PROJECT)
    assert not auth.has_credentials
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(204)))
        as client,
        pytest.raises(MissingCredentials),
    ):
        client.get("http://127.0.0.1/v1/x")
    auth.update("AKVISIBLE12345", SK, "security-token-Hh5")
    assert auth.ak == "AKVISIBLE12345"
    assert SK not in repr(auth) and "security-token-Hh5" not in repr(auth)
    with pytest.raises(ValueError):
        auth.update("", SK)


# -- configuration and unknown payloads ---------------------------------------------


def test_settings_error_on_functiongraph_does_not_stop_the_import(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph,
    capfd: pytest.CaptureFixture[str],
) -> None:
    function = functiongraph(SDRS_ENDPOINT="", SDRS_MAX_ATTEMPTS=SK)  # imports fine

    for event in (timer_event(), eventgrid_event({"failure_job_id": "abc"}),
                  apig_event("GET", "/healthz")):
        with pytest.raises(ConfigurationFailed) as raised:
            function(event, agency_context(1))
        message = str(raised.value)
        assert message.startswith("failjob-reaper: configuration error: ")
        assert "SDRS_ENDPOINT: required" in message
        assert "\n" not in message
        assert SK not in message
    assert standin.requests == []
    _, err = capfd.readouterr()
    assert err.count("failjob-reaper: configuration error: ") == 1  # logged once, at import
    assert SK not in err


def _python(code: str, **values: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS and k != "FUNCTION_TARGET"}
    env.update(values)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_functiongraph_runtime_process_survives_a_settings_error() -> None:
    code = (
        "import main\n"
        "try:\n"
        "    main.handler({'trigger_type': 'TIMER', 'user_event': ''}, None)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = _python(code, RUNTIME_FUNC_NAME="failjob-reaper", SDRS_PROJECT_ID=PROJECT)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "ConfigurationFailed failjob-reaper: configuration error: SDRS_ENDPOINT: required"
    )
    assert result.stderr.strip() == "failjob-reaper: configuration error: SDRS_ENDPOINT: required"


def test_functions_framework_on_functiongraph_still_fails_fast() -> None:
    # The container image (FUNCTION_TARGET set) is an HTTP function there: fail at start-up.
    result = _python("import main", RUNTIME_FUNC_NAME="failjob-reaper",
                     FUNCTION_TARGET="on_http")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("failjob-reaper: configuration error: ")


def test_runtime_detection() -> None:
    assert on_functiongraph({"RUNTIME_FUNC_NAME": "f"})
    assert on_functiongraph({"RUNTIME_PROJECT_ID": PROJECT})
    assert not on_functiongraph({})
    assert not on_functiongraph({"RUNTIME_FUNC_NAME": "f", "FUNCTION_TARGET": "on_http"})


UNKNOWN_PAYLOADS: list[Any] = [
    {},
    {"hello": "world"},
    [],
    "text",
    None,
    {"trigger_type": "OBS", "Records": [{"s3": {}}]},
    {"specversion": "1.0", "type": "sdrs.job.failed", "data": {"failure_job_id": "abc"}},
    {"specversion": "0.3", "id": "a", "source": "b", "type": "sdrs.job.failed"},
    {"httpMethod": 5, "path": "/retry"},
]


@pytest.mark.parametrize("payload", UNKNOWN_PAYLOADS, ids=repr)
def test_unknown_payload_fails_clearly_and_nothing_reaches_sdrs(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph, payload: Any
) -> None:
    standin.add_job(failed_task(EXPIRED))

    with pytest.raises(ValueError, match=r"^failjob-reaper: ") as raised:
        functiongraph()(payload, agency_context(1))

    assert isinstance(raised.value, InvalidEvent)
    assert "\n" not in str(raised.value)
    assert standin.requests == []
    assert sink.events == []
