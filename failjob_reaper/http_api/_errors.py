"""A refusal of the manual API, answered as ``{"error": {"code", "message"}}``.

``error_body`` and ``JSON`` live here, apart from the API's types and core, because the
CloudEvent target answers its own 400s with them: an event function never imports
the manual API (cold start).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from failjob_reaper.http_api._types import ErrorBody

JSON: Final = "application/json"


def error_body(code: str, message: str) -> ErrorBody:
    return {"error": {"code": code, "message": message}}


class HttpError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
