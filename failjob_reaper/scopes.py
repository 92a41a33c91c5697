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

import json
import logging
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
        only: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> RecordTable:
        """The scope's records, kept in columns as each page arrives
        (``records.RecordTable``: a backlog costs little per task). ``only``: keep just
        the records it accepts (the listing is still read, and judged complete, whole)."""
        table = RecordTable()
        try:
            if only is None:
                for _ in client.failure_job_pages(server_group_id=self.server_group_id,
                                                  deadline=deadline, keep=table.add):
                    pass  # the table keeps them
            else:
                for page in client.failure_job_pages(server_group_id=self.server_group_id,
                                                     deadline=deadline):
                    for record in page:
                        if only(record):
                            table.add(record)
        except IncompleteListing as exc:
            exc.records = table  # type: ignore[assignment]  # read still counts
            raise
        return table

    @property
    def where(self) -> str:
        return f"group {self.server_group_id}" if self.server_group_id else "the top level"


TOP_LEVEL = Scope(None)


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
    only: Callable[[Mapping[str, Any]], bool] | None = None,
) -> ScopeListing:
    """One scope's complete listing. A group that the group list does not name (a wrong
    hint, a group removed meanwhile) lists nothing, whatever the code of the API's 400
    or 404 to it: what SDRS answers for an unknown group is not documented, so whether a
    group exists is read from the group list, never inferred from an error code. Other
    errors (IncompleteListing too) propagate."""
    listed_at = clock()
    try:
        records = scope.list(client, deadline, only)
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
"""How long a listing's word on where a record lives is used (an hourly sweep renews it)."""

_KEY = state_keys.INDEX
_VIEW = state_keys.SCOPE_VIEW  # a scope's last complete listing: which keys it held, and when
_GROUPS = state_keys.GROUPS_VIEW  # the last complete list of protection groups, and when
_AT = "@"  # the field of a scope view that holds its listing's time
_TOP = "-"  # the top level, as a scope in the index (group ids are plain tokens)
_MAX_VALUE = 128


class LookupIndex:
    """Two things in the state store, both written by every complete listing.

    * **Where** (``ix:<field>:<value>`` -> scopes, TTL ``INDEX_TTL``): the scopes a
      value of the configured DELETE id field, ``job_id`` or ``resource_id`` was last
      listed in. Only a hint: what is deleted rests on a fresh listing of the scopes it
      names, and a task not found there sends the search through every scope.
    * **Views** (``sv:<scope>``, one hash per scope, TTL ``view_max_age``): each
      scope's last complete listing as the set of those keys it held, with its time;
      and the last complete list of the groups (``gv``). A view younger than
      ``LISTING_MAX_AGE`` that holds none of the keys an event's DELETE must weigh
      stands for a listing of that scope: it is that listing, reduced to what the plan
      needs. A scope's view is replaced whole, so it is one listing or nothing; a lost
      or evicted key only means a scope is read again.
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
        """Note where every record of these listings was seen. ``whole``: they are every
        scope of the project (a full sweep), so they replace what the index said; else
        they add to it. Each complete listing also replaces its scope's view."""
        seen: dict[str, set[str]] = {}
        views: dict[str, dict[str, str]] = {}
        for listing in listings:
            if not listing.complete:
                continue
            scope = listing.server_group_id or _TOP
            view = {_AT: listing.listed_at.isoformat()} if listing.listed_at else None
            for record in listing.records:
                for key in self._keys(record):
                    seen.setdefault(key, set()).add(scope)
                    if view is not None:
                        view[key.removeprefix(_KEY)] = ""
            if view is not None:
                views[scope] = view
        try:
            if seen and not whole:
                keys = list(seen)
                for key, known in zip(keys, self.store.get_many(keys), strict=True):
                    seen[key].update(_scopes_of(known))
            if seen:
                self.store.put_many({k: json.dumps(sorted(v)) for k, v in seen.items()},
                                    self.ttl)
            for scope, view in views.items():
                self.store.hash_replace(_VIEW + scope, view, self.view_max_age)
        except StateUnavailable as exc:
            log.debug("lookup index not updated: %s", exc)

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
        try:
            answers = self.store.hash_get_many(
                [(_VIEW + (s.server_group_id or _TOP), [_AT, *names]) for s in scopes])
        except StateUnavailable as exc:
            log.debug("scope views unavailable: %s", exc)
            return []
        vouched = []
        for scope, (at_text, *held) in zip(scopes, answers, strict=True):
            at = _parse_time(at_text)
            if at is None or not self._recent(at) or any(h is not None for h in held):
                continue
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

    def _recent(self, at: datetime) -> bool:
        age = self.clock() - at
        return timedelta(0) <= age <= timedelta(seconds=self.view_max_age)

    def _lookup(self, pairs: Iterable[tuple[str, str]]) -> list[Scope] | None:
        keys = [state_keys.index(field, value) for field, value in pairs
                if field in self.fields and _indexable(value)]
        if not keys:
            return None
        try:
            values = self.store.get_many(keys)
        except StateUnavailable as exc:
            log.debug("lookup index unavailable: %s", exc)
            return None
        if any(v is None for v in values):
            return None
        scopes: dict[str, None] = {}
        for value in values:
            scopes.update(dict.fromkeys(_scopes_of(value)))
        return [TOP_LEVEL if s == _TOP else Scope(s) for s in scopes] or None

    def _keys(self, record: Mapping[str, Any]) -> Iterable[str]:
        for field in self.fields:
            value = record.get(field)
            if _indexable(value):
                yield state_keys.index(field, value)


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


def _scopes_of(text: str | None) -> list[str]:
    """The scopes an index entry names; an entry that is not one names none."""
    if text is None:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [s for s in value if s == _TOP or is_valid_id(s)]
