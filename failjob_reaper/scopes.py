"""Where failed tasks live, and reading one scope's listing.

The payload of an event is a hint, never the truth: the record the policy sees
is the one the list API returns now. :func:`scopes_to_search` is the one place
that says which scopes a task may live in; :class:`LookupIndex` remembers where
each task and resource was listed, so that one event reads one scope instead of
every protection group (docs/safety.md), and what each scope's last complete
listing held, so that an event that deletes need not read again the scopes that
were listed less than ``LISTING_MAX_AGE`` ago without a record it must weigh.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import os
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from failjob_reaper.ids import is_valid_id
from failjob_reaper.plan import (
    OneResource,
    OneTask,
    ScopeListing,
    Target,
    keys_to_weigh,
    targets_in,
)
from failjob_reaper.records import RecordTable
from failjob_reaper.sdrs import IncompleteListing, SdrsError, TaskCenterClient
from failjob_reaper.state import StateStore, StateUnavailable
from failjob_reaper.state import keys as state_keys

log = logging.getLogger("failjob_reaper")


@dataclass(frozen=True)
class Scope:
    """Where failed tasks are listed: the top level (None) or one protection group."""

    server_group_id: str | None

    def list(
        self, client: TaskCenterClient, deadline: float | None = None,
        only: Callable[[Mapping[str, Any]], bool] | None = None, expect: int = 0,
    ) -> RecordTable:
        """The scope's records, kept in columns as each page arrives
        (``records.RecordTable``: a backlog costs little per task). ``only``: keep just
        the records it accepts; the listing is still read, and judged complete, whole
        (``expect``: about how many records it holds, to size what tells a new one)."""
        table = RecordTable()
        keep: Callable[[dict[str, Any]], bool] = table.add
        if only is not None:
            glimpsed = _Glimpsed(expect)

            def keep(record: dict[str, Any]) -> bool:
                new = glimpsed.add(RecordTable.identity_of_record(record))
                return (only(record) and table.add(record)) or new
        try:
            for _ in client.failure_job_pages(server_group_id=self.server_group_id,
                                              deadline=deadline, keep=keep):
                pass  # the table keeps them
        except IncompleteListing as exc:
            exc.records = table  # type: ignore[assignment]  # read still counts
            raise
        return table

    @property
    def where(self) -> str:
        return f"group {self.server_group_id}" if self.server_group_id else "the top level"


TOP_LEVEL = Scope(None)


class _Glimpsed:
    """The records a listing kept only in part has seen, for telling a page that brings
    nothing new (a server that ignores ``offset``): a Bloom filter, 20 bits a record
    (2.5 MiB for 1,000,000), not the exact set a whole listing keeps in its table.

    A record seen before always reads as seen; a new one may read as seen too, about 2
    in 10,000 at the filter's size. That is harmless: the records
    kept are told apart exactly by their table, and a page counts as "nothing new" only
    when every record on it is taken for seen, which for a real page of new records
    (hundreds of them) does not happen; a one-record page might, once in thousands, and
    then the listing is incomplete: nothing deleted on it, never the other way."""

    __slots__ = ("_bits", "_key", "_size")
    _HASHES = 7

    def __init__(self, expect: int) -> None:
        self._size = max(expect, 1024) * 20
        self._bits = bytearray((self._size + 7) // 8)
        self._key = os.urandom(16)  # a server cannot aim for collisions it cannot compute

    def add(self, identity: object) -> bool:
        """Note ``identity``; True when it was surely not seen before."""
        digest = hashlib.blake2b(repr(identity).encode("utf-8", "surrogatepass"),
                                 digest_size=16, key=self._key).digest()
        size, bits = self._size, self._bits
        position = int.from_bytes(digest[:8]) % size
        step = (int.from_bytes(digest[8:]) | 1) % size or 1
        new = False
        for _ in range(self._HASHES):
            mask = 1 << (position & 7)
            if not bits[position >> 3] & mask:
                bits[position >> 3] |= mask
                new = True
            position = (position + step) % size
        return new


def group_scopes(
    client: TaskCenterClient, deadline: float | None = None,
    index: LookupIndex | None = None,
) -> list[Scope]:
    """Every protection group of the project (IncompleteListing when not all are known);
    ``index`` keeps the list for the events after it."""
    listed_at = index.clock() if index is not None else None
    groups = scopes_of(client.list_server_groups(deadline=deadline))
    if index is not None and listed_at is not None:
        index.record_groups(groups, listed_at)
    return groups


def scopes_of(groups: Iterable[Mapping[str, Any]]) -> list[Scope]:
    """One scope per distinct group; a group id that is no plain token cannot be queried
    safely and is skipped."""
    ids = dict.fromkeys(str(g["id"]) for g in groups if is_valid_id(g.get("id")))
    return [Scope(group_id) for group_id in ids]


def scopes_to_search(
    client: TaskCenterClient, hint_group: str | None, deadline: float | None = None,
    index: LookupIndex | None = None,
) -> list[Scope]:
    """Where one task (or resource) may live, in search order: the hinted group, the top
    level, then each protection group. Every one is read: the DELETE path is project-wide,
    so a record elsewhere with the same id must be weighed too. IncompleteListing when
    not every group is known (its ``scopes``: those that are)."""
    try:
        groups = group_scopes(client, deadline, index)
    except IncompleteListing as exc:
        exc.scopes = search_order(hint_group, scopes_of(exc.records))
        raise
    return search_order(hint_group, groups)


def search_order(hint_group: str | None, groups: Iterable[Scope]) -> list[Scope]:
    """The hinted group first (only when the group list names it: a hint is a hint),
    then the top level, then every other group."""
    groups = list(groups)
    named = hint_group is not None and any(s.server_group_id == hint_group for s in groups)
    scopes = [Scope(hint_group)] if named else []
    scopes.append(TOP_LEVEL)
    scopes.extend(s for s in groups if s.server_group_id != hint_group)
    return scopes


def read_scope(
    client: TaskCenterClient, scope: Scope, clock: Callable[[], datetime],
    deadline: float | None = None,
    only: Callable[[Mapping[str, Any]], bool] | None = None, expect: int = 0,
) -> ScopeListing:
    """One scope's complete listing. A group that the group list does not name (a wrong
    hint, a group removed meanwhile) lists nothing, whatever the code of the API's 400
    or 404 to it: what SDRS answers for an unknown group is not documented, so whether a
    group exists is read from the group list, never inferred from an error code. Other
    errors (IncompleteListing too) propagate."""
    listed_at = clock()
    try:
        records = scope.list(client, deadline, only, expect)
    except SdrsError as exc:
        if scope.server_group_id is not None and exc.status_code in (400, 404) \
                and not group_exists(client, scope.server_group_id, deadline):
            return ScopeListing(scope.server_group_id, (), listed_at=listed_at)
        raise
    return ScopeListing(scope.server_group_id, records, listed_at=listed_at)


def group_exists(client: TaskCenterClient, group_id: str, deadline: float | None) -> bool:
    """Whether the group list names ``group_id`` (True when the list cannot be read in
    full: then the refusal stands)."""
    try:
        groups = client.list_server_groups(deadline=deadline)
    except SdrsError:
        return True
    return any(str(group.get("id")) == group_id for group in groups)


# -- the lookup index -------------------------------------------------------------------

INDEX_TTL = state_keys.INDEX_TTL
"""How long one generation of the index lasts; a listing's word on where a record lives is
used in its generation and the next (an hourly sweep renews it)."""

_VIEW = state_keys.SCOPE_VIEW  # a scope's last complete listing: which keys it held, and when
_GROUPS = state_keys.GROUPS_VIEW  # the last complete list of protection groups, and when
_SCOPES = state_keys.INDEX_SCOPES  # scope code -> group id
_TOP = "-"  # the top level, as a scope code in the index (group ids are plain tokens)
_MANY = "*"  # a key held by more scopes than an entry names: the search goes everywhere
_MAX_CODES = 7  # 7 codes of 8 characters and their commas: 62 bytes, at most 64 (listpack)
_MAX_VALUE = 128
BUCKET_BITS = 15
BUCKETS = 2**BUCKET_BITS
"""Hashes per generation: 32,768. 2,000,000 entries (1,000,000 tasks, 2 keys each) put
about 61 in each (the fullest below 100), inside Redis's compact encoding
(hash-max-listpack-entries 128); from about 1,400,000 tasks the fullest buckets, and at
2,000,000 about a quarter of them, turn to Redis's plain hash encoding (about three times
the bytes per entry)."""
CHUNK = 131_072
"""Entries ``record`` holds before it writes them (8 bytes each, 1 MiB, and 5 MiB while
they are sorted by bucket): about 4 per bucket, so one command writes several."""
BATCH = 2_048
"""Buckets written per round trip."""
_FIELD_BITS = 48
_FIELD_MASK = 2**_FIELD_BITS - 1
BLOOM_BITS = 20
"""Bits of a scope view per key: 2.5 bytes per key (and 256 bytes at least: a small scope's
view is as sure as a large one's)."""
BLOOM_MIN_BYTES = 256
BLOOM_HASHES = 7
"""Bits set per key. With ``BLOOM_BITS`` = 20: a key the listing did not hold is taken for
one it held (the scope is read, never skipped) with probability (1 - e^(-7/20))^7, 0.02 %
(measured: tests/test_lookup_compact.py)."""
_BLOOM = "bf1"  # the format of a view's meta: "bf1 <hashes> <listed at>"


class LookupIndex:
    """Two things in the state store, both written by every complete listing; neither is
    more than a hint, and losing either costs only speed.

    * **Where** (``ix:<generation>:<bucket>``, hashes): for each value of the configured
      DELETE id field, ``job_id`` and ``resource_id``, keyed ``<field>:<value>``, the
      codes of the scopes it was last listed in. The bucket and the field are a stable
      digest of the key (a field of 8 characters: 48 bits, inside one of 32,768 buckets),
      the value at most 7 scope codes (8 characters each, ``-`` for the top level; more
      scopes: ``*``, search everywhere), resolved by ``ix:scopes``. Both stay in Redis's
      compact listpack encoding. A generation lasts ``ttl`` (``INDEX_TTL``); writes go to
      the current one, reads ask it then the one before, and a bucket expires at the end
      of the next generation: a record gone for two generations is forgotten, with no
      per-field TTL. Only a hint: what is deleted rests on a fresh listing of the scopes
      it names, and a task not found there sends the search through every scope (a digest
      collision is no more than such a wrong hint).
    * **Views** (``sv:<scope>``, TTL ``view_max_age``): each scope's last complete listing
      as a Bloom filter of those keys, with its time (one string value, replaced whole: one
      listing or nothing); and the last complete list of the groups (``gv``). A view
      younger than ``LISTING_MAX_AGE`` that holds none of the keys an event's DELETE must
      weigh stands for a listing of that scope: it is that listing, reduced to what the
      plan needs. A Bloom filter never misses a key it was given, so "holds none" is never
      wrong; a false positive (``BLOOM_HASHES``) only means the scope is read.

    ``record`` walks each listing's records once and writes in chunks of ``CHUNK``
    entries, ``BATCH`` buckets per round trip: what it holds in the process is one chunk
    and the listing's filter (2.5 bytes per key), never an object per task (docs/state.md
    gives the bytes per task).
    """

    def __init__(
        self, store: StateStore, id_field: str, *, ttl: float = INDEX_TTL,
        view_max_age: float = 60.0, clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.fields = tuple(dict.fromkeys((id_field, "job_id", "resource_id")))
        self.id_field = id_field
        self.ttl = ttl
        self.view_max_age = view_max_age
        self.clock: Callable[[], datetime] = clock or _utc_now

    def record(self, listings: Sequence[ScopeListing], *, whole: bool) -> None:
        """Note where every record of these complete listings was seen. ``whole``: they
        are every scope of the project (a full sweep), so each entry is what they say (a
        key in two of them names both when both fall in one chunk of ``CHUNK`` entries,
        else the last; the views of the others still hold it); else each entry adds to
        what the index said. Each complete listing also replaces its scope's view."""
        complete = [listing for listing in listings if listing.complete]
        if not complete:
            return
        generation = self._generation()
        codes: dict[str, int] = {}  # scope code -> its number in this call
        slots, scopes = array("Q"), array("H")  # each key's slot and scope: 10 bytes
        try:
            named = {scope_code(g): g for g in
                     (listing.server_group_id for listing in complete) if g is not None}
            if named:  # first: an entry written before its scope's code resolves nothing
                self.store.hash_put_many({_SCOPES: named}, 2 * self.ttl)
            for listing in complete:
                if len(codes) > 0xFFFF:  # a scope's number is 2 bytes: a new chunk
                    self._write(slots, scopes, list(codes), generation, merge=not whole)
                    slots, scopes, codes = array("Q"), array("H"), {}
                number = codes.setdefault(scope_code(listing.server_group_id), len(codes))
                records = listing.records
                view = Bloom(len(records) * len(self.fields)) if listing.listed_at else None
                for record in records:
                    for field in self.fields:
                        value = record.get(field)
                        if not _indexable(value):
                            continue
                        digest = key_digest(f"{field}:{value}")
                        if view is not None:
                            view.add(digest)
                        slots.append(int.from_bytes(digest[:8]))
                        scopes.append(number)
                    if len(slots) >= CHUNK:
                        self._write(slots, scopes, list(codes), generation, merge=not whole)
                        slots, scopes = array("Q"), array("H")
                if view is not None and listing.listed_at is not None:
                    meta = f"{_BLOOM} {BLOOM_HASHES} {listing.listed_at.isoformat()}"
                    self.store.bits_put(_VIEW + (listing.server_group_id or _TOP), meta,
                                        bytes(view.bits), self.view_max_age)
                    del view
            self._write(slots, scopes, list(codes), generation, merge=not whole)
        except StateUnavailable as exc:
            log.debug("lookup index not updated: %s", exc)

    def _write(self, slots: array[int], scopes: array[int], codes: list[str],
               generation: int, *, merge: bool) -> None:
        """One chunk of entries (each key's slot and the number of its scope's code) into
        ``generation``, ``BATCH`` buckets per round trip; the same key twice in the chunk:
        both scopes. ``merge``: each entry adds to what it said (this generation's, else
        the one before)."""
        batch: dict[int, dict[str, str]] = {}
        fields: dict[str, str] = {}
        bucket = -1
        # By bucket, so that one command writes all of a bucket's fields in the chunk.
        for entry in sorted(slot << 16 | number for slot, number in zip(slots, scopes,
                                                                         strict=True)):
            slot = entry >> 16
            if slot >> (64 - BUCKET_BITS) != bucket:
                bucket = slot >> (64 - BUCKET_BITS)
                if len(batch) >= BATCH:
                    self._put(batch, generation, merge=merge)
                    batch = {}
                fields = batch[bucket] = {}
            name, code = _name(slot), codes[entry & 0xFFFF]
            known = fields.get(name)
            fields[name] = code if known is None or known == code else _merged(code, known)
        self._put(batch, generation, merge=merge)

    def _put(self, batch: dict[int, dict[str, str]], generation: int, *,
             merge: bool) -> None:
        if not batch:
            return
        if merge:
            buckets = list(batch)
            requests = [(state_keys.index_bucket(g, b), list(batch[b]))
                        for b in buckets for g in (generation, generation - 1)]
            answers = iter(self.store.hash_get_many(requests))
            for bucket in buckets:
                now, before = next(answers), next(answers)
                fields = batch[bucket]
                for name, known, older in zip(list(fields), now, before, strict=True):
                    fields[name] = _merged(fields[name], known if known is not None
                                           else older)
        end = (generation + 2) * self.ttl  # the end of the next generation
        ttl = max(end - self.clock().timestamp(), 1.0)
        self.store.hash_put_many(
            {state_keys.index_bucket(generation, b): f for b, f in batch.items()}, ttl)

    def record_groups(self, groups: Sequence[Scope], listed_at: datetime) -> None:
        """The complete list of protection groups, as listed at ``listed_at``."""
        value = json.dumps({"at": listed_at.isoformat(),
                            "groups": [g.server_group_id for g in groups]})
        try:
            self.store.put(_GROUPS, value, self.view_max_age)
        except StateUnavailable as exc:
            log.debug("group view not updated: %s", exc)

    def recent_groups(self) -> tuple[list[Scope], datetime] | None:
        """The groups as last listed completely, and when; None when that is older than
        ``view_max_age`` (or unknown)."""
        try:
            text = self.store.get(_GROUPS)
        except StateUnavailable:
            return None
        if text is None:
            return None
        try:
            value = json.loads(text)
            at = datetime.fromisoformat(value["at"])
            groups = [Scope(g) for g in value["groups"] if is_valid_id(g)]
        except (ValueError, TypeError, KeyError):
            return None
        return (groups, at) if self._recent(at) else None

    def vouch(
        self, scopes: Sequence[Scope], keys: Iterable[str | None]
    ) -> list[ScopeListing]:
        """For each scope whose view is recent and holds none of ``keys``: that view, as
        the scope's listing reduced to what the plan needs (no record with those keys).
        Scopes without such a view are left out: they must be read."""
        given = list(keys)
        names = [name for name in given if name is not None]
        if not scopes or not names or len(names) != len(given):
            return []
        offsets = [o for name in names for o in bloom_offsets(key_digest(name))]
        try:
            answers = self.store.bits_get_many(
                [_VIEW + (s.server_group_id or _TOP) for s in scopes], offsets)
        except StateUnavailable as exc:
            log.debug("scope views unavailable: %s", exc)
            return []
        vouched = []
        for scope, answer in zip(scopes, answers, strict=True):
            at = _view_time(answer[0]) if answer is not None else None
            if answer is None or at is None or not self._recent(at):
                continue
            bits = answer[1]
            if any(all(bits[i:i + BLOOM_HASHES])
                   for i in range(0, len(bits), BLOOM_HASHES)):
                continue  # the view may hold one of the keys: the scope must be read
            vouched.append(ScopeListing(scope.server_group_id, (), listed_at=at))
        return vouched

    def keys_to_weigh(
        self, target: Target, listings: Sequence[ScopeListing]
    ) -> list[str | None]:
        """The index keys (``<field>:<value>``) of every record a DELETE for ``target``
        must weigh (the planner says which: ``plan.keys_to_weigh``). None in the list: a
        value that cannot be a key (then no view can vouch for anything)."""
        return [f"{field}:{value}" if _indexable(value) and field in self.fields else None
                for field, value in keys_to_weigh(target, listings, self.id_field)]

    def scopes_for(self, target: Target) -> list[Scope] | None:
        """Where the index last saw the target; None when it cannot say (cold, expired)."""
        if isinstance(target, OneTask):
            pairs = [(target.field, target.value)]
        elif isinstance(target, OneResource):
            pairs = [("resource_id", target.resource_id)]
        else:
            return None
        return self._lookup(pairs)

    def scopes_to_weigh(
        self, target: Target, listings: Sequence[ScopeListing]
    ) -> list[Scope] | None:
        """After reading the indexed scopes: the scopes still to read. None: the target is
        not there (the index was wrong) - search everywhere. Else the scopes the index
        knows for the found records' DELETE ids and resources that were not read yet."""
        found = targets_in(target, listings)
        if not found:
            return None
        pairs = [(field, str(record.get(field))) for record in found
                 for field in (self.id_field, "resource_id") if _indexable(record.get(field))]
        read = {listing.server_group_id for listing in listings}
        return [s for s in self._lookup(pairs) or [] if s.server_group_id not in read]

    def slot(self, field: str, value: object) -> tuple[str, str]:
        """Where the current generation keeps the entry of this field value: (the bucket's
        key, the field in it)."""
        bucket, name = _slot(key_digest(f"{field}:{value}"))
        return state_keys.index_bucket(self._generation(), bucket), name

    def _generation(self) -> int:
        return int(self.clock().timestamp() // self.ttl)

    def _recent(self, at: datetime) -> bool:
        age = self.clock() - at
        return timedelta(0) <= age <= timedelta(seconds=self.view_max_age)

    def _lookup(self, pairs: Iterable[tuple[str, str]]) -> list[Scope] | None:
        slots = [_slot(key_digest(f"{field}:{value}")) for field, value in pairs
                 if field in self.fields and _indexable(value)]
        if not slots:
            return None
        generation = self._generation()
        try:
            answers = self.store.hash_get_many(
                [(state_keys.index_bucket(g, bucket), [name])
                 for bucket, name in slots for g in (generation, generation - 1)])
            codes: dict[str, None] = {}
            for now, before in zip(answers[::2], answers[1::2], strict=True):
                value = now[0] if now[0] is not None else before[0]
                if value is None or value == _MANY:
                    return None
                codes.update(dict.fromkeys(value.split(",")))
            named = [c for c in codes if c != _TOP]
            ids = self.store.hash_get_many([(_SCOPES, named)])[0] if named else []
        except StateUnavailable as exc:
            log.debug("lookup index unavailable: %s", exc)
            return None
        groups = dict(zip(named, ids, strict=True))
        if any(not is_valid_id(g) or scope_code(g) != c for c, g in groups.items()):
            return None  # an entry or a code the index cannot resolve: search everywhere
        return [TOP_LEVEL if c == _TOP else Scope(groups[c]) for c in codes] or None


class Bloom:
    """A Bloom filter of ``keys`` keys at most, ``BLOOM_BITS`` bits each: the bits in Redis's
    order (bit 0 the high bit of byte 0), as ``StateStore.bits_get_many`` reads them."""

    __slots__ = ("bits", "size")

    def __init__(self, keys: int) -> None:
        # A prime number of bytes: the odd step of the double hashing is then coprime to
        # the size in bits (8 * p) but for multiples of p, so its bits spread over the view.
        wanted = max((keys * BLOOM_BITS + 7) // 8, BLOOM_MIN_BYTES) if keys else 0
        self.bits = bytearray(_prime_at_least(wanted) if wanted else 0)
        self.size = len(self.bits) * 8

    def add(self, digest: bytes) -> None:
        size, bits = self.size, self.bits
        if not size:
            return
        position = int.from_bytes(digest[8:14]) % size
        step = (int.from_bytes(digest[14:20]) | 1) % size
        for _ in range(BLOOM_HASHES):
            bits[position >> 3] |= 0x80 >> (position & 7)
            position += step
            if position >= size:
                position -= size


def _prime_at_least(n: int) -> int:
    while any(n % d == 0 for d in range(2, math.isqrt(n) + 1)):
        n += 1
    return n


def key_digest(key: str) -> bytes:
    """A stable digest of an index key (``<field>:<value>``): bytes 0-7 its slot (bucket and
    field in it), bytes 8-19 its bits in a view."""
    return hashlib.blake2b(key.encode(), digest_size=20).digest()


def bloom_offsets(digest: bytes) -> list[int]:
    """The ``BLOOM_HASHES`` bit offsets of a key in any view (each taken modulo the view's
    size): h1 + i * h2 (double hashing), below 2^51."""
    h1 = int.from_bytes(digest[8:14])
    h2 = int.from_bytes(digest[14:20]) | 1
    return [h1 + i * h2 for i in range(BLOOM_HASHES)]


def scope_code(scope: str | None) -> str:
    """A scope in the index's entries: 8 characters of a digest of the group id, ``-``
    for the top level."""
    if scope is None:
        return _TOP
    return base64.urlsafe_b64encode(hashlib.blake2b(scope.encode(), digest_size=6).digest()
                                    ).decode()


def _slot(digest: bytes) -> tuple[int, str]:
    """A key's bucket (the first ``BUCKET_BITS`` bits of its digest) and its field in the
    bucket (bits 16-63, 8 characters)."""
    slot = int.from_bytes(digest[:8])
    return slot >> (64 - BUCKET_BITS), _name(slot)


def _name(slot: int) -> str:
    return binascii.b2a_base64((slot & _FIELD_MASK).to_bytes(6), newline=False).decode()


def _merged(codes: str, known: str | None) -> str:
    """The scope codes of both entries (``*`` past ``_MAX_CODES``)."""
    if not known or known == codes:
        return codes
    if _MANY in (known, codes):
        return _MANY
    union = dict.fromkeys([*known.split(","), *codes.split(",")])
    return ",".join(union) if len(union) <= _MAX_CODES else _MANY


def _view_time(meta: str) -> datetime | None:
    """The listing time of a view's meta; None when it is no view this code wrote."""
    version, _, rest = meta.partition(" ")
    hashes, _, at = rest.partition(" ")
    if version != _BLOOM or hashes != str(BLOOM_HASHES):
        return None
    return _parse_time(at)


def _indexable(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) \
        and 0 < len(str(value)) <= _MAX_VALUE


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
