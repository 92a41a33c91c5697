"""EventGrid deliveries wrapped as ``{"events": [CloudEvent, ...]}``: each event on its own.

EventGrid may deliver events one by one or in that envelope (docs/events.md); both
reach the same ``process`` as a bare event, one event at a time. An event that is
no CloudEvent is refused alone (logged); the others are still decided. When any
event asks for redelivery, the envelope is answered "retry" after every event was
tried: the redelivery decides the others again, which is safe (deletes are
idempotent, outcome ids stable).

``on_event`` sees the envelope as a plain JSON POST, which the framework would refuse
as no CloudEvent; the request guard of ``handlers/cloudevent.py`` serves it instead
(``envelope_answer``). No web framework here: FunctionGraph imports it too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from failjob_reaper.components import Components
from failjob_reaper.http_api import error_body
from handlers._events import Redeliver, event_problem, process, split

log = logging.getLogger("failjob_reaper")

MAX_EVENTS = 100
"""More events than this in one delivery is not an EventGrid delivery: refused whole."""


class EnvelopeRefused(ValueError):
    """The envelope itself cannot be served (too many events)."""


@dataclass
class EnvelopeResult:
    done: int = 0
    refused: list[str] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)

    def as_data(self) -> dict[str, Any]:
        return {"status": "retry" if self.retry else "done", "events": self.done,
                "refused": self.refused, "retry": self.retry}


def envelope_events(payload: object) -> list[object] | None:
    """The events of an ``{"events": [...]}`` envelope; None when it is not one."""
    if isinstance(payload, Mapping) and set(payload) == {"events"}:
        events = payload["events"]
        if isinstance(events, list):
            if len(events) > MAX_EVENTS:
                raise EnvelopeRefused(f"at most {MAX_EVENTS} events per delivery, "
                                      f"got {len(events)}")
            return events
    return None


def process_envelope(
    events: list[object], handle: Callable[[Mapping[str, Any]], None],
    retry: type[Exception],
) -> EnvelopeResult:
    """``handle`` each event; ``retry`` is the exception that asks for redelivery."""
    result = EnvelopeResult()
    for position, event in enumerate(events):
        problem = event_problem(event)
        if problem is not None:
            log.warning("eventgrid envelope: event %d refused: %s", position, problem)
            result.refused.append(f"event {position}: {problem}")
            continue
        assert isinstance(event, Mapping)
        try:
            handle(event)
        except retry as exc:
            result.retry.append(f"event {position}: {exc}")
            continue
        result.done += 1
    return result


def envelope_answer(app: Components, body: bytes) -> tuple[int, Mapping[str, Any]] | None:
    """The answer (status, JSON) to a plain JSON POST that is an envelope; None if it is not."""
    try:
        events = envelope_events(json.loads(body))
    except EnvelopeRefused as exc:
        return 400, error_body("invalid_envelope", str(exc))
    except (ValueError, RecursionError):
        return None  # not an envelope: the CloudEvent parse answers
    if events is None:
        return None
    result = process_envelope(events, lambda event: process(app, *split(event)), Redeliver)
    return (503 if result.retry else 200), result.as_data()
