"""What the two event adapters share (functions-framework ``on_event``, FunctionGraph
EventGrid): the CloudEvent attribute check and ``process``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from failjob_reaper.app import App
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.events import SweepRequest, parse_cloudevent

IDENTITY = ("id", "source")
"""Outcome ids derive from these: without them two inputs could not be told apart."""


class Redeliver(Exception):
    """The input was not fully handled; the trigger should deliver it again."""


def attribute_problem(
    attributes: Mapping[str, Any], names: Iterable[str] = IDENTITY
) -> str | None:
    """Why these CloudEvent attributes cannot be served (None: they can)."""
    bad = [name for name in names
           if not isinstance(attributes.get(name), str) or not attributes[name].strip()]
    if not bad:
        return None
    return f"CloudEvent attribute(s) {', '.join(bad)}: must be non-empty strings"


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
