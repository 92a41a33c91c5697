"""``Idempotency-Key`` and trace headers -> the causation of a manual call.

The one place that reads the key. A key is 1-255 printable ASCII characters
(``KEY_RULE``); any other value present is refused with 400 before anything is read
or decided, never silently ignored (a repeat must not run again). A valid key
becomes the outcome's ``causation.id``; a call without one gets a fresh UUID.

The key names one request, whatever its route: every manual call has the causation
``source`` ``/http`` (the route is in its ``type``), so the identity of the record
(source and key, hashed into the state key) is the same for ``/retry`` and
``/sweep``, and the same key sent to the other route differs in its fingerprint:
422, nothing decided. The record of the first answer lives in the state store
(``failjob_reaper.state.idempotency``); its refusals are answered by
``_core._delivered`` (422, 409, 503). A call without a key keeps no record: no
repeat could name it, the record would sit 24 h in the store unread.

The key is the caller's text, not an id token: it reaches the outcome (JSON) and the
JSON log fields, hashed into every state key and outcome id, and never a URL.
"""

from __future__ import annotations

import re
import uuid

from failjob_reaper.events import trace_context
from failjob_reaper.http_api._errors import HttpError
from failjob_reaper.http_api._types import HttpRequest
from failjob_reaper.outcomes import Causation

SOURCE = "/http"
"""The causation source of every manual call: one key, one request, across routes."""

MAX_KEY = 255
KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
"""Printable ASCII, no space at either end (the OpenAPI document states it, and the length)."""
_KEY = re.compile(KEY_PATTERN)
KEY_RULE = (f"Idempotency-Key must be 1-{MAX_KEY} printable ASCII characters, without "
            "leading or trailing spaces")


def idempotency_key(request: HttpRequest) -> str | None:
    """The request's key; None without the header; 400 for a value that is not a key."""
    key = request.header("idempotency-key")
    if key is None:
        return None
    if len(key) > MAX_KEY or not _KEY.match(key):
        raise HttpError(400, "invalid_idempotency_key", KEY_RULE)
    return key


def causation(request: HttpRequest, route: str) -> Causation:
    key = idempotency_key(request)
    traceparent, tracestate = trace_context(
        request.header("traceparent"), request.header("tracestate")
    )
    return Causation(
        id=key if key is not None else str(uuid.uuid4()),
        source=SOURCE,
        type=f"http.{route.lstrip('/')}",
        traceparent=traceparent,
        tracestate=tracestate,
        deduplicated=key is not None,
    )
