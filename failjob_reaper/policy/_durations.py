"""Durations in policy files: parsing and formatting.

Accepted spellings:

* ISO 8601 durations with fixed-length units: ``P7D``, ``PT12H``,
  ``P1DT2H30M``, ``P2W``, ``PT0.5S``. Years and months are rejected because
  they have no fixed length (is ``P1M`` 28 or 31 days?).
* Short forms, an integer and one unit: ``30s``, ``15m``, ``12h``, ``7d``, ``2w``.
* ``forever`` (only where a retention is expected): never expires.

Plain numbers are rejected: ``7`` could mean seconds or days, and guessing
wrong deletes data.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache

HINT = "use P7D, 7d, 12h, 30m, 30s or forever"
_HINT_NO_FOREVER = "use P7D, 7d, 12h, 30m or 30s"

_SHORT = re.compile(r"(\d+)([smhdw])", re.ASCII)
_SHORT_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Years and months are matched only so that they can be refused with a clear message.
_ISO = re.compile(
    r"P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?",
    re.ASCII,
)
_MAX_LEN = 64  # longer than any sane duration; also keeps int() away from huge digit strings
_SHOWN_MAX = 40  # never echo a long input back into an error message


def _shown(value: str) -> str:
    text = value if len(value) <= _SHOWN_MAX else value[:_SHOWN_MAX] + "..."
    return repr(text)


def parse_duration(value: object, *, allow_forever: bool = True) -> timedelta | None:
    """Parse a policy duration; ``None`` means forever.

    Raises ``ValueError`` with a one-line message that never dumps the input.
    """
    hint = HINT if allow_forever else _HINT_NO_FOREVER
    if isinstance(value, timedelta):  # built in Python rather than read from a file
        if value < timedelta(0):
            raise ValueError(f"negative duration {format_duration(value)} is not allowed")
        return value
    if value is None and allow_forever:
        # Python callers may pass None for "forever"; files must say "forever".
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        shown = f" {value!r}" if abs(value) < 10**12 else ""  # huge ints cannot even be repr'd
        raise ValueError(f"invalid duration{shown}: a plain number has no unit ({hint})")
    if not isinstance(value, str):
        raise ValueError(f"invalid duration: expected a string, got {_type_name(value)} ({hint})")

    text = value.strip()
    if text.lower() == "forever":
        if allow_forever:
            return None
        raise ValueError(f"invalid duration 'forever': must be finite here ({hint})")
    if text.startswith("-"):
        raise ValueError(f"invalid duration {_shown(value)}: negative durations are not allowed")
    if len(text) > _MAX_LEN:
        raise ValueError(f"invalid duration {_shown(value)}: too long ({hint})")
    if re.fullmatch(r"\d+(?:\.\d+)?", text, re.ASCII):
        raise ValueError(f"invalid duration {_shown(value)}: a plain number has no unit ({hint})")

    try:
        short = _SHORT.fullmatch(text)
        if short:
            return timedelta(**{_SHORT_UNITS[short[2]]: int(short[1])})
        iso = _ISO.fullmatch(text.upper())
        if iso and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
            if iso["y"] is not None or iso["mo"] is not None:
                raise ValueError(
                    f"invalid duration {_shown(value)}: years and months have no fixed "
                    "length; use days or weeks (e.g. P30D, P52W)"
                )
            # Seconds split by hand: a float would blur microseconds.
            whole, _, frac = (iso["s"] or "0").replace(",", ".").partition(".")
            return timedelta(
                weeks=int(iso["w"] or 0),
                days=int(iso["d"] or 0),
                hours=int(iso["h"] or 0),
                minutes=int(iso["mi"] or 0),
                seconds=int(whole),
                microseconds=int((frac + "000000")[:6]),
            )
    except OverflowError:
        raise ValueError(f"invalid duration {_shown(value)}: too large") from None
    raise ValueError(f"invalid duration {_shown(value)} ({hint})")


def _type_name(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    return type(value).__name__


_UNITS = (("d", 86400), ("h", 3600), ("m", 60))
_LONG_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60))


@lru_cache(maxsize=1024)
def format_duration(td: timedelta | None, *, parts: int | None = None) -> str:
    """Short form: ``7d``, ``1d 2h``, ``1.5s``, ``forever``.

    ``parts`` keeps only the most significant units (for ages in log lines,
    where ``9d 2h`` reads better than ``9d 2h 13m 5.591s``); the rest is
    truncated, never rounded up. Memoized: a policy's few durations are
    formatted again and again (retentions, tolerances in every reason).
    """
    if td is None:
        return "forever"
    micros = (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds
    if micros < 0:
        return "-" + format_micros(-micros, parts=parts)
    return format_micros(micros, parts=parts)


def format_micros(micros: int, *, parts: int | None = None) -> str:
    """``format_duration`` of a non-negative number of microseconds."""
    whole, frac = divmod(micros, 1_000_000)
    out: list[str] = []
    for unit, size in _UNITS:
        count, whole = divmod(whole, size)
        if count:
            out.append(f"{count}{unit}")
    if out and parts is not None:
        # An age in days does not need microseconds: whole seconds, if any.
        if whole:
            out.append(f"{whole}s")
    elif whole or frac:
        out.append(f"{whole}.{frac:06d}".rstrip("0").rstrip(".") + "s")
    if parts is not None:
        out = out[:parts]
    return " ".join(out) or "0s"


def format_age(micros: int) -> str:
    """``format_micros(micros, parts=2)``, fast for the common age of a backlog's
    record: whole days and hours (``30d 2h``), one division and one f-string."""
    hours = micros // 3_600_000_000
    if hours >= 24 and hours % 24:
        return f"{hours // 24}d {hours % 24}h"
    return format_micros(micros, parts=2)


def iso_duration(td: timedelta | None) -> str:
    """ISO 8601 form that ``parse_duration`` reads back: ``P7D``, ``P1DT2H``,
    ``PT0.5S``; ``forever`` for None."""
    if td is None:
        return "forever"
    micros = td // timedelta(microseconds=1)
    whole, frac = divmod(micros, 1_000_000)
    days, whole = divmod(whole, 86400)
    hours, whole = divmod(whole, 3600)
    minutes, seconds = divmod(whole, 60)
    clock = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M")) if n)
    if seconds or frac:
        clock += f"{seconds}.{frac:06d}".rstrip("0").rstrip(".") + "S"
    if not days and not clock:
        return "PT0S"
    return "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")


def describe_duration(td: timedelta) -> str:
    """Long form for sentences: ``7 days``, ``1 day 2 hours``, ``30 seconds``."""
    micros = td // timedelta(microseconds=1)
    whole, frac = divmod(micros, 1_000_000)
    out: list[str] = []
    for unit, size in _LONG_UNITS:
        count, whole = divmod(whole, size)
        if count:
            out.append(f"{count} {unit}" + ("" if count == 1 else "s"))
    if whole or frac:
        secs = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
        out.append(f"{secs} second" + ("" if secs == "1" else "s"))
    return " ".join(out) or "0 seconds"
