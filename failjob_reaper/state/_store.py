"""The state-store interface and the one function that opens a backend from ``STATE_URL``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from failjob_reaper.errors import ReaperError


class StateUnavailable(ReaperError):
    """The store could not be reached or answered an error; the message holds no secret."""


BITS_META = 64
"""The bytes a bit array's ``meta`` may take; the array starts after them."""
MAX_BIT_OFFSET = 2**52
"""Offsets given to ``bits_get_many`` are below this (exact in a Lua number)."""


class StateStore(Protocol):
    """Strings under keys, each with a time to live in seconds (``ttl`` > 0, always).

    Every method is atomic on its own; none takes a lock across calls. Keys are
    relative to the store's namespace (the deployment's project), so two
    deployments sharing one Redis never see each other's keys.
    """

    def get(self, key: str) -> str | None:
        """The value, or None when absent or expired."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """``get`` for each key, in one round trip."""
        ...

    def put(self, key: str, value: str, ttl: float) -> None:
        """Set, replacing any value, with a fresh TTL."""
        ...

    def put_many(self, items: Mapping[str, str], ttl: float) -> None:
        """``put`` for each item, in one round trip."""
        ...

    def add(self, key: str, value: str, ttl: float) -> bool:
        """Set only if absent (SET NX); True when this call set it."""
        ...

    def replace_if(self, key: str, expected: str, value: str, ttl: float) -> bool:
        """Compare-and-set: replace only while the value is ``expected``."""
        ...

    def delete_if(self, key: str, expected: str) -> bool:
        """Compare-and-delete: delete only while the value is ``expected``."""
        ...

    def delete(self, key: str) -> None: ...

    def incr(self, key: str, amount: int, ttl: float) -> int:
        """Add ``amount`` (a missing key counts as 0) and return the new value.

        The TTL is set when the key is created and left alone afterwards, so a
        counter keyed by a time window expires with its window.
        """
        ...

    def hash_put(self, key: str, field: str, value: str, ttl: float) -> None:
        """Set one field of a hash; the TTL applies to the whole hash and is refreshed."""
        ...

    def hash_replace(self, key: str, fields: Mapping[str, str], ttl: float) -> None:
        """Replace the whole hash by ``fields`` (none: delete it), with a fresh TTL; a
        reader sees the old hash or the new one, never a mix."""
        ...

    def hash_put_many(self, items: Mapping[str, Mapping[str, str]], ttl: float) -> None:
        """``hash_put`` of many fields of many hashes (each hash's TTL refreshed), in one
        round trip."""
        ...

    def bits_put(self, key: str, meta: str, bits: bytes, ttl: float) -> None:
        """Replace ``key`` whole by a bit array and a short text about it (``meta``, ASCII,
        at most ``BITS_META`` bytes), with a fresh TTL."""
        ...

    def bits_get_many(
        self, keys: Sequence[str], offsets: Sequence[int]
    ) -> list[tuple[str, list[bool]] | None]:
        """For each key: its ``meta`` and the bits at ``offsets`` (each taken modulo the
        array's size in bits; an empty array's are all False), read together, atomically;
        None when the key is absent or holds no bit array. In one round trip."""
        ...

    def hash_get_all(self, key: str) -> dict[str, str]:
        """Every field of a hash ({} when absent)."""
        ...

    def hash_get_many(
        self, requests: Sequence[tuple[str, Sequence[str]]]
    ) -> list[list[str | None]]:
        """For each (key, fields): those fields' values (None: absent), in one round trip."""
        ...

    def hash_delete(self, key: str, field: str) -> None: ...

    def hash_len(self, key: str) -> int:
        """How many fields a hash has (0 when absent)."""
        ...

    def close(self) -> None: ...


def bits_head(meta: str) -> bytes:
    """``meta`` as the head of a bit array (padded with spaces); ValueError when it does
    not fit."""
    if not meta.isascii() or len(meta) > BITS_META:
        raise ValueError(f"a bit array's meta is ASCII of at most {BITS_META} bytes")
    return meta.ljust(BITS_META).encode("ascii")


def check_bit_offsets(offsets: Sequence[int]) -> None:
    if any(not 0 <= o < MAX_BIT_OFFSET for o in offsets):
        raise ValueError(f"bit offsets are from 0 to {MAX_BIT_OFFSET - 1}")


def check_state_url(url: str) -> None:
    """``STATE_URL`` checked whole (scheme, host, port, database, every option and its
    value); ValueError saying what is wrong, never with the password. The settings call
    it at start-up. redis-py is imported only for a Redis URL (cold start of memory://)."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    if url.startswith("memory:"):
        if url != "memory://":
            raise ValueError("memory:// takes no host, path or options")
        return
    if scheme.lower() not in ("redis", "rediss"):
        raise ValueError("must be memory:// or a redis:// or rediss:// URL")
    from failjob_reaper.state._redis import url_options

    url_options(url)  # UrlProblem is a ValueError whose message never holds the password


def open_store(url: str, *, namespace: str) -> StateStore:
    """The backend ``url`` names (``STATE_URL``), its keys under ``namespace``."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from failjob_reaper.state._memory import MemoryStore

        return MemoryStore(namespace=namespace)
    if scheme in ("redis", "rediss"):
        # Imported here: a memory:// deployment never pays for redis-py at cold start.
        from failjob_reaper.state._redis import RedisStore

        store: StateStore = RedisStore(url, namespace=namespace)
        return store
    raise StateUnavailable(f"STATE_URL: unsupported scheme {scheme!r}")
