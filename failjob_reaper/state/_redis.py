"""The Redis backend (``STATE_URL=redis://`` or ``rediss://``): shared by every instance.

Huawei DCS, Redis and Valkey speak the same protocol. Each primitive is one
command, or one Lua script where it must read and write atomically
(compare-and-set, compare-and-delete, a counter that gets its TTL only when
created, the many hashes of ``hash_put_many`` and ``hash_get_many``, a bit array's
meta and bits read together); ``put_many``, ``hash_put`` and ``hash_replace`` go in one
MULTI/EXEC round trip, the scripts of ``bits_get_many`` in one pipeline.

Every redis-py error becomes ``StateUnavailable`` here, at the boundary, with a
message that names the server (host:port) and never the URL's password.

``url_options`` is the one check of a Redis ``STATE_URL``: the settings call it at
start-up (a URL redis-py would refuse later stops the start with one line), and the
store builds its client from what it returns.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.connection import parse_url

from failjob_reaper.state._store import (
    BITS_META,
    StateUnavailable,
    bits_head,
    check_bit_offsets,
)

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

# KEYS[1] a bit array; ARGV[1] the bytes of its meta, ARGV[2..] bit offsets (each taken
# modulo the array's size). The meta and the bits are read in one script: one value.
_BITS_GET = """
local head = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('TYPE', KEYS[1]).ok ~= 'string' then
  return false
end
local size = (redis.call('STRLEN', KEYS[1]) - head) * 8
if size < 0 then
  return false
end
local out = {redis.call('GETRANGE', KEYS[1], 0, head - 1)}
for i = 2, #ARGV do
  if size == 0 then
    out[i] = 0
  else
    out[i] = redis.call('GETBIT', KEYS[1], head * 8 + (tonumber(ARGV[i]) % size))
  end
end
return out
"""

# KEYS: hashes; ARGV[1] ttl in ms, ARGV[1 + i] the fields of KEYS[i] as a JSON object
# (one argument per hash: cheap to send). Each hash gets its fields and a fresh TTL.
_HASH_PUT_MANY = """
for i = 1, #KEYS do
  local fv = {}
  for field, value in pairs(cjson.decode(ARGV[i + 1])) do
    fv[#fv + 1] = field
    fv[#fv + 1] = value
    if #fv >= 2000 then  -- unpack's stack is bounded
      redis.call('HSET', KEYS[i], unpack(fv))
      fv = {}
    end
  end
  if #fv > 0 then
    redis.call('HSET', KEYS[i], unpack(fv))
  end
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return #KEYS
"""

# KEYS: hashes; ARGV[i] the fields asked of KEYS[i] as a JSON array. The answer: a JSON
# array, for each hash its values (null: absent; a key that holds no hash: all null).
# One command, however many hashes: cheap to send and to parse.
_HASH_GET_MANY = """
local out = {}
for i = 1, #KEYS do
  local names = cjson.decode(ARGV[i])
  local got = {}
  local hash = redis.call('TYPE', KEYS[i]).ok == 'hash'
  for first = 1, #names, 1000 do  -- unpack's stack is bounded
    local last = math.min(#names, first + 999)
    if hash then
      local values = redis.call('HMGET', KEYS[i], unpack(names, first, last))
      for j = 1, #values do
        got[#got + 1] = values[j] or cjson.null
      end
    else
      for j = first, last do
        got[#got + 1] = cjson.null
      end
    end
  end
  out[i] = got
end
return cjson.encode(out)
"""


class UrlProblem(ValueError):
    """What is wrong with a Redis ``STATE_URL``; the message holds no part of the URL
    but an option's name."""


_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*\.?")
_CLIENT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
MAX_SECONDS = 60.0
"""The longest socket timeout a URL may ask for: a store slower than that to answer
keeps every invocation waiting."""


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise ValueError(f"must be a number of seconds above 0 and at most {MAX_SECONDS:g}")
    return seconds


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return int(value)
    return parse


def _flag(value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError("must be true or false")


def _cert_reqs(value: str) -> str:
    if value not in ("none", "optional", "required"):
        raise ValueError("must be none, optional or required")
    return value


def _client_name(value: str) -> str:
    if not _CLIENT_NAME.fullmatch(value):
        raise ValueError("must be 1-64 letters, digits, '.', '-' or '_'")
    return value


def _ca_file(value: str) -> str:
    if not os.path.isfile(value) or not os.access(value, os.R_OK):
        raise ValueError("must name a readable file of CA certificates")
    return value


OPTIONS: Mapping[str, Callable[[str], object]] = {
    "socket_timeout": _seconds,
    "socket_connect_timeout": _seconds,
    "socket_keepalive": _flag,
    "health_check_interval": _whole(0, 3600),
    "max_connections": _whole(1, 10_000),
    "client_name": _client_name,
    "db": _whole(0, 100_000),
}
"""The query options a Redis STATE_URL may carry, each with its check. redis-py passes
any other name on to its connections as a keyword, which fails at the first command
(``?foo=bar``) or changes what the store answers (``?decode_responses=no``,
``?protocol=3``): refused at start-up instead."""

TLS_OPTIONS: Mapping[str, Callable[[str], object]] = {
    "ssl_cert_reqs": _cert_reqs,
    "ssl_check_hostname": _flag,
    "ssl_ca_certs": _ca_file,
}
"""Only with ``rediss://``: on a plain connection redis-py refuses them at the first command."""


def url_options(url: str) -> dict[str, Any]:
    """The keyword arguments of the connection pool ``url`` names; ``UrlProblem`` saying
    which part is wrong (scheme, host, port, database, an option or its value)."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in ("redis", "rediss"):
        raise UrlProblem("must start with redis:// or rediss:// (lower case)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlProblem("the port must be a whole number from 1 to 65535") from None
    if port == 0:
        raise UrlProblem("the port must be a whole number from 1 to 65535")
    host = parts.hostname
    if not host or not _is_host(host):
        raise UrlProblem("must name a host: a DNS name or an IP address, e.g. "
                         "redis://:password@redis.internal:6379/0")
    if parts.fragment or url.endswith("#"):
        raise UrlProblem("must not carry a fragment (#...)")
    path = unquote(parts.path).strip("/")
    if path and not (path.isascii() and path.isdigit()):
        raise UrlProblem("the database (the path) must be a whole number, e.g. /0")
    given = _query(parts.query, tls=scheme == "rediss", password=parts.password)
    if path and "db" in given:
        raise UrlProblem("the database is given twice: in the path and as ?db=")
    try:  # redis-py's own reading, as it will use it
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:  # what the checks above let through and redis-py does not
        detail = str(exc)
        if parts.password and parts.password in detail:
            detail = type(exc).__name__
        raise UrlProblem(f"redis-py refuses it: {detail}") from None
    options.update(given)  # the checked values (booleans parsed strictly)
    return options


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST.fullmatch(host)) and len(host) <= 253
    return True


def _query(query: str, *, tls: bool, password: str | None) -> dict[str, object]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise UrlProblem("the options must be name=value pairs joined by &") from None
    accepted = {**OPTIONS, **TLS_OPTIONS} if tls else OPTIONS
    given: dict[str, object] = {}
    for name, value in pairs:
        check = accepted.get(name)
        if check is None:
            where = " (only with rediss://)" if name in TLS_OPTIONS else ""
            shown = "(a name that contains the password)" if password and password in name \
                else _name(name)
            raise UrlProblem(f"unknown option {shown}{where}; accepted: "
                             f"{', '.join(sorted(accepted))}")
        if name in given:
            raise UrlProblem(f"option {name} is given twice")
        try:
            given[name] = check(value)
        except ValueError as exc:
            raise UrlProblem(f"option {name}: {exc}") from None
    return given


def _name(name: str) -> str:
    text = repr(name)
    return text if len(text) <= 42 else text[:39] + "..."


class RedisStore:
    """``StateStore`` over one redis-py connection pool (thread-safe)."""

    def __init__(self, url: str, *, namespace: str = "") -> None:
        parts = urlsplit(url)
        self.namespace = namespace
        self._password = parts.password
        try:
            options = url_options(url)
        except UrlProblem as exc:
            raise StateUnavailable(f"STATE_URL: {exc}") from None
        self.where = f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"
        options.setdefault("socket_timeout", DEFAULT_TIMEOUT)
        options.setdefault("socket_connect_timeout", DEFAULT_TIMEOUT)
        options.setdefault("health_check_interval", 30)
        options["decode_responses"] = True
        try:
            self._redis: redis.Redis = redis.Redis(
                connection_pool=redis.ConnectionPool(**options))
        except (ValueError, TypeError, redis.RedisError) as exc:
            raise self._unavailable(exc) from None
        self._replace_if = self._redis.register_script(_REPLACE_IF)
        self._delete_if = self._redis.register_script(_DELETE_IF)
        self._incr = self._redis.register_script(_INCR)
        self._bits_get = self._redis.register_script(_BITS_GET)
        self._hash_put_many = self._redis.register_script(_HASH_PUT_MANY)
        self._hash_get_many = self._redis.register_script(_HASH_GET_MANY)

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

    def hash_put_many(self, items: Mapping[str, Mapping[str, str]], ttl: float) -> None:
        asked = {key: fields for key, fields in items.items() if fields}
        if not asked:
            return
        keys = [self._key(key) for key in asked]
        args: list[str | int] = [_ms(ttl)]
        args.extend(json.dumps(dict(fields)) for fields in asked.values())
        self._call(lambda: self._hash_put_many(keys=keys, args=args))

    def bits_put(self, key: str, meta: str, bits: bytes, ttl: float) -> None:
        value = bits_head(meta) + bytes(bits)
        ms = _ms(ttl)
        self._call(lambda: self._redis.set(self._key(key), value, px=ms))

    def bits_get_many(
        self, keys: Sequence[str], offsets: Sequence[int]
    ) -> list[tuple[str, list[bool]] | None]:
        check_bit_offsets(offsets)
        if not keys:
            return []
        args = [BITS_META, *offsets]

        def run() -> list[Any]:
            with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    self._bits_get(keys=[self._key(key)], args=args, client=pipe)
                return list(pipe.execute())

        out: list[tuple[str, list[bool]] | None] = []
        for answer in self._call(run):
            if not answer:
                out.append(None)
                continue
            meta = answer[0]
            meta = meta.decode("ascii", "replace") if isinstance(meta, bytes) else str(meta)
            out.append((meta.rstrip(" "), [bool(bit) for bit in answer[1:]]))
        return out

    def hash_get_many(
        self, requests: Sequence[tuple[str, Sequence[str]]]
    ) -> list[list[str | None]]:
        asked = [(key, list(names)) for key, names in requests if names]
        if not asked:
            return [[] for _ in requests]

        keys = [self._key(key) for key, _ in asked]
        args = [json.dumps(names) for _, names in asked]
        text = self._call(lambda: self._hash_get_many(keys=keys, args=args))
        try:
            answers = iter(json.loads(str(_text(text))) or [])
            got = [[v if isinstance(v, str) else None for v in (next(answers) or [])]
                   if names else [] for _, names in requests]
        except (ValueError, StopIteration):
            raise StateUnavailable(f"state store {self.where}: an answer that is no list of "
                                   "fields") from None
        return got

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
