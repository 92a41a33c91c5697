"""State shared by every instance of a deployment (docs/state.md), behind one interface.

``StateStore`` offers a few primitives with expiry; everything that must hold
across instances (outbox, idempotency records, the sweep lease, shared budgets,
the adaptive rate, the lookup index) is built from them, never from a backend's
own API. Two backends: ``MemoryStore`` (``STATE_URL=memory://``, one process)
and Redis (``redis://`` / ``rediss://``). Every key has a TTL; callers pass
keys relative to the store's namespace, and never store a secret.
"""

from __future__ import annotations

from failjob_reaper.state._memory import MemoryStore
from failjob_reaper.state._store import StateStore, StateUnavailable, open_store

__all__ = ["MemoryStore", "StateStore", "StateUnavailable", "open_store"]
