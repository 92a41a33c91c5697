"""One listing of the stand-in: rows (a unique int sort key, the record's JSON) in key order.

Kept in blocks of about ``BLOCK`` rows, so that a page at any offset costs
O(blocks + page), an insertion or a removal O(log n + BLOCK), and a listing of
1,000,000 rows is loaded by one sort: the stand-in pages a backlog of a million
tasks without quadratic work of its own. Not thread-safe: the stand-in's lock
guards it.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Iterator

BLOCK = 1024


class SortedRows:
    def __init__(self) -> None:
        self._keys: list[list[int]] = []  # each block's keys, ascending
        self._bodies: list[list[bytes]] = []  # each block's bodies, in the same order
        self._lasts: list[int] = []  # each block's last key, for bisect
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[bytes]:
        for block in self._bodies:
            yield from block

    def add_many(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Add rows (keys new to this listing). A few rows go in one by one; many are
        merged with what is there and the blocks rebuilt (one sort)."""
        new = sorted(rows)
        if not new:
            return
        if len(new) * 16 < self._len:
            for key, body in new:
                self._insert(key, body)
            return
        merged = heapq.merge(zip(self._all_keys(), self, strict=True), new)
        keys: list[int] = []
        bodies: list[bytes] = []
        for key, body in merged:
            keys.append(key)
            bodies.append(body)
        self._rebuild(keys, bodies)

    def remove(self, key: int) -> bool:
        """Remove the row with this key; False when there is none."""
        b = bisect.bisect_left(self._lasts, key)
        if b == len(self._lasts):
            return False
        block = self._keys[b]
        i = bisect.bisect_left(block, key)
        if i == len(block) or block[i] != key:
            return False
        del block[i]
        del self._bodies[b][i]
        self._len -= 1
        if not block:
            del self._keys[b], self._bodies[b], self._lasts[b]
        else:
            self._lasts[b] = block[-1]
        return True

    def page(self, start: int, stop: int) -> list[bytes]:
        """The bodies at positions start..stop-1 (as a list slice would give them)."""
        out: list[bytes] = []
        if start >= stop:
            return out
        position = 0
        for block in self._bodies:
            size = len(block)
            if position + size > start:
                out.extend(block[max(0, start - position): stop - position])
                if position + size >= stop:
                    break
            position += size
        return out

    def at(self, position: int) -> bytes:
        """The body at one position (0 <= position < len)."""
        got = self.page(position, position + 1)
        if not got:
            raise IndexError(position)
        return got[0]

    # -- plumbing -------------------------------------------------------------------

    def _all_keys(self) -> Iterator[int]:
        for block in self._keys:
            yield from block

    def _rebuild(self, keys: list[int], bodies: list[bytes]) -> None:
        self._keys = [keys[i:i + BLOCK] for i in range(0, len(keys), BLOCK)]
        self._bodies = [bodies[i:i + BLOCK] for i in range(0, len(bodies), BLOCK)]
        self._lasts = [block[-1] for block in self._keys]
        self._len = len(keys)

    def _insert(self, key: int, body: bytes) -> None:
        if not self._keys:
            self._rebuild([key], [body])
            return
        b = min(bisect.bisect_left(self._lasts, key), len(self._lasts) - 1)
        block, bodies = self._keys[b], self._bodies[b]
        i = bisect.bisect_left(block, key)
        block.insert(i, key)
        bodies.insert(i, body)
        self._lasts[b] = block[-1]
        self._len += 1
        if len(block) > 2 * BLOCK:  # split in two
            half = len(block) // 2
            self._keys[b:b + 1] = [block[:half], block[half:]]
            self._bodies[b:b + 1] = [bodies[:half], bodies[half:]]
            self._lasts[b:b + 1] = [block[half - 1], block[-1]]
