"""``Idempotency-Key`` and trace headers -> the causation of a manual call.

The one place that reads the key: a plain token becomes the outcome's
``causation.id``; anything else gets a fresh UUID. The record of the first answer
(a repeat gets it, another body with the same key is refused) lives in the state
store (``failjob_reaper.state.idempotency``, keyed by this causation); its refusals
are answered by ``_core._delivered`` (422, 409, 503). A call without a key keeps no
record: no repeat could name it, the record would sit 24 h in the store unread.
"""

from __future__ import annotations

import uuid

from failjob_reaper.events import trace_context
from failjob_reaper.http_api._types import HttpRequest
from failjob_reaper.ids import is_valid_id
from failjob_reaper.outcomes import Causation


def causation(request: HttpRequest, route: str) -> Causation:
    key = request.header("idempotency-key")
    keyed = is_valid_id(key)
    traceparent, tracestate = trace_context(
        request.header("traceparent"), request.header("tracestate")
    )
    return Causation(
        id=key if keyed else str(uuid.uuid4()),
        source=f"/http{route}",
        type=f"http.{route.lstrip('/')}",
        traceparent=traceparent,
        tracestate=tracestate,
        deduplicated=keyed,
    )
