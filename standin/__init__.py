"""Local stand-ins for the tests, `make run` and benchmarks, all on loopback with seeded
data and fault injection: the SDRS task-center API, an outcome CloudEvents sink, EventGrid
PutEvents and SMN publish."""

from ._http import Fault, RecordedRequest
from ._throttle import Throttle
from .eventgrid import EventGridStandIn
from .sample_data import (
    DEFAULT_PROJECT_ID,
    BulkRow,
    Group,
    World,
    bulk_rows,
    bulk_world,
    cts_trace,
    eventgrid_cloudtrace,
    format_begin_time,
    parse_begin_time,
    sample_world,
)
from .server import HTML_200, CountMode, TaskCenterStandIn
from .sink import OutcomeSink
from .smn import SmnMessage, SmnStandIn

__all__ = [
    "DEFAULT_PROJECT_ID",
    "HTML_200",
    "BulkRow",
    "CountMode",
    "EventGridStandIn",
    "Fault",
    "Group",
    "OutcomeSink",
    "RecordedRequest",
    "SmnMessage",
    "SmnStandIn",
    "TaskCenterStandIn",
    "Throttle",
    "World",
    "bulk_rows",
    "bulk_world",
    "cts_trace",
    "eventgrid_cloudtrace",
    "format_begin_time",
    "parse_begin_time",
    "sample_world",
]
