"""Log lines: JSON for the platforms' log pipelines, text for a person at a terminal.

FunctionGraph (LTS) and Knative log collectors index JSON lines: one object per line
with ``level``, ``logger``, ``message`` and a UTC ``timestamp``; a line about an outcome
also carries ``outcome``, ``failure_job_id``, ``causation_id`` and ``trace_id`` as fields.
``LOG_FORMAT`` chooses; unset, the function logs JSON where a platform runs it and text
otherwise (the command line always defaults to text).

Known secrets (tokens, keys, passwords inside URLs) are masked in every line, whatever
its format, as sent, in any case, base64- or URL-encoded: a server that echoes a
credential into an error message does not put it in the log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import urlsplit

from failjob_reaper._secrets import MASK as MASK  # re-exported: what a masked secret reads
from failjob_reaper._secrets import masker

if TYPE_CHECKING:
    from failjob_reaper.outcomes import Outcome, SweepSummary
    from failjob_reaper.outcomes._model import Causation
    from failjob_reaper.settings import Settings

LogFormat = Literal["json", "text"]

LOGGER_NAME = "failjob_reaper"
TEXT_FORMAT = "failjob-reaper %(levelname)s %(message)s"
PLATFORM_MARKERS = ("K_SERVICE", "FUNCTION_TARGET", "RUNTIME_FUNC_NAME")
"""Set by Knative (and Cloud Run), by functions-framework images, by FunctionGraph."""



def resolve_format(
    setting: LogFormat | None, *, environ: Mapping[str, str] | None = None
) -> LogFormat:
    """``LOG_FORMAT`` when set; else JSON under a platform, text elsewhere."""
    if setting is not None:
        return setting
    env = os.environ if environ is None else environ
    return "json" if any(env.get(name) for name in PLATFORM_MARKERS) else "text"


def configure(level: str, log_format: LogFormat, secrets: Iterable[str] = ()) -> None:
    """Point the ``failjob_reaper`` logger at stderr in ``log_format``; idempotent."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        logger.addHandler(handler)
        logger.propagate = False
    inner = _json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(_Masking(inner, secrets))
    logger.setLevel(level)


def configure_from_settings(settings: Settings, *, default: LogFormat | None = None) -> None:
    """``configure`` with the settings' level, format and secrets.

    ``default``: the format when ``LOG_FORMAT`` is unset (the CLI says "text");
    None lets the platform decide (``resolve_format``).
    """
    log_format = settings.log_format or default or resolve_format(None)
    configure(settings.log_level, log_format, secrets_of(settings))


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the settings hold, for masking."""
    values = [secret.get_secret_value() for secret in (
        settings.auth_token, settings.secret_key, settings.security_token,
        settings.retry_api_token,
    ) if secret is not None]
    for url in (settings.state_url.get_secret_value(), settings.sink):
        password = urlsplit(url).password if url else None
        if password:
            values.append(password)
    return values


def outcome_fields(outcome: Outcome) -> dict[str, Any]:
    """The fields of an outcome's log line (``extra=``): what a log query filters on, as
    the outcome's data has them (the model names them: ``Outcome.LOGGED``)."""
    return {**outcome.log_fields(), **causation_fields(outcome.causation)}


def summary_fields(summary: SweepSummary) -> dict[str, Any]:
    """The fields of a sweep's closing log line (``SweepSummary.LOGGED``)."""
    return {**summary.log_fields(), **causation_fields(summary.causation)}


def causation_fields(causation: Causation) -> dict[str, Any]:
    return {
        "causation_id": causation.id,
        "causation_source": causation.source,
        "trace_id": trace_id(causation.traceparent),
    }


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``)."""
    if not traceparent:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1].lower()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stderr`` of the moment, not the one at configuration time
    (test runners and tqdm swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class _Masking(logging.Formatter):
    """Formats with ``inner``, then masks every known secret in the line, in each of the
    encodings a server may echo it in (``failjob_reaper._secrets``)."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        self.mask = masker(tuple(secrets))

    def format(self, record: logging.LogRecord) -> str:
        return self.mask(self.inner.format(record))


def _json_formatter() -> logging.Formatter:
    # Imported only when JSON is chosen: the CLI and text logs never pay for it.
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )
