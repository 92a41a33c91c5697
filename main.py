"""Entry points of failjob-reaper; wiring only (SPEC section 2).

The process builds its settings, policy, client and publisher once, here, and
every invocation reuses them.
"""

from __future__ import annotations

import flask
import flask.typing
import functions_framework
from cloudevents.http import CloudEvent

from failjob_reaper.app import load_app_or_exit
from handlers import cloudevent as _cloudevent
from handlers import http as _http

app = load_app_or_exit()


@functions_framework.cloud_event
def on_event(event: CloudEvent) -> None:
    _cloudevent.on_event(app, event)


@functions_framework.http
def on_http(request: flask.Request) -> flask.typing.ResponseReturnValue:
    return _http.on_http(app, request)
