"""The http adapter: manual retries and sweeps, health and OpenAPI (SPEC section 8).

``on_http(app, request)`` serves the functions-framework ``http`` target:

=====================  ======  =========================================================
path                   auth    what
=====================  ======  =========================================================
``POST /retry``        bearer  decide one task now: the same core path as an event
``POST /sweep``        bearer  a sweep, answered with its summary
``GET /healthz``       none    ``{"status": "ok"}``, nothing else
``GET /openapi.json``  none    the OpenAPI 3.1 document (public, like any API reference)
=====================  ======  =========================================================

Order of checks, first failure answers: unknown path 404, wrong method 405 (with
``Allow``), then for the two mutating calls: bearer token 401 (before anything of
the body is read or parsed), query string 400, content type 415, size 413, JSON
and shape 400, ids and project 400 (``events.task_request``). Every refusal is
``{"error": {"code", "message"}}`` and happens before any request to SDRS.

Statuses of an accepted call: 200 with the outcome (or the sweep summary) for
every decision, ``delete_failed`` included - the body says whether it is worth
another try (``error.retryable``); 503 only when the outcome could not be
delivered to the sink, since then the call did not finish (repeating it is safe:
deletes are idempotent).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import flask
from pydantic import BaseModel, ValidationError

from failjob_reaper.app import App
from failjob_reaper.errors import InvalidInput, OutcomeDeliveryError
from failjob_reaper.events import sweep_request, task_request, trace_context
from failjob_reaper.ids import is_valid_id
from failjob_reaper.outcomes import TYPE_PREFIX, Causation
from failjob_reaper.state import StateUnavailable
from failjob_reaper.state.idempotency import IdempotencyConflict, IdempotencyInProgress

log = logging.getLogger("failjob_reaper")

RETRY = "/retry"
SWEEP = "/sweep"
HEALTHZ = "/healthz"
OPENAPI = "/openapi.json"

ROUTES: Mapping[str, tuple[str, ...]] = {
    RETRY: ("POST",),
    SWEEP: ("POST",),
    HEALTHZ: ("GET", "HEAD"),
    OPENAPI: ("GET", "HEAD"),
}

JSON = "application/json"
CLOUDEVENTS_JSON = "application/cloudevents+json"
DELETE_FAILED_TYPE = TYPE_PREFIX + "delete_failed"

_CHALLENGE = 'Bearer realm="failjob-reaper"'
_MAX_PROBLEMS = 5


class HttpError(Exception):
    """A refusal, answered as ``{"error": {"code", "message"}}``."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def on_http(app: App, request: flask.Request) -> flask.Response:
    """Serve one call of the manual HTTP API; never raises, never shows a traceback."""
    body = _Body(request, app.settings.http_max_body_bytes)
    try:
        response = _dispatch(app, request, body)
    except HttpError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
    except Exception as exc:  # the caller gets a code, the log gets the details
        log.error("on_http: %s %s failed: %s", request.method, _route_name(request.path),
                  type(exc).__name__, exc_info=True)
        response = error_response(500, "internal_error", "unexpected error; see the logs")
    return body.settle(response)


# -- routing ------------------------------------------------------------------------


def _dispatch(app: App, request: flask.Request, body: _Body) -> flask.Response:
    path = request.path
    allowed = ROUTES.get(path)
    if allowed is None:
        raise HttpError(404, "not_found", f"no such path; this API serves {', '.join(ROUTES)}")
    if request.method not in allowed:
        raise HttpError(
            405, "method_not_allowed", f"{path} accepts {', '.join(allowed)}",
            {"Allow": ", ".join(allowed)},
        )
    if path == HEALTHZ:
        return json_response(200, {"status": "ok"})
    if path == OPENAPI:
        from handlers._openapi import document_bytes  # built on first use, not at cold start

        return _bytes_response(200, document_bytes())
    _authenticate(app, request)
    if request.query_string:
        # `POST /sweep?dry_run=true` must not silently become a real sweep.
        raise HttpError(400, "invalid_request",
                        "query parameters are not accepted; send the options in the JSON body")
    if path == RETRY:
        return _retry(app, request, body)
    return _sweep(app, request, body)


def _retry(app: App, request: flask.Request, body: _Body) -> flask.Response:
    media = _media_type(request, body, (JSON, CLOUDEVENTS_JSON))
    if media is None:
        raise HttpError(400, "invalid_request",
                        'a JSON body is required, e.g. {"failure_job_id": "..."}')
    payload = _json_object(body.read())
    task_payload = _from_event(payload) if media == CLOUDEVENTS_JSON else _from_body(payload)
    settings = app.settings
    try:
        task = task_request(
            task_payload,
            project_id=settings.project_id,
            id_field=settings.failure_job_id_field,
            trigger="http",
            causation=causation(request, RETRY),
            allow_force=True,
        )
    except InvalidInput as exc:
        raise HttpError(400, "invalid_input", str(exc)) from None
    try:
        outcome = app.reaper.handle(task)
    except OutcomeDeliveryError as exc:
        raise _not_delivered(exc) from None
    except _SHARED_STATE_ERRORS as exc:
        raise _shared_state_refusal(exc) from None
    return json_response(200, outcome.as_data())


def _sweep(app: App, request: flask.Request, body: _Body) -> flask.Response:
    media = _media_type(request, body, (JSON,))
    payload: dict[str, Any] = {}
    if media is not None and body.read().strip():  # an empty body is an empty object
        from handlers._openapi import SweepBody

        payload = _json_object(body.read())
        _validate(SweepBody, payload)
    try:
        sweep = sweep_request(payload, project_id=app.settings.project_id, trigger="http",
                              causation=causation(request, SWEEP))
    except InvalidInput as exc:
        raise HttpError(400, "invalid_input", str(exc)) from None
    try:
        summary = app.sweeper.run(sweep)
    except OutcomeDeliveryError as exc:
        raise _not_delivered(exc) from None
    except _SHARED_STATE_ERRORS as exc:
        raise _shared_state_refusal(exc) from None
    return json_response(200, summary.as_data())


def _from_body(payload: dict[str, Any]) -> dict[str, Any]:
    from handlers._openapi import RetryRequest

    _validate(RetryRequest, payload)
    return payload


def _from_event(event: dict[str, Any]) -> dict[str, Any]:
    """The task named by a structured CloudEvent of an earlier delete_failed outcome."""
    event_type = event.get("type")
    if event_type != DELETE_FAILED_TYPE:
        raise HttpError(
            400, "invalid_event",
            f"only {DELETE_FAILED_TYPE} outcomes can be retried, not {_printable(event_type)}",
        )
    from handlers._openapi import DeleteFailedEvent

    _validate(DeleteFailedEvent, event)
    data = event["data"]
    # force and dry_run are never taken from an event; project_id is checked, not trusted.
    task: dict[str, Any] = {"failure_job_id": data["failure_job_id"]}
    for key in ("server_group_id", "project_id"):
        if data.get(key) is not None:
            task[key] = data[key]
    return task


_SHARED_STATE_ERRORS = (IdempotencyConflict, IdempotencyInProgress, StateUnavailable)


def _shared_state_refusal(exc: Exception) -> HttpError:
    """Idempotency-Key reuse 422, a repeat still in progress 409, the state store down 503."""
    if isinstance(exc, IdempotencyConflict):
        return HttpError(422, "idempotency_key_reused",
                         "this Idempotency-Key was used for a different request; nothing "
                         "was decided")
    if isinstance(exc, IdempotencyInProgress):
        return HttpError(409, "idempotency_key_in_progress",
                         "a request with this Idempotency-Key is being handled; repeat it "
                         "later", {"Retry-After": "5"})
    log.warning("on_http: state store unavailable: %s", exc)
    return HttpError(503, "state_unavailable",
                     "the state store is unreachable: nothing was deleted; repeat the call "
                     "later", {"Retry-After": "10"})


def _not_delivered(exc: OutcomeDeliveryError) -> HttpError:
    log.warning("on_http: outcome not delivered: %s", exc)
    decided = f" ({exc.outcome} {exc.failure_job_id or ''})".rstrip() if exc.outcome else ""
    return HttpError(
        503, "outcome_not_delivered",
        f"the decision was made{decided} but its outcome could not be delivered to the "
        f"sink ({exc}); repeating the call is safe",
        {"Retry-After": "10"},
    )


# -- authentication -----------------------------------------------------------------


def _authenticate(app: App, request: flask.Request) -> None:
    configured = app.settings.retry_api_token
    if configured is None:
        raise HttpError(
            401, "unauthorized",
            "the manual API is disabled: RETRY_API_TOKEN is not configured",
            {"WWW-Authenticate": _CHALLENGE},
        )
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        log.info("on_http: %s %s refused: no bearer token", request.method, request.path)
        raise HttpError(
            401, "unauthorized", "send Authorization: Bearer <RETRY_API_TOKEN>",
            {"WWW-Authenticate": _CHALLENGE},
        )
    if not token_matches(given, configured.get_secret_value()):
        log.info("on_http: %s %s refused: wrong bearer token", request.method, request.path)
        raise HttpError(
            401, "unauthorized", "the bearer token is not the configured RETRY_API_TOKEN",
            {"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'},
        )


def token_matches(given: str, expected: str) -> bool:
    """Constant time, also in the length (both sides are hashed first)."""
    return hmac.compare_digest(
        hashlib.sha256(_header_bytes(given)).digest(),
        hashlib.sha256(expected.encode("utf-8")).digest(),
    )


def _header_bytes(value: str) -> bytes:
    # WSGI hands header values over as latin-1 decoded bytes; undo that to compare bytes.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


# -- causation --------------------------------------------------------------------


def causation(request: flask.Request, route: str) -> Causation:
    """id: the Idempotency-Key if it is a plain token, else a fresh UUID."""
    key = request.headers.get("Idempotency-Key")
    traceparent, tracestate = trace_context(
        request.headers.get("traceparent"), request.headers.get("tracestate")
    )
    return Causation(
        id=key if is_valid_id(key) else str(uuid.uuid4()),
        source=f"/http{route}",
        type=f"http.{route.lstrip('/')}",
        traceparent=traceparent,
        tracestate=tracestate,
    )


# -- the body -----------------------------------------------------------------------


class _Body:
    """The request body, read once and never past ``limit`` bytes."""

    def __init__(self, request: flask.Request, limit: int) -> None:
        self.request = request
        self.limit = limit
        self._data: bytes | None = None
        self._too_large = False

    @property
    def declared_empty(self) -> bool:
        return self.request.content_length == 0

    def read(self) -> bytes:
        """The whole body; 413 past the limit (by Content-Length or by what arrives)."""
        if self._data is None and not self._too_large:
            self._read()
        if self._data is None:
            raise HttpError(413, "payload_too_large",
                            f"the body must not exceed {self.limit} bytes")
        return self._data

    def _read(self) -> None:
        declared = self.request.content_length
        if declared is not None and declared > self.limit:
            self._too_large = True
            return
        stream = self.request.stream
        chunks: list[bytes] = []
        received = 0
        while received <= self.limit:
            chunk = stream.read(self.limit + 1 - received)
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
        if received > self.limit:
            self._too_large = True
        else:
            self._data = b"".join(chunks)

    def settle(self, response: flask.Response) -> flask.Response:
        """Keep functions-framework from reading an unread body whole into memory.

        After each response the framework calls ``request.get_data()``, unless the
        response is streamed: for a refused chunked upload that would buffer
        everything the client sends. When the body was not (fully) read, the
        response is made a stream and the WSGI server discards the rest itself.
        """
        if self._data is None:
            data = response.get_data()
            response.response = _once(data)
        return response


def _once(data: bytes) -> Iterator[bytes]:
    yield data


def _media_type(
    request: flask.Request, body: _Body, accepted: tuple[str, ...]
) -> str | None:
    """The body's media type, one of ``accepted``; None for no body at all."""
    if request.headers.get("Content-Type") is None:
        if body.declared_empty or not body.read():
            return None
        raise HttpError(415, "unsupported_media_type",
                        f"Content-Type is required: {' or '.join(accepted)}")
    media = request.mimetype
    charset = request.mimetype_params.get("charset")
    if media not in accepted:
        raise HttpError(415, "unsupported_media_type",
                        f"Content-Type must be {' or '.join(accepted)}")
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise HttpError(415, "unsupported_media_type", "the only charset accepted is utf-8")
    return media


class _DuplicateKey(ValueError):
    pass


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "invalid_json", "the body is not UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise HttpError(400, "invalid_json", str(exc)) from None
    except json.JSONDecodeError as exc:
        raise HttpError(400, "invalid_json",
                        f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                        ) from None
    except (ValueError, RecursionError):
        raise HttpError(400, "invalid_json", "malformed JSON") from None
    if not isinstance(value, dict):
        raise HttpError(400, "invalid_request",
                        f"the body must be a JSON object, not {json_kind(value)}")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"duplicate key {_printable(key)} in the JSON body")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_kind(value: object) -> str:
    """'an array', 'a string', ... for messages about JSON of the wrong kind."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _validate(model: type[BaseModel], payload: dict[str, Any]) -> None:
    """Shape and types against the request model; ids are validated later, by the core."""
    try:
        model.model_validate(payload)
    except ValidationError as exc:
        raise HttpError(400, "invalid_request", _problems(exc)) from None


def _problems(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False)[:_MAX_PROBLEMS]:
        where = ".".join(_printable(part, 40) if isinstance(part, str) else str(part)
                         for part in error["loc"]) or "body"
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field")
        else:
            problems.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


# -- responses --------------------------------------------------------------------


def json_response(
    status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> flask.Response:
    data = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return _bytes_response(status, data, headers)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> flask.Response:
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


def _bytes_response(
    status: int, data: bytes, headers: Mapping[str, str] | None = None
) -> flask.Response:
    response = flask.Response(data, status=status, mimetype=JSON)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _route_name(path: str) -> str:
    return path if path in ROUTES else "(unknown path)"


def _printable(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
