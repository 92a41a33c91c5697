"""The EventGrid emitter: outcomes published to a Huawei EventGrid custom channel
(docs/huawei-cloud.md).

``POST {EG_ENDPOINT}/v1/{project_id}/channels/{EG_CHANNEL_ID}/events`` with
``{"events": [CloudEvent JSON, ...]}``, at most ``batch_size`` (10) a call, signed
with the deployment's credentials (the same ``httpx.Auth`` as the SDRS client:
AK/SK, the FunctionGraph agency's rotating credentials, or the IAM token).
Shapes as in Huawei's SDK (``huaweicloudsdkeg`` v1 ``PutEventsRequest`` /
``PutEventsResponse``: ``failed_count`` and ``events[]`` of ``event_id``,
``error_code``, ``error_msg``).

Delivery, per event, as delivery.py's table says for EventGrid:

* 2xx with the per-event results (``failed_count`` and ``events[]``) and no error for
  the event: taken;
* 2xx naming the event as failed: sent again (alone with the other failures of its
  batch, never with the ones taken), up to ``attempts`` calls in all;
* a 2xx that is not a PutEvents answer (a proxy's HTML page, no per-event results, an
  answer over ``delivery.ANSWER_MAX_BYTES``): not a delivery, the batch again;
* 408, 429, 5xx, transport errors: the whole batch again, after a jittered backoff
  that honours ``Retry-After`` (delivery's one helper);
* 401, 403, 404: the channel refuses this deployment (credentials, permission, channel
  id), not the event: nothing is dropped, every event stays undelivered;
* any other 4xx: a permanent refusal of the event. A batch of several is split so that
  one bad event cannot sink the others; a single refused event is reported in
  ``delivery.Refused`` (or ``PartialDelivery.refused``): the publisher logs it in full
  at ERROR (the log is then its only record), counts and drops it, as for the sink.

What is still not taken after the attempts raises ``PartialDelivery`` naming those
events only, so that the publisher keeps exactly them in its outbox. One
``emit_many`` ends inside ``window`` seconds, every request bounded as a whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from cloudevents.conversion import to_dict
from cloudevents.http import CloudEvent

from failjob_reaper import delivery
from failjob_reaper.delivery import Verdict
from failjob_reaper.errors import OutcomeDeliveryError

log = logging.getLogger("failjob_reaper")

MAX_BATCH = 10
"""No limit is documented; 10 per call is what other EventGrid clients send."""



class PartialDelivery(OutcomeDeliveryError):
    """Some events were not taken; ``undelivered`` names them (by CloudEvent id);
    ``refused`` the ones refused permanently (id -> reason), to be dropped."""

    def __init__(self, message: str, undelivered: Iterable[str],
                 refused: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.undelivered = frozenset(undelivered)
        self.refused = dict(refused or {})


class _Kept(Exception):
    """The channel refuses this deployment, not the events: keep them, do not retry now."""


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
        sleep: Callable[[float], None] | None = None,
        window: float | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        self.url = f"{endpoint.rstrip('/')}/v1/{project_id}/channels/{channel_id}/events"
        self.attempts = max(1, attempts)
        self.batch_size = batch_size
        self.window = window if window is not None else delivery.send_window(attempts, timeout)
        self.policy = delivery.RetryPolicy(max_attempts=self.attempts, deadline=self.window,
                                           backoff_initial=0.1, backoff_max=1.0)
        self._sleep = sleep
        self._http = delivery.client(self.url, timeout=timeout, auth=auth, transport=transport)

    def emit(self, event: CloudEvent) -> None:
        self.emit_many([event])

    def emit_many(self, events: Sequence[CloudEvent]) -> None:
        """Publish ``events`` in batches; PartialDelivery names what was not taken,
        ``delivery.Refused`` what was refused when everything else was taken."""
        deadline = time.monotonic() + self.window
        undelivered: list[str] = []
        refused: dict[str, str] = {}
        reasons: list[str] = []
        for start in range(0, len(events), self.batch_size):
            left, reason = self._publish(list(events[start:start + self.batch_size]),
                                         deadline, refused)
            undelivered += left
            if reason:
                reasons.append(reason)
        if undelivered:
            raise PartialDelivery(
                f"{len(undelivered)} of {len(events)} outcome(s) not taken by EventGrid: "
                f"{reasons[-1] if reasons else 'refused'}",
                undelivered, refused,
            )
        if refused:
            raise delivery.Refused("EventGrid", refused)

    def close(self) -> None:
        self._http.close()

    # -- one batch ------------------------------------------------------------------

    def _publish(self, batch: list[CloudEvent], deadline: float,
                 refused: dict[str, str]) -> tuple[list[str], str | None]:
        """Send one batch until taken; return the ids still not taken and the last
        reason; the ids refused permanently go into ``refused``."""
        pending = {str(event["id"]): event for event in batch}
        split: list[str] = []

        def attempt(_: int) -> None:
            nonlocal pending
            try:
                answer = delivery.send(
                    self._http, "POST", self.url, deadline=deadline,
                    max_bytes=delivery.ANSWER_MAX_BYTES,
                    json_body={"events": [_wire(event) for event in pending.values()]})
            except httpx.TransportError as exc:
                raise delivery.Retry(OutcomeDeliveryError(
                    f"EventGrid unreachable: {type(exc).__name__}")) from None
            verdict = delivery.EVENTGRID.classify(answer)
            if verdict is Verdict.TAKEN:
                failed = _failed_ids(answer.response, pending)
                if not failed:
                    pending = {}
                    return
                reason = f"EventGrid refused {len(failed)} event(s): {next(iter(failed.values()))}"
                log.warning("eventgrid: %s; sending those again", reason)
                pending = {event_id: pending[event_id] for event_id in failed}
                raise delivery.Retry(OutcomeDeliveryError(reason))
            reason = f"EventGrid answered {delivery.describe(answer)}"
            if verdict is Verdict.KEEP:
                raise _Kept(reason)
            if verdict is Verdict.REFUSED:
                if len(pending) > 1:
                    # Which one? Each alone: one bad event must not sink the others.
                    for event in list(pending.values()):
                        split.extend(self._publish([event], deadline, refused)[0])
                else:
                    refused.update({event_id: reason for event_id in pending})
                pending = {}
                return
            if answer.response.is_success:
                reason = f"EventGrid answered {answer.response.status_code} without " \
                         "its per-event results (not a PutEvents answer)"
            raise delivery.Retry(OutcomeDeliveryError(reason),
                                 delivery.retry_after(answer.response, self.window))

        try:
            delivery.call(attempt, self.policy, deadline=deadline, sleep=self._sleep)
        except delivery.Retry as exc:
            return list(pending), str(exc.error)
        except _Kept as exc:
            # The channel refuses this deployment, not the event: keep them all
            # (fix the credentials or the channel and they are delivered).
            return list(pending), str(exc)
        return split, None


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
    """The events a PutEvents answer names as failed, with their error (``{}``: all
    taken). The answer was checked to be one (delivery.EVENTGRID)."""
    answer = delivery.json_object(response) or {}
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


