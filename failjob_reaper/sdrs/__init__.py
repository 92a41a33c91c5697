"""The SDRS task-center API: one client, its auth and its errors."""

from failjob_reaper.delivery import RetryPolicy
from failjob_reaper.sdrs._client import (
    DeleteResult,
    IncompleteListing,
    TaskCenterClient,
    transport_for,
)
from failjob_reaper.sdrs._context_auth import MissingCredentials, RotatingAkSkAuth
from failjob_reaper.sdrs._errors import RETRYABLE_STATUSES, SdrsError
from failjob_reaper.sdrs._pacing import AdaptiveLimiter, RateLimiter, limiter_for
from failjob_reaper.sdrs._signing import AkSkAuth, TokenAuth

__all__ = [
    "RETRYABLE_STATUSES",
    "AdaptiveLimiter",
    "AkSkAuth",
    "DeleteResult",
    "IncompleteListing",
    "MissingCredentials",
    "RateLimiter",
    "RetryPolicy",
    "RotatingAkSkAuth",
    "SdrsError",
    "TaskCenterClient",
    "TokenAuth",
    "limiter_for",
    "transport_for",
]
