"""pydantic's view of the outcome model (``_model``), built on first use.

The JSON Schema of an outcome's data (the manual API's OpenAPI document) and the reading
back of a replayed first answer (``Outcome.from_data``) come from pydantic's adapters of
the very dataclasses ``as_data()`` serializes; nothing here restates a field. Building
an adapter costs tens of milliseconds, so nothing at an event function's start does it:
only the manual API's document and a repeated input need this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError


class _Model(Protocol):
    def as_data(self) -> dict[str, Any]: ...


Model = TypeVar("Model", bound=_Model)


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def adapter(cls: type[Model]) -> TypeAdapter[Model]:
    """pydantic's adapter of a model class (``Outcome``, ``SweepSummary``, ``Causation``),
    built once."""
    built = _ADAPTERS.get(cls)
    if built is None:
        built = _ADAPTERS[cls] = TypeAdapter(cls)
    return built


def schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of ``cls.as_data()`` (what is sent)."""
    return adapter(cls).json_schema(mode="serialization")


def from_data(cls: type[Model], data: Mapping[str, Any]) -> Model:
    """The ``cls`` whose ``as_data()`` is exactly ``data``; ValueError for anything else.

    pydantic reads ``data`` into the class (unknown outcome or trigger names, missing
    fields, values of the wrong kind are refused), and the result must give ``data``
    back, value for value and type for type (no "1" for 1, no 1 for true, no key of
    another kind, an error or counts as ``as_data()`` writes them). A key the data
    lacks takes its default (a record written before the field existed).
    """
    name = cls.__name__
    if not isinstance(data, Mapping):
        raise ValueError(f"a replayed {name} must be a JSON object, not {type(data).__name__}")
    try:
        value = adapter(cls).validate_python(dict(data))
    except ValidationError as exc:
        raise ValueError(f"not the data of {name}: {_errors(exc)}") from None
    again = value.as_data()
    differ = sorted(str(key) for key in data if key not in again or not _same(again[key],
                                                                              data[key]))
    if differ:
        raise ValueError(f"not the data of {name}: {', '.join(differ)} not as this code "
                         "writes them")
    return value


def _same(a: object, b: object) -> bool:
    """Equal and of the same JSON kinds throughout (``1 == True`` is not the same)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b or (a != a and b != b)  # NaN (which JSON may hold) is itself


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])) or '(the data)'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )
