"""The cloudevent adapter: one input CloudEvent -> one decision or one sweep."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloudevents.http import CloudEvent
from werkzeug.exceptions import ServiceUnavailable

from failjob_reaper.app import App
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.events import SweepRequest, parse_cloudevent


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
    try:
        process(app, event.get_attributes(), event.data)
    except Redeliver as exc:
        raise ServiceUnavailable(description=str(exc)) from None
