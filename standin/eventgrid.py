"""A loopback stand-in of Huawei EventGrid's PutEvents on custom channels.

``POST /v1/{project_id}/channels/{channel_id}/events`` with ``{"events": [...]}``
answers ``200 {"failed_count", "events": [{"event_id", "error_code", "error_msg"}]}``
(the shapes of ``huaweicloudsdkeg`` v1 ``PutEventsRequest``/``PutEventsResponse``).

Choices where the real service is not documented:

* at most ``max_batch`` (10) events a call, else 400 ``EG.00014001``;
* each event must carry ``id``, ``source``, ``type``, ``specversion`` ``1.0``;
  ``datacontenttype``, when given, must be ``application/json``; an event that breaks
  this fails alone (listed in the answer), the others are taken;
* a successful event is listed with its ``event_id`` and empty error fields.

Fault injection: ``inject(Fault(...))`` for whole answers (5xx, 429, dropped
connections), ``fail_positions(...)`` for per-event failures in the next answers.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from ._auth import auth_failure
from ._http import Fault, RecordedRequest, Response, ServerBase, json_response
from .sample_data import DEFAULT_PROJECT_ID

__all__ = ["EventGridStandIn"]

_ROUTE = re.compile(r"^/v1/(?P<pid>[^/]+)/channels/(?P<cid>[^/]+)/events/?$")


def _eg_error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error_code": code, "error_msg": message})


class EventGridStandIn(ServerBase):
    """EventGrid PutEvents on 127.0.0.1; keeps the events it took, in order."""

    def __init__(
        self,
        *,
        project_id: str = DEFAULT_PROJECT_ID,
        channel_id: str = "b7a1f0c2-3d4e-4f50-8a6b-7c8d9e0f1a2b",
        token: str | None = None,
        credentials: Mapping[str, str] | None = None,
        max_batch: int = 10,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.project_id = project_id
        self.channel_id = channel_id
        self.max_batch = max_batch
        self._token = token
        self._credentials = dict(credentials) if credentials is not None else None
        self._changed = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._batches: list[list[str]] = []
        self._fail: deque[frozenset[int]] = deque()

    # -- test knobs -------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Each of the next PutEvents calls consumes one fault (nothing is taken)."""
        self.faults.add("POST", r"/channels/", faults)

    def fail_positions(self, *positions: int) -> None:
        """The next accepted call fails the events at these positions of its batch
        (``EG.00014500``), taking the others. Call again to script later calls."""
        self._fail.append(frozenset(positions))

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event taken, in order (a resent event appears once per time it was taken)."""
        with self._changed:
            return list(self._events)

    @property
    def received_ids(self) -> list[str]:
        return [str(event["id"]) for event in self.events]

    @property
    def batches(self) -> list[list[str]]:
        """The event ids of each call that reached the channel (taken or failed)."""
        with self._changed:
            return [list(batch) for batch in self._batches]

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.log.snapshot()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("type") == event_type]

    def wait_for(self, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        """Block until at least ``n`` events were taken; AssertionError otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._events) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [(e.get("type"), e.get("subject")) for e in self._events]
                    raise AssertionError(f"expected {n} events within {timeout}s, got {got}")
                self._changed.wait(remaining)
            return list(self._events)

    # -- HTTP -----------------------------------------------------------------------

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        route = _ROUTE.match(target.partition("?")[0])
        if route is None:
            return _eg_error(404, "APIGW.0101", "The API does not exist or has not been published")
        reason = auth_failure(method, target, headers, body, base_url=self.url,
                              token=self._token, credentials=self._credentials)
        if reason is not None:
            return _eg_error(401, "APIGW.0301", f"Incorrect IAM authentication information: "
                             f"{reason}")
        if method != "POST":
            return _eg_error(405, "EG.00014050", f"{method} is not allowed here")
        if route["pid"] != self.project_id:
            return _eg_error(403, "EG.00014030", "project id does not match the token")
        if route["cid"] != self.channel_id:
            return _eg_error(404, "EG.00014040", "the channel does not exist")
        try:
            payload = json.loads(body)
        except ValueError:
            return _eg_error(400, "EG.00014000", "the body is not JSON")
        events = payload.get("events") if isinstance(payload, dict) else None
        if not isinstance(events, list) or not events:
            return _eg_error(400, "EG.00014000", "events must be a non-empty list")
        if len(events) > self.max_batch:
            return _eg_error(400, "EG.00014001",
                             f"at most {self.max_batch} events per call, got {len(events)}")
        with self._changed:
            scripted = self._fail.popleft() if self._fail else frozenset()
            results: list[dict[str, str]] = []
            ids: list[str] = []
            for position, event in enumerate(events):
                event_id = str(event.get("id")) if isinstance(event, dict) else ""
                ids.append(event_id)
                problem = _invalid(event)
                if problem is None and position in scripted:
                    problem = ("EG.00014500", "internal error publishing the event")
                if problem is None:
                    self._events.append(event)
                    results.append({"event_id": event_id, "error_code": "", "error_msg": ""})
                else:
                    results.append({"event_id": event_id, "error_code": problem[0],
                                    "error_msg": problem[1]})
            self._batches.append(ids)
            self._changed.notify_all()
        failed = sum(1 for result in results if result["error_code"])
        return json_response(200, {"failed_count": failed, "events": results})


def _invalid(event: object) -> tuple[str, str] | None:
    if not isinstance(event, dict):
        return "EG.00014002", "an event must be a JSON object"
    for name in ("id", "source", "type"):
        if not isinstance(event.get(name), str) or not event[name]:
            return "EG.00014002", f"{name} is required"
    if event.get("specversion") != "1.0":
        return "EG.00014002", "specversion must be 1.0"
    content_type = event.get("datacontenttype")
    if content_type is not None and content_type != "application/json":
        return "EG.00014002", "datacontenttype must be application/json"
    return None
