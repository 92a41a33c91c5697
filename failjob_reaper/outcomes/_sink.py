"""The ``K_SINK`` emitter: each outcome POSTed in binary mode (Knative SinkBinding)."""

from __future__ import annotations

import httpx
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from failjob_reaper._transport import transport_for
from failjob_reaper.errors import OutcomeDeliveryError


class _SinkRefused(Exception):
    pass


class SinkEmitter:
    """POSTs each event to ``K_SINK`` in binary mode; retries a little, then raises."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.attempts = attempts
        # Its own client and connections: the SDRS credentials must never travel to the sink.
        # A POST that the transport sends again on a fresh connection (it could not be sent
        # on a reused one) is harmless anyway: outcome ids are deterministic, so a repeat
        # is recognisable as such.
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport or transport_for(url),
            follow_redirects=False,
        )

    def emit(self, event: CloudEvent) -> None:
        headers, body = to_binary(event)
        retrying = Retrying(
            retry=retry_if_exception_type((_SinkRefused, httpx.TransportError)),
            wait=wait_random_exponential(multiplier=0.1, max=1.0),
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    response = self._http.post(self.url, headers=headers, content=body)
                    if not response.is_success:
                        raise _SinkRefused(f"sink answered {response.status_code}")
        except (_SinkRefused, httpx.TransportError) as exc:
            raise OutcomeDeliveryError(
                f"outcome {event['type']} for {event.get('subject') or '-'} not delivered: "
                f"{exc or type(exc).__name__}"
            ) from None

    def close(self) -> None:
        self._http.close()
