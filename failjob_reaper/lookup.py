"""Where failed tasks live, and reading one scope's listing.

The payload of an event is a hint, never the truth: the record the policy sees
is the one the list API returns now. :func:`scopes_to_search` is the one place
that says which scopes a task may live in (the lookup index plugs in here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from failjob_reaper.ids import is_valid_id
from failjob_reaper.plan import ScopeListing
from failjob_reaper.sdrs import SdrsError, TaskCenterClient

_NO_SUCH_GROUP = "SDRS.1301"


@dataclass(frozen=True)
class Scope:
    """Where failed tasks are listed: the top level (None) or one protection group."""

    server_group_id: str | None

    def list(self, client: TaskCenterClient) -> list[Mapping[str, Any]]:
        return list(client.list_failure_jobs(server_group_id=self.server_group_id))

    @property
    def where(self) -> str:
        return f"group {self.server_group_id}" if self.server_group_id else "the top level"


TOP_LEVEL = Scope(None)


@dataclass(frozen=True)
class Found:
    record: Mapping[str, Any]
    scope: Scope
    scope_records: list[Mapping[str, Any]]


def group_scopes(client: TaskCenterClient) -> list[Scope]:
    """Every protection group of the project; a group id that is no plain token cannot be
    queried safely and is skipped."""
    ids = dict.fromkeys(str(g["id"]) for g in client.list_server_groups()
                        if is_valid_id(g.get("id")))  # a repeated group is one scope
    return [Scope(group_id) for group_id in ids]


def scopes_to_search(client: TaskCenterClient, hint_group: str | None) -> list[Scope]:
    """Where one task (or resource) may live, in search order: the hinted group, the top
    level, then each protection group. Every one is read: the DELETE path is project-wide,
    so a record elsewhere with the same id must be weighed too."""
    scopes = [Scope(hint_group)] if hint_group is not None else []
    scopes.append(TOP_LEVEL)
    scopes.extend(s for s in group_scopes(client) if s.server_group_id != hint_group)
    return scopes


def read_scope(
    client: TaskCenterClient, scope: Scope, clock: Callable[[], datetime]
) -> ScopeListing:
    """One scope's listing; a group that does not exist (a wrong hint, a group removed
    meanwhile) lists nothing. Other errors propagate."""
    listed_at = clock()
    try:
        records = scope.list(client)
    except SdrsError as exc:
        if scope.server_group_id is not None and exc.status_code == 404 \
                and exc.code == _NO_SUCH_GROUP:
            return ScopeListing(scope.server_group_id, (), listed_at=listed_at)
        raise
    return ScopeListing(scope.server_group_id, records, listed_at=listed_at)


def find_task(
    client: TaskCenterClient, match_field: str, task_id: str, hint_group: str | None
) -> Found | None:
    """The first listed record with ``match_field == task_id`` (for ``explain``)."""
    for scope in scopes_to_search(client, hint_group):
        records = list(read_scope(client, scope, _no_clock).records)
        for record in records:
            if record.get(match_field) == task_id:
                return Found(record, scope, records)
    return None


def _no_clock() -> datetime:
    return datetime.min
