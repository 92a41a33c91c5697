"""The publisher: outcome -> CloudEvent -> emitter, through an outbox in the state store.

Transactional outbox (docs/state.md): every outcome event is recorded in the
outbox (a hash in the ``StateStore``: shared by every instance with Redis, this
process's with ``memory://``) before it is sent, and removed once the emitter
took it. An event the emitter refuses stays there until any instance delivers
it: ``flush()`` at the start of every invocation sends what is pending, oldest
first, before new work. Ids are stable, so a consumer that saw an event
already can drop a repeat.

An event a destination refuses for good (``delivery.Refused``: any 4xx but 408/429,
see delivery.py) is not kept: it is logged in full as JSON at ERROR (the log line is
then its only record), counted (``Publisher.dropped`` in this process, the state
store's ``outbox:dropped`` across instances: ``dropped_total``) and dropped, so that
one event the sink rejects never blocks the ones after it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from cloudevents.conversion import to_json
from cloudevents.http import CloudEvent, from_json

from failjob_reaper.delivery import Refused
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.outcomes._model import (
    SWEEP_COMPLETED,
    TYPE_PREFIX,
    Causation,
    Outcome,
    SweepSummary,
    outcome_id,
)
from failjob_reaper.state import MemoryStore, StateStore, StateUnavailable
from failjob_reaper.state import keys as state_keys

if TYPE_CHECKING:
    from failjob_reaper.outcomes._model import OutcomeData, SweepSummaryData

log = logging.getLogger("failjob_reaper")

OUTBOX = state_keys.OUTBOX
"""The hash of pending events: field = event id, value = {"seq", "until", "event"} as JSON;
``until`` (epoch seconds) is how long its first sender may still be sending it."""
OUTBOX_TTL = state_keys.OUTBOX_TTL
"""Refreshed by every write: an outbox that nobody touches for a week is given up."""
CLAIM_TTL = state_keys.CLAIM_TTL
"""An instance sending a pending event holds it this long, so two do not send it at once."""
DROPPED = state_keys.OUTBOX_DROPPED
"""The counter of events refused for good and dropped, shared by every instance."""
DROPPED_TTL = state_keys.OUTBOX_DROPPED_TTL


class Emitter(Protocol):
    def emit(self, event: CloudEvent) -> None: ...


class Publisher:
    """Builds outcome CloudEvents and hands them to the emitter through the outbox.

    ``outbox_limit`` bounds the outbox: past it, the oldest pending event is
    dropped (and logged as an error).
    """

    def __init__(
        self,
        emitter: Emitter,
        *,
        source: str,
        overrides: Mapping[str, Any] | None = None,
        outbox_limit: int = 10_000,
        state: StateStore | None = None,
        send_window: float = 30.0,
    ) -> None:
        self.emitter = emitter
        self.source = source
        self._extensions = dict((overrides or {}).get("extensions", {}))
        self._outbox_limit = outbox_limit
        self.state: StateStore = state if state is not None else MemoryStore()
        self._flush_lock = threading.Lock()
        self._owner = uuid.uuid4().hex  # who holds a claim on a pending event
        # How long one emit may take (the sink's timeout times its attempts, and backoff):
        # until then a recorded event is its sender's; after it, anyone's to flush.
        self.send_window = send_window
        self._dropped = 0
        self._dropped_lock = threading.Lock()

    def outcome(
        self, outcome: Outcome, *, recorded: Callable[[], None] | None = None
    ) -> CloudEvent:
        """Record the outcome in the outbox, call ``recorded`` (the caller keeps the
        answer of its input there, before anything can go wrong), then send it."""
        return self._send(self.outcome_event(outcome), recorded)

    def sweep_completed(
        self, summary: SweepSummary, *, recorded: Callable[[], None] | None = None
    ) -> CloudEvent:
        event = self._event(
            TYPE_PREFIX + SWEEP_COMPLETED, None, summary.causation, summary.as_data()
        )
        return self._send(event, recorded)

    def outcomes(self, outcomes: Sequence[Outcome]) -> list[CloudEvent]:
        """Publish several outcomes, in batches when the emitter takes batches (EventGrid).

        Like ``outcome`` for each: all are recorded in the outbox first; on failure only
        the events not taken stay there (``PartialDelivery`` names them) and the error
        is raised.
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
        until = time.time() + self.send_window
        recorded = [event for event in events if self._record(event, until=until)]
        try:
            emit_many(events)
        except Refused as exc:
            self._refused(events, exc.refused)
        except OutcomeDeliveryError as exc:
            self._refused(events, getattr(exc, "refused", {}))
            undelivered = getattr(exc, "undelivered", None)
            for event in recorded:
                if undelivered is None or event["id"] in undelivered:
                    self._keep(event)
                else:
                    self._forget(event)
            raise
        for event in recorded:
            self._forget(event)
        return events

    def defer(self, outcome: Outcome) -> None:
        """Record without trying: the caller knows the sink is down right now."""
        self._keep(self.outcome_event(outcome))

    def _keep(self, event: CloudEvent) -> None:
        """In the outbox, anyone's to send from now on."""
        if not self._record(event):
            log.error("outcome %s %s for %s lost: neither the sink nor the state store "
                      "took it", event["id"], event["type"], event.get("subject") or "-")
            return
        self._warn_kept(event)
        self._bound()

    def outcome_event(self, outcome: Outcome) -> CloudEvent:
        return self._event(
            TYPE_PREFIX + outcome.outcome,
            outcome.failure_job_id,
            outcome.causation,
            outcome.as_data(),
            key=outcome.id_key,
        )

    @property
    def dropped(self) -> int:
        """Events refused for good and dropped by this process."""
        with self._dropped_lock:
            return self._dropped

    @property
    def dropped_total(self) -> int:
        """Events refused for good and dropped by every instance (the state store's
        ``outbox:dropped``, kept 30 days from the last drop; 0 if the store is down)."""
        try:
            return int(self.state.get(DROPPED) or 0)
        except (StateUnavailable, ValueError):
            return 0

    @property
    def pending(self) -> int:
        """Events in the outbox, this instance's and any other's (0 if the store is down)."""
        try:
            return self.state.hash_len(OUTBOX)
        except StateUnavailable:
            return 0

    def flush(self) -> set[str]:
        """Send every pending event, oldest first; raise OutcomeDeliveryError if refused.

        Called at the start of an invocation, before new work. Events another
        instance is sending right now are left to it: their ids are returned (still
        pending). With the store down there is nothing to read: nothing is sent.
        """
        with self._flush_lock:
            try:
                pending = self.state.hash_get_all(OUTBOX)
            except StateUnavailable as exc:
                log.warning("outbox not read: %s", exc)
                return set()
            now = time.time()
            left: set[str] = set()
            for event_id, event, until in _oldest_first(pending):
                claim = state_keys.outbox_claim(event_id)
                if until > now or not self.state.add(claim, self._owner, CLAIM_TTL):
                    left.add(event_id)  # its first sender, or another instance, is at it
                    continue
                try:
                    try:
                        self.emitter.emit(event)
                    except Refused as exc:  # dropped: the next ones go on
                        self._refused([event], exc.refused)
                    except OutcomeDeliveryError as exc:
                        self._refused([event], getattr(exc, "refused", {}))
                        raise
                    self.state.hash_delete(OUTBOX, event_id)
                finally:
                    self.state.delete_if(claim, self._owner)
            return left

    def _send(
        self, event: CloudEvent, on_recorded: Callable[[], None] | None = None
    ) -> CloudEvent:
        recorded = self._record(event, until=time.time() + self.send_window)
        if on_recorded is not None:
            on_recorded()
        try:
            self.emitter.emit(event)
        except Refused as exc:  # refused for good: logged, counted, dropped
            self._refused([event], exc.refused)
        except OutcomeDeliveryError as exc:
            self._refused([event], getattr(exc, "refused", {}))
            if recorded and self._record(event):  # not taken: anyone's to send from now on
                self._warn_kept(event)
                self._bound()
            raise
        if recorded:
            self._forget(event)
        return event

    def _record(self, event: CloudEvent, *, until: float = 0.0) -> bool:
        """Into the outbox before it is sent; False when the store is unreachable."""
        entry = json.dumps({"seq": _seq(event), "until": until,
                            "event": to_json(event).decode()})
        try:
            self.state.hash_put(OUTBOX, str(event["id"]), entry, OUTBOX_TTL)
        except StateUnavailable as exc:
            log.warning("outcome %s not recorded in the outbox (%s); sending it directly",
                        event["id"], exc)
            return False
        return True

    def _forget(self, event: CloudEvent) -> None:
        try:
            self.state.hash_delete(OUTBOX, str(event["id"]))
        except StateUnavailable as exc:  # delivered: at worst it is sent once more later
            log.warning("delivered outcome %s left in the outbox: %s", event["id"], exc)

    def _bound(self) -> None:
        try:
            if self.state.hash_len(OUTBOX) <= self._outbox_limit:
                return
            pending = _oldest_first(self.state.hash_get_all(OUTBOX))
            for event_id, lost, _ in pending[: len(pending) - self._outbox_limit]:
                self.state.hash_delete(OUTBOX, event_id)
                log.error("outbox full: outcome %s %s for %s dropped", event_id, lost["type"],
                          lost.get("subject") or "-")
        except StateUnavailable as exc:
            log.warning("outbox not bounded: %s", exc)

    def _refused(self, events: Sequence[CloudEvent], refused: Mapping[str, str]) -> None:
        """Log in full and count each event a destination refused for good (the caller
        drops it from the outbox unless another destination still has to take it)."""
        if not refused:
            return
        for event in events:
            reason = refused.get(str(event["id"]))
            if reason is None:
                continue
            log.error("outcome %s %s for %s refused permanently (%s); dropped, this line is "
                      "its only record: %s", event["id"], event["type"],
                      event.get("subject") or "-", reason, to_json(event).decode())
            with self._dropped_lock:
                self._dropped += 1
            try:
                self.state.incr(DROPPED, 1, DROPPED_TTL)
            except StateUnavailable as exc:
                log.warning("dropped outcome %s not counted in the state store: %s",
                            event["id"], exc)

    @staticmethod
    def _warn_kept(event: CloudEvent) -> None:
        log.warning("outcome %s %s for %s not delivered; kept to send again", event["id"],
                    event["type"], event.get("subject") or "-")

    def _event(
        self,
        event_type: str,
        subject: str | None,
        causation: Causation,
        data: OutcomeData | SweepSummaryData,
        *,
        key: str | None = None,
    ) -> CloudEvent:
        attributes: dict[str, Any] = {
            "specversion": "1.0",
            "type": event_type,
            "source": self.source,
            "id": outcome_id(causation, key or subject or "sweep", event_type),
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
        }
        if subject:
            attributes["subject"] = subject
        if causation.traceparent:
            attributes["traceparent"] = causation.traceparent
            if causation.tracestate:
                attributes["tracestate"] = causation.tracestate
        return CloudEvent({**self._extensions, **attributes}, data)  # overrides only add


def _seq(event: CloudEvent) -> str:
    # The event's own time orders the outbox: the same for every rewrite of one event.
    return str(event.get("time") or "")


def _oldest_first(pending: Mapping[str, str]) -> list[tuple[str, CloudEvent, float]]:
    """(id, event, until) of each readable entry, oldest first."""
    entries: list[tuple[str, str, CloudEvent, float]] = []
    for event_id, raw in pending.items():
        try:
            entry = json.loads(raw)
            event = from_json(entry["event"])
            until = float(entry.get("until", 0.0))
        except (ValueError, KeyError, TypeError):
            log.error("outbox entry %s is unreadable; skipped", event_id[:64])
            continue
        entries.append((str(entry.get("seq", "")), event_id, event, until))
    entries.sort(key=lambda item: (item[0], item[1]))
    return [(event_id, event, until) for _, event_id, event, until in entries]
