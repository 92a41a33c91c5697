"""What the event adapters share (functions-framework ``on_event``, FunctionGraph
EventGrid/CTS, EventGrid envelopes): the CloudEvent checks, ``split`` and ``process``.
No web framework here: FunctionGraph imports it too."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from failjob_reaper.components import Components
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.events import ResourceRequest, SweepRequest, parse_cloudevent
from failjob_reaper.state import StateUnavailable
from failjob_reaper.state.idempotency import IdempotencyInProgress

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
    return f"{', '.join(bad)} must be non-empty strings" if bad else None


def event_problem(event: object) -> str | None:
    """Why this structured-JSON CloudEvent (a FunctionGraph payload, one event of an
    envelope) cannot be served (None: it can)."""
    if not isinstance(event, Mapping):
        return "an event must be a JSON object"
    if event.get("specversion") != "1.0":
        return 'specversion must be "1.0"'
    return attribute_problem(event, (*IDENTITY, "type"))


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


def process(app: Components, attributes: Mapping[str, Any], data: object) -> None:
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
    except (OutcomeDeliveryError, IdempotencyInProgress, StateUnavailable) as exc:
        raise Redeliver(str(exc)) from None
    for outcome in outcomes:
        if outcome.transient_failure:
            raise Redeliver(outcome.reason)
