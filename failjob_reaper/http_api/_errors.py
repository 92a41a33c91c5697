"""A refusal of the manual API, answered as ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from collections.abc import Mapping


class HttpError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
