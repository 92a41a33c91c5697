"""The manual HTTP API (docs/http-api.md): ``serve(app, request) -> response``.

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
the body is read), query string 400, ``Idempotency-Key`` 400, content type 415,
size 413, JSON 400, shape, types and ids 400. Every refusal is
``{"error": {"code", "message"}}`` and comes before any request to SDRS.

An accepted call answers 200 with the outcome (or the sweep summary) whatever
was decided, ``delete_failed`` included (``error.retryable`` says whether another
try may help); 503 only when the outcome could not be delivered to the sink,
since then the call did not finish (repeating it is safe: deletes are idempotent).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import SecretStr

from failjob_reaper._text import printable
from failjob_reaper.errors import InvalidInput, OutcomeDeliveryError
from failjob_reaper.events import sweep_request
from failjob_reaper.http_api._body import Body, json_object, json_value
from failjob_reaper.http_api._errors import HttpError
from failjob_reaper.http_api._idempotency import causation
from failjob_reaper.http_api._types import (
    CLOUDEVENTS_JSON,
    DELETE_FAILED_TYPE,
    JSON,
    AnswerBody,
    HttpRequest,
    HttpResponse,
    error_body,
    json_bytes,
)
from failjob_reaper.outcomes import Causation, OutcomeData, SweepSummaryData
from failjob_reaper.state import StateUnavailable
from failjob_reaper.state.idempotency import IdempotencyConflict, IdempotencyInProgress

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from failjob_reaper.components import Components

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

_CHALLENGE = 'Bearer realm="failjob-reaper"'
_MAX_PROBLEMS = 5


def serve(app: Components, request: HttpRequest) -> HttpResponse:
    """Answer one call of the manual HTTP API; never raises, never shows a traceback."""
    try:
        response = _route(app, request)
    except HttpError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
    except Exception:  # the caller gets a code, the log gets the details
        log.error("on_http: %s %s failed", request.method, _route_name(request.path),
                  exc_info=True)
        response = error_response(500, "internal_error", "unexpected error; see the logs")
    return replace(response, body=b"") if request.method == "HEAD" else response


def _route(app: Components, request: HttpRequest) -> HttpResponse:
    path = request.path
    allowed = ROUTES.get(path)
    if allowed is None:
        raise HttpError(404, "not_found", f"no such path; this API serves {', '.join(ROUTES)}")
    if request.method not in allowed:
        raise HttpError(405, "method_not_allowed", f"{path} accepts {', '.join(allowed)}",
                        {"Allow": ", ".join(allowed)})
    if path == HEALTHZ:
        return json_response(200, {"status": "ok"})
    if path == OPENAPI:
        from failjob_reaper.http_api._openapi import document_bytes  # built on first use

        return _response(200, document_bytes())
    authenticate(app.settings.retry_api_token, request)
    if request.query:
        # `POST /sweep?dry_run=true` must not silently become a real sweep.
        raise HttpError(400, "invalid_request",
                        "query parameters are not accepted; send the options in the JSON body")
    body = Body(request, app.settings.http_max_body_bytes)
    cause = causation(request, path)
    if path == RETRY:
        return json_response(200, _retry(app, body, cause))
    return json_response(200, _sweep(app, body, cause))


# -- the two mutating calls ---------------------------------------------------------


def _retry(app: Components, body: Body, cause: Causation) -> OutcomeData:
    from failjob_reaper.http_api import _models

    media = body.media_type((JSON, CLOUDEVENTS_JSON))
    if media is None:
        raise HttpError(400, "invalid_request",
                        'a JSON body is required, e.g. {"failure_job_id": "..."}')
    value = json_object(body.read())
    settings = app.settings
    model: _models.RetryRequest | _models.DeleteFailedEvent
    if media == CLOUDEVENTS_JSON:
        if value.get("type") != DELETE_FAILED_TYPE:
            raise HttpError(400, "invalid_event", f"only {DELETE_FAILED_TYPE} outcomes can be "
                            f"retried, not {printable(value.get('type'))}")
        model = _parse(_models.DeleteFailedEvent, value, settings.project_id)
    else:
        model = _parse(_models.RetryRequest, value, settings.project_id)
    task = model.task(id_field=settings.failure_job_id_field, causation=cause)
    return _delivered(lambda: app.reaper.handle(task).as_data())


def _sweep(app: Components, body: Body, cause: Causation) -> SweepSummaryData:
    raw = body.read() if body.media_type((JSON,)) is not None else b""
    # JSON syntax as strictly as for /retry; what the options may be is the business of
    # events.sweep_request, the one parser of sweep data on every path.
    data = json_value(raw) if raw.strip() else None
    try:
        request = sweep_request(data, project_id=app.settings.project_id, trigger="http",
                                causation=cause)
    except InvalidInput as exc:
        raise HttpError(400, "invalid_input", str(exc)) from None
    return _delivered(lambda: app.sweeper.run(request).as_data())


Answer = TypeVar("Answer", OutcomeData, SweepSummaryData)


def _delivered(decide: Callable[[], Answer]) -> Answer:
    try:
        return decide()
    except IdempotencyConflict:
        raise HttpError(422, "idempotency_key_reused",
                        "this Idempotency-Key was used for a different request; nothing "
                        "was decided") from None
    except IdempotencyInProgress:
        raise HttpError(409, "idempotency_key_in_progress",
                        "a request with this Idempotency-Key is being handled; repeat it "
                        "later", {"Retry-After": "5"}) from None
    except StateUnavailable as exc:
        log.warning("on_http: state store unavailable: %s", exc)
        raise HttpError(503, "state_unavailable",
                        "the state store is unreachable: nothing was deleted; repeat the call "
                        "later", {"Retry-After": "10"}) from None
    except OutcomeDeliveryError as exc:
        log.warning("on_http: outcome not delivered: %s", exc)
        decided = f" ({exc.outcome} {exc.failure_job_id or ''})".rstrip() if exc.outcome else ""
        raise HttpError(
            503, "outcome_not_delivered",
            f"the decision was made{decided} but its outcome could not be delivered to the "
            f"sink ({exc}); repeating the call is safe",
            {"Retry-After": "10"},
        ) from None


Model = TypeVar("Model", bound="BaseModel")


def _parse(model: type[Model], value: dict[str, Any], project_id: str) -> Model:
    """The one validation of a body: the model as parsed is what is used."""
    from pydantic import ValidationError

    try:
        return model.model_validate(value, context={"project_id": project_id})
    except ValidationError as exc:
        raise _refusal(exc) from None


def _refusal(exc: ValidationError) -> HttpError:
    from failjob_reaper.http_api._models import INVALID_INPUT

    errors = exc.errors(include_input=False, include_url=False)
    problems = []
    for error in errors[:_MAX_PROBLEMS]:
        where = ".".join(printable(part, 40) if isinstance(part, str) else str(part)
                         for part in error["loc"]) or "body"
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field")
        elif error["type"] == INVALID_INPUT:
            problems.append(error["msg"])  # names the field itself
        else:
            problems.append(f"{where}: {error['msg']}")
    more = len(errors) - len(problems)
    message = "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
    # Well-formed but refused (a bad id, another project): the event path's code.
    code = "invalid_input" if all(e["type"] == INVALID_INPUT for e in errors) else "invalid_request"
    return HttpError(400, code, message)


# -- authentication -----------------------------------------------------------------


def authenticate(configured: SecretStr | None, request: HttpRequest) -> None:
    """401 unless ``Authorization: Bearer <configured>``; no token configured: always 401."""
    if configured is None:
        raise HttpError(401, "unauthorized",
                        "the manual API is disabled: RETRY_API_TOKEN is not configured",
                        {"WWW-Authenticate": _CHALLENGE})
    scheme, _, given = (request.header("authorization") or "").strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        log.info("on_http: %s %s refused: no bearer token", request.method, request.path)
        raise HttpError(401, "unauthorized", "send Authorization: Bearer <RETRY_API_TOKEN>",
                        {"WWW-Authenticate": _CHALLENGE})
    if not token_matches(given, configured.get_secret_value()):
        log.info("on_http: %s %s refused: wrong bearer token", request.method, request.path)
        raise HttpError(401, "unauthorized",
                        "the bearer token is not the configured RETRY_API_TOKEN",
                        {"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'})


def token_matches(given: str, expected: str) -> bool:
    """Constant time, also in the length (both sides are hashed first)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest(),
        hashlib.sha256(expected.encode("utf-8")).digest(),
    )


# -- answers ------------------------------------------------------------------------


def json_response(
    status: int, body: AnswerBody, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    return _response(status, json_bytes(body), headers)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    return json_response(status, error_body(code, message), headers)


def _response(status: int, data: bytes, headers: Mapping[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, {
        "Content-Type": JSON,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        **(headers or {}),
    }, data)


def _route_name(path: str) -> str:
    return path if path in ROUTES else "(unknown path)"
