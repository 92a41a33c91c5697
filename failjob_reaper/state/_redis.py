"""The Redis backend (``STATE_URL=redis://`` or ``rediss://``): shared by every instance.

Huawei DCS, Redis and Valkey speak the same protocol. Each primitive is one
command, or one Lua script where it must read and write atomically
(compare-and-set, compare-and-delete, a counter that gets its TTL only when
created); the ``_many`` writes, ``hash_put`` and ``hash_replace`` go in one MULTI/EXEC
round trip, the reads of ``hash_get_many`` in one pipeline.

Every redis-py error becomes ``StateUnavailable`` here, at the boundary, with a
message that names the server (host:port) and never the URL's password.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import redis

from failjob_reaper.state._store import StateUnavailable

T = TypeVar("T")

DEFAULT_TIMEOUT = 2.0
"""Seconds for a connect and for an answer, unless the URL says (``?socket_timeout=``)."""

# KEYS[1] key; ARGV[1] expected, ARGV[2] new value, ARGV[3] ttl in ms.
_REPLACE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# The TTL is set when the counter is created (or if it somehow lost it), never extended.
_INCR = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


class RedisStore:
    """``StateStore`` over one redis-py connection pool (thread-safe)."""

    def __init__(self, url: str, *, namespace: str = "") -> None:
        parts = urlsplit(url)
        self.namespace = namespace
        self.where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
        self._password = parts.password
        options: dict[str, Any] = {"decode_responses": True, "health_check_interval": 30}
        query = parse_qs(parts.query)
        if "socket_timeout" not in query:
            options["socket_timeout"] = DEFAULT_TIMEOUT
        if "socket_connect_timeout" not in query:
            options["socket_connect_timeout"] = DEFAULT_TIMEOUT
        try:
            self._redis: redis.Redis = redis.Redis.from_url(url, **options)
        except (ValueError, redis.RedisError) as exc:
            raise self._unavailable(exc) from None
        self._replace_if = self._redis.register_script(_REPLACE_IF)
        self._delete_if = self._redis.register_script(_DELETE_IF)
        self._incr = self._redis.register_script(_INCR)

    # -- strings ------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        return _text(self._call(lambda: self._redis.get(self._key(key))))

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        values = self._call(lambda: self._redis.mget([self._key(k) for k in keys]))
        return [_text(value) for value in values]

    def put(self, key: str, value: str, ttl: float) -> None:
        self._call(lambda: self._redis.set(self._key(key), value, px=_ms(ttl)))

    def put_many(self, items: Mapping[str, str], ttl: float) -> None:
        if not items:
            return
        ms = _ms(ttl)

        def run() -> None:
            with self._redis.pipeline(transaction=True) as pipe:
                for key, value in items.items():
                    pipe.set(self._key(key), value, px=ms)
                pipe.execute()

        self._call(run)

    def add(self, key: str, value: str, ttl: float) -> bool:
        ms = _ms(ttl)
        return bool(self._call(lambda: self._redis.set(self._key(key), value, px=ms, nx=True)))

    def replace_if(self, key: str, expected: str, value: str, ttl: float) -> bool:
        ms = _ms(ttl)
        return bool(self._call(
            lambda: self._replace_if(keys=[self._key(key)], args=[expected, value, ms])))

    def delete_if(self, key: str, expected: str) -> bool:
        return bool(self._call(lambda: self._delete_if(keys=[self._key(key)], args=[expected])))

    def delete(self, key: str) -> None:
        self._call(lambda: self._redis.delete(self._key(key)))

    def incr(self, key: str, amount: int, ttl: float) -> int:
        ms = _ms(ttl)
        return int(self._call(lambda: self._incr(keys=[self._key(key)], args=[amount, ms])))

    # -- hashes -------------------------------------------------------------------

    def hash_put(self, key: str, field: str, value: str, ttl: float) -> None:
        ms = _ms(ttl)

        def run() -> None:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._key(key), field, value)
                pipe.pexpire(self._key(key), ms)
                pipe.execute()

        self._call(run)

    def hash_replace(self, key: str, fields: Mapping[str, str], ttl: float) -> None:
        ms = _ms(ttl)

        def run() -> None:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(key))
                if fields:
                    pipe.hset(self._key(key), mapping=dict[Any, Any](fields))
                    pipe.pexpire(self._key(key), ms)
                pipe.execute()

        self._call(run)

    def hash_get_many(
        self, requests: Sequence[tuple[str, Sequence[str]]]
    ) -> list[list[str | None]]:
        asked = [(key, list(names)) for key, names in requests if names]
        if not asked:
            return [[] for _ in requests]

        def run() -> list[Any]:
            with self._redis.pipeline(transaction=False) as pipe:
                for key, names in asked:
                    pipe.hmget(self._key(key), names)
                return list(pipe.execute())

        answers = iter(self._call(run))
        return [[_text(v) for v in next(answers)] if names else [] for _, names in requests]

    def hash_get_all(self, key: str) -> dict[str, str]:
        fields = self._call(lambda: self._redis.hgetall(self._key(key)))
        return {str(_text(name)): str(_text(value)) for name, value in fields.items()}

    def hash_delete(self, key: str, field: str) -> None:
        self._call(lambda: self._redis.hdel(self._key(key), field))

    def hash_len(self, key: str) -> int:
        return int(self._call(lambda: self._redis.hlen(self._key(key))))

    def close(self) -> None:
        self._redis.close()

    # -- plumbing -----------------------------------------------------------------

    def _key(self, key: str) -> str:
        return self.namespace + key

    def _call(self, run: Callable[[], T]) -> T:
        try:
            return run()
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> StateUnavailable:
        detail = str(exc) or type(exc).__name__
        if self._password:
            detail = detail.replace(self._password, "***")
        return StateUnavailable(f"state store {self.where}: {type(exc).__name__}: {detail}")

    def __repr__(self) -> str:
        return f"RedisStore({self.where}, namespace={self.namespace!r})"


def _text(value: bytes | str | None) -> str | None:
    # decode_responses=True makes these str already; the client's types do not know it.
    return value.decode() if isinstance(value, bytes) else value


def _ms(ttl: float) -> int:
    if ttl <= 0:
        raise ValueError("every key needs a TTL > 0")
    return max(1, round(ttl * 1000))
