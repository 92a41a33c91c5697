"""The OpenAPI 3.1 document of the manual HTTP API, generated from the core's own types.

The schemas are pydantic's JSON Schema of the very types the core parses and answers
with: the request models (``_models``), the error and health bodies (``_types``), and
the outcome model whose ``as_data()`` the two mutating calls answer (``Outcome``,
``SweepSummary``: ``failjob_reaper.outcomes``). A field added there is in the document;
nothing here restates a field.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from failjob_reaper.http_api._idempotency import KEY_PATTERN, MAX_KEY
from failjob_reaper.http_api._models import DeleteFailedEvent, RetryRequest, SweepBody
from failjob_reaper.http_api._types import (
    CLOUDEVENTS_JSON,
    DELETE_FAILED_TYPE,
    ErrorBody,
    HealthBody,
)
from failjob_reaper.outcomes import Outcome, SweepSummary
from failjob_reaper.outcomes._data import adapter

API_TITLE = "failjob-reaper manual API"
API_VERSION = "1"

_REF = "#/components/schemas/{model}"

# name in the document -> (type, whether it is read from requests or written in answers)
_TYPES: dict[str, tuple[Any, JsonSchemaMode]] = {
    "RetryRequest": (RetryRequest, "validation"),
    "SweepBody": (SweepBody, "validation"),
    "DeleteFailedEvent": (DeleteFailedEvent, "validation"),
    "ErrorBody": (ErrorBody, "serialization"),
    "HealthBody": (HealthBody, "serialization"),
    Outcome.__name__: (Outcome, "serialization"),
    SweepSummary.__name__: (SweepSummary, "serialization"),
}


def _schemas() -> dict[str, Any]:
    inputs = [(name, mode, adapter(kind)) for name, (kind, mode) in _TYPES.items()]
    top, definitions = TypeAdapter.json_schemas(inputs, ref_template=_REF)
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    for (name, _), schema in top.items():
        if "$ref" not in schema:
            schemas[name] = schema
    return schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, media: str = "application/json") -> dict[str, Any]:
    return {media: {"schema": _ref(name)}}

# -- the document -----------------------------------------------------------------

_ERRORS: dict[int, str] = {
    400: "Malformed JSON, unknown fields, wrong types, a bad id, a task of another "
    "project, or an Idempotency-Key that is not one. Nothing was looked up or deleted.",
    401: "Missing or wrong bearer token, or RETRY_API_TOKEN is not configured.",
    405: "Method not allowed here (see the Allow header).",
    413: "The body is larger than HTTP_MAX_BODY_BYTES.",
    415: "The body is not JSON.",
    500: "Unexpected error; nothing about it is disclosed.",
    409: "A call with this Idempotency-Key is being handled right now (on any instance); "
    "repeat it later.",
    422: "This Idempotency-Key was used before for a different request: nothing was "
    "decided (code idempotency_key_reused).",
    503: "The outcome could not be delivered to the sink (K_SINK), or the state store "
    "(STATE_URL) is unreachable: then nothing was deleted. Repeating the call is safe.",
}


def _error(status: int, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _ERRORS[status], "content": _json("ErrorBody")}
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
                    "An `Idempotency-Key` header makes a repeat get the first answer."
                ),
                "security": bearer,
                "parameters": [_idempotency_key(), _traceparent()],
                "requestBody": {
                    "required": True,
                    "content": {**_json("RetryRequest"), **_json("DeleteFailedEvent",
                                                               CLOUDEVENTS_JSON)},
                },
                "responses": {
                    "200": {
                        "description": "Decided; the outcome (any outcome, including "
                        "delete_failed: see error.retryable).",
                        "content": _json(Outcome.__name__),
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
                "requestBody": {"required": False, "content": {"application/json": {
                    # JSON null is no options, as an empty body (one parser on every path)
                    "schema": {"anyOf": [_ref("SweepBody"), {"type": "null"}]}}}},
                "responses": {
                    "200": {"description": "The sweep's summary.",
                            "content": _json(SweepSummary.__name__)},
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
                    "200": {"description": "Alive.", "content": _json("HealthBody")},
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
        "and the same request (route and body) gets the first answer (kept 24 h in the state "
        "store); the same key with a different request, on either route, is refused with "
        "422. A value that is not 1-255 printable ASCII characters (no space at either end) "
        "is refused with 400 (code invalid_idempotency_key).",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY,
                   "pattern": KEY_PATTERN},
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
