"""The Huawei FunctionGraph adapter: ``handler(event, context)`` onto the same core paths.

FunctionGraph calls an event function with the parsed JSON payload of its trigger
and a context object. These payloads are served; anything else fails the
invocation with one line (and no request to SDRS):

* timer trigger (``trigger_type == "TIMER"``): a sweep, ``trigger: timer``;
* EventGrid, a structured CloudEvent 1.0 (``specversion``, ``id``, ``source``,
  ``type``, ``data``): ``process``, the path of ``on_event``; also several
  wrapped as ``{"events": [...]}``, each decided on its own;
* CTS trigger (``{"cts": {trace}}``, or the older ``{"data": {trace}}``): the trace as
  the cloud-service CloudEvent EventGrid delivers for it, the same path;
* APIG request (``httpMethod`` and ``path``): the HTTP core ``http_api.serve``, the
  path of ``on_http`` (no Flask here: the event is mapped onto an ``HttpRequest``).

A *failed invocation* (an exception out of ``handler``) is what makes
FunctionGraph retry an asynchronous invocation (EventGrid, timer), so:

* ``RetryLater``: the work did not finish and another attempt can help (the
  outcome sink is down, a transient SDRS failure outlasted the retry budget) -
  the same cases in which ``on_event`` answers 503. Deletes are idempotent.
* ``InvalidEvent`` (a ``ValueError``): a payload this function does not serve, one
  larger than ``EVENT_MAX_BODY_BYTES`` (nothing of it decided), or a timer
  ``user_event`` that is JSON of the wrong shape. Retrying cannot help;
  the retries are bounded by the function's async configuration.
* ``ConfigurationFailed``: the settings are invalid (every invocation says so,
  ``failjob-reaper: configuration error: <VARIABLE>: ...``) or the function has
  neither credentials in its environment nor an agency.

Everything else returns a small JSON-able dict (a timer sweep: its summary; an
APIG call: the APIG answer ``{"statusCode", "headers", "body", "isBase64Encoded"}``).

Credentials: with none in the environment, SDRS calls are signed with the agency's
temporary credentials from the context, read again at every invocation (they
rotate) into ``app.context_auth`` (a ``RotatingAkSkAuth``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

from failjob_reaper._text import printable
from failjob_reaper.components import (
    CONFIG_ERROR_PREFIX,
    Components,
    load_components,
    load_components_or_exit,
)
from failjob_reaper.cts import unwrap_trigger_payload
from failjob_reaper.errors import ConfigError, InvalidInput, OutcomeDeliveryError
from failjob_reaper.events import Rejected, sweep_request
from failjob_reaper.http_api import (
    BodyReader,
    HttpRequest,
    HttpResponse,
    error_response,
    header_map,
    serve,
)
from failjob_reaper.http_api._errors import HttpError
from failjob_reaper.outcomes import Causation
from failjob_reaper.state import StateUnavailable
from failjob_reaper.state.idempotency import IdempotencyInProgress
from handlers._envelope import EnvelopeRefused, envelope_events, process_envelope
from handlers._events import Redeliver, event_problem, process, split

log = logging.getLogger("failjob_reaper")

RUNTIME_MARKERS = ("RUNTIME_FUNC_NAME", "RUNTIME_PROJECT_ID")
"""Set by FunctionGraph in a function's environment (platforms.md)."""

SAFETY_MARGIN_MIN = 2.0
SAFETY_MARGIN_FRACTION = 0.1
MIN_DEADLINE = 0.001
"""A sweep left no time still lists the protection groups once and reports a partial
summary; it starts no DELETE. (0 would mean "no deadline" to ``Sweeper.run``.)"""


_TRIGGER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")

Kind = Literal["timer", "eventgrid", "envelope", "cts", "apig"]


class Context(Protocol):
    """The FunctionGraph context methods this adapter uses (FunctionGraph's names).

    Each is called only if the runtime provides it; a missing one counts as "not given".
    """

    def getRequestID(self) -> str: ...
    def getRemainingTimeInMilliSeconds(self) -> int: ...
    def getSecurityAccessKey(self) -> str: ...
    def getSecuritySecretKey(self) -> str: ...
    def getSecurityToken(self) -> str: ...


class InvalidEvent(ValueError):
    """A payload this function does not serve; retrying it cannot help."""


class RetryLater(RuntimeError):
    """Not done; FunctionGraph should retry the invocation (async retries)."""


class ConfigurationFailed(RuntimeError):
    """The function cannot work as configured; the message is the one line that says why."""


# -- loading (main.py) ------------------------------------------------------------------


def on_functiongraph(environ: Mapping[str, str] | None = None) -> bool:
    """True in FunctionGraph's event-function runtime.

    FunctionGraph sets ``RUNTIME_FUNC_NAME``/``RUNTIME_PROJECT_ID``. A process run by
    functions-framework (the container image sets ``FUNCTION_TARGET``) is not the
    event-function runtime, even on FunctionGraph: it keeps failing fast at start-up.
    """
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in RUNTIME_MARKERS) and not env.get("FUNCTION_TARGET")


@dataclass(frozen=True)
class Entry:
    """What main.py holds: the app, or the configuration error every invocation reports."""

    app: Components | None
    error: str | None = None

    @classmethod
    def load(cls) -> Entry:
        """Outside FunctionGraph: ``load_components_or_exit()`` (a settings error stops the import,
        exit 2). On FunctionGraph the runtime imports main.py once per instance and must
        not die there: the error line is logged once and raised by every invocation."""
        if not on_functiongraph():
            return cls(load_components_or_exit())
        try:
            return cls(load_components(context_credentials=True))
        except ConfigError as exc:
            line = f"{CONFIG_ERROR_PREFIX}{exc}"
            print(line, file=sys.stderr)
            return cls(None, line)

    def handle(self, event: object, context: Context | None) -> dict[str, Any]:
        if self.app is None:
            raise ConfigurationFailed(self.error or f"{CONFIG_ERROR_PREFIX}unknown")
        return handle(self.app, event, context)


# -- one invocation ---------------------------------------------------------------------


def handle(app: Components, event: object, context: Context | None) -> dict[str, Any]:
    """Serve one FunctionGraph invocation (see the module docstring)."""
    kind = classify(event)
    assert isinstance(event, dict)  # classify() guarantees it
    limit = app.settings.event_max_body_bytes
    if kind != "apig" and larger_than(event, limit):  # APIG: HTTP_MAX_BODY_BYTES, as on_http
        raise InvalidEvent(f"failjob-reaper: the event is larger than EVENT_MAX_BODY_BYTES "
                           f"({limit} bytes): nothing was decided")
    request_id = _text(_ask(context, "getRequestID"))
    log.debug("functiongraph: %s invocation %s", kind, request_id or "-")
    refresh_credentials(app, context)
    if kind == "timer":
        return _timer(app, event, context, request_id)
    if kind == "eventgrid":
        return _eventgrid(app, event)
    if kind == "envelope":
        return _envelope(app, event)
    if kind == "cts":
        return _eventgrid(app, cts_event(event, request_id))
    return _apig(app, event)


def classify(event: object) -> Kind:
    """Which trigger sent this payload; InvalidEvent for anything else."""
    if not isinstance(event, dict):
        raise InvalidEvent(
            f"failjob-reaper: unsupported FunctionGraph event: expected a JSON object, "
            f"not {type(event).__name__}"
        )
    if event.get("trigger_type") == "TIMER":
        return "timer"
    if "httpMethod" in event and "path" in event:
        if not isinstance(event["httpMethod"], str) or not isinstance(event["path"], str):
            raise InvalidEvent("failjob-reaper: APIG event: httpMethod and path must be strings")
        return "apig"
    if "specversion" in event:
        _check_cloudevent(event)
        return "eventgrid"
    if unwrap_trigger_payload(event) is not None:
        return "cts"
    try:
        if envelope_events(event) is not None:
            return "envelope"
    except EnvelopeRefused as exc:
        raise InvalidEvent(f"failjob-reaper: EventGrid envelope: {exc}") from None
    keys = ", ".join(sorted(repr(key)[:40] for key in event)[:8]) or "none"
    raise InvalidEvent(
        "failjob-reaper: unsupported FunctionGraph event: expected a TIMER trigger, an "
        f"EventGrid CloudEvent (or an envelope of them), a CTS trace or an APIG request "
        f"(keys: {keys})"
    )


def larger_than(payload: object, limit: int) -> bool:
    """Whether ``payload`` (as the runtime parsed it) is more than ``limit`` characters of
    JSON, counted no further than the limit: on_event's bound on its body, for a payload
    that arrives parsed (the runtime's own bound comes first)."""
    total, stack = 0, [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            for name, value in item.items():
                total += len(name) if isinstance(name, str) else 8
                stack.append(value)
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += 8  # a number, true/false/null
        if total > limit:
            return True
    return False


def refresh_credentials(app: Components, context: Context | None) -> None:
    """Hand the agency's current temporary credentials to the client (they rotate).

    Only when the environment configures no credentials (``app.context_auth`` is set):
    credentials from the environment win. Never logs them.
    """
    auth = app.context_auth
    if auth is None:
        return
    ak = _text(_ask(context, "getSecurityAccessKey"))
    sk = _text(_ask(context, "getSecuritySecretKey"))
    token = _text(_ask(context, "getSecurityToken"))
    if not ak or not sk:  # nothing is cleared: concurrent invocations keep theirs
        raise ConfigurationFailed(
            f"{CONFIG_ERROR_PREFIX}HUAWEICLOUD_SDK_AK: not set, and the invocation context "
            "carries no agency credentials: give the function an agency, or set "
            "HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK or SDRS_AUTH_TOKEN"
        )
    auth.update(ak, sk, token)


def sweep_deadline(remaining_ms: object) -> float | None:
    """Seconds a sweep may run in this invocation: what is left minus a safety margin
    (the larger of 2 s and 10 %), so that it can still report ``sweep_completed``.
    None when the context does not say (then SWEEP_DEADLINE alone applies)."""
    if isinstance(remaining_ms, bool) or not isinstance(remaining_ms, int | float):
        return None
    remaining = remaining_ms / 1000.0
    margin = max(SAFETY_MARGIN_MIN, remaining * SAFETY_MARGIN_FRACTION)
    return max(remaining - margin, MIN_DEADLINE)


# -- timer --------------------------------------------------------------------------------


def _timer(
    app: Components, event: dict[str, Any], context: Context | None, request_id: str | None
) -> dict[str, Any]:
    name = event.get("trigger_name")
    name = name if isinstance(name, str) and _TRIGGER_NAME.fullmatch(name) else "timer"
    fired_at = _text(event.get("time"))
    # The schedule time names the firing: a retried invocation yields the same outcome ids.
    causation = Causation(
        id=fired_at or request_id or str(uuid.uuid4()),
        source=f"/functiongraph/triggers/timer/{name}",
        type="functiongraph.timer",
    )
    try:
        request = sweep_request(event.get("user_event"), project_id=app.settings.project_id,
                                trigger="timer", causation=causation)
    except InvalidInput as exc:
        with contextlib.suppress(OutcomeDeliveryError):  # kept in the outbox; refused anyway
            app.reaper.handle(Rejected(f"timer user_event: {exc}", "timer", causation))
        raise InvalidEvent(f"failjob-reaper: timer user_event: {exc}") from None
    deadline = sweep_deadline(_ask(context, "getRemainingTimeInMilliSeconds"))
    try:
        summary = app.sweeper.run(request, deadline=deadline)
    except (OutcomeDeliveryError, IdempotencyInProgress, StateUnavailable) as exc:
        raise RetryLater(f"failjob-reaper: sweep not reported, retry: {exc}") from None
    if summary.transient_failure:
        raise RetryLater(f"failjob-reaper: sweep failed, retry: {summary.aborted_reason}")
    return dict(summary.as_data())


# -- EventGrid ----------------------------------------------------------------------------


def _check_cloudevent(event: Mapping[str, Any]) -> None:
    problem = event_problem(event)
    if problem is not None:
        raise InvalidEvent(f"failjob-reaper: EventGrid event: {problem}")


def _eventgrid(app: Components, event: dict[str, Any]) -> dict[str, Any]:
    attributes, data = split(event)
    try:
        process(app, attributes, data)
    except Redeliver as exc:
        log.warning("functiongraph: event %s not done, asking for a retry: %s",
                    printable(attributes.get("id")), exc)
        raise RetryLater(f"failjob-reaper: event not done, retry: {exc}") from None
    return {"status": "done", "id": attributes["id"], "type": attributes["type"]}


def _envelope(app: Components, event: dict[str, Any]) -> dict[str, Any]:
    """``{"events": [...]}``: each event on its own; retry when any of them asks."""
    def one(item: Mapping[str, Any]) -> None:
        _eventgrid(app, dict(item))

    result = process_envelope(list(event["events"]), one, RetryLater)
    if result.retry:
        raise RetryLater(f"failjob-reaper: {len(result.retry)} event(s) not done, retry: "
                         f"{result.retry[0]}")
    return result.as_data()


def cts_event(event: Mapping[str, Any], request_id: str | None) -> dict[str, Any]:
    """A CTS trigger payload as the cloud-service CloudEvent EventGrid would deliver for it,
    so that both reach the same path: ``<SERVICE>:CloudTrace:<trace_type>``, the trace as data.
    The trace id names the input: a retried invocation yields the same outcome ids."""
    trace = unwrap_trigger_payload(event)
    fields = trace if isinstance(trace, Mapping) else {}
    service = fields.get("service_type")
    service = service if isinstance(service, str) and service.isalnum() else "UNKNOWN"
    kind = fields.get("trace_type")
    kind = kind if isinstance(kind, str) and kind.isalpha() else "ApiCall"
    trace_id = _text(fields.get("trace_id"))
    return {
        "specversion": "1.0",
        "id": trace_id or request_id or str(uuid.uuid4()),
        "source": "/functiongraph/triggers/cts",
        "type": f"{service}:CloudTrace:{kind}",
        "data": trace,
    }


# -- APIG ---------------------------------------------------------------------------------


class _BadApigRequest(Exception):
    pass


def _apig(app: Components, event: dict[str, Any]) -> dict[str, Any]:
    try:
        request = apig_request(event)
    except _BadApigRequest as exc:
        return apig_response(error_response(400, "invalid_request", str(exc)))
    return apig_response(serve(app, request))


def apig_request(event: Mapping[str, Any]) -> HttpRequest:
    """The request an APIG event describes (headers and query values may be lists)."""
    path = str(event["path"])
    if not path.startswith("/") or "?" in path or "#" in path:
        raise _BadApigRequest("the request path is malformed")
    headers = event.get("headers")
    query = event.get("queryStringParameters")
    return HttpRequest(
        method=str(event["httpMethod"]).upper(),
        path=path,
        headers=header_map((name, value) for name, value in _pairs(headers)),
        body=_apig_body(event),  # a reader: decoded only within HTTP_MAX_BODY_BYTES
        query=urlencode(list(_pairs(query))),
    )


def _pairs(values: object) -> Iterator[tuple[str, str]]:
    if isinstance(values, Mapping):
        for name, value in values.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(name, str) and item is not None:
                    yield name, str(item)


def _apig_body(event: Mapping[str, Any]) -> bytes | BodyReader:
    body = event.get("body")
    if body is None or body == "":
        return b""
    if not isinstance(body, str):
        raise _BadApigRequest("the body must be text (or base64 with isBase64Encoded)")
    if event.get("isBase64Encoded") is not True:
        def text(limit: int) -> bytes | None:
            try:  # a lone surrogate ("\ud800" in the event's JSON) has no UTF-8
                return None if len(body) > limit else body.encode("utf-8")[:limit + 1]
            except UnicodeEncodeError:
                raise HttpError(400, "invalid_json", "the body is not UTF-8") from None

        return text

    def decoded(limit: int) -> bytes | None:
        if len(body) > 4 * (limit // 3 + 1):  # more than limit bytes once decoded
            return None
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(400, "invalid_request",
                            "isBase64Encoded is true but the body is not base64") from None

    return decoded


def apig_response(answer: HttpResponse) -> dict[str, Any]:
    """The APIG answer: the core answers JSON only, so the body is always text."""
    return {"statusCode": answer.status, "headers": dict(answer.headers),
            "body": answer.body.decode("utf-8"), "isBase64Encoded": False}


# -- helpers ------------------------------------------------------------------------------


def _ask(context: object, method: str) -> object:
    """Call a context method if the runtime provides it (older runtimes lack some)."""
    function = getattr(context, method, None)
    return function() if callable(function) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
