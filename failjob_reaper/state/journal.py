"""The delete journal: "a DELETE was sent for task X by input I", before it is sent.

With it, a task this deployment sent a DELETE for is reported ``deleted``
exactly once (docs/state.md), even when the instance that sent it died
before reporting: whoever next finds the task gone (a 404, or not listed any
more) and finds the entry still ``sent`` takes it over (compare-and-set to
``reported``) and reports ``deleted`` with what the entry recorded; everyone
else finds it ``reported`` and says ``already_deleted``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from failjob_reaper.state import keys as state_keys
from failjob_reaper.state._store import StateStore

JOURNAL_TTL = state_keys.JOURNAL_TTL
"""Longer than any redelivery of the input that sent the DELETE."""


@dataclass(frozen=True)
class Sent:
    """What the journal knew about the DELETE it now hands over for reporting."""

    by: str
    """The input that sent it."""
    task_id: str
    """The id the DELETE was sent for (the listing's id field)."""
    decision: dict[str, Any]
    """What was recorded before the DELETE: rule, reason, job, server_group_id."""


class DeleteJournal:
    def __init__(self, store: StateStore, *, ttl: float = JOURNAL_TTL) -> None:
        self.store = store
        self.ttl = ttl

    def sending(
        self, task_id: str, by: str, decision: Mapping[str, Any], aliases: Sequence[str] = ()
    ) -> str | None:
        """Record before the DELETE; raises StateUnavailable (then send no DELETE).

        ``aliases``: the record's other ids (``job_id``, ``resource_id``), by which an
        input may name the task; they lead to this entry. Returns the entry when this
        call wrote it, None when an earlier DELETE's entry was there: that one is kept
        (``add``), it is the same task, and one report is made for it.
        """
        others = {state_keys.journal_alias(alias): task_id for alias in aliases if alias != task_id}
        if others:
            self.store.put_many(others, self.ttl)
        entry = json.dumps({"state": "sent", "by": by, "decision": dict(decision)},
                           default=str)
        return entry if self.store.add(_key(task_id), entry, self.ttl) else None

    def withdraw(self, task_id: str, entry: str) -> None:
        """Our own DELETE found nothing (a plain 404): nothing of ours to report."""
        self.store.delete_if(_key(task_id), entry)

    def take_report(self, task_id: str) -> Sent | None:
        """The unreported DELETE of this task, now this caller's to report ``deleted``.

        None when there is none (never sent, or reported already): then the task
        was deleted by someone else, or already reported. At most one caller ever
        gets it (compare-and-set).
        """
        task_id = self._resolve(task_id)
        key = _key(task_id)
        raw = self.store.get(key)
        entry = _entry(raw)
        if raw is None or entry is None or entry.get("state") != "sent":
            return None
        reported = json.dumps({**entry, "state": "reported"})
        if not self.store.replace_if(key, raw, reported, self.ttl):
            return None  # someone else took it
        decision = entry.get("decision")
        return Sent(str(entry.get("by", "")), task_id,
                    decision if isinstance(decision, dict) else {})

    def reported(self, task_id: str) -> bool:
        """True when a DELETE of this task was reported ``deleted`` already."""
        entry = _entry(self.store.get(_key(self._resolve(task_id))))
        return entry is not None and entry.get("state") == "reported"

    def _resolve(self, task_id: str) -> str:
        """The DELETE id an input's id stands for (itself unless it is an alias)."""
        if self.store.get(_key(task_id)) is not None:
            return task_id
        return self.store.get(state_keys.journal_alias(task_id)) or task_id

    def forget(self, task_id: str) -> None:
        """The DELETE was refused for good (the task is still there): nothing to report."""
        self.store.delete(_key(task_id))


def _entry(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _key(task_id: str) -> str:
    return state_keys.journal(task_id)
