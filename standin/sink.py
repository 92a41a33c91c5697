"""A loopback CloudEvents sink for outcome events (the K_SINK of the tests and `make run`)."""

from __future__ import annotations

import threading
import time

from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent, from_http

from ._http import Fault, RecordedRequest, Response, ServerBase, error_body

__all__ = ["OutcomeSink"]


class OutcomeSink(ServerBase):
    """Accepts CloudEvents (binary or structured) with 202 and keeps them in order."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._events: list[CloudEvent] = []
        self._changed = threading.Condition()

    def inject(self, *faults: Fault) -> None:
        """Each of the next deliveries consumes one fault; a faulted event is not recorded."""
        self.faults.add("*", "", faults)

    @property
    def events(self) -> list[CloudEvent]:
        with self._changed:
            return list(self._events)

    @property
    def received_ids(self) -> list[str]:
        return [str(event["id"]) for event in self.events]

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.log.snapshot()

    def of_type(self, event_type: str) -> list[CloudEvent]:
        return [event for event in self.events if event["type"] == event_type]

    def clear(self) -> None:
        with self._changed:
            self._events.clear()
        self.log.clear()

    def wait_for(self, n: int, timeout: float = 10) -> list[CloudEvent]:
        """Block until at least ``n`` events arrived; AssertionError listing them otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._events) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [(e["type"], e.get("subject")) for e in self._events]
                    raise AssertionError(f"expected {n} events within {timeout}s, got {got}")
                self._changed.wait(remaining)
            return list(self._events)

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        if method != "POST":
            return Response(405, error_body(405, "SINK.0405", "POST CloudEvents here"))
        try:
            event = from_http(headers, body)
        except GenericException as exc:
            return Response(400, error_body(400, "SINK.0400", f"not a CloudEvent: {exc}"))
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()
        return Response(202)
