"""The functions-framework ``cloudevent`` target: one input CloudEvent -> one decision
or one sweep, and the one request guard in front of it."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import flask
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent, from_http
from werkzeug.exceptions import RequestEntityTooLarge, ServiceUnavailable

from failjob_reaper.components import Components
from failjob_reaper.http_api import JSON, error_body
from handlers._envelope import envelope_answer
from handlers._events import Redeliver, attribute_problem, process

__all__ = ["Redeliver", "install_request_guard", "on_event", "process"]

log = logging.getLogger("failjob_reaper")

CLOUDEVENT_ENDPOINT = "cloudevent"
"""The endpoint functions-framework routes a ``cloudevent`` function's requests to (its
signature type); the app is configured after main.py is loaded, so it is checked per request."""

UNPARSABLE: tuple[type[Exception], ...] = (
    GenericException, ValueError, TypeError, AttributeError, RecursionError,
)
"""What ``cloudevents.http.from_http`` raises for a request it cannot read: its own
errors, the JSON decoder's (ValueError, UnicodeDecodeError, RecursionError for JSON
nested thousands deep), ValueError for a null ``id``, and TypeError/AttributeError
for a structured body that is JSON but not an object."""


def on_event(app: Components, event: CloudEvent) -> None:
    """functions-framework: return acknowledges (200); 503 asks for redelivery."""
    try:
        process(app, event.get_attributes(), event.data)
    except Redeliver as exc:
        raise ServiceUnavailable(description=str(exc)) from None


def install_request_guard(app: Components | None) -> None:
    """Put ``guard_request`` in front of the CloudEvent function of this Flask app.

    Called while main.py is loaded inside functions-framework's app context; elsewhere
    (FunctionGraph) there is no Flask app and nothing to guard.
    """
    if app is not None and flask.has_app_context():
        flask.current_app.before_request(lambda: guard_request(app))


def guard_request(app: Components) -> flask.Response | None:
    """What comes before the framework's own CloudEvent parse; None lets it go on.

    0. A body over ``EVENT_MAX_BODY_BYTES`` is refused with 413 and never read whole:
       nothing of it is decided (``bounded_body``).
    1. An EventGrid envelope ``{"events": [...]}`` (plain JSON, no ``ce-`` headers) is
       served here, each event on its own (``handlers/_envelope.py``).
    2. Anything else must be a CloudEvent the SDK can parse, with a usable ``id`` and
       ``source``: else 400. The framework would answer a 500 (redelivered forever) for
       some of it, or try it as a legacy background event. Decided by the exception type
       of the SDK's own parse, at the point of parsing: an error raised later, in our
       code, stays a 500.
    """
    request = flask.request
    if request.endpoint != CLOUDEVENT_ENDPOINT:
        return None  # another signature's app, or the framework's own 404/405
    body = bounded_body(request, app.settings.event_max_body_bytes)
    if body is None:
        log.info("on_event: refused a body over EVENT_MAX_BODY_BYTES (%d bytes)",
                 app.settings.event_max_body_bytes)
        return _answer(413, error_body(
            "payload_too_large", f"the body must not exceed "
            f"{app.settings.event_max_body_bytes} bytes (EVENT_MAX_BODY_BYTES)"))
    if request.mimetype == JSON and "ce-specversion" not in request.headers:
        answer = envelope_answer(app, body)
        if answer is not None:
            return _answer(*answer)
    try:
        event = from_http(request.headers, body)  # as the framework does
    except UNPARSABLE as exc:
        log.info("on_event: refused a request that is not a CloudEvent: %s",
                 type(exc).__name__)
        return _answer(400, error_body("invalid_cloudevent",
                                       f"not a valid CloudEvent: {type(exc).__name__}"))
    problem = attribute_problem(event.get_attributes())
    if problem is not None:
        return _answer(400, error_body("invalid_cloudevent", f"CloudEvent attributes: {problem}"))
    return None


def bounded_body(request: flask.Request, limit: int) -> bytes | None:
    """The whole body, read once (the framework's own parse reuses it); None when it is
    over ``limit`` bytes: by its Content-Length, before anything is read, or on a chunked
    upload as soon as more than ``limit`` bytes arrived (the rest is never read)."""
    # werkzeug stops reading at max_content_length and raises only when asked for more:
    # a body of exactly that many bytes and a longer one cut there look the same. So it
    # reads up to one byte past the limit, and that byte says "too large".
    request.max_content_length = limit + 1
    try:
        data = request.get_data()
    except RequestEntityTooLarge:
        return None
    return data if len(data) <= limit else None


def _answer(status: int, body: Mapping[str, Any]) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype=JSON)
