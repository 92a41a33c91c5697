"""Shared fixtures: the task-center stand-in, a real HTTP sink, and the function
loaded through functions-framework's own ``create_app`` (the production path)."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from werkzeug.test import TestResponse

from failjob_reaper.settings import ENV_VARS
from failjob_reaper.state import StateStore, open_store
from standin import OutcomeSink, TaskCenterStandIn, format_begin_time
from standin.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "0605767f0a00d5762fe0c0148c8ba0d3"
TOKEN = "standin-token-Zq81xV"  # a recognisable secret: tests grep output for it
SK = "sk-Secret-9f3e1d2c"
AK = "AK-public-1234"

_seq = itertools.count(1)


def failed_task(age: timedelta, **fields: Any) -> dict[str, Any]:
    """A failed-task record as the list API returns it, ``age`` old now."""
    n = next(_seq)
    record: dict[str, Any] = {
        "job_status": "FAIL",
        "resource_id": str(uuid.UUID(int=n, version=4)),
        "resource_name": f"Protected-Instance-{n:04d}",
        "resource_type": "protectedInstance",
        "failure_status": "createFail",
        "job_id": f"ff808082686f229a{n:016x}",
        "job_type": "createProtectedInstance",
        "begin_time": format_begin_time(datetime.now(UTC) - age),
        "error_code": "EVS.2024",
        "fail_reason": "SdrsGenerateNativeServerParamsTask-fail:volume is error!",
    }
    record.update(fields)
    return record


EXPIRED = timedelta(days=30)
FRESH = timedelta(hours=1)


@dataclass
class Function:
    """The on_event target as functions-framework serves it, over its WSGI app."""

    app: Any
    sent: list[CloudEvent] = field(default_factory=list)

    def send(
        self,
        event_type: str,
        data: Any,
        *,
        event_id: str | None = None,
        source: str = "/test/bus",
        structured: bool = False,
        **extra: str,
    ) -> TestResponse:
        attributes = {
            "type": event_type,
            "source": source,
            "id": event_id or str(uuid.uuid4()),
            "datacontenttype": "application/json",
            **extra,
        }
        event = CloudEvent(attributes, data)
        self.sent.append(event)
        headers, body = to_structured(event) if structured else to_binary(event)
        response: TestResponse = self.app.test_client().post("/", headers=headers, data=body)
        return response

    def post_raw(self, headers: dict[str, str], body: bytes) -> TestResponse:
        response: TestResponse = self.app.test_client().post("/", headers=headers, data=body)
        return response


@pytest.fixture
def standin() -> Iterator[TaskCenterStandIn]:
    with TaskCenterStandIn(project_id=PROJECT, token=TOKEN) as server:
        yield server


@pytest.fixture
def sink() -> Iterator[OutcomeSink]:
    with OutcomeSink() as server:
        yield server


FunctionFactory = Callable[..., Function]


@pytest.fixture
def base_env(standin: TaskCenterStandIn, sink: OutcomeSink) -> dict[str, str]:
    return {
        "SDRS_ENDPOINT": standin.url,
        "SDRS_PROJECT_ID": PROJECT,
        "SDRS_AUTH_TOKEN": TOKEN,
        "K_SINK": sink.url,
        # Fast retries so tests of the retry budget take milliseconds.
        "SDRS_BACKOFF_INITIAL": "0.01",
        "SDRS_BACKOFF_MAX": "0.05",
        "SDRS_REQUEST_TIMEOUT": "2",
        "SDRS_RETRY_DEADLINE": "10",
        "SWEEP_RATE_LIMIT": "0",
    }


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def make_function(
    clean_env: pytest.MonkeyPatch, base_env: dict[str, str], tmp_path: Path
) -> FunctionFactory:
    """Load main.py through functions-framework with the given settings and policy."""

    def make(
        target: str = "on_event",
        signature: str = "cloudevent",
        policy: dict[str, Any] | None = None,
        **env: str,
    ) -> Function:
        settings = {**base_env, **env}
        if policy is not None:
            path = tmp_path / f"policy-{next(_seq)}.json"
            path.write_text(json.dumps(policy))
            settings["RETENTION_POLICY_FILE"] = str(path)
        apply_env(clean_env, settings)
        app = functions_framework.create_app(  # type: ignore[no-untyped-call]
            target, str(ROOT / "main.py"), signature
        )
        return Function(app)

    return make


def apply_env(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> None:
    """Set each variable; an empty value unsets it."""
    for name, value in settings.items():
        if value == "":
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def data_of(event: CloudEvent) -> dict[str, Any]:
    data = event.data
    if isinstance(data, bytes | str):
        data = json.loads(data)
    assert isinstance(data, dict)
    return data


# -- a real redis-server for the shared state (docs/state.md) ---------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One ``redis-server`` per test session (per xdist worker) on a free loopback port."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    if not redis_server.running:  # a test stopped it (Redis going away): bring it back
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
def any_store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    """Each StateStore backend in turn: in-process, and the session's real Redis."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    opened = open_store(url, namespace="fjr:test:")
    yield opened
    opened.close()
