"""Log lines: JSON under a platform (parsed here line by line), text for a terminal,
and never a secret, whatever the format."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from failjob_reaper.logs import MASK, resolve_format, trace_id
from standin import OutcomeSink, TaskCenterStandIn
from standin._http import Fault, error_body
from tests.conftest import EXPIRED, FRESH, TOKEN, FunctionFactory, data_of, failed_task

FAILED = "sdrs.job.failed"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def json_lines(err: str) -> list[dict[str, Any]]:
    """Every line of stderr, each one a JSON object (json.loads fails the test otherwise)."""
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


@pytest.mark.parametrize(
    ("setting", "environ", "expected"),
    [
        (None, {}, "text"),
        (None, {"K_SERVICE": "failjob-reaper"}, "json"),
        (None, {"RUNTIME_FUNC_NAME": "failjob-reaper"}, "json"),
        (None, {"FUNCTION_TARGET": "on_event"}, "json"),
        ("text", {"K_SERVICE": "failjob-reaper"}, "text"),
        ("json", {}, "json"),
    ],
)
def test_log_format_is_the_setting_else_json_under_a_platform_else_text(
    setting: Any, environ: dict[str, str], expected: str
) -> None:
    assert resolve_format(setting, environ=environ) == expected


@pytest.mark.parametrize(
    ("traceparent", "expected"),
    [
        (TRACEPARENT, TRACE),
        (None, None),
        ("", None),
        ("00-nothex-00f067aa0ba902b7-01", None),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
        ("garbage", None),
    ],
)
def test_trace_id_is_read_from_a_well_formed_traceparent_only(
    traceparent: str | None, expected: str | None
) -> None:
    assert trace_id(traceparent) == expected


def test_json_lines_carry_outcome_task_causation_and_trace(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str],
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    event_id = str(uuid.uuid4())
    capfd.readouterr()
    function = make_function(LOG_FORMAT="json")
    response = function.send(FAILED, record, event_id=event_id, traceparent=TRACEPARENT)
    assert response.status_code == 200
    assert standin.deletes() == [record["resource_id"]]

    lines = json_lines(capfd.readouterr().err)
    outcome = [line for line in lines if line.get("outcome") == "deleted"]
    assert len(outcome) == 1, lines
    line = outcome[0]
    assert line["failure_job_id"] == record["resource_id"]
    assert line["causation_id"] == event_id
    assert line["causation_source"] == "/test/bus"
    assert line["trace_id"] == TRACE
    assert line["level"] == "INFO"
    assert line["logger"] == "failjob_reaper"
    assert line["message"].startswith("deleted ")
    assert line["timestamp"].startswith("20")
    assert TOKEN not in json.dumps(lines)


def test_the_function_logs_json_by_default_under_functions_framework(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # functions-framework sets FUNCTION_TARGET itself before it imports main.py.
    record = failed_task(FRESH)
    standin.add_job(record)
    capfd.readouterr()
    make_function(K_SERVICE="failjob-reaper").send(FAILED, record)

    lines = json_lines(capfd.readouterr().err)
    assert [line["outcome"] for line in lines if "outcome" in line] == ["retained"]


def test_log_format_text_gives_one_plain_line_per_outcome(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str],
) -> None:
    record = failed_task(FRESH)
    standin.add_job(record)
    capfd.readouterr()
    make_function(LOG_FORMAT="text").send(FAILED, record)

    err = capfd.readouterr().err
    assert f"failjob-reaper INFO retained failure_job_id={record['resource_id']}" in err
    assert "{" not in err


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_secret_echoed_by_the_api_is_masked_in_the_log(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str], log_format: str,
) -> None:
    # A server that puts the caller's token in its error message: the reason of the
    # delete_failed outcome carries it, its log line must not.
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/",
                   Fault(401, body=error_body(401, message=f"token {TOKEN} expired")))
    retry_token = "retry-token-Kx77-long-enough"
    capfd.readouterr()
    function = make_function(LOG_FORMAT=log_format, LOG_LEVEL="DEBUG",
                             RETRY_API_TOKEN=retry_token)
    function.send(FAILED, record)
    sink.wait_for(1)

    err = capfd.readouterr().err
    assert "delete_failed" in err
    assert TOKEN not in err and retry_token not in err
    assert f"token {MASK} expired" in err
    if log_format == "json":
        failed = [line for line in json_lines(err) if line.get("outcome") == "delete_failed"]
        assert failed and failed[0]["status_code"] == 401


def test_a_secret_echoed_by_the_api_never_reaches_the_outcome(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
) -> None:
    # docs/configuration.md: secrets never appear in outcomes either. The server echoes the
    # caller's token in its error message; the delete_failed outcome says so, masked.
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/",
                   Fault(401, body=error_body(401, message=f"token {TOKEN} expired")))
    make_function().send(FAILED, record)
    sink.wait_for(1)

    [event] = sink.events
    data = data_of(event)
    assert TOKEN not in json.dumps(data)
    assert data["outcome"] == "delete_failed"
    assert data["error"]["message"] == f"token {MASK} expired"
    assert len(standin.deletes()) == 1
