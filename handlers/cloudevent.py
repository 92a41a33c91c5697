"""The functions-framework ``cloudevent`` target: one input CloudEvent -> one decision
or one sweep, and the 400 guard in front of it."""

from __future__ import annotations

import logging

import flask
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent, from_http
from werkzeug.exceptions import ServiceUnavailable

from failjob_reaper.app import App
from failjob_reaper.http_api import HttpResponse, error_response
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


def on_event(app: App, event: CloudEvent) -> None:
    """functions-framework: return acknowledges (200); 503 asks for redelivery."""
    try:
        process(app, event.get_attributes(), event.data)
    except Redeliver as exc:
        raise ServiceUnavailable(description=str(exc)) from None


def install_request_guard() -> None:
    """Put ``guard_request`` in front of the CloudEvent function of this Flask app.

    functions-framework parses the request before our function runs and answers a
    500 (which a trigger redelivers forever) for some input it cannot parse, or
    tries it as a legacy background event. Called while main.py is loaded inside the
    framework's app context; elsewhere (FunctionGraph, the http target) there is
    nothing to guard.
    """
    if flask.has_app_context():
        flask.current_app.before_request(guard_request)


def guard_request() -> flask.Response | None:
    """400 for a request that is not a CloudEvent this function can serve; None lets
    the framework go on. Decided by the exception type of the SDK's own parse, at the
    point of parsing: an error raised later, in our code, stays a 500."""
    request = flask.request
    if request.endpoint != CLOUDEVENT_ENDPOINT:
        return None  # another signature's app, or the framework's own 404/405
    try:
        event = from_http(request.headers, request.get_data())  # as the framework does
    except UNPARSABLE as exc:
        log.info("on_event: refused a request that is not a CloudEvent: %s",
                 type(exc).__name__)
        return _refuse(f"not a valid CloudEvent: {type(exc).__name__}")
    problem = attribute_problem(event.get_attributes())
    if problem is not None:
        return _refuse(problem)
    return None


def _refuse(message: str) -> flask.Response:
    answer: HttpResponse = error_response(400, "invalid_cloudevent", message)
    return flask.Response(answer.body, status=answer.status, headers=dict(answer.headers))
