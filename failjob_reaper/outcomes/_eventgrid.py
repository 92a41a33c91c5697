"""The EventGrid emitter: outcomes published to a Huawei EventGrid custom channel (SPEC 11).

``POST {EG_ENDPOINT}/v1/{project_id}/channels/{EG_CHANNEL_ID}/events`` with
``{"events": [CloudEvent JSON, ...]}``, at most ``batch_size`` (10) a call, signed
with the deployment's credentials (the same ``httpx.Auth`` as the SDRS client:
AK/SK, the FunctionGraph agency's rotating credentials, or the IAM token).
Shapes as in Huawei's SDK (``huaweicloudsdkeg`` v1 ``PutEventsRequest`` /
``PutEventsResponse``: ``failed_count`` and ``events[]`` of ``event_id``,
``error_code``, ``error_msg``).

Delivery, per event:

* 2xx with no error for the event: taken;
* 2xx naming the event as failed: sent again (alone with the other failures of its
  batch, never with the ones taken), up to ``attempts`` calls in all;
* 408, 429, 5xx, transport errors: the whole batch again, after a jittered backoff
  that honours ``Retry-After``;
* 401, 403, 404: the channel refuses this deployment (credentials, permission, channel
  id), not the event: nothing is dropped, every event stays undelivered;
* any other 4xx: a permanent refusal of the event. A batch of several is split so that one bad
  event cannot sink the others; a single refused event is logged in full at ERROR
  (the log is then its only record) and dropped, as the sink emitter does (SPEC 7).

What is still not taken after the attempts raises ``PartialDelivery`` naming those
events only, so that the publisher keeps exactly them in its outbox.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from cloudevents.conversion import to_dict
from cloudevents.http import CloudEvent

from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.tls import context_for

log = logging.getLogger("failjob_reaper")

MAX_BATCH = 10
"""No limit is documented; 10 per call is what other EventGrid clients send."""

_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
_NOT_US = frozenset({401, 403, 404})
_MAX_RETRY_AFTER = 5.0


class PartialDelivery(OutcomeDeliveryError):
    """Some events were not taken; ``undelivered`` names them (by CloudEvent id)."""

    def __init__(self, message: str, undelivered: Iterable[str]) -> None:
        super().__init__(message)
        self.undelivered = frozenset(undelivered)


class EventGridEmitter:
    """Publishes outcome CloudEvents to one EventGrid custom channel (see module doc)."""

    def __init__(
        self,
        endpoint: str,
        project_id: str,
        channel_id: str,
        *,
        auth: httpx.Auth | None,
        timeout: float = 5.0,
        attempts: int = 3,
        batch_size: int = MAX_BATCH,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        self.url = f"{endpoint.rstrip('/')}/v1/{project_id}/channels/{channel_id}/events"
        self.attempts = max(1, attempts)
        self.batch_size = batch_size
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=timeout,
            auth=auth,
            verify=context_for(self.url),  # httpx's pool; the process's one TLS context
            transport=transport,
            follow_redirects=False,  # a redirect must not carry a signed request elsewhere
        )

    def emit(self, event: CloudEvent) -> None:
        self.emit_many([event])

    def emit_many(self, events: Sequence[CloudEvent]) -> None:
        """Publish ``events`` in batches; PartialDelivery names what was not taken."""
        undelivered: list[str] = []
        reasons: list[str] = []
        for start in range(0, len(events), self.batch_size):
            left, reason = self._publish(list(events[start:start + self.batch_size]))
            undelivered += left
            if reason:
                reasons.append(reason)
        if undelivered:
            raise PartialDelivery(
                f"{len(undelivered)} of {len(events)} outcome(s) not taken by EventGrid: "
                f"{reasons[-1] if reasons else 'refused'}",
                undelivered,
            )

    def close(self) -> None:
        self._http.close()

    # -- one batch ------------------------------------------------------------------

    def _publish(self, batch: list[CloudEvent]) -> tuple[list[str], str | None]:
        """Send one batch until taken; return the ids still not taken and the last reason."""
        pending = {str(event["id"]): event for event in batch}
        reason: str | None = None
        hint: float | None = None  # Retry-After of the last answer
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(_backoff(attempt, hint))
                hint = None
            try:
                response = self._http.post(self.url, json={"events": [
                    _wire(event) for event in pending.values()]})
            except httpx.TransportError as exc:
                reason = f"EventGrid unreachable: {type(exc).__name__}"
                continue
            status = response.status_code
            if status in _RETRYABLE or status >= 500:
                reason = f"EventGrid answered {status}"
                hint = _retry_after(response)
                continue
            if status in _NOT_US:
                # The channel refuses this deployment, not the event: keep them all
                # (fix the credentials or the channel and they are delivered).
                return list(pending), f"EventGrid answered {status} {_error_text(response)}"
            if not response.is_success:
                return self._refused(list(pending.values()), response), None
            failed = _failed_ids(response, pending)
            if not failed:
                return [], None
            reason = f"EventGrid refused {len(failed)} event(s): {failed[next(iter(failed))]}"
            log.warning("eventgrid: %s; sending those again", reason)
            pending = {event_id: pending[event_id] for event_id in failed}
        return list(pending), reason

    def _refused(self, batch: list[CloudEvent], response: httpx.Response) -> list[str]:
        if len(batch) > 1:
            # Which one? Each alone: one bad event must not sink the others.
            left: list[str] = []
            for event in batch:
                left += self._publish([event])[0]
            return left
        event = batch[0]
        log.error(
            "eventgrid refused outcome %s permanently (%d %s); dropped, its only record: %s",
            event["id"], response.status_code, _error_text(response),
            json.dumps(_wire(event), default=str, separators=(",", ":")),
        )
        return []


def _backoff(attempt: int, hint: float | None) -> float:
    if hint is not None:
        return min(hint, _MAX_RETRY_AFTER)
    return random.uniform(0, min(1.0, 0.1 * 2 ** attempt))  # noqa: S311 - jitter, not secrets


def _wire(event: CloudEvent) -> dict[str, Any]:
    """The CloudEvent as EventGrid takes it: JSON, ``time`` as ``2018-04-05T17:31:00Z``."""
    body = to_dict(event)
    moment = body.get("time")
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            body["time"] = parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return body


def _failed_ids(response: httpx.Response, pending: Mapping[str, CloudEvent]) -> dict[str, str]:
    """The events the answer names as failed, with their error (``{}``: all taken)."""
    try:
        answer = response.json()
    except ValueError:
        return {}  # 2xx without a body: taken
    if not isinstance(answer, dict):
        return {}
    results = answer.get("events")
    failed: dict[str, str] = {}
    if isinstance(results, list):
        for result in results:
            if not isinstance(result, dict):
                continue
            event_id, code = result.get("event_id"), result.get("error_code")
            if code and isinstance(event_id, str) and event_id in pending:
                failed[event_id] = f"{code} {result.get('error_msg') or ''}".strip()
    count = answer.get("failed_count")
    if isinstance(count, int) and not isinstance(count, bool) and count > len(failed):
        # Failures the answer does not tie to an event: send them all again (ids are
        # stable, so a consumer drops the repeats).
        return {event_id: f"failed_count {count}" for event_id in pending}
    return failed


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        code = body.get("error_code") or (body.get("error") or {}).get("code")
        message = body.get("error_msg") or (body.get("error") or {}).get("message")
        return f"{code or ''} {message or ''}".strip() or response.reason_phrase
    return response.reason_phrase
