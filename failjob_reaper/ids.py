"""Validation of the ids that end up in an SDRS URL path."""

from __future__ import annotations

import re

from failjob_reaper.errors import InvalidInput

# Letters, digits, '-' and '_' only: nothing that could change the path
# ('/', '..', '%', spaces, control characters) can pass.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Path segments that name endpoints of the API rather than a resource: as an id,
# ``DELETE .../failure-jobs/batch`` would be the batch-delete endpoint. ``action`` and
# ``detail`` are the other fixed segments of Huawei APIs (``.../{id}/action``,
# ``.../detail``). Compared without case: a gateway may route either spelling.
ENDPOINT_NAMES = frozenset({"batch", "action", "detail"})


def validate_id(value: object, what: str = "failure_job_id") -> str:
    """Return ``value`` if it is a plain id token, else raise InvalidInput."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}")
    if not _TOKEN.fullmatch(value):
        raise InvalidInput(
            f"{what} must be 1-64 characters of letters, digits, '-' or '_'"
        )
    if value.lower() in ENDPOINT_NAMES:
        raise InvalidInput(f"{what} {value!r} names an endpoint of the API, not a task")
    return value


def is_valid_id(value: object) -> bool:
    return (isinstance(value, str) and _TOKEN.fullmatch(value) is not None
            and value.lower() not in ENDPOINT_NAMES)
