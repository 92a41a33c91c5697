"""The ``K_SINK`` emitter: each outcome POSTed in binary mode (Knative SinkBinding).

Delivery as delivery.py's table says for ``K_SINK``: 2xx took it; 408, 429, 5xx
and transport errors are tried again (``attempts`` in all, backoff with full jitter,
``Retry-After`` honoured), then ``OutcomeDeliveryError`` (the publisher keeps the
event in its outbox); any other 4xx is a permanent refusal of that one event:
``delivery.Refused`` (the publisher logs it in full at ERROR, counts and drops it).
Every emit, its attempts and waits, ends inside ``window`` seconds, each answer read
up to ``delivery.ANSWER_MAX_BYTES``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from failjob_reaper import delivery
from failjob_reaper.delivery import Verdict
from failjob_reaper.errors import OutcomeDeliveryError


class SinkEmitter:
    """POSTs each event to ``K_SINK`` in binary mode (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        window: float | None = None,
    ) -> None:
        self.url = url
        self.attempts = max(1, attempts)
        self.window = window if window is not None else delivery.send_window(attempts, timeout)
        self.policy = delivery.RetryPolicy(max_attempts=self.attempts, deadline=self.window,
                                           backoff_initial=0.1, backoff_max=1.0)
        self._sleep = sleep
        # Its own client and pool: the SDRS credentials must never travel to the sink.
        self._http = delivery.client(url, timeout=timeout, transport=transport)

    def emit(self, event: CloudEvent) -> None:
        headers, body = to_binary(event)
        deadline = time.monotonic() + self.window
        event_id = str(event["id"])

        def attempt(_: int) -> None:
            try:
                answer = delivery.send(self._http, "POST", self.url, headers=headers,
                                       content=body, deadline=deadline,
                                       max_bytes=delivery.ANSWER_MAX_BYTES)
            except httpx.TransportError as exc:
                raise delivery.Retry(OutcomeDeliveryError(
                    f"sink unreachable: {type(exc).__name__}")) from None
            verdict = delivery.SINK.classify(answer)
            if verdict is Verdict.TAKEN:
                return
            reason = f"sink answered {delivery.describe(answer)}"
            if verdict is Verdict.REFUSED:
                raise delivery.Refused("K_SINK", {event_id: reason})
            raise delivery.Retry(OutcomeDeliveryError(reason),
                                 delivery.retry_after(answer.response, self.window))

        try:
            delivery.call(attempt, self.policy, deadline=deadline, sleep=self._sleep)
        except delivery.Retry as exc:
            raise OutcomeDeliveryError(
                f"outcome {event['type']} for {event.get('subject') or '-'} not delivered "
                f"after {exc.attempts} attempt(s): {exc.error}"
            ) from None

    def close(self) -> None:
        self._http.close()
