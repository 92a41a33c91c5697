"""The publisher: outcome -> CloudEvent -> emitter, with an outbox for refused events."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from cloudevents.http import CloudEvent

from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.outcomes._model import (
    SWEEP_COMPLETED,
    TYPE_PREFIX,
    Causation,
    Outcome,
    OutcomeData,
    SweepSummary,
    SweepSummaryData,
    outcome_id,
)

log = logging.getLogger("failjob_reaper")


class Emitter(Protocol):
    def emit(self, event: CloudEvent) -> None: ...


class Publisher:
    """Builds outcome CloudEvents and hands them to the emitter.

    An event the emitter refuses is kept in a bounded outbox and sent again,
    oldest first, before the next one: a task deleted while the sink was down is
    still reported once the sink is back (its id is stable, so a consumer that
    saw it already can drop the repeat).
    """

    def __init__(
        self,
        emitter: Emitter,
        *,
        source: str,
        overrides: Mapping[str, Any] | None = None,
        outbox_limit: int = 10_000,
    ) -> None:
        self.emitter = emitter
        self.source = source
        self._extensions = dict((overrides or {}).get("extensions", {}))
        self._outbox: deque[CloudEvent] = deque()
        self._outbox_limit = outbox_limit
        self._flush_lock = threading.Lock()

    def outcome(self, outcome: Outcome) -> CloudEvent:
        return self._send(self.outcome_event(outcome))

    def sweep_completed(self, summary: SweepSummary) -> CloudEvent:
        event = self._event(
            TYPE_PREFIX + SWEEP_COMPLETED, None, summary.causation, summary.as_data()
        )
        return self._send(event)

    def outcomes(self, outcomes: Sequence[Outcome]) -> list[CloudEvent]:
        """Publish several outcomes, in batches when the emitter takes batches (EventGrid).

        Like ``outcome`` for each; on failure only the events not taken are kept
        (``PartialDelivery`` names them) and the error is raised.
        """
        events = [self.outcome_event(outcome) for outcome in outcomes]
        emit_many = getattr(self.emitter, "emit_many", None)
        if not callable(emit_many) or len(events) < 2:
            for position, event in enumerate(events):
                try:
                    self._send(event)
                except OutcomeDeliveryError:
                    for rest in events[position + 1:]:  # the emitter is down: keep them
                        self._keep(rest)
                    raise
            return events
        try:
            self.flush()
            emit_many(events)
        except OutcomeDeliveryError as exc:
            undelivered = getattr(exc, "undelivered", None)
            for event in events:
                if undelivered is None or event["id"] in undelivered:
                    self._keep(event)
            raise
        return events

    def defer(self, outcome: Outcome) -> None:
        """Queue without trying: the caller knows the sink is down right now."""
        self._keep(self.outcome_event(outcome))

    def outcome_event(self, outcome: Outcome) -> CloudEvent:
        return self._event(
            TYPE_PREFIX + outcome.outcome,
            outcome.failure_job_id,
            outcome.causation,
            outcome.as_data(),
        )

    @property
    def pending(self) -> int:
        return len(self._outbox)

    def flush(self) -> None:
        """Send what the outbox holds, oldest first; raise OutcomeDeliveryError if refused."""
        if not self._outbox:  # the common case takes no lock
            return
        with self._flush_lock:
            while self._outbox:
                self.emitter.emit(self._outbox[0])
                self._outbox.popleft()

    def _send(self, event: CloudEvent) -> CloudEvent:
        try:
            self.flush()
            self.emitter.emit(event)
        except OutcomeDeliveryError:
            self._keep(event)
            raise
        return event

    def _keep(self, event: CloudEvent) -> None:
        if len(self._outbox) >= self._outbox_limit:
            lost = self._outbox.popleft()
            log.error("outbox full: outcome %s %s for %s dropped", lost["id"], lost["type"],
                      lost.get("subject") or "-")
        self._outbox.append(event)
        log.warning("outcome %s %s for %s not delivered; kept to send again", event["id"],
                    event["type"], event.get("subject") or "-")

    def _event(
        self,
        event_type: str,
        subject: str | None,
        causation: Causation,
        data: OutcomeData | SweepSummaryData,
    ) -> CloudEvent:
        attributes: dict[str, Any] = {
            **self._extensions,
            "type": event_type,
            "source": self.source,
            "id": outcome_id(causation, subject or "sweep", event_type),
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
        }
        if subject:
            attributes["subject"] = subject
        if causation.traceparent:
            attributes["traceparent"] = causation.traceparent
            if causation.tracestate:
                attributes["tracestate"] = causation.tracestate
        return CloudEvent(attributes, data)
