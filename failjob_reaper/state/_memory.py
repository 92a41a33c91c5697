"""The in-process backend (``STATE_URL=memory://``): one process, the default."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence


class MemoryStore:
    """A dict with expiry under one lock; expired keys are dropped as they are met.

    ``max_keys`` bounds memory: past it, the key closest to expiry goes first.
    """

    def __init__(
        self,
        *,
        namespace: str = "",
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.namespace = namespace
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._values: dict[str, tuple[str | dict[str, str], float]] = {}

    # -- strings ------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._live(key)
        return value if isinstance(value, str) else None

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        return [self.get(key) for key in keys]

    def put(self, key: str, value: str, ttl: float) -> None:
        with self._lock:
            self._store(key, value, ttl)

    def put_many(self, items: Mapping[str, str], ttl: float) -> None:
        with self._lock:
            for key, value in items.items():
                self._store(key, value, ttl)

    def add(self, key: str, value: str, ttl: float) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._store(key, value, ttl)
            return True

    def replace_if(self, key: str, expected: str, value: str, ttl: float) -> bool:
        with self._lock:
            if self._live(key) != expected:
                return False
            self._store(key, value, ttl)
            return True

    def delete_if(self, key: str, expected: str) -> bool:
        with self._lock:
            if self._live(key) != expected:
                return False
            del self._values[key]
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)

    def incr(self, key: str, amount: int, ttl: float) -> int:
        with self._lock:
            current = self._live(key)
            if current is None:
                value = amount
                self._store(key, str(value), ttl)
            else:
                value = int(str(current)) + amount
                self._values[key] = (str(value), self._values[key][1])
            return value

    # -- hashes -------------------------------------------------------------------

    def hash_put(self, key: str, field: str, value: str, ttl: float) -> None:
        with self._lock:
            current = self._live(key)
            fields = dict(current) if isinstance(current, dict) else {}
            fields[field] = value
            self._store(key, fields, ttl)

    def hash_replace(self, key: str, fields: Mapping[str, str], ttl: float) -> None:
        with self._lock:
            if fields:
                self._store(key, dict(fields), ttl)
            else:
                self._values.pop(key, None)

    def hash_get_many(
        self, requests: Sequence[tuple[str, Sequence[str]]]
    ) -> list[list[str | None]]:
        out: list[list[str | None]] = []
        with self._lock:
            for key, names in requests:
                current = self._live(key)
                fields = current if isinstance(current, dict) else {}
                out.append([fields.get(name) for name in names])
        return out

    def hash_get_all(self, key: str) -> dict[str, str]:
        with self._lock:
            current = self._live(key)
        return dict(current) if isinstance(current, dict) else {}

    def hash_delete(self, key: str, field: str) -> None:
        with self._lock:
            current = self._live(key)
            if isinstance(current, dict):
                current.pop(field, None)
                if not current:
                    del self._values[key]

    def hash_len(self, key: str) -> int:
        with self._lock:
            current = self._live(key)
        return len(current) if isinstance(current, dict) else 0

    def close(self) -> None:
        return None

    # -- plumbing -----------------------------------------------------------------

    def _live(self, key: str) -> str | dict[str, str] | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._values[key]
            return None
        return entry[0]

    def _store(self, key: str, value: str | dict[str, str], ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("every key needs a TTL > 0")
        if key not in self._values and len(self._values) >= self._max_keys:
            self._evict()
        self._values[key] = (value, self._clock() + ttl)

    def _evict(self) -> None:
        now = self._clock()
        for key in [k for k, (_, expires) in self._values.items() if expires <= now]:
            del self._values[key]
        if len(self._values) >= self._max_keys:
            del self._values[min(self._values, key=lambda k: self._values[k][1])]
