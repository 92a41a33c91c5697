"""The TypedDicts of an outcome's event data (SPEC section 7), for the types and the docs.

``Outcome.as_data()`` and ``SweepSummary.as_data()`` (``_model``) are declared to return
``OutcomeData`` and ``SweepSummaryData``: mypy holds the two together, and the manual
API's OpenAPI document is generated from these TypedDicts (``failjob_reaper.http_api``),
so what the document says is what is sent. Nothing at run time needs them but the
manual API: they live apart, so an event function's start does not build them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema
from typing_extensions import TypedDict  # pydantic needs it for a schema on Python < 3.12

from failjob_reaper.outcomes._model import OutcomeName, Trigger

Count = Annotated[int, Field(ge=0)]
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class CausationData(TypedDict):
    """The input that caused the outcome: its CloudEvent ``id``, ``source``, ``type``."""

    id: str | None
    source: str | None
    type: str | None


class ErrorData(TypedDict):
    """Why a delete failed: the API's error code and message; worth a retry later?"""

    code: str | None
    message: str
    retryable: bool


class OutcomeData(TypedDict):
    """The data of an outcome CloudEvent (SPEC section 7); the answer of ``POST /retry``."""

    outcome: OutcomeName
    project_id: str
    failure_job_id: str | None
    server_group_id: str | None
    trigger: Trigger
    dry_run: bool
    forced: bool
    rule: str | None
    reason: str
    retain_until: Timestamp | None
    status_code: int | None
    attempts: Count
    job: Annotated[dict[str, Any] | None, Field(description="The authoritative record, as listed.")]
    error: ErrorData | None
    causation: CausationData


class OutcomeCounts(TypedDict):
    """Tasks per outcome (every outcome is named, 0 included)."""

    deleted: Count
    already_deleted: Count
    retained: Count
    would_delete: Count
    delete_failed: Count
    rejected: Count


class SweepSummaryData(TypedDict):
    """The data of the ``sweep_completed`` CloudEvent; the answer of ``POST /sweep``."""

    outcome: Literal["sweep_completed"]
    project_id: str
    server_group_id: str | None
    trigger: Trigger
    dry_run: bool
    listed: Count
    groups: Count
    decided: Count
    deleted: Count
    outcomes: OutcomeCounts
    rules: dict[str, Count]
    duration_seconds: Annotated[float, Field(ge=0)]
    partial: bool
    partial_reason: str | None
    aborted: bool
    aborted_reason: str | None
    skipped: bool
    """Another sweep of the project held the lease: this one listed and deleted nothing."""
    skipped_reason: str | None
    error: ErrorData | None
    causation: CausationData
