"""pydantic's view of the outcome model (``_model``), built on first use.

The JSON Schema of an outcome's data (the manual API's OpenAPI document) and the reading
back of a replayed first answer (``Outcome.from_data``) come from pydantic's adapters of
the very dataclasses ``as_data()`` serializes; nothing here restates a field. Building
an adapter costs tens of milliseconds, so nothing at an event function's start does it:
only the manual API's document and a repeated input need this module.
"""

from __future__ import annotations

import json
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

    ``data`` is read strictly, as the JSON it was (no "1" for 1, no 1 for true), and must
    then be what this code writes: no key of another kind, every value as ``as_data()``
    writes it. A key the data lacks takes its default (a record written before the field
    existed).
    """
    name = getattr(cls, "__name__", str(cls))
    if not isinstance(data, Mapping):
        raise ValueError(f"a replayed {name} must be a JSON object, not {type(data).__name__}")
    try:
        value: Model = adapter(cls).validate_json(json.dumps(dict(data)), strict=True)
    except (TypeError, ValueError) as exc:  # ValidationError is a ValueError
        detail = _errors(exc) if isinstance(exc, ValidationError) else str(exc)
        raise ValueError(f"not the data of {name}: {detail}") from None
    again = value.as_data()
    differ = sorted(key for key in data if key not in again or again[key] != data[key]
                    or type(again[key]) is not type(data[key]))
    if differ:
        raise ValueError(f"not the data of {name}: {', '.join(map(str, differ))} "
                         "not as this code writes them")
    return value


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])) or '(the data)'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )
