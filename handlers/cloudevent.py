"""The cloudevent adapter: one input CloudEvent -> one decision or one sweep."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import flask
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent
from werkzeug.exceptions import BadRequest, ServiceUnavailable

from failjob_reaper.app import App
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.events import ResourceRequest, SweepRequest, parse_cloudevent


class Redeliver(Exception):
    """The input was not fully handled; the trigger should deliver it again."""


def process(app: App, attributes: Mapping[str, Any], data: object) -> None:
    """Decide or sweep; raise Redeliver when a redelivery could still help."""
    settings = app.settings
    request = parse_cloudevent(
        attributes,
        data,
        types=app.types,
        project_id=settings.project_id,
        id_field=settings.failure_job_id_field,
    )
    try:
        if isinstance(request, SweepRequest):
            summary = app.sweeper.run(request)
            if summary.transient_failure:
                raise Redeliver(summary.aborted_reason or "sweep failed")
            return
        if isinstance(request, ResourceRequest):  # a CTS trace: every task of its resource
            outcomes = app.reaper.handle_resource(request)
        else:
            outcomes = [app.reaper.handle(request)]
    except OutcomeDeliveryError as exc:
        raise Redeliver(str(exc)) from None
    for outcome in outcomes:
        if outcome.transient_failure:
            raise Redeliver(outcome.reason)


def on_event(app: App, event: CloudEvent) -> None:
    """functions-framework: return acknowledges (200); 503 asks for redelivery."""
    attributes = event.get_attributes()
    for name in ("id", "source"):
        # Outcome ids derive from these: without them two inputs could not be told apart.
        value = attributes.get(name)
        if not isinstance(value, str) or not value.strip():
            raise BadRequest(f"CloudEvent attribute {name!r} must be a non-empty string")
    try:
        process(app, attributes, event.data)
    except Redeliver as exc:
        raise ServiceUnavailable(description=str(exc)) from None


def install_request_guard() -> None:
    """Answer 400 for CloudEvents the CloudEvents SDK itself cannot parse.

    functions-framework parses the request before our function runs; JSON nested
    thousands deep or a null ``id`` make the SDK raise RecursionError/ValueError,
    which the framework turns into a 500 - and a trigger redelivers a 500 forever.
    Error handlers, so the happy path pays nothing; they answer 400 only for errors
    raised inside the SDK or the JSON decoder, anything else stays a 500.
    Called while main.py is loaded inside the framework's app context; elsewhere
    (FunctionGraph) there is no Flask app and nothing to guard.
    """
    # functions-framework names its Flask app after the target: on_event only.
    if flask.has_app_context() and flask.current_app.name == "on_event":
        for kind in (GenericException, ValueError, RecursionError):
            flask.current_app.register_error_handler(kind, _refuse_unparsable_cloudevent)


_PARSERS = ("/cloudevents/", "/json/")


def _refuse_unparsable_cloudevent(exc: Exception) -> flask.Response:
    frame, raised_in_parser = exc.__traceback__, False
    while frame is not None:  # where was it raised? the innermost frame decides
        filename = frame.tb_frame.f_code.co_filename
        raised_in_parser = any(part in filename for part in _PARSERS)
        frame = frame.tb_next
    if not raised_in_parser:
        raise exc  # ours: a real 500
    message = f"not a valid CloudEvent: {type(exc).__name__}"
    return flask.Response(
        json.dumps({"error": {"code": "invalid_cloudevent", "message": message}}),
        status=400, mimetype="application/json",
    )
