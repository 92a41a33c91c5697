"""What the SDRS API said when it refused, mapped onto one error type."""

from __future__ import annotations

import re
from typing import Any

import httpx

from failjob_reaper.delivery import SDRS_DELETE
from failjob_reaper.errors import ReaperError

RETRYABLE_STATUSES = SDRS_DELETE.retry
"""Statuses worth another attempt: delivery.py's table (408, 409, 429, 5xx)."""

_MAX_MESSAGE = 500
# Request headers that carry a secret: a server that echoes one back must not pass it on
# into an outcome, a log line or an HTTP answer (docs/configuration.md).
_SECRET_HEADERS = ("X-Auth-Token", "X-Security-Token")
_MASK = "***"

THROTTLE_CODE = "APIG.0308"
"""The API gateway's "throttling threshold has been reached" (platforms.md)."""

# "... policy user over ratelimit,limit:20,time:1 second": N requests per period.
_LIMIT = re.compile(r"\blimit\s*:\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_PERIOD = re.compile(r"\btime\s*:\s*(\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
                 "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}


class SdrsError(ReaperError):
    """The API refused, or transient failures outlasted the retry budget."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status_code: int | None,
        retryable: bool,
        attempts: int,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.retryable = retryable
        self.attempts = attempts

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


def error_from_response(response: httpx.Response, *, attempts: int) -> SdrsError:
    if response.status_code < 400:
        # Not a refusal: an answer the call does not expect (a 200 to a DELETE, say).
        code, message = f"HTTP.{response.status_code}", f"unexpected answer {response.status_code}"
    else:
        code, message = (_mask_sent_secrets(part, response) for part in parse_error_body(response))
    return SdrsError(
        message,
        code=code,
        status_code=response.status_code,
        retryable=response.status_code in RETRYABLE_STATUSES,
        attempts=attempts,
    )


def error_from_transport(exc: httpx.TransportError, *, attempts: int) -> SdrsError:
    # The exception text is httpx's own (no URL credentials, no headers).
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
    return SdrsError(
        f"{kind} error talking to SDRS: {type(exc).__name__}",
        code=f"transport.{kind}",
        status_code=None,
        retryable=True,
        attempts=attempts,
    )


def parse_error_body(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from any of the error shapes Huawei APIs use."""
    fallback = (f"HTTP.{response.status_code}", response.reason_phrase or "error")
    try:
        body = response.json()
    except ValueError:
        return fallback
    if not isinstance(body, dict):
        return fallback
    if "error_code" in body or "error_msg" in body:
        return _clean(body.get("error_code"), body.get("error_msg"), fallback)
    for key in ("error", "badrequest", "itemNotFound"):
        inner = body.get(key)
        if isinstance(inner, dict):
            return _clean(inner.get("code"), inner.get("message"), fallback)
    return fallback


def _mask_sent_secrets(text: str, response: httpx.Response) -> str:
    """``text`` with the secrets the request carried masked, in every encoding a server
    may echo them in (as sent, any case, base64, URL-encoded)."""
    from failjob_reaper._secrets import mask_secrets

    try:
        headers = response.request.headers
    except RuntimeError:  # a response built without a request (tests)
        return text
    return mask_secrets(text, [value for name in _SECRET_HEADERS
                               if (value := headers.get(name))])


def _clean(code: object, message: object, fallback: tuple[str, str]) -> tuple[str, str]:
    code_text = str(code)[:64] if code is not None else fallback[0]
    message_text = str(message)[:_MAX_MESSAGE] if message is not None else fallback[1]
    return code_text, message_text


def throttle_of(response: httpx.Response) -> tuple[bool, float | None]:
    """(throttled, the announced limit in requests per second, when the body says one).

    Throttled: 429, or the gateway's ``APIG.0308`` under any status. The body is read
    only for those answers (a 204 or a listing costs nothing here).
    """
    status = response.status_code
    if status == 429 or (status >= 400 and b"APIG.0308" in response.content):
        code, message = parse_error_body(response)
        if status != 429 and code != THROTTLE_CODE:
            return False, None
        return True, announced_rate(message)
    return False, None


def announced_rate(message: str) -> float | None:
    """``limit:N,time:K unit`` as N / (K unit) requests per second; None when absent."""
    limit = _LIMIT.search(message)
    if limit is None:
        return None
    count = float(limit.group(1))
    seconds = 1.0
    period = _PERIOD.search(message)
    if period is not None:
        unit = _UNIT_SECONDS.get(period.group(2).lower().rstrip("s") or "s")
        if unit is None or float(period.group(1)) <= 0:
            return None  # a period we cannot read: no cap rather than a wrong one
        seconds = float(period.group(1)) * unit
    rate = count / seconds
    return rate if rate > 0 else None
