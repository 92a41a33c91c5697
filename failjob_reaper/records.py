"""One listing's records in columns: what a backlog costs per task.

A listing of 1,000,000 tasks must fit a small function (docs/performance.md). A record
parsed from JSON is a dict of ten strings, about a kilobyte; as a Python object of its
own, even a compact one, it is still some 400 bytes. :class:`RecordTable` keeps the ten
fields of the official SDK's ``FailureJobParams`` in columns instead:

* ``job_id`` and ``resource_id`` as 16 bytes when they have the API's forms (32
  lowercase hex digits, or a UUID), else as the value itself;
* the fields whose values repeat across tasks (types, statuses, error codes, failure
  reasons) as 4-byte codes into the listing's distinct values;
* ``resource_name`` as UTF-8 bytes in one buffer;
* ``begin_time`` as milliseconds in an int64 array when it has the API's fixed form
  (``2019-01-21T12:56:15.591Z``) and gives the very same text back;
* anything else (a value that is not a string, a field the API adds) beside, per row.

About 150 bytes per task when every value is unique (tests/test_records.py measures it).
``table[i]`` is a :class:`Record`: a read-only ``Mapping`` made when it is read, equal to
the dict it came from (``dict(r)`` gives that dict back, in the API's field order).
Within one table a record is one record: :meth:`RecordTable.add` takes a record only
when its identity (``job_id``, else its whole content) is new, which is how a listing
tells a page that brings nothing new.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload

FIELDS = ("job_type", "job_status", "begin_time", "job_id", "failure_status", "resource_id",
          "resource_name", "error_code", "fail_reason", "resource_type")
"""The ten fields of the official SDK's ``FailureJobParams``, in the API's order."""
_INDEX = {name: n for n, name in enumerate(FIELDS)}
_FIELD_NAMES = _INDEX.keys()
_MISSING: Any = object()

# How each field is kept (see the module's docstring).
_IDS = ("job_id", "resource_id")
_CODED = ("job_type", "job_status", "failure_status", "error_code", "fail_reason",
          "resource_type")
_TEXT = "resource_name"
_TIME = "begin_time"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ODD_TIME = -(2**63)  # begin_time kept beside the column, as it came
_DIGITS = frozenset("0123456789")


def identity(record: Mapping[str, Any]) -> str:
    """One record is one record: ``job:<job_id>``, else its whole content (what the
    listing and the planner both call the same record)."""
    job_id = record.get("job_id")
    if isinstance(job_id, str) and job_id:
        return "job:" + job_id
    return "content:" + json.dumps(dict(record), sort_keys=True, default=str)


def _pack_time(value: str) -> int | None:
    """Milliseconds since the epoch for the API's fixed form, None for any other text
    (which is then kept as it came)."""
    if (len(value) != 24 or value[4] != "-" or value[7] != "-" or value[10] != "T"
            or value[13] != ":" or value[16] != ":" or value[19] != "." or value[23] != "Z"):
        return None
    clock = value[11:13] + value[14:16] + value[17:19] + value[20:23]
    if not _DIGITS.issuperset(clock):
        return None
    hour, minute, second = int(value[11:13]), int(value[14:16]), int(value[17:19])
    if hour > 23 or minute > 59 or second > 59:  # second 60 and the like: kept as text
        return None
    day = _day_millis(value[0:10])
    if day is None:
        return None
    return day + ((hour * 60 + minute) * 60 + second) * 1000 + int(value[20:23])


_DAYS: dict[str, int | None] = {}


def _day_millis(date: str) -> int | None:
    """Milliseconds from the epoch to the start of ``YYYY-MM-DD`` (None: no such day).
    A backlog's tasks fall on few days: each is worked out once (a bounded memo)."""
    known = _DAYS.get(date, _MISSING)
    if known is not _MISSING:
        return known  # type: ignore[no-any-return]
    millis: int | None = None
    if _DIGITS.issuperset(date[0:4] + date[5:7] + date[8:10]):
        try:
            moment = datetime(int(date[0:4]), int(date[5:7]), int(date[8:10]), tzinfo=UTC)
            millis = (moment - _EPOCH) // timedelta(milliseconds=1)
        except ValueError:  # month 13, day 30 of February, year 0: kept as text
            millis = None
    if len(_DAYS) >= 4096:
        _DAYS.clear()
    _DAYS[date] = millis
    return millis


def _unpack_time(millis: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=millis)
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z")


_HEX = re.compile(r"[0-9a-f]{32}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PLAIN, _HEX_ID, _UUID_ID = 0, 1, 2
_NO_BYTES = bytes(16)


def _id_kind(value: object) -> int:
    if type(value) is str:
        if len(value) == 32 and _HEX.fullmatch(value):
            return _HEX_ID
        if len(value) == 36 and _UUID.fullmatch(value):
            return _UUID_ID
    return _PLAIN


class _Ids:
    """A column of ids: 16 bytes a row when the id has one of the API's forms (the text
    is made again when read), else the value itself beside."""

    __slots__ = ("data", "kinds", "plain")

    def __init__(self) -> None:
        self.data = bytearray()
        self.kinds = bytearray()
        self.plain: list[Any] = []

    def append(self, value: Any) -> None:
        kind = _id_kind(value)
        if kind == _PLAIN:
            self.data += _NO_BYTES
            self.plain.append(value)
        else:
            self.data += bytes.fromhex(value if kind == _HEX_ID else value.replace("-", ""))
            self.plain.append(None)
        self.kinds.append(kind)

    def get(self, row: int) -> Any:
        kind = self.kinds[row]
        if kind == _PLAIN:
            return self.plain[row]
        text = self.data[16 * row:16 * row + 16].hex()
        if kind == _HEX_ID:
            return text
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def key(self, row: int) -> Any:
        """The value as an identity: an int for a packed id (its kind above its bits, so
        that a hex id and the UUID of the same digits differ), else the value."""
        kind = self.kinds[row]
        if kind == _PLAIN:
            return self.plain[row]
        return (kind << 128) | int.from_bytes(self.data[16 * row:16 * row + 16])


def id_key(value: Any) -> Any:
    """What :meth:`_Ids.key` gives for ``value`` (an identity without a table)."""
    kind = _id_kind(value)
    if kind == _PLAIN:
        return value
    return (kind << 128) | int(value if kind == _HEX_ID else value.replace("-", ""), 16)


class _Codes:
    """A column of repeated strings: a 4-byte code per row into the distinct values."""

    __slots__ = ("codes", "lookup", "values")

    def __init__(self) -> None:
        self.codes = array("I")
        self.values: list[str] = [""]  # code 0: not a string, see the table's odd values
        self.lookup: dict[str, int] = {}

    def append(self, value: str) -> None:
        code = self.lookup.get(value)
        if code is None:
            code = self.lookup[value] = len(self.values)
            self.values.append(value)
        self.codes.append(code)


class RecordTable(Sequence["Record"]):
    """The distinct records of one listing, in columns, in listing order."""


    __slots__ = ("_codes", "_ends", "_extra", "_ids", "_keys", "_millis", "_odd",
                 "_rows", "_text")

    def __init__(self, records: Iterator[Mapping[str, Any]] | Sequence[Any] = ()) -> None:
        self._ids: dict[str, _Ids] = {name: _Ids() for name in _IDS}
        self._codes: dict[str, _Codes] = {name: _Codes() for name in _CODED}
        self._text = bytearray()
        self._ends = array("Q")
        self._millis = array("q")
        self._odd: dict[tuple[int, int], Any] = {}
        """(row, field) -> a value that is not kept in its column (not a string, a time
        in another form, or missing)."""
        self._extra: dict[int, dict[str, Any]] = {}
        """Fields besides the ten, per row (rare)."""
        self._keys: set[Any] = set()
        """The identities held: each ``job_id`` as :func:`id_key` gives it, and
        ``("content", json)`` for records without one. A set, not a dictionary to rows:
        a row is found again only when a copy turns up in another listing (rare), and
        then :meth:`row_of` indexes the table once."""
        self._rows: dict[Any, int] | None = None
        for record in records:
            if isinstance(record, Mapping):
                self.add(record)

    # -- writing ---------------------------------------------------------------------

    def add(self, record: Mapping[str, Any]) -> bool:
        """Keep ``record`` unless one with its identity is already here; True if kept."""
        key = self.identity_of_record(record)
        if key in self._keys:
            return False
        row = len(self._millis)
        self._keys.add(key)
        if self._rows is not None:
            self._rows[key] = row
        odd = self._odd
        for name in _IDS:
            self._ids[name].append(record.get(name, _MISSING))
        for name in _CODED:
            value = record.get(name, _MISSING)
            if type(value) is str:
                self._codes[name].append(value)
            else:
                self._codes[name].codes.append(0)
                odd[row, _INDEX[name]] = value
        text = record.get(_TEXT, _MISSING)
        if type(text) is str and text:
            self._text += text.encode("utf-8", "surrogatepass")
        elif text != "":
            odd[row, _INDEX[_TEXT]] = text
        self._ends.append(len(self._text))
        begin = record.get(_TIME, _MISSING)
        millis = _pack_time(begin) if type(begin) is str else None
        if millis is None:
            odd[row, _INDEX[_TIME]] = begin
            millis = _ODD_TIME
        self._millis.append(millis)
        if not record.keys() <= _FIELD_NAMES:
            self._extra[row] = {k: v for k, v in record.items() if k not in _INDEX}
        return True

    # -- reading ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._millis)

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        if isinstance(index, slice):
            return [Record(self, row) for row in range(len(self))[index]]
        row = range(len(self))[index]  # IndexError, negative indexes, as a list
        return Record(self, row)

    def __iter__(self) -> Iterator[Record]:
        for row in range(len(self)):
            yield Record(self, row)

    def holds(self, identity_key: Any) -> bool:
        """Whether a record with this identity (a ``job_id``, or ``("content", json)``)
        is here."""
        return identity_key in self._keys

    def row_of(self, identity_key: Any) -> int | None:
        """The row of the record with this identity, None if it is not here."""
        if identity_key not in self._keys:
            return None
        if self._rows is None:
            self._rows = {self.identity_of(row): row for row in range(len(self))}
        return self._rows[identity_key]

    @staticmethod
    def identity_of_record(record: Mapping[str, Any]) -> Any:
        """The identity :meth:`row_of` takes, for a record as listed."""
        job_id = record.get("job_id")
        if isinstance(job_id, str) and job_id:
            return id_key(job_id)
        return ("content", json.dumps(dict(record), sort_keys=True, default=str))

    def identity_of(self, row: int) -> Any:
        """The identity :meth:`row_of` takes, for ``row``."""
        job_id = self._ids["job_id"].get(row)
        if isinstance(job_id, str) and job_id:
            return self._ids["job_id"].key(row)
        return ("content", json.dumps(dict(Record(self, row)), sort_keys=True, default=str))

    def value(self, row: int, name: str, default: Any = None) -> Any:
        """Field ``name`` of ``row``, as it was listed (``default`` when absent)."""
        index = _INDEX.get(name)
        if index is None:
            extra = self._extra.get(row)
            return extra.get(name, default) if extra is not None else default
        value = self._value(row, index, name)
        return default if value is _MISSING else value

    def _value(self, row: int, index: int, name: str) -> Any:
        ids = self._ids.get(name)
        if ids is not None:
            return ids.get(row)
        coded = self._codes.get(name)
        if coded is not None:
            code = coded.codes[row]
            return coded.values[code] if code else self._odd[row, index]
        if name == _TIME:
            millis = self._millis[row]
            return _unpack_time(millis) if millis != _ODD_TIME else self._odd[row, index]
        start = self._ends[row - 1] if row else 0
        end = self._ends[row]
        if start == end:
            return self._odd.get((row, index), "")
        return self._text[start:end].decode("utf-8", "surrogatepass")

    def _extra_of(self, row: int) -> dict[str, Any] | None:
        return self._extra.get(row)


class Record(Mapping[str, Any]):
    """One listed record, read from its table when read. Equal to the dict it came from."""

    __slots__ = ("_row", "_table")

    def __init__(self, table: RecordTable, row: int) -> None:
        self._table = table
        self._row = row

    def __getitem__(self, key: str) -> Any:
        value = self._table.value(self._row, key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self._table.value(self._row, key, default)

    def begin_millis(self) -> int | None:
        """``begin_time`` in milliseconds since the epoch when it was listed in the API's
        fixed form (kept packed: no text made and parsed again), else None."""
        millis = self._table._millis[self._row]
        return None if millis == _ODD_TIME else millis

    def __iter__(self) -> Iterator[str]:
        table, row = self._table, self._row
        for n, name in enumerate(FIELDS):
            if table._value(row, n, name) is not _MISSING:
                yield name
        extra = table._extra_of(row)
        if extra is not None:
            yield from extra

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._table.value(self._row, key, _MISSING) \
            is not _MISSING

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record) and other._table is self._table:
            return other._row == self._row or dict(self) == dict(other)
        return Mapping.__eq__(self, other)

    def __hash__(self) -> int:  # equal to a dict, which has none: unhashable too
        raise TypeError("unhashable type: 'Record'")

    def __repr__(self) -> str:
        return f"Record({dict(self)!r})"
