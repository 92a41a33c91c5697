"""What goes in and out of the HTTP core: plain data, no web framework.

An adapter (the Flask target ``on_http``, the FunctionGraph APIG trigger) turns
its request into an ``HttpRequest`` and the ``HttpResponse`` back into its own.
The answer bodies are typed (``ErrorBody``, ``HealthBody``, and the outcome's
``OutcomeData``/``SweepSummaryData``): the OpenAPI document is generated from
these very types.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal, Protocol

from pydantic import Field
from typing_extensions import TypedDict

from failjob_reaper.http_api._errors import JSON as JSON
from failjob_reaper.http_api._errors import error_body as error_body
from failjob_reaper.outcomes import OutcomeData, SweepSummaryData

CLOUDEVENTS_JSON: Final = "application/cloudevents+json"
DELETE_FAILED_TYPE: Final = "sdrs.failurejob.delete_failed"
"""The one outcome type ``POST /retry`` takes back as a structured CloudEvent."""


class BodyReader(Protocol):
    """A body that is read only when needed, never past ``limit`` bytes."""

    def __call__(self, limit: int) -> bytes | None:
        """The whole body, or None when it is longer than ``limit`` bytes."""
        ...


@dataclass(frozen=True)
class HttpRequest:
    """One call. ``headers``: lower-case names (see ``header_map``); ``query``: the raw
    query string, "" for none; ``body``: the bytes, or a reader for a stream."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | BodyReader = b""
    query: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def header_map(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; the first of repeated headers wins (as werkzeug's ``get``)."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        headers.setdefault(name.lower(), value)
    return headers


class ErrorDetail(TypedDict):
    code: Annotated[str, Field(description="A stable, machine-readable code.")]
    message: str


class ErrorBody(TypedDict):
    """Every 4xx/5xx answer of this API."""

    error: ErrorDetail


class HealthBody(TypedDict):
    status: Literal["ok"]


AnswerBody = ErrorBody | HealthBody | OutcomeData | SweepSummaryData


def json_bytes(body: AnswerBody) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str).encode()
