"""The deployment's SDRS request rate: one ``AdaptiveLimiter`` per process, shared by all.

Every SDRS request (a sweep's and a single event's) takes a start slot from the
token bucket at the controller's current rate and reports its answer back
(``record``): successes raise the rate, throttles drop it (``_ratelimit``).

* Single events go first: a sweep's workers (``bulk()``) wait while an event's
  request is waiting, so an event waits at most one slot, never behind the
  whole sweep's queue.
* Shared through the state store: a throttle publishes the new rate
  (``put``), every instance reads it back at most once a second and adopts a
  lower one, and a fresh instance starts at the learned rate. With a shared
  store (Redis) a per-second counter (``incr``) also bounds the whole
  deployment's requests in each second; with ``memory://`` the process is the
  deployment and the local bucket is the whole pace.
* The store is only speed: when it fails, the limiter goes on alone.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from typing import Protocol

import httpx

from failjob_reaper.sdrs._errors import throttle_of
from failjob_reaper.sdrs._ratelimit import LIMIT_TTL, RateController, TokenBucket
from failjob_reaper.state import MemoryStore, StateStore, StateUnavailable
from failjob_reaper.state import keys as state_keys

log = logging.getLogger("failjob_reaper")

STATE_KEY = state_keys.RATE_STATE
SYNC_INTERVAL = 1.0
_WINDOW_TTL = state_keys.RATE_WINDOW_TTL
_MAX_WINDOWS = 30  # a request waits at most this many full windows for the shared counter


class RateLimiter(Protocol):
    """What the SDRS client needs of a rate limiter."""

    def acquire(self) -> int:
        """Wait for a start slot; a ticket to hand back to ``record`` with the answer."""
        ...

    def record(self, ticket: int, response: httpx.Response) -> None: ...


class AdaptiveLimiter:
    """AIMD pacing of every SDRS request of the process, under ``ceiling`` requests/s."""

    def __init__(self, ceiling: float, *, store: StateStore | None = None) -> None:
        self.controller = RateController(ceiling)
        self._bucket = TokenBucket(tokens=1.0, stamp=time.monotonic())
        self._cond = threading.Condition()
        self._urgent = 0
        self._store = store
        self._shared = store is not None and not isinstance(store, MemoryStore)
        self._me = uuid.uuid4().hex[:12]
        self._seen: str | None = None  # the last shared state adopted or written
        self._next_sync = 0.0
        self._sync_lock = threading.Lock()
        self.throttles = 0

    @property
    def rate(self) -> float:
        with self._cond:
            return self.controller.current(time.monotonic())

    def bulk(self) -> RateLimiter:
        """The same limiter for a sweep's requests: they yield to single events."""
        return _Bulk(self)

    def acquire(self, *, bulk: bool = False) -> int:
        self._sync()
        with self._cond:
            if not bulk:
                self._urgent += 1
            try:
                while True:
                    now = time.monotonic()
                    rate = self.controller.current(now)
                    if bulk and self._urgent:
                        wait = 1.0 / rate
                    else:
                        wait = self._bucket.take(now, rate)
                        if wait == 0.0:
                            ticket = self.controller.generation
                            break
                    self._cond.wait(wait)
            finally:
                if not bulk:
                    self._urgent -= 1
                    self._cond.notify_all()
        if self._shared:
            self._admit_in_window(rate)
        return ticket

    def record(self, ticket: int, response: httpx.Response) -> None:
        throttled, limit = throttle_of(response)
        with self._cond:
            now = time.monotonic()
            if not throttled:
                if response.status_code < 500:
                    self.controller.on_success(now)
                return
            self.throttles += 1
            self.controller.on_throttle(now, limit, ticket)
            self._bucket.drain()
            state = self.controller.to_json(now)
        self._publish(state)

    # -- the state store -----------------------------------------------------------

    def _publish(self, state: str) -> None:
        if self._store is None:
            return
        text = f"{self._me} {state}"
        try:
            self._store.put(STATE_KEY, text, LIMIT_TTL)
        except StateUnavailable as exc:
            log.debug("adaptive rate not shared: %s", exc)
            return
        self._seen = text

    def _sync(self) -> None:
        """At most once a second: adopt a throttle another instance recorded."""
        if self._store is None or time.monotonic() < self._next_sync:
            return
        if not self._sync_lock.acquire(blocking=False):
            return
        try:
            self._next_sync = time.monotonic() + SYNC_INTERVAL
            try:
                text = self._store.get(STATE_KEY)
            except StateUnavailable as exc:
                log.debug("adaptive rate not shared: %s", exc)
                return
            if text is None or text == self._seen:
                return
            self._seen = text
            writer, _, state = text.partition(" ")
            if writer == self._me:
                return
            with self._cond:
                now = time.monotonic()
                mine = self.controller.current(now)
                probe = RateController(self.controller.ceiling)
                if probe.adopt(state, now) and probe.current(now) < mine:
                    self.controller.adopt(state, now)
                    self.controller.generation += 1  # answers in flight belong to the old rate
                self._cond.notify_all()
        finally:
            self._sync_lock.release()

    def _admit_in_window(self, rate: float) -> None:
        """Bound the deployment's requests per wall-clock second (shared counter)."""
        assert self._store is not None
        allowed = max(1, math.ceil(rate))
        for _ in range(_MAX_WINDOWS):
            now = time.time()
            second = int(now)
            try:
                used = self._store.incr(state_keys.rate_window(second), 1, _WINDOW_TTL)
            except StateUnavailable as exc:
                log.debug("shared rate window unavailable: %s", exc)
                return
            if used <= allowed:
                return
            time.sleep(second + 1 - now)  # until the next window, under a second


class _Bulk:
    def __init__(self, limiter: AdaptiveLimiter) -> None:
        self._limiter = limiter

    def acquire(self) -> int:
        return self._limiter.acquire(bulk=True)

    def record(self, ticket: int, response: httpx.Response) -> None:
        self._limiter.record(ticket, response)


def limiter_for(ceiling: float, store: StateStore | None) -> AdaptiveLimiter | None:
    """``SWEEP_RATE_LIMIT``: 0 is no client-side limit (and so nothing to adapt)."""
    return AdaptiveLimiter(ceiling, store=store) if ceiling > 0 else None
