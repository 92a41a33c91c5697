"""Local stand-ins for the tests, `make run` and benchmarks: the SDRS task-center API and an
outcome CloudEvents sink, both on loopback, with seeded data and fault injection."""

from ._http import Fault, RecordedRequest
from ._throttle import Throttle
from .sample_data import (
    DEFAULT_PROJECT_ID,
    Group,
    World,
    bulk_world,
    format_begin_time,
    parse_begin_time,
    sample_world,
)
from .server import CountMode, TaskCenterStandIn
from .sink import OutcomeSink

__all__ = [
    "DEFAULT_PROJECT_ID",
    "CountMode",
    "Fault",
    "Group",
    "OutcomeSink",
    "RecordedRequest",
    "TaskCenterStandIn",
    "Throttle",
    "World",
    "bulk_world",
    "format_begin_time",
    "parse_begin_time",
    "sample_world",
]
