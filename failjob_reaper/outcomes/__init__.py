"""Outcome CloudEvents: what they carry, how their ids are made, where they go.

Every decision becomes one ``Outcome``; ``Publisher`` turns it into a
CloudEvent (docs/events.md) and hands it to an ``Emitter``: the sink from
``K_SINK`` in binary mode, the EventGrid channel (``EG_ENDPOINT``/``EG_CHANNEL_ID``),
both, or one JSON line on stdout when there is neither.

Each name is imported from its module when first asked for (cold start): an event
function with a sink never loads the EventGrid, fan-out or stdout emitters, nor
pydantic's view of the outcome model (``_data``: the manual API's document, replays).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from failjob_reaper._lazy import lazy_exports

if TYPE_CHECKING:
    from failjob_reaper.outcomes._eventgrid import MAX_BATCH, EventGridEmitter, PartialDelivery
    from failjob_reaper.outcomes._fanout import FanoutEmitter
    from failjob_reaper.outcomes._model import (
        OUTCOMES,
        SWEEP_COMPLETED,
        TYPE_PREFIX,
        Causation,
        CausationData,
        ErrorData,
        Outcome,
        OutcomeCounts,
        OutcomeData,
        OutcomeName,
        SweepSummary,
        SweepSummaryData,
        Trigger,
        outcome_id,
    )
    from failjob_reaper.outcomes._publisher import Emitter, Publisher
    from failjob_reaper.outcomes._sink import SinkEmitter
    from failjob_reaper.outcomes._stdout import StdoutEmitter

__getattr__ = lazy_exports(__name__, {
    "_eventgrid": "MAX_BATCH EventGridEmitter PartialDelivery",
    "_fanout": "FanoutEmitter",
    "_model": "OUTCOMES SWEEP_COMPLETED TYPE_PREFIX Causation CausationData ErrorData "
              "Outcome OutcomeCounts OutcomeData OutcomeName SweepSummary SweepSummaryData "
              "Trigger outcome_id",
    "_publisher": "Emitter Publisher",
    "_sink": "SinkEmitter",
    "_stdout": "StdoutEmitter",
})

__all__ = [
    "MAX_BATCH",
    "OUTCOMES",
    "SWEEP_COMPLETED",
    "TYPE_PREFIX",
    "Causation",
    "CausationData",
    "Emitter",
    "ErrorData",
    "EventGridEmitter",
    "FanoutEmitter",
    "Outcome",
    "OutcomeCounts",
    "OutcomeData",
    "OutcomeName",
    "PartialDelivery",
    "Publisher",
    "SinkEmitter",
    "StdoutEmitter",
    "SweepSummary",
    "SweepSummaryData",
    "Trigger",
    "outcome_id",
]
