"""Helpers shared by the reliability tests (faults, soak, model, hostile input).

Nothing here changes product code: the stand-in is extended by subclassing and
by swapping in a request log that can be waited on, so that tests settle on
conditions instead of sleeping.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from cloudevents.http import CloudEvent

from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.settings import Settings, load_settings
from standin import Fault, RecordedRequest, TaskCenterStandIn
from standin._http import RequestLog, Response
from tests.conftest import PROJECT, TOKEN, data_of

TYPE_PREFIX = "sdrs.failurejob."
TASK_OUTCOMES = ("deleted", "already_deleted", "retained", "would_delete", "delete_failed",
                 "rejected")
ID_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DELETE_PATH = re.compile(
    rf"^/v1/{re.escape(PROJECT)}/task-center/failure-jobs/(?P<fid>[A-Za-z0-9_-]{{1,64}})$"
)
ONE_JOB = re.compile(r"/task-center/failure-jobs/(?P<fid>[^/]+)/?$")


@pytest.fixture
def fresh_reaper_logger() -> Any:
    """Let this test's app attach its log handler to this test's stderr.

    ``configure_logging`` binds the stream current at the first app load of the
    process; under pytest that is an earlier test's capture, long closed.
    """
    logger = logging.getLogger("failjob_reaper")
    saved = logger.handlers[:]
    logger.handlers.clear()
    yield logger
    for handler in logger.handlers:
        handler.close()
    logger.handlers[:] = saved


# -- the stand-in, observed -----------------------------------------------------------


class TrackedLog(RequestLog):
    """A request log that can be waited on until every request has been answered or dropped."""

    def __init__(self) -> None:
        super().__init__()
        self._settled = threading.Condition(self._lock)

    def add(self, item: RecordedRequest) -> None:
        with self._settled:
            self._items.append(item)

    def finish(self, item: RecordedRequest, status: int) -> None:
        with self._settled:
            item.status = status
            item.finished = time.monotonic()
            self._settled.notify_all()

    def wait_settled(self, timeout: float) -> bool:
        """True once no logged request is still in progress (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._settled:
            while any(item.finished is None for item in self._items):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(remaining)
            return True


def track(server: TaskCenterStandIn) -> TrackedLog:
    """Swap a waitable log into a stand-in (before it serves requests)."""
    log = TrackedLog()
    server.log = log
    return log


class GatedStandIn(TaskCenterStandIn):
    """A stand-in whose second and later DELETEs wait until the first one was applied.

    It makes "the timed-out DELETE was applied server-side before the retry
    arrived" deterministic instead of a matter of timing margins.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first_applied = threading.Event()
        self._count_lock = threading.Lock()
        self._delete_count = 0
        self._arrival = threading.local()  # each request is served on its own thread

    def take_fault(self, method: str, path: str) -> Fault | None:
        # Called once per request on arrival, before any fault delay: number DELETEs here.
        if method == "DELETE":
            with self._count_lock:
                self._delete_count += 1
                self._arrival.number = self._delete_count
        return super().take_fault(method, path)

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        if method != "DELETE":
            return super().dispatch(method, target, headers, body)
        number = getattr(self._arrival, "number", 1)
        if number > 1:
            self.first_applied.wait(10)  # bounded: the first one is applied after its delay
        response = super().dispatch(method, target, headers, body)
        if number == 1:
            self.first_applied.set()
        return response


def delete_requests(requests: Iterable[RecordedRequest]) -> list[RecordedRequest]:
    return [r for r in requests if r.method == "DELETE"]


def applied_deletes(requests: Iterable[RecordedRequest]) -> list[str]:
    """Ids of the DELETEs the stand-in applied (answered 204, whether the client heard it)."""
    out = []
    for request in delete_requests(requests):
        match = ONE_JOB.search(request.path)
        if request.status == 204 and match:
            out.append(unquote(match["fid"]))
    return out


def bad_delete_paths(requests: Iterable[RecordedRequest]) -> list[str]:
    return [r.path for r in delete_requests(requests) if not DELETE_PATH.match(r.path)]


# -- outcomes ---------------------------------------------------------------------------


def kind(event: CloudEvent) -> str:
    """``deleted`` for ``sdrs.failurejob.deleted``."""
    return str(event["type"]).removeprefix(TYPE_PREFIX)


def kinds(events: Iterable[CloudEvent]) -> list[str]:
    return [kind(e) for e in events]


def causation_id(event: CloudEvent) -> str | None:
    causation = data_of(event).get("causation") or {}
    value = causation.get("id")
    return value if isinstance(value, str) else None


class CollectingEmitter:
    """An in-process sink for ``build_components``: keeps events; can be told to refuse some."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[CloudEvent] = []
        self.refuse = 0  # the next N emits raise OutcomeDeliveryError

    def emit(self, event: CloudEvent) -> None:
        with self._lock:
            if self.refuse > 0:
                self.refuse -= 1
                raise OutcomeDeliveryError(f"refused {event['type']}")
            self.events.append(event)

    def take(self) -> list[CloudEvent]:
        with self._lock:
            events, self.events = self.events, []
            return events


class ControlledClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta


def settings_for(endpoint: str, **env: str) -> Settings:
    """Settings for ``build_components`` against a loopback stand-in, with fast retries."""
    values = {
        "SDRS_ENDPOINT": endpoint,
        "SDRS_PROJECT_ID": PROJECT,
        "SDRS_AUTH_TOKEN": TOKEN,
        "SDRS_BACKOFF_INITIAL": "0.001",
        "SDRS_BACKOFF_MAX": "0.01",
        "SDRS_REQUEST_TIMEOUT": "2",
        "SDRS_RETRY_DEADLINE": "5",
        "SWEEP_RATE_LIMIT": "0",
        **env,
    }
    return load_settings(values)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def record_of(event: CloudEvent) -> Mapping[str, Any] | None:
    job = data_of(event).get("job")
    return job if isinstance(job, Mapping) else None
