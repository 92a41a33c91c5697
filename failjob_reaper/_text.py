"""Short, safe renderings of untrusted values for messages and logs."""

from __future__ import annotations


def printable(value: object, limit: int = 80) -> str:
    """``repr`` (control characters escaped, quotes shown), cut to ``limit`` characters."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_kind(value: object) -> str:
    """'an object', 'an array', 'a string', ... for messages about JSON of the wrong kind."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
