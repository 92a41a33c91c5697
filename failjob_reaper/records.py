"""The compact form of a listed failed-task record: what a backlog costs per task.

A listing of 100,000 tasks must fit a small function (docs/performance.md): a record
parsed from JSON is a dict of ten strings, about a kilobyte. :class:`Record` holds the
same ten fields (``FailureJobParams``) in a tuple, shares the values that repeat across
tasks (types, statuses, error codes, failure reasons, a resource's id and name) and keeps
any field the API adds beside them. It is a read-only ``Mapping``: the policy, the
planner and the outcomes read it as they read the dict it came from, and ``dict(r)``
gives that dict back, in the API's field order.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

FIELDS = ("job_type", "job_status", "begin_time", "job_id", "failure_status", "resource_id",
          "resource_name", "error_code", "fail_reason", "resource_type")
"""The ten fields of the official SDK's ``FailureJobParams``."""
_INDEX = {name: n for n, name in enumerate(FIELDS)}
_SHARED = frozenset({"job_type", "job_status", "failure_status", "error_code",
                     "resource_type"})
"""Few distinct values across a whole project: interned for the life of the process."""
_PER_LISTING = frozenset({"resource_id", "resource_name", "fail_reason"})
"""Repeated across one resource's failures: shared within one listing."""
_MISSING = object()


# begin_time, unique to almost every task, has one fixed form in the API's listings
# ("2019-01-21T12:56:15.591Z"): packed as milliseconds when (and only when) they give
# the very same text back. (Ids are not packed: the planner reads them again and again,
# and each read would make the string anew.)
_MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Millis(int):
    __slots__ = ()


def _pack(value: str) -> Any:
    if len(value) == 24 and _MILLIS.fullmatch(value):
        try:
            moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            return value
        packed = _Millis((moment - _EPOCH) // timedelta(milliseconds=1))
        return packed if _unpack(packed) == value else value
    return value


def _unpack(value: Any) -> Any:
    if type(value) is _Millis:
        moment = _EPOCH + timedelta(milliseconds=int(value))
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return value


_PACKED = frozenset({"begin_time"})


class Record(Mapping[str, Any]):
    """One listed record, compact. Equal to the dict it came from."""

    __slots__ = ("_extra", "_values")

    def __init__(self, values: tuple[Any, ...], extra: dict[str, Any] | None) -> None:
        self._values = values
        self._extra = extra

    def __getitem__(self, key: str) -> Any:
        index = _INDEX.get(key)
        if index is not None:
            value = self._values[index]
            if value is not _MISSING:
                return _unpack(value)
        elif self._extra is not None and key in self._extra:
            return self._extra[key]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        index = _INDEX.get(key)
        if index is not None:
            value = self._values[index]
            return default if value is _MISSING else _unpack(value)
        return self._extra.get(key, default) if self._extra is not None else default

    def __iter__(self) -> Iterator[str]:
        for name, value in zip(FIELDS, self._values, strict=True):
            if value is not _MISSING:
                yield name
        if self._extra is not None:
            yield from self._extra

    def __len__(self) -> int:
        present = sum(1 for value in self._values if value is not _MISSING)
        return present + (len(self._extra) if self._extra is not None else 0)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self._values == other._values and self._extra == other._extra
        return Mapping.__eq__(self, other)

    def __hash__(self) -> int:  # equal to a dict, which has none: keep it unhashable-like
        raise TypeError("unhashable type: 'Record'")

    def __repr__(self) -> str:
        return f"Record({dict(self)!r})"


class Compactor:
    """Turns the records of one listing into :class:`Record`, sharing repeated values."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        if isinstance(record, Record) or not isinstance(record, Mapping):
            return record
        values = []
        for name in FIELDS:
            value = record.get(name, _MISSING)
            if isinstance(value, str):
                if name in _SHARED and len(value) <= 128:
                    value = sys.intern(value)
                elif name in _PACKED:
                    value = _pack(value)
                elif name in _PER_LISTING:
                    value = self._seen.setdefault(value, value)
            values.append(value)
        extra = {k: v for k, v in record.items() if k not in _INDEX} if len(record) > sum(
            1 for name in FIELDS if name in record) else None
        return Record(tuple(values), extra or None)
