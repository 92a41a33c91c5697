"""A loopback stand-in of Huawei SMN's publish API.

``POST /v2/{project_id}/notifications/topics/{topic_urn}/publish`` with
``{"subject", "message"}`` answers ``200 {"request_id", "message_id"}`` (the shapes
of ``huaweicloudsdksmn`` v2 ``PublishMessageRequestBody``/``PublishMessageResponse``).
It refuses, as the SDK documents: a subject over 512 bytes, a message over 256 KB,
no message at all (400); an unknown topic (404). ``inject(Fault(...))`` scripts
whole answers (5xx, 429, dropped connections); ``hold()`` makes every publish wait
(the message not yet taken) until ``release()``: a slow SMN, for as long as a test
needs one.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from ._auth import auth_failure
from ._http import Fault, RecordedRequest, Response, ServerBase, json_response
from .sample_data import DEFAULT_PROJECT_ID

__all__ = ["SmnMessage", "SmnStandIn"]

_ROUTE = re.compile(r"^/v2/(?P<pid>[^/]+)/notifications/topics/(?P<urn>[^/]+)/publish/?$")
MAX_SUBJECT_BYTES = 512
MAX_MESSAGE_BYTES = 256 * 1024


@dataclass(frozen=True)
class SmnMessage:
    topic_urn: str
    subject: str
    message: str
    message_id: str


def _smn_error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"request_id": uuid.uuid4().hex, "code": code,
                                  "message": message})


class SmnStandIn(ServerBase):
    """SMN publish on 127.0.0.1; keeps the messages it took, in order."""

    def __init__(
        self,
        *,
        project_id: str = DEFAULT_PROJECT_ID,
        topic_urn: str | None = None,
        token: str | None = None,
        credentials: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.project_id = project_id
        self.topic_urn = topic_urn or f"urn:smn:ap-southeast-3:{project_id}:failjob-reaper"
        self._token = token
        self._credentials = dict(credentials) if credentials is not None else None
        self._changed = threading.Condition()
        self._messages: list[SmnMessage] = []
        self._open = threading.Event()
        self._open.set()
        self.held = 0
        """Publish calls that reached a ``hold()`` (and waited, or still wait)."""

    def hold(self) -> None:
        """Every publish from now on waits, unanswered, until ``release()``."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def wait_held(self, n: int, timeout: float = 10) -> None:
        """Block until ``n`` publish calls wait at the hold; AssertionError otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.held < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {n} held calls within {timeout}s")
                self._changed.wait(remaining)

    def _wait_open(self) -> None:
        if self._open.is_set():
            return
        with self._changed:
            self.held += 1
            self._changed.notify_all()
        while not self._open.wait(0.05):
            if self.wait(0):  # the server is stopping
                return

    def inject(self, *faults: Fault) -> None:
        """Each of the next publish calls consumes one fault (nothing is taken)."""
        self.faults.add("POST", r"/publish", faults)

    @property
    def messages(self) -> list[SmnMessage]:
        with self._changed:
            return list(self._messages)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.log.snapshot()

    def wait_for(self, n: int, timeout: float = 10) -> list[SmnMessage]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._messages) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    subjects = [m.subject for m in self._messages]
                    raise AssertionError(f"expected {n} messages within {timeout}s: {subjects}")
                self._changed.wait(remaining)
            return list(self._messages)

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        route = _ROUTE.match(target.partition("?")[0])
        if route is None:
            return _smn_error(404, "SMN.00010404", "The API does not exist")
        reason = auth_failure(method, target, headers, body, base_url=self.url,
                              token=self._token, credentials=self._credentials)
        if reason is not None:
            return json_response(401, {"error_code": "APIGW.0301",
                                       "error_msg": f"Incorrect IAM authentication "
                                                    f"information: {reason}"})
        if method != "POST":
            return _smn_error(405, "SMN.00010405", f"{method} is not allowed here")
        if route["pid"] != self.project_id:
            return _smn_error(403, "SMN.00010403", "project id does not match the token")
        if unquote(route["urn"]) != self.topic_urn:
            return _smn_error(404, "SMN.00011008", "the topic does not exist")
        try:
            payload = json.loads(body)
        except ValueError:
            return _smn_error(400, "SMN.00010400", "the body is not JSON")
        if not isinstance(payload, dict):
            return _smn_error(400, "SMN.00010400", "the body must be a JSON object")
        subject, message = payload.get("subject", ""), payload.get("message")
        if not isinstance(subject, str) or len(subject.encode()) > MAX_SUBJECT_BYTES:
            return _smn_error(400, "SMN.00011001", "subject must be at most 512 bytes")
        if not isinstance(message, str) or not message:
            return _smn_error(400, "SMN.00011002", "message is required")
        if len(message.encode()) > MAX_MESSAGE_BYTES:
            return _smn_error(400, "SMN.00011003", "message must be at most 256 KB")
        self._wait_open()
        taken = SmnMessage(self.topic_urn, subject, message, uuid.uuid4().hex)
        with self._changed:
            self._messages.append(taken)
            self._changed.notify_all()
        return json_response(200, {"request_id": uuid.uuid4().hex,
                                   "message_id": taken.message_id})

