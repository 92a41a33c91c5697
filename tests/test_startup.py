"""Start-up: settings fail fast with one line; the real functions-framework
process serves events over loopback; AK/SK signing works end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from failjob_reaper.errors import ConfigError
from failjob_reaper.settings import ENV_VARS, load_settings
from standin import EventGridStandIn, OutcomeSink, TaskCenterStandIn
from tests.conftest import AK, EXPIRED, PROJECT, ROOT, SK, TOKEN, FunctionFactory, failed_task


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(values)
    return env


def _import_main(**values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import main"],
        cwd=ROOT, env=_env(**values), capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, "SDRS_ENDPOINT: required"),
        ({"SDRS_ENDPOINT": "https://sdrs.example.com"}, "SDRS_PROJECT_ID: required"),
        ({"SDRS_ENDPOINT": "ftp://x", "SDRS_PROJECT_ID": PROJECT}, "SDRS_ENDPOINT: must be"),
        ({"SDRS_ENDPOINT": "http://sdrs.example.com", "SDRS_PROJECT_ID": PROJECT},
         "SDRS_ENDPOINT: must use https"),
        ({"SDRS_ENDPOINT": "https://sdrs.example.com", "SDRS_PROJECT_ID": PROJECT},
         "SDRS_AUTH_TOKEN: required"),
        ({"SDRS_ENDPOINT": "https://sdrs.example.com", "SDRS_PROJECT_ID": PROJECT,
          "HUAWEICLOUD_SDK_AK": AK}, "HUAWEICLOUD_SDK_SK: required"),
        ({"SDRS_ENDPOINT": "https://sdrs.example.com", "SDRS_PROJECT_ID": PROJECT,
          "SDRS_AUTH_TOKEN": TOKEN, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK},
         "SDRS_AUTH_TOKEN: set either"),
        ({"SDRS_ENDPOINT": "http://127.0.0.1:1", "SDRS_PROJECT_ID": PROJECT,
          "SWEEP_CONCURRENCY": "many"}, "SWEEP_CONCURRENCY:"),
        ({"SDRS_ENDPOINT": "http://127.0.0.1:1", "SDRS_PROJECT_ID": PROJECT,
          "RETENTION_POLICY_FILE": "/nonexistent/policy.yaml"}, "RETENTION_POLICY_FILE:"),
        ({"SDRS_ENDPOINT": "http://127.0.0.1:1", "SDRS_PROJECT_ID": PROJECT,
          "K_CE_OVERRIDES": '{"extensions": {"Bad-Name": "x"}}'}, "K_CE_OVERRIDES:"),
        ({"SDRS_ENDPOINT": "http://127.0.0.1:1", "SDRS_PROJECT_ID": PROJECT,
          "RETRY_API_TOKEN": "short"}, "RETRY_API_TOKEN: must be at least 16"),
        ({"SDRS_ENDPOINT": "http://127.0.0.1:1", "SDRS_PROJECT_ID": PROJECT,
          "SDRS_REQUEST_TIMEOUT": "NaN"}, "SDRS_REQUEST_TIMEOUT: must be a finite number"),
        ({"SDRS_ENDPOINT": "http://127.0.0.1:1", "SDRS_PROJECT_ID": PROJECT,
          "SDRS_BACKOFF_INITIAL": "5", "SDRS_BACKOFF_MAX": "1"},
         "SDRS_BACKOFF_INITIAL: 5 is above SDRS_BACKOFF_MAX 1"),
        ({"SDRS_ENDPOINT": "http://127.0.0.1:1", "SDRS_PROJECT_ID": PROJECT,
          "HUAWEICLOUD_SDK_PROJECT_ID": "another-project"},
         "SDRS_PROJECT_ID: differs from HUAWEICLOUD_SDK_PROJECT_ID"),
        ({"SDRS_ENDPOINT": "http://127.0.0.1:1", "SDRS_PROJECT_ID": PROJECT,
          "EVENT_TYPE_EXPIRED": "sdrs.job.failed"},
         "EVENT_TYPE_EXPIRED: the same type as EVENT_TYPE_JOB_FAILED"),
    ],
)
def test_bad_settings_stop_the_import_with_one_line_naming_the_variable(
    values: dict[str, str], expected: str
) -> None:
    result = _import_main(**values, HUAWEICLOUD_SDK_SK_UNUSED="x")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("failjob-reaper: configuration error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


LOOPBACK = {"SDRS_ENDPOINT": "http://127.0.0.1:1", "SDRS_PROJECT_ID": PROJECT}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"SDRS_REQUEST_TIMEOUT": "nan"}, "SDRS_REQUEST_TIMEOUT: must be a finite number"),
        ({"SDRS_RETRY_DEADLINE": "inf"}, "SDRS_RETRY_DEADLINE: must be a finite number"),
        ({"SWEEP_RATE_LIMIT": "-Infinity"}, "SWEEP_RATE_LIMIT: must be a finite number"),
        ({"SWEEP_RATE_LIMIT": "inf"}, "SWEEP_RATE_LIMIT: must be a finite number"),
        ({"SDRS_REQUEST_TIMEOUT": "1000"}, "SDRS_REQUEST_TIMEOUT: must be at most 300"),
        ({"SDRS_REQUEST_TIMEOUT": "0"}, "SDRS_REQUEST_TIMEOUT: must be greater than 0"),
        ({"SDRS_MAX_ATTEMPTS": "0"}, "SDRS_MAX_ATTEMPTS: must be at least 1"),
        ({"SDRS_MAX_ATTEMPTS": "2.5"}, "SDRS_MAX_ATTEMPTS: must be a whole number"),
        ({"SWEEP_DEADLINE": "soon"}, "SWEEP_DEADLINE: must be a number"),
        ({"RETENTION_DRY_RUN": "maybe"}, "RETENTION_DRY_RUN: must be true or false"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: must be 'json' or 'text'"),
        ({"SDRS_BACKOFF_INITIAL": "2", "SDRS_BACKOFF_MAX": "1.5"},
         "SDRS_BACKOFF_INITIAL: 2 is above SDRS_BACKOFF_MAX 1.5"),
        ({"SDRS_BACKOFF_INITIAL": "9"}, "SDRS_BACKOFF_INITIAL: 9 is above SDRS_BACKOFF_MAX 8"),
        ({"HUAWEICLOUD_SDK_PROJECT_ID": "other"},
         "SDRS_PROJECT_ID: differs from HUAWEICLOUD_SDK_PROJECT_ID"),
        ({"EVENT_TYPE_SWEEP": "sdrs.failurejob.expired"},
         "EVENT_TYPE_SWEEP: the same type as EVENT_TYPE_EXPIRED"),
        ({"EVENT_TYPE_JOB_FAILED": "x.y", "EVENT_TYPE_SWEEP": "x.y"},
         "EVENT_TYPE_SWEEP: the same type as EVENT_TYPE_JOB_FAILED"),
        ({"EVENT_TYPE_SWEEP": "dev.knative.sources.ping"},
         "EVENT_TYPE_SWEEP: dev.knative.sources.ping is the PingSource's type"),
        ({"EVENT_TYPE_JOB_FAILED": "sdrs.failurejob.delete_failed"},
         "EVENT_TYPE_JOB_FAILED: sdrs.failurejob.delete_failed is an outcome type"),
    ],
)
def test_bad_and_contradictory_settings_are_explained_in_plain_words(
    values: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({**LOOPBACK, **values})
    assert str(raised.value).startswith(expected), str(raised.value)
    assert "Input should" not in str(raised.value)


@pytest.mark.parametrize(
    "values",
    [
        {"HUAWEICLOUD_SDK_PROJECT_ID": PROJECT},  # the same project twice is no contradiction
        {"SDRS_BACKOFF_INITIAL": "8", "SDRS_BACKOFF_MAX": "8"},
        {"SDRS_BACKOFF_INITIAL": "0", "SDRS_BACKOFF_MAX": "0"},
        {"RUNTIME_PROJECT_ID": "the-functions-own-project"},  # FunctionGraph sets it
    ],
)
def test_consistent_settings_are_accepted(values: dict[str, str]) -> None:
    assert load_settings({**LOOPBACK, **values}).project_id == PROJECT


def test_a_secret_in_a_bad_setting_is_not_echoed() -> None:
    result = _import_main(
        SDRS_ENDPOINT="https://sdrs.example.com", SDRS_PROJECT_ID=PROJECT,
        SDRS_AUTH_TOKEN=TOKEN, HUAWEICLOUD_SDK_AK=AK, HUAWEICLOUD_SDK_SK=SK,
        SDRS_MAX_ATTEMPTS=SK,
    )
    assert result.returncode == 2
    assert SK not in result.stderr and TOKEN not in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def served_function(standin: TaskCenterStandIn, sink: OutcomeSink) -> Iterator[str]:
    """``functions-framework --target on_event`` as a real process on loopback."""
    port = _free_port()
    env = _env(SDRS_ENDPOINT=standin.url, SDRS_PROJECT_ID=PROJECT, SDRS_AUTH_TOKEN=TOKEN,
               K_SINK=sink.url)
    process = subprocess.Popen(
        [sys.executable, "-m", "functions_framework", "--source", str(ROOT / "main.py"),
         "--target", "on_event", "--signature-type", "cloudevent", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "function did not start"
            time.sleep(0.05)  # waiting for a port to open, bounded
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_real_functions_framework_process_deletes_and_reports(
    standin: TaskCenterStandIn, sink: OutcomeSink, served_function: str
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    event = CloudEvent({"type": "sdrs.job.failed", "source": "/t", "id": str(uuid.uuid4())},
                       record)
    headers, body = to_binary(event)
    response = httpx.post(served_function, headers=headers, content=body, timeout=30)

    assert response.status_code == 200
    assert standin.deletes() == [record["resource_id"]]
    assert sink.wait_for(1)[0]["type"] == "sdrs.failurejob.deleted"


def test_not_a_cloudevent_gets_400_from_the_framework(served_function: str) -> None:
    response = httpx.post(served_function, json={"hello": "world"}, timeout=30)
    assert response.status_code == 400
    assert "Traceback" not in response.text


def test_aksk_signed_requests_are_accepted_by_the_standin(
    sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    with TaskCenterStandIn(project_id=PROJECT, credentials={AK: SK}) as signed:
        record = failed_task(EXPIRED)
        signed.add_job(record)
        function = make_function(SDRS_ENDPOINT=signed.url, SDRS_AUTH_TOKEN="",
                                 HUAWEICLOUD_SDK_AK=AK, HUAWEICLOUD_SDK_SK=SK)
        function.send("sdrs.job.failed", record)

        assert signed.deletes() == [record["resource_id"]]
        assert all(r.status in (200, 204) for r in signed.requests)
        assert all(r.headers["authorization"].startswith("SDK-HMAC-SHA256 Access=" + AK)
                   for r in signed.requests)
    assert sink.wait_for(1)[0]["type"] == "sdrs.failurejob.deleted"


def test_wrong_sk_is_a_permanent_401_delete_failed(
    sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    with TaskCenterStandIn(project_id=PROJECT, credentials={AK: SK}) as signed:
        record = failed_task(EXPIRED)
        signed.add_job(record)
        function = make_function(SDRS_ENDPOINT=signed.url, SDRS_AUTH_TOKEN="",
                                 HUAWEICLOUD_SDK_AK=AK, HUAWEICLOUD_SDK_SK="wrong-sk")
        response = function.send("sdrs.job.failed", record)
        assert response.status_code == 200
        assert signed.deletes() == []
    event = sink.wait_for(1)[0]
    assert event["type"] == "sdrs.failurejob.delete_failed"


def test_make_run_demo_sends_samples_and_prints_outcomes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "standin.demo", "--once", "--port", str(_free_port()),
         "--standin-port", str(_free_port())],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for outcome in ("deleted", "retained", "rejected", "would_delete", "sweep_completed"):
        assert f'"type":"sdrs.failurejob.{outcome}"' in out
    assert "local-demo-token" not in out + result.stderr


def test_cli_check_policy_explains_a_valid_file_and_fails_an_invalid_one(
    tmp_path: Path,
) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "failjob_reaper", "check-policy",
         str(ROOT / "standin" / "demo_policy.yaml")],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout and "prod-*" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("default_retention: soon\n")
    failed = subprocess.run(
        [sys.executable, "-m", "failjob_reaper", "check-policy", str(bad)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60,
    )
    assert failed.returncode == 2
    assert "default_retention" in failed.stderr


# -- cold start: what a start imports and builds (issue 13) -------------------------------

_STARTED = """
import gc, json, sys, uuid
import functions_framework

app = functions_framework.create_app(sys.argv[1], sys.argv[2], "cloudevent")
loaded = {"gc_enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
headers = {"ce-specversion": "1.0", "ce-type": sys.argv[3], "ce-source": "/startup-test",
           "ce-id": str(uuid.uuid4()), "content-type": "application/json"}
answer = app.test_client().post("/", headers=headers, data=json.dumps(json.loads(sys.argv[4])))
from failjob_reaper.policy import Policy
print(json.dumps({**loaded, "status": answer.status_code, "modules": sorted(sys.modules),
                  "policy_validator_built": Policy.__pydantic_complete__}))
"""
"""functions-framework's own create_app (what its command line runs) loads main.py for
the target, then one CloudEvent goes through the app; a fresh process, so sys.modules
says what that start and its first event imported."""

CHANNEL = "outcomes-1"

NOT_FOR_EVENTS = (
    "failjob_reaper.alerts",  # SMN: only with SMN_ENDPOINT/SMN_TOPIC_URN
    "failjob_reaper.outcomes._eventgrid",  # only with EG_ENDPOINT/EG_CHANNEL_ID
    "failjob_reaper.outcomes._fanout",  # only with both outputs
    "failjob_reaper.outcomes._stdout",  # only without any output
    "failjob_reaper.outcomes._data",  # the TypedDicts of the manual API's document
    "failjob_reaper.sweep",  # on the first sweep
    "failjob_reaper.http_api._core",  # the manual API: on_http and FunctionGraph
    "failjob_reaper.http_api._types",
    "failjob_reaper.http_api._models",
    "failjob_reaper.http_api._openapi",
    "handlers.http",
    "handlers.functiongraph",
    "yaml",  # only for a YAML policy file
    "redis",  # only with a redis:// STATE_URL
)


def _start_and_send(event_type: str, data: dict[str, object], **values: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _STARTED, "on_event", str(ROOT / "main.py"), event_type,
         json.dumps(data)],
        cwd=ROOT, env=_env(**values), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_an_event_start_imports_neither_unconfigured_outputs_nor_sweeps_nor_the_manual_api(
    standin: TaskCenterStandIn, sink: OutcomeSink,
) -> None:
    started = _start_and_send("sdrs.failurejob.expired", {"failure_job_id": "not-listed-1"},
                              SDRS_ENDPOINT=standin.url, SDRS_PROJECT_ID=PROJECT,
                              SDRS_AUTH_TOKEN=TOKEN, K_SINK=sink.url)

    assert started["status"] == 200
    assert sink.wait_for(1)[0]["type"] == "sdrs.failurejob.already_deleted"
    modules = set(started["modules"])
    assert "failjob_reaper.outcomes._sink" in modules  # what it uses is there
    assert [name for name in NOT_FOR_EVENTS if name in modules] == []
    # The default policy is the model's own defaults: no validator is built for it.
    assert started["policy_validator_built"] is False


def test_configured_smn_and_eventgrid_are_imported_at_start_and_a_sweep_builds_the_sweeper(
    standin: TaskCenterStandIn,
) -> None:
    with EventGridStandIn(project_id=PROJECT, channel_id=CHANNEL, token=TOKEN) as grid:
        started = _start_and_send(
            "sdrs.failurejob.sweep", {},
            SDRS_ENDPOINT=standin.url, SDRS_PROJECT_ID=PROJECT, SDRS_AUTH_TOKEN=TOKEN,
            SMN_ENDPOINT="http://127.0.0.1:1", SMN_TOPIC_URN=f"urn:smn:region-1:{PROJECT}:ops",
            EG_ENDPOINT=grid.url, EG_CHANNEL_ID=CHANNEL,
        )
        assert started["status"] == 200
        assert [event["type"] for event in grid.wait_for(1)] == ["sdrs.failurejob.sweep_completed"]
    modules = set(started["modules"])
    assert {"failjob_reaper.alerts", "failjob_reaper.outcomes._eventgrid",
            "failjob_reaper.sweep"} <= modules


def test_a_policy_file_is_validated_at_start(standin: TaskCenterStandIn, tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default_retention": "P1D"}))
    started = _start_and_send("sdrs.failurejob.expired", {"failure_job_id": "not-listed-2"},
                              SDRS_ENDPOINT=standin.url, SDRS_PROJECT_ID=PROJECT,
                              SDRS_AUTH_TOKEN=TOKEN, RETENTION_POLICY_FILE=str(policy))
    assert started["status"] == 200
    assert started["policy_validator_built"] is True


def test_garbage_collection_is_back_on_after_the_start_with_the_start_frozen(
    standin: TaskCenterStandIn,
) -> None:
    started = _start_and_send("sdrs.failurejob.expired", {"failure_job_id": "not-listed-3"},
                              SDRS_ENDPOINT=standin.url, SDRS_PROJECT_ID=PROJECT,
                              SDRS_AUTH_TOKEN=TOKEN)
    assert started["gc_enabled"] is True
    assert started["frozen"] > 0  # main.py's objects are out of the collector's walks


@pytest.mark.parametrize("package", ["failjob_reaper.outcomes", "failjob_reaper.http_api"])
def test_a_package_imports_its_modules_only_for_the_names_asked_for(package: str) -> None:
    code = (f"import sys, {package} as p; "
            f"assert not [m for m in sys.modules if m.startswith('{package}.')], 'eager'; "
            "missing = [n for n in p.__all__ if getattr(p, n, None) is None]; "
            "assert not missing, missing; "
            "import pytest; pytest.raises(AttributeError, getattr, p, 'no_such_name')")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
