"""The flat error hierarchy of failjob-reaper.

Lower-level errors (httpx, pydantic, yaml) are mapped onto these at the module
boundary that meets them, so callers handle one family.
"""

from __future__ import annotations


class ReaperError(Exception):
    """Base of every error failjob-reaper raises on purpose."""


class ConfigError(ReaperError):
    """A setting is missing or invalid; the message names the variable."""


class InvalidInput(ReaperError):
    """Input that must be rejected before it can reach the API."""


class OutcomeDeliveryError(ReaperError):
    """The outcome could not be delivered to the sink; the trigger should redeliver.

    ``outcome`` names what was decided (and done) all the same, when known.
    """

    outcome: str | None = None
    failure_job_id: str | None = None
