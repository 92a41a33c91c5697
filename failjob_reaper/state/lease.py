"""The sweep lease: one sweep per project at a time, across every instance (docs/state.md).

``acquire()`` takes the lease with ``add`` (one winner) for as long as a sweep
may run, and hands out a fencing token from a counter (``incr``) that only ever
grows: a sweep whose lease expired under it (it ran past its expiry) sees a
newer token in the store and stops deleting (``still_held()``) instead of
racing the sweep that took over. ``release()`` gives it back only if it is
still this sweep's (compare-and-delete).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from failjob_reaper.state import keys as state_keys
from failjob_reaper.state._store import StateStore

LEASE = state_keys.LEASE
FENCE = state_keys.FENCE
FENCE_TTL = state_keys.FENCE_TTL
"""The counter outlives any lease, so tokens keep growing; refreshed never (a month)."""


@dataclass(frozen=True)
class Lease:
    token: int
    holder: str
    value: str


@dataclass(frozen=True)
class Busy:
    """Another sweep holds the lease."""

    holder: str
    token: int | None


class SweepLease:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    def acquire(self, holder: str, ttl: float) -> Lease | Busy:
        """Take the lease for ``ttl`` seconds, or say who holds it.

        ``holder`` names the sweep (its input), for the ``skipped`` reason of the loser.
        """
        token = self.store.incr(FENCE, 1, FENCE_TTL)
        value = json.dumps({"token": token, "holder": holder})
        if self.store.add(LEASE, value, ttl):
            return Lease(token, holder, value)
        current = self.store.get(LEASE)
        try:
            held = json.loads(current) if current else {}
        except ValueError:
            held = {}
        held = held if isinstance(held, dict) else {}
        return Busy(str(held.get("holder", "another sweep")),
                    held.get("token") if isinstance(held.get("token"), int) else None)

    def still_held(self, lease: Lease) -> bool:
        """True while the lease is this sweep's (checked before each DELETE)."""
        return self.store.get(LEASE) == lease.value

    def release(self, lease: Lease) -> None:
        self.store.delete_if(LEASE, lease.value)
