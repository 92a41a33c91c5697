"""EventGrid deliveries wrapped as ``{"events": [CloudEvent, ...]}``: each event on its own.

EventGrid may deliver events one by one or in that envelope (SPEC section 4); both
reach the same ``process`` as a bare event, one event at a time. An event that is
no CloudEvent is refused alone (logged); the others are still decided. When any
event asks for redelivery, the envelope is answered "retry" after every event was
tried: the redelivery decides the others again, which is safe (deletes are
idempotent, outcome ids stable).

``on_event`` sees the envelope as a plain JSON POST, which the framework would refuse
as no CloudEvent; ``install`` puts a hook in front that serves it instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import flask

from failjob_reaper.app import App

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


def cloudevent_problem(event: object) -> str | None:
    """Why this structured-JSON event cannot be served (None: it can)."""
    if not isinstance(event, Mapping):
        return "an event must be a JSON object"
    if event.get("specversion") != "1.0":
        return 'specversion must be "1.0"'
    bad = [name for name in ("id", "source", "type")
           if not isinstance(event.get(name), str) or not event[name].strip()]
    return f"{', '.join(bad)} must be non-empty strings" if bad else None


def split(event: Mapping[str, Any]) -> tuple[dict[str, Any], object]:
    """Attributes and data of a structured-JSON CloudEvent (``data_base64`` decoded)."""
    attributes = {name: value for name, value in event.items()
                  if name not in ("data", "data_base64")}
    data: object = event.get("data")
    if "data_base64" in event and data is None:
        raw = event["data_base64"]
        try:
            data = base64.b64decode(raw, validate=True) if isinstance(raw, str) else raw
        except (binascii.Error, ValueError):
            data = raw  # undecodable: the core rejects it as malformed (acknowledged)
    return attributes, data


def process_envelope(
    events: list[object], handle: Callable[[Mapping[str, Any]], None],
    retry: type[Exception],
) -> EnvelopeResult:
    """``handle`` each event; ``retry`` is the exception that asks for redelivery."""
    result = EnvelopeResult()
    for position, event in enumerate(events):
        problem = cloudevent_problem(event)
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


def install(app: App | None) -> None:
    """Serve envelopes POSTed to the ``on_event`` target (before any other hook)."""
    if app is None or not flask.has_app_context():
        return
    flask.current_app.before_request(lambda: _serve_envelope(app))


def _serve_envelope(app: App) -> flask.Response | None:
    request = flask.request
    # Only the cloudevent function, only plain JSON: a binary-mode CloudEvent carries
    # ce-* headers, a structured one application/cloudevents+json.
    if request.endpoint != "cloudevent" or request.mimetype != "application/json":
        return None
    if "ce-specversion" in request.headers:
        return None
    try:
        payload = json.loads(request.get_data())
        events = envelope_events(payload)
    except (ValueError, RecursionError):
        return None  # not ours: the framework and its guard answer
    except EnvelopeRefused as exc:
        return _answer(400, {"error": {"code": "invalid_envelope", "message": str(exc)}})
    if events is None:
        return None
    from handlers.cloudevent import Redeliver, process

    result = process_envelope(events, lambda event: process(app, *split(event)), Redeliver)
    return _answer(503 if result.retry else 200, result.as_data())


def _answer(status: int, body: dict[str, Any]) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")
