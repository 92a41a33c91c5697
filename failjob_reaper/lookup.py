"""Find a task's authoritative record in the task-center listing.

The payload of an event is a hint, never the truth: the record the policy sees
is the one the list API returns now.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from failjob_reaper.ids import is_valid_id
from failjob_reaper.sdrs import TaskCenterClient


@dataclass(frozen=True)
class Scope:
    """Where failed tasks are listed: the top level (None) or one protection group."""

    server_group_id: str | None

    def list(self, client: TaskCenterClient) -> list[Mapping[str, Any]]:
        return list(client.list_failure_jobs(server_group_id=self.server_group_id))


TOP_LEVEL = Scope(None)


@dataclass(frozen=True)
class Found:
    record: Mapping[str, Any]
    scope: Scope
    scope_records: list[Mapping[str, Any]]


def find_task(
    client: TaskCenterClient, match_field: str, task_id: str, hint_group: str | None
) -> Found | None:
    """Search the hinted group, then the top level, then each protection group."""
    for scope in _scopes(client, hint_group):
        records = scope.list(client)
        for record in records:
            if record.get(match_field) == task_id:
                return Found(record, scope, records)
    return None


def _scopes(client: TaskCenterClient, hint_group: str | None) -> Iterator[Scope]:
    if hint_group is not None:
        yield Scope(hint_group)
    yield TOP_LEVEL
    for group in client.list_server_groups():
        group_id = group.get("id")
        # A group id that is no plain token cannot be queried safely: skip it.
        if is_valid_id(group_id) and group_id != hint_group:
            yield Scope(str(group_id))


def still_listed(
    client: TaskCenterClient, scope: Scope, id_field: str, failure_job_id: str
) -> bool:
    return any(record.get(id_field) == failure_job_id for record in scope.list(client))
