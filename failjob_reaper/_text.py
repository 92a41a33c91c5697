"""Short, safe renderings of untrusted values for messages and logs."""

from __future__ import annotations

from datetime import UTC, datetime


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


# -- output a reader can trust (docs/cli.md, "Output") ----------------------------------------

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Characters a terminal acts on or a reader cannot see: C0 controls, DEL, C1 controls,
# the Unicode line and paragraph separators and the bidirectional overrides (which can
# make a line read differently from what it holds).
_UNSAFE = frozenset(
    [*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)),
     "\u2028", "\u2029", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]
)


def escape_control(text: str) -> str:
    """``text`` with every control character shown escaped (``\\n``, ``\\x1b``, ``\\u202e``):
    a record field printed in a table or by ``explain`` stays on its own line and cannot
    drive the terminal. The one function every text renderer uses."""
    if not any(char in _UNSAFE for char in text):
        return text
    return "".join(_escaped(char) if char in _UNSAFE else char for char in text)


def _escaped(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads as the start of a formula (the OWASP "CSV injection" list)."""


def csv_cell(value: str) -> str:
    """A CSV cell a spreadsheet shows as text: one that would start a formula gets a
    leading ``'`` (OWASP). The one function every CSV writer uses."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def iso_utc(value: datetime | None) -> str | None:
    """A moment as ``2026-12-05T10:20:30Z`` (UTC, whole seconds): the one format of
    ``retain_until`` (and every other instant) the product shows. A naive value is UTC."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z"
