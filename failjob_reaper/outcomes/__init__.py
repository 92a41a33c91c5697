"""Outcome CloudEvents: what they carry, how their ids are made, where they go.

Every decision becomes one ``Outcome``; ``Publisher`` turns it into a
CloudEvent (SPEC section 7) and hands it to an ``Emitter``: the sink from
``K_SINK`` in binary mode, the EventGrid channel (``EG_ENDPOINT``/``EG_CHANNEL_ID``),
both, or one JSON line on stdout when there is neither.
"""

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
