"""The ``K_SINK`` emitter: each outcome POSTed in binary mode (Knative SinkBinding)."""

from __future__ import annotations

import httpx
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.tls import context_for


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
        # Its own client and pool: the SDRS credentials must never travel to the sink.
        # httpx's pooled transport (proxies from the environment honoured), the process's
        # one TLS context (tls.py).
        self._http = httpx.Client(
            timeout=timeout,
            verify=context_for(url),
            transport=transport,
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
