"""Gateway throttling for the stand-in: a token bucket of ``rate`` requests/s with a burst.

Huawei's API gateway answers a client over its limit with 429 and
``{"error_code": "APIG.0308", "error_msg": "... limit:N,time:1 second"}``
(docs/huawei-cloud.md); so does the stand-in once its bucket is empty. Off
unless a ``Throttle`` is set on the stand-in (``TaskCenterStandIn.throttle``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from ._http import Response

__all__ = ["Throttle"]


class Throttle:
    """Admit at most ``rate`` requests per second on average, ``burst`` back to back."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        if self.burst < 1:
            raise ValueError("burst must be >= 1")
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()
        self.refused = 0

    def admit(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self.refused += 1
            return False

    def refusal(self) -> Response:
        limit = f"{self.rate:g}"
        body = {
            "error_code": "APIG.0308",
            "error_msg": "The throttling threshold has been reached: policy user over "
            f"ratelimit,limit:{limit},time:1 second",
        }
        return Response(429, json.dumps(body).encode())

    def check(self) -> Response | None:
        """None when the request may go on; else the gateway's 429."""
        return None if self.admit() else self.refusal()
