"""Idempotent inputs, in the manner of Powertools' idempotency utility (docs/http-api.md and
docs/state.md).

An input is known by its identity (a CloudEvent's source and id; the route and
``Idempotency-Key`` of a manual call; a manual call without the key has none and
gets no record) and what it asks by a fingerprint (a hash
of the parsed request). The first to ``begin()`` it holds an *in-progress*
record (``add``: one winner across every instance); it ends with ``complete()``
(the answer is kept, 24 h for manual calls) or ``abandon()`` (a transient
failure: a redelivery must decide again). Another ``begin()`` of the same input:

* completed, same fingerprint: the first answer (``Completed``), nothing decided again;
* same identity, another fingerprint: ``IdempotencyConflict`` (422 / ``rejected``);
* still in progress: waits a bounded time for the answer, then
  ``IdempotencyInProgress`` (409 / 503: the trigger tries again later). An
  in-progress record outlives no crash: it expires after the longest time its
  work can take.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from failjob_reaper.errors import ReaperError
from failjob_reaper.state import keys as state_keys
from failjob_reaper.state._store import StateStore

ANSWER_TTL = state_keys.ANSWER_TTL
"""How long a completed record (and its answer) is kept: 24 h, as docs/http-api.md says."""


class IdempotencyConflict(ReaperError):
    """The input's identity was used before for a different request."""


class IdempotencyInProgress(ReaperError):
    """The same input is being handled elsewhere right now; try again later."""


@dataclass(frozen=True)
class Claim:
    """This caller holds the input: it decides, then completes or abandons."""

    key: str
    record: str


@dataclass(frozen=True)
class Completed:
    """The input was handled before: its first answer."""

    answer: dict[str, Any]


def fingerprint(request: Mapping[str, Any]) -> str:
    """A stable hash of what a request asks (its parsed fields, canonical JSON)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Idempotency:
    """Idempotency records in a ``StateStore`` (keys ``idem:<sha256 of the identity>``)."""

    def __init__(
        self,
        store: StateStore,
        *,
        in_progress_ttl: float,
        answer_ttl: float = ANSWER_TTL,
        wait: float = 5.0,
        poll: float = 0.05,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.in_progress_ttl = in_progress_ttl
        self.answer_ttl = answer_ttl
        self.wait = wait
        self.poll = poll
        self._monotonic = monotonic
        self._sleep = sleep

    def begin(self, identity: str, request_fingerprint: str) -> Claim | Completed:
        key = state_keys.idempotency(identity)
        mine = json.dumps({"status": "in_progress", "fingerprint": request_fingerprint,
                           "token": uuid.uuid4().hex})
        deadline = self._monotonic() + self.wait
        while True:
            if self.store.add(key, mine, self.in_progress_ttl):
                return Claim(key, mine)
            raw = self.store.get(key)
            if raw is None:
                continue  # expired between the two calls: try to take it again
            record = _record(raw)
            if record.get("fingerprint") != request_fingerprint:
                raise IdempotencyConflict(
                    "this input's identity (Idempotency-Key, or CloudEvent source and id) "
                    "was used before for a different request"
                )
            if record.get("status") == "completed" and isinstance(record.get("answer"), dict):
                return Completed(record["answer"])
            if self._monotonic() >= deadline:
                raise IdempotencyInProgress(
                    "the same input is being handled right now; try again later"
                )
            self._sleep(self.poll)  # bounded by the deadline above

    def complete(self, claim: Claim, answer: Mapping[str, Any]) -> None:
        """Keep the answer for repeats; a claim that expired and was taken over is left."""
        record = json.loads(claim.record)
        record.update(status="completed", answer=dict(answer))
        self.store.replace_if(claim.key, claim.record, json.dumps(record, default=str),
                              self.answer_ttl)

    def abandon(self, claim: Claim) -> None:
        """Forget the input: a redelivery decides again (after a transient failure)."""
        self.store.delete_if(claim.key, claim.record)


def _record(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
