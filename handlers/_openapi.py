"""The manual HTTP API's request/response models and its OpenAPI 3.1 document.

Imported lazily by ``handlers.http`` (on the first body to parse or the first
``GET /openapi.json``): a cold start that only serves events never builds a
pydantic model or the document.

The request models describe the shape of a body and reject wrong types and
unknown fields; the ids in them are still validated by
``failjob_reaper.events.task_request`` (``ids.validate_id``), the one place
ids are checked. ``ID_PATTERN`` documents that rule in the OpenAPI document and
``tests/test_http_api.py`` checks that the two agree.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from failjob_reaper.outcomes import TYPE_PREFIX

API_TITLE = "failjob-reaper manual API"
API_VERSION = "1"
DELETE_FAILED_TYPE = TYPE_PREFIX + "delete_failed"
CLOUDEVENTS_JSON = "application/cloudevents+json"

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""The id rule of ``failjob_reaper.ids`` as a JSON Schema pattern (documentation only)."""

_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": ID_PATTERN,
    "minLength": 1,
    "maxLength": 64,
}

# Pydantic checks only that it is a string; the token rule is ids.validate_id's.
IdStr = Annotated[str, WithJsonSchema(_ID_SCHEMA)]

Outcomes = Literal[
    "deleted", "already_deleted", "retained", "would_delete", "delete_failed", "rejected"
]
Trigger = Literal["event", "timer", "http", "cli"]

_REQUEST = ConfigDict(extra="forbid", strict=True)


# -- requests ---------------------------------------------------------------------


class RetryRequest(BaseModel):
    """Decide one failed task now, by the same path as an event."""

    model_config = _REQUEST

    failure_job_id: IdStr = Field(
        description="The task, as the configured SDRS_FAILURE_JOB_ID_FIELD of its record "
        "(resource_id by default)."
    )
    server_group_id: IdStr | None = Field(
        None, description="Protection group to look in first (a hint, never required)."
    )
    dry_run: bool = Field(False, description="Decide and report, never delete.")
    force: bool = Field(
        False, description="Skip age, rules and keep-latest; holds still apply."
    )


class SweepBody(BaseModel):
    """Start a sweep of every failed task of the project."""

    model_config = _REQUEST

    dry_run: bool = Field(False, description="Decide and report, never delete.")


class DeleteFailedData(BaseModel):
    """The data of an earlier ``delete_failed`` outcome (other fields are ignored)."""

    model_config = ConfigDict(extra="allow", strict=True)

    failure_job_id: IdStr
    server_group_id: IdStr | None = None


class DeleteFailedEvent(BaseModel):
    """A structured-mode CloudEvent of an earlier ``delete_failed`` outcome, retried as is."""

    model_config = ConfigDict(extra="allow", strict=True)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: Literal["sdrs.failurejob.delete_failed"]
    data: DeleteFailedData


# -- responses --------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable, machine-readable code.")
    message: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of this API."""

    error: ErrorDetail


class HealthBody(BaseModel):
    status: Literal["ok"]


class OutcomeError(BaseModel):
    code: str | None
    message: str
    retryable: bool


class CausationBody(BaseModel):
    id: str | None
    source: str | None
    type: str | None


class OutcomeBody(BaseModel):
    """The data of the outcome CloudEvent that was also sent to the sink."""

    outcome: Outcomes
    project_id: str
    failure_job_id: str | None
    server_group_id: str | None
    trigger: Trigger
    dry_run: bool
    forced: bool
    rule: str | None
    reason: str
    retain_until: datetime | None
    status_code: int | None
    attempts: int = Field(ge=0)
    job: dict[str, Any] | None = Field(description="The authoritative record, as listed.")
    error: OutcomeError | None
    causation: CausationBody


class OutcomeCounts(BaseModel):
    deleted: int = Field(ge=0)
    already_deleted: int = Field(ge=0)
    retained: int = Field(ge=0)
    would_delete: int = Field(ge=0)
    delete_failed: int = Field(ge=0)
    rejected: int = Field(ge=0)


class SweepSummaryBody(BaseModel):
    """The data of the ``sweep_completed`` CloudEvent that was also sent to the sink."""

    outcome: Literal["sweep_completed"]
    project_id: str
    server_group_id: str | None
    trigger: Trigger
    dry_run: bool
    listed: int = Field(ge=0)
    groups: int = Field(ge=0)
    decided: int = Field(ge=0)
    deleted: int = Field(ge=0)
    outcomes: OutcomeCounts
    rules: dict[str, int]
    duration_seconds: float = Field(ge=0)
    partial: bool
    partial_reason: str | None
    aborted: bool
    aborted_reason: str | None
    skipped: bool = False
    """Another sweep of the project held the lease: this one listed and deleted nothing."""
    skipped_reason: str | None = None
    error: OutcomeError | None
    causation: CausationBody


_MODELS: tuple[type[BaseModel], ...] = (
    RetryRequest,
    SweepBody,
    DeleteFailedEvent,
    ErrorBody,
    HealthBody,
    OutcomeBody,
    SweepSummaryBody,
)

# -- the document -----------------------------------------------------------------

_REF = "#/components/schemas/{model}"

_ERRORS: dict[int, str] = {
    400: "Malformed JSON, unknown fields, wrong types, a bad id or a task of another "
    "project. Nothing was looked up or deleted.",
    401: "Missing or wrong bearer token, or RETRY_API_TOKEN is not configured.",
    405: "Method not allowed here (see the Allow header).",
    413: "The body is larger than HTTP_MAX_BODY_BYTES.",
    415: "The body is not JSON.",
    409: "A call with this Idempotency-Key is being handled right now (on any instance); "
    "repeat it later.",
    422: "This Idempotency-Key was used before for a different request: nothing was "
    "decided (code idempotency_key_reused).",
    500: "Unexpected error; nothing about it is disclosed.",
    503: "The outcome could not be delivered to the sink (K_SINK), or the state store "
    "(STATE_URL) is unreachable: then nothing was deleted. Repeating the call is safe.",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], media: str = "application/json") -> dict[str, Any]:
    return {media: {"schema": _ref(model)}}


def _error(status: int, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _ERRORS[status], "content": _json(ErrorBody)}
    response.update(extra)
    return response


def _allow_header() -> dict[str, Any]:
    return {"Allow": {"description": "The methods this path supports.",
                      "schema": {"type": "string"}}}


def _auth_errors() -> dict[str, Any]:
    return {
        "401": _error(
            401,
            headers={"WWW-Authenticate": {"description": "Always Bearer.",
                                          "schema": {"type": "string"}}},
        ),
    }


def _common_errors() -> dict[str, Any]:
    return {"405": _error(405, headers=_allow_header()), "500": _error(500)}


def _body_errors() -> dict[str, Any]:
    return {"400": _error(400), "413": _error(413), "415": _error(415)}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template=_REF)
        for name, definition in schema.pop("$defs", {}).items():
            schemas[name] = definition
        schemas[model.__name__] = schema
    return schemas


def _paths() -> dict[str, Any]:
    bearer: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    return {
        "/retry": {
            "post": {
                "operationId": "retry",
                "summary": "Decide one failed task now (and delete it if the policy says so)",
                "description": (
                    "The same decision path as a job-failed event: the task's record is looked "
                    "up in the task center, the retention policy decides, and the outcome is "
                    "sent to the sink and answered. `force` skips age, rules and keep-latest "
                    "but never holds. The body may also be a structured CloudEvent of an "
                    f"earlier `{DELETE_FAILED_TYPE}` outcome (`force` is then false). "
                    "An `Idempotency-Key` header makes the outcome's CloudEvent id stable."
                ),
                "security": bearer,
                "parameters": [_idempotency_key(), _traceparent()],
                "requestBody": {
                    "required": True,
                    "content": {**_json(RetryRequest), **_json(DeleteFailedEvent,
                                                               CLOUDEVENTS_JSON)},
                },
                "responses": {
                    "200": {
                        "description": "Decided; the outcome (any outcome, including "
                        "delete_failed: see error.retryable).",
                        "content": _json(OutcomeBody),
                    },
                    **_body_errors(),
                    **_auth_errors(),
                    **_common_errors(),
                    "409": _error(409),
                    "422": _error(422),
                    "503": _error(503),
                },
            }
        },
        "/sweep": {
            "post": {
                "operationId": "sweep",
                "summary": "Sweep every failed task of the project now",
                "description": "Answers when the sweep is over, with its summary. "
                "The body may be omitted.",
                "security": bearer,
                "parameters": [_idempotency_key(), _traceparent()],
                "requestBody": {"required": False, "content": _json(SweepBody)},
                "responses": {
                    "200": {"description": "The sweep's summary.",
                            "content": _json(SweepSummaryBody)},
                    **_body_errors(),
                    **_auth_errors(),
                    **_common_errors(),
                    "409": _error(409),
                    "422": _error(422),
                    "503": _error(503),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness; no authentication, discloses nothing",
                "security": [],
                "responses": {
                    "200": {"description": "Alive.", "content": _json(HealthBody)},
                    **_common_errors(),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document; no authentication",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_common_errors(),
                },
            }
        },
    }


def _idempotency_key() -> dict[str, Any]:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Becomes the causation id of the outcome. A repeat with the same key "
        "and the same body gets the first answer (kept 24 h in the state store); the same "
        "key with a different body is refused with 422. Ignored unless it is 1-64 letters, "
        "digits, '-' or '_'.",
        "schema": {"type": "string"},
    }


def _traceparent() -> dict[str, Any]:
    return {
        "name": "traceparent",
        "in": "header",
        "required": False,
        "description": "W3C trace context, copied onto the outcome events when well formed.",
        "schema": {"type": "string"},
    }


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the manual HTTP API."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": API_TITLE,
            "version": API_VERSION,
            "description": (
                "Manual retries and sweeps for failjob-reaper. Every call except GET /healthz "
                "and GET /openapi.json needs `Authorization: Bearer $RETRY_API_TOKEN`; "
                "without RETRY_API_TOKEN configured they are all refused with 401."
            ),
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The value of RETRY_API_TOKEN.",
                }
            },
        },
        "security": [{"bearerAuth": []}],
    }


@functools.cache
def document_bytes() -> bytes:
    """The document, built and serialised once per process, on first use."""
    return json.dumps(build_document(), separators=(",", ":")).encode()
