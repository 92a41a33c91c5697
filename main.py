"""Entry points of failjob-reaper; wiring only (SPEC section 2).

The process builds its settings, policy, client and publisher once, here, and
every invocation reuses them.
"""

from __future__ import annotations

from typing import Any

import flask
import flask.typing
import functions_framework
from cloudevents.http import CloudEvent

from handlers import cloudevent as _cloudevent
from handlers import functiongraph as _functiongraph
from handlers import http as _http

# Outside FunctionGraph a settings error stops the import here (one line, exit 2).
# FunctionGraph imports this module once per instance and must not die: there the
# error is kept and every invocation of `handler` raises it (SPEC section 3).
_entry = _functiongraph.Entry.load()
if _entry.app is not None:
    app = _entry.app
_cloudevent.install_request_guard(_entry.app)  # 400s, and EventGrid's {"events": [...]}


@functions_framework.cloud_event
def on_event(event: CloudEvent) -> None:
    _cloudevent.on_event(app, event)


@functions_framework.http
def on_http(request: flask.Request) -> flask.typing.ResponseReturnValue:
    return _http.on_http(app, request)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Huawei FunctionGraph event function (timer, EventGrid, APIG): ``main.handler``."""
    return _entry.handle(event, context)
