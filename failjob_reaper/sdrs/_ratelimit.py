"""The adaptive request rate, as pure state machines of (events, time): no threads, no I/O.

``RateController``: AIMD under a ceiling (docs/safety.md). The rate rises
additively while requests succeed and drops multiplicatively on a throttle; a
``limit:N`` the gateway announces caps it at N for a while. ``TokenBucket``: the
pacing itself, with a small burst so that a lone request never waits.

Both take ``now`` as an argument, so the property tests drive them on a
simulated clock; ``_pacing.AdaptiveLimiter`` is the threaded shell around them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

BETA = 0.7
"""Multiplicative decrease on a throttle (botocore's CUBIC uses the same beta)."""

RAMP = 0.05
"""Additive increase: this share of the reference rate per second of successful traffic
(back from ``BETA`` x the reference to it in (1 - BETA) / RAMP = 6 s, at any rate)."""

FLOOR = 0.5
"""Never slower than this many requests per second (botocore's minimum fill rate)."""

LIMIT_TTL = 300.0
"""How long an announced ``limit:N`` caps the rate after the last answer that said so."""

_EPSILON = 1e-9

BURST_SECONDS = 0.2
"""Bucket size: this many seconds' worth of requests (at least one) may go back to back."""


@dataclass
class RateController:
    """The allowed rate (requests/s): never above ``ceiling`` nor an announced limit.

    ``generation`` counts decreases. A throttled request that was admitted before the
    latest decrease reflects the old rate (its siblings in flight are throttled too):
    it does not decrease again, so a burst of N throttles is one decrease, not N.
    """

    ceiling: float
    beta: float = BETA
    ramp: float = RAMP
    floor: float = FLOOR
    limit_ttl: float = LIMIT_TTL
    rate: float = field(default=0.0)
    reference: float = field(default=0.0)
    """The rate at the last decrease (or the cap): the scale of the additive increase."""
    limit: float | None = None
    limit_until: float = 0.0
    generation: int = 0

    def __post_init__(self) -> None:
        if self.ceiling <= 0:
            raise ValueError("the ceiling must be > 0 (no limit: no controller at all)")
        self.floor = min(self.floor, self.ceiling)
        if self.rate <= 0:
            self.rate = self.ceiling
        if self.reference <= 0:
            self.reference = self.rate

    def cap(self, now: float) -> float:
        """The ceiling, or the announced limit while it holds, whichever is lower."""
        if self.limit is not None and now < self.limit_until:
            return min(self.ceiling, self.limit)
        return self.ceiling

    def current(self, now: float) -> float:
        """The rate to pace at now: the floor binds decreases, never the cap."""
        return min(self.cap(now), max(self.floor, self.rate))

    def on_success(self, now: float) -> None:
        # Per success ramp x reference / rate: at the current rate that is ramp x
        # reference per second; sparse traffic (single events) raises it little.
        # Past the rate of the last decrease the reference follows the rate: linear near
        # the point that throttled, then 5 %/s growth to find a raised limit.
        rate = self.current(now)
        self.reference = max(self.reference, rate)
        self.rate = min(self.cap(now), rate + self.ramp * self.reference / rate)

    def on_throttle(self, now: float, limit: float | None, generation: int) -> None:
        """A 429/APIG.0308 to a request admitted at ``generation``; ``limit`` announced."""
        before = self.current(now)
        if limit is not None and limit > 0:
            self.limit, self.limit_until = limit, now + self.limit_ttl
        if generation < self.generation:
            return  # sent before the last decrease: that decrease answered it
        self.generation += 1
        capped = self.current(now)
        if capped < before:
            # Sent above the announced limit: the cap is the decrease.
            self.rate, self.reference = capped, capped
        else:
            self.reference = before
            self.rate = max(self.floor, before * self.beta)

    # -- sharing through the state store ------------------------------------------

    def to_json(self, stamp: float) -> str:
        return json.dumps({"rate": self.rate, "reference": self.reference, "limit": self.limit,
                           "limit_left": max(0.0, self.limit_until - stamp)
                           if self.limit is not None else 0.0})

    def adopt(self, text: str, now: float) -> bool:
        """Take the rate another instance recorded; False when ``text`` is not one."""
        try:
            data = json.loads(text)
            rate, reference = float(data["rate"]), float(data["reference"])
            limit = data.get("limit")
            limit = float(limit) if limit is not None else None
            limit_left = float(data.get("limit_left") or 0.0)
        except (ValueError, TypeError, KeyError):
            return False
        if not (rate > 0 and reference > 0):  # also refuses NaN
            return False
        self.rate, self.reference = rate, reference
        if limit is not None and limit > 0 and limit_left > 0:
            self.limit, self.limit_until = limit, now + min(limit_left, self.limit_ttl)
        self.rate = self.current(now)
        return True


@dataclass
class TokenBucket:
    """Tokens accrue at the given rate up to ``burst``; each request takes one."""

    tokens: float = 1.0
    stamp: float = 0.0

    def take(self, now: float, rate: float) -> float:
        """0.0 when a token was taken; else the seconds until one will be there."""
        burst = max(1.0, rate * BURST_SECONDS)
        self.tokens = min(burst, self.tokens + max(0.0, now - self.stamp) * rate)
        self.stamp = max(self.stamp, now)
        if self.tokens >= 1.0 - _EPSILON:  # a wait computed below lands here, not short
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / rate

    def drain(self) -> None:
        """The server said we are over: no burst right after a throttle."""
        self.tokens = min(self.tokens, 0.0)
