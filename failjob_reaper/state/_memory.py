"""The in-process backend (``STATE_URL=memory://``): one process, the default."""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from failjob_reaper.state._store import BITS_META, bits_head, check_bit_offsets

Value = str | dict[str, str] | bytes
"""A string, a hash, or a bit array (its ``meta`` padded to ``BITS_META`` bytes, then
its bits, the first bit the high bit of the first byte, as Redis counts them)."""

MAX_BYTES = 16 * 1024 * 1024
"""What ``memory://`` holds at most, counted as below: a small function's share (a sweep
over 100,000 listed tasks must fit 128 MiB in all, docs/performance.md; 64 MiB took a
real sweep to 173). About 6,000 DELETEs' journal entries, the least recently used
going first; the lookup index's keys go before anything else."""
KEY_COST = 400
"""Bytes counted for each key on top of the lengths of its key and value: about what the
store's own structures take per key in CPython (the ordered dict, the expiry heap, the
entry and the strings' headers; tests/test_state_store.py checks it with tracemalloc)."""
FIELD_COST = 100
"""Bytes counted for each field of a hash on top of the lengths of its name and value."""
CACHE_PREFIXES = ("ix:", "sv:", "gv")
"""The keys of the lookup index (failjob_reaper/scopes.py; a test holds the two together):
a cache, whose loss costs only speed. Past a bound they go first, so that indexing a
backlog never pushes out a sweep's lease, the delete journal or the outbox."""


class _Entry:
    """A value, the instant it expires, the bytes counted for it, and the stamp of its
    live slot in the expiry heap (older slots of the same key are stale)."""

    __slots__ = ("expires", "size", "stamp", "value")

    def __init__(self, value: Value, expires: float, size: int, stamp: int) -> None:
        self.value = value
        self.expires = expires
        self.size = size
        self.stamp = stamp


def _cost(key: str, value: Value) -> int:
    if isinstance(value, str | bytes):
        return KEY_COST + len(key) + len(value)
    return KEY_COST + len(key) + sum(FIELD_COST + len(f) + len(v) for f, v in value.items())


class MemoryStore:
    """Keys with expiry under one lock, bounded by ``max_keys`` and ``max_bytes``.

    Every operation is O(1) amortized, plus O(log n) per expiry instant it sets:

    * the keys sit in an ``OrderedDict`` in the order they were last used, so past
      either bound the least recently used key goes in O(1) (``popitem(last=False)``);
    * each key's expiry instant goes into a heap, so the keys whose time has come are
      dropped as the clock passes them (a write pops only those); a slot left behind
      by a rewritten key is skipped when it surfaces, and the heap is rebuilt from the
      live keys once more than half of it is such slots (O(n) once per n writes).

    ``max_bytes`` counts the lengths of keys and values plus ``KEY_COST`` per key and
    ``FIELD_COST`` per hash field, about what the process pays for them. Keys starting
    with one of ``evict_first`` (default: ``CACHE_PREFIXES``) are kept in an order of
    their own and go before any other key, least recently used first. The clock is
    injectable (tests drive expiry with it).
    """

    def __init__(
        self,
        *,
        namespace: str = "",
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
        max_bytes: int = MAX_BYTES,
        evict_first: tuple[str, ...] = CACHE_PREFIXES,
    ) -> None:
        if max_keys < 1 or max_bytes < 1:
            raise ValueError("max_keys and max_bytes must be >= 1")
        self.namespace = namespace
        self._clock = clock
        self._max_keys = max_keys
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._evict_first = evict_first
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._cached: OrderedDict[str, _Entry] = OrderedDict()  # the evict_first keys
        self._expiry: list[tuple[float, int, str]] = []
        self._bytes = 0
        self._stamps = 0

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
            self._drop(key)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def incr(self, key: str, amount: int, ttl: float) -> int:
        with self._lock:
            entry = self._entry(key)
            if entry is None:
                value = amount
                self._store(key, str(value), ttl)
            else:
                value = int(str(entry.value)) + amount
                text = str(value)
                # The TTL of its creation stays: a counter expires with its window.
                self._resize(key, entry, len(text) - len(str(entry.value)))
                entry.value = text
            return value

    # -- hashes -------------------------------------------------------------------

    def hash_put(self, key: str, field: str, value: str, ttl: float) -> None:
        _check_ttl(ttl)
        with self._lock:
            self._hash_set(key, {field: value}, ttl)

    def hash_put_many(self, items: Mapping[str, Mapping[str, str]], ttl: float) -> None:
        _check_ttl(ttl)
        for key, fields in items.items():
            if fields:
                with self._lock:  # per hash: others are not held up by a long batch
                    self._hash_set(key, fields, ttl)

    def bits_put(self, key: str, meta: str, bits: bytes, ttl: float) -> None:
        head = bits_head(meta)
        with self._lock:
            self._store(key, head + bytes(bits), ttl)

    def bits_get_many(
        self, keys: Sequence[str], offsets: Sequence[int]
    ) -> list[tuple[str, list[bool]] | None]:
        check_bit_offsets(offsets)
        out: list[tuple[str, list[bool]] | None] = []
        with self._lock:
            for key in keys:
                value = self._live(key)
                if not isinstance(value, bytes) or len(value) < BITS_META:
                    out.append(None)
                    continue
                size = (len(value) - BITS_META) * 8
                meta = value[:BITS_META].decode("ascii", "replace").rstrip(" ")
                out.append((meta, [size > 0 and _bit(value, BITS_META * 8 + o % size)
                                   for o in offsets]))
        return out

    def hash_replace(self, key: str, fields: Mapping[str, str], ttl: float) -> None:
        with self._lock:
            if fields:
                self._store(key, dict(fields), ttl)
            else:
                self._drop(key)

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
        with self._lock:  # copied under the lock: hashes change in place
            current = self._live(key)
            return dict(current) if isinstance(current, dict) else {}

    def hash_delete(self, key: str, field: str) -> None:
        with self._lock:
            entry = self._entry(key)
            if entry is None or not isinstance(entry.value, dict):
                return
            old = entry.value.pop(field, None)
            if old is None:
                return
            if not entry.value:
                self._drop(key)
            else:
                self._resize(key, entry, -(FIELD_COST + len(field) + len(old)))

    def hash_len(self, key: str) -> int:
        with self._lock:
            current = self._live(key)
            return len(current) if isinstance(current, dict) else 0

    def close(self) -> None:
        return None

    def __len__(self) -> int:
        """Live keys (those whose time has come are dropped first)."""
        with self._lock:
            self._expire(self._clock())
            return len(self._entries) + len(self._cached)

    @property
    def bytes_counted(self) -> int:
        """The bytes counted against ``max_bytes`` (expired keys dropped first)."""
        with self._lock:
            self._expire(self._clock())
            return self._bytes

    # -- plumbing -----------------------------------------------------------------

    def _entry(self, key: str) -> _Entry | None:
        """The live entry under ``key``, now the most recently used; None when absent
        or expired (then dropped)."""
        table = self._table(key)
        entry = table.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self._drop(key)
            return None
        table.move_to_end(key)
        return entry

    def _live(self, key: str) -> Value | None:
        entry = self._entry(key)
        return None if entry is None else entry.value

    def _store(self, key: str, value: Value, ttl: float) -> None:
        _check_ttl(ttl)
        now = self._clock()
        self._expire(now)
        self._drop(key)
        size = _cost(key, value)
        if size > self._max_bytes:
            return  # larger than the whole bound: not kept, as if evicted at once
        self._stamps += 1
        entry = _Entry(value, now + ttl, size, self._stamps)
        self._table(key)[key] = entry
        self._bytes += size
        heapq.heappush(self._expiry, (entry.expires, entry.stamp, key))
        self._evict(keep=key)

    def _hash_set(self, key: str, fields: Mapping[str, str], ttl: float) -> None:
        entry = self._entry(key)
        if entry is None or not isinstance(entry.value, dict):
            self._store(key, dict(fields), ttl)
            return
        # In place, O(1) a field whatever the size of the hash; the whole hash's TTL
        # refreshed.
        held, grown = entry.value, 0
        for field, value in fields.items():
            old = held.get(field)
            held[field] = value
            grown += len(value) - len(old) if old is not None \
                else FIELD_COST + len(field) + len(value)
        self._renew(key, entry, self._clock() + ttl)
        self._resize(key, entry, grown)

    def _renew(self, key: str, entry: _Entry, expires: float) -> None:
        """A new expiry instant for a live entry; its old heap slot goes stale."""
        self._expire(self._clock())
        self._stamps += 1
        entry.expires, entry.stamp = expires, self._stamps
        heapq.heappush(self._expiry, (expires, entry.stamp, key))

    def _resize(self, key: str, entry: _Entry, grown: int) -> None:
        entry.size += grown
        self._bytes += grown
        if entry.size > self._max_bytes:
            self._drop(key)  # grown past the whole bound: not kept
        elif grown > 0:
            self._evict(keep=key)

    def _drop(self, key: str) -> None:
        entry = self._table(key).pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def _evict(self, keep: str) -> None:
        """Least recently used keys out until both bounds hold (``keep``, the key just
        written and the most recently used, is the last that could go)."""
        entries, cached = self._entries, self._cached
        while len(entries) + len(cached) > self._max_keys or self._bytes > self._max_bytes:
            key, entry = (cached or entries).popitem(last=False)
            self._bytes -= entry.size
            if key == keep:
                break

    def _table(self, key: str) -> OrderedDict[str, _Entry]:
        return self._cached if key.startswith(self._evict_first) else self._entries

    def _expire(self, now: float) -> None:
        """Drop every key whose instant has come; rebuild the heap when most of it is
        stale slots."""
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, stamp, key = heapq.heappop(expiry)
            table = self._table(key)
            entry = table.get(key)
            if entry is not None and entry.stamp == stamp:
                del table[key]
                self._bytes -= entry.size
        live = len(self._entries) + len(self._cached)
        if len(expiry) > 2 * live + 64:
            self._expiry = [(e.expires, e.stamp, k) for table in (self._entries, self._cached)
                            for k, e in table.items()]
            heapq.heapify(self._expiry)


def _bit(value: bytes, offset: int) -> bool:
    return bool(value[offset >> 3] & (0x80 >> (offset & 7)))


def _check_ttl(ttl: float) -> None:
    if ttl <= 0:
        raise ValueError("every key needs a TTL > 0")
