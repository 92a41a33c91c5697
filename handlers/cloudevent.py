"""The cloudevent adapter: one input CloudEvent -> one decision or one sweep."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import flask
from cloudevents.exceptions import GenericException, InvalidRequiredFields, MissingRequiredFields
from cloudevents.http import CloudEvent, from_http
from werkzeug.exceptions import BadRequest, ServiceUnavailable

from failjob_reaper.app import App
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.events import SweepRequest, parse_cloudevent

STRUCTURED = "application/cloudevents+json"


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
        outcome = app.reaper.handle(request)
    except OutcomeDeliveryError as exc:
        raise Redeliver(str(exc)) from None
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
    Called while main.py is loaded inside the framework's app context; elsewhere
    (FunctionGraph) there is no Flask app and nothing to guard.
    """
    # functions-framework names its Flask app after the target: guard on_event only
    # (on_http reads its bodies itself, with a size limit).
    if flask.has_app_context() and flask.current_app.name == "on_event":
        flask.current_app.before_request(_refuse_unparsable_cloudevent)


def _refuse_unparsable_cloudevent() -> flask.Response | None:
    request = flask.request
    if "ce-specversion" not in request.headers and request.mimetype != STRUCTURED:
        return None
    try:
        from_http(request.headers, request.get_data())  # the body is cached for the framework
    except (MissingRequiredFields, InvalidRequiredFields):
        return None  # the framework's own 400
    except (GenericException, ValueError, RecursionError) as exc:
        message = f"not a valid CloudEvent: {type(exc).__name__}"
        return flask.Response(
            json.dumps({"error": {"code": "invalid_cloudevent", "message": message}}),
            status=400, mimetype="application/json",
        )
    return None
