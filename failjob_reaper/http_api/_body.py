"""The request body: read once and within the limit, its media type, its JSON."""

from __future__ import annotations

import json
from email.message import Message
from typing import Any

from failjob_reaper._text import json_kind, printable
from failjob_reaper.http_api._errors import HttpError
from failjob_reaper.http_api._types import HttpRequest


class Body:
    """The body of one request, read on first use (after authentication), at most once."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        self._request = request
        self._limit = limit
        self._data: bytes | None = None

    def read(self) -> bytes:
        """The whole body; 413 when it is longer than the limit."""
        if self._data is None:
            source = self._request.body
            data = source if isinstance(source, bytes) else source(self._limit)
            if data is None or len(data) > self._limit:
                raise HttpError(413, "payload_too_large",
                                f"the body must not exceed {self._limit} bytes")
            self._data = data
        return self._data

    def media_type(self, accepted: tuple[str, ...]) -> str | None:
        """The body's media type, one of ``accepted``; None for no body at all."""
        content_type = self._request.header("content-type")
        if content_type is None:
            if not self.read():
                return None
            raise HttpError(415, "unsupported_media_type",
                            f"Content-Type is required: {' or '.join(accepted)}")
        media, charset = _parse_content_type(content_type)
        if media not in accepted:
            raise HttpError(415, "unsupported_media_type",
                            f"Content-Type must be {' or '.join(accepted)}")
        if charset is not None and charset.lower() not in ("utf-8", "utf8"):
            raise HttpError(415, "unsupported_media_type", "the only charset accepted is utf-8")
        return media


def _parse_content_type(value: str) -> tuple[str, str | None]:
    # The standard library's MIME header parser (quoted parameters, case); a value that
    # is not type/subtype reads as text/plain (RFC 2045), which no route accepts.
    message = Message()
    message["content-type"] = value
    charset = message.get_param("charset")
    return message.get_content_type(), charset if isinstance(charset, str) else None


def json_object(data: bytes) -> dict[str, Any]:
    """``json_value`` that must be an object; 400 otherwise."""
    value = json_value(data)
    if not isinstance(value, dict):
        raise HttpError(400, "invalid_request",
                        f"the body must be a JSON object, not {json_kind(value)}")
    return value


def json_value(data: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity; 400 otherwise.

    The standard library's decoder, because pydantic's (jiter) keeps the last of two
    equal keys without a word: ``{"dry_run": true, "dry_run": false}`` must not mean
    one thing to a proxy that logs the first and another to us.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "invalid_json", "the body is not UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise HttpError(400, "invalid_json",
                        f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                        ) from None
    except _Refused as exc:
        raise HttpError(400, "invalid_json", str(exc)) from None
    except RecursionError:
        raise HttpError(400, "invalid_json", "malformed JSON: nested too deep") from None
    except ValueError:  # e.g. an integer of more digits than int() takes
        raise HttpError(400, "invalid_json", "malformed JSON") from None
    return value


class _Refused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"duplicate key {printable(key)} in the JSON body")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")
