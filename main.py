"""Entry points of failjob-reaper; wiring only (docs/contract.md).

The process builds its settings, policy, client and publisher once, here, and
every invocation reuses them. Only the adapter of the started target is
imported (cold start): functions-framework names its Flask app after the
target it loads this module for, so ``on_event`` never imports the HTTP API
or the FunctionGraph adapter (werkzeug's test client), and FunctionGraph
never imports the CloudEvent one. The three entry points stay plain
attributes of this module, where the framework and the runtime look them up.
"""

from __future__ import annotations

import gc
import os
from typing import TYPE_CHECKING, Any

import functions_framework

if TYPE_CHECKING:
    import flask
    import flask.typing
    from cloudevents.http import CloudEvent

    from failjob_reaper.components import Components
    from handlers.functiongraph import Entry

RUNTIME_MARKERS = ("RUNTIME_FUNC_NAME", "RUNTIME_PROJECT_ID")
"""FunctionGraph's own variables (handlers.functiongraph.on_functiongraph, which is the
rule; this copy spares the other targets importing that adapter to ask)."""


def _on_functiongraph() -> bool:
    return any(os.environ.get(name) for name in RUNTIME_MARKERS) \
        and not os.environ.get("FUNCTION_TARGET")


def _started_target() -> str | None:
    import flask

    return str(flask.current_app.name) if flask.has_app_context() else None


# Cold start: what is imported and built below (pydantic's schemas, the clients) lives as
# long as the process, and a garbage collection meanwhile only walks it - tens of ms of a
# start (bench/coldstart.py). So none runs until the app is built; then, the first time
# in the process, what was built is moved out of the collector's reach (gc.freeze): the
# next collections do not walk it again, and forked workers keep sharing its pages.
_collecting = gc.isenabled()
gc.disable()
try:
    # Outside FunctionGraph a settings error stops the import here (one line, exit 2).
    # FunctionGraph imports this module once per instance and must not die: there the
    # error is kept and every invocation of `handler` raises it (docs/configuration.md).
    _entry: Entry | None = None
    if _on_functiongraph():
        from handlers.functiongraph import Entry as _Entry

        _entry = _Entry.load()
        if _entry.app is not None:
            app: Components = _entry.app
    else:
        from failjob_reaper.components import load_components_or_exit

        app = load_components_or_exit()
        _target = _started_target()
        if _target == "on_event":
            from handlers import cloudevent as _cloudevent

            _cloudevent.install_request_guard(app)  # 400s, and EventGrid's {"events": [...]}
        elif _target == "on_http":
            from handlers import http as _http  # noqa: F401 - imported now, not at the 1st call
finally:
    if _collecting:
        if gc.get_freeze_count() == 0:  # once: a process that loads main.py again (tests)
            gc.freeze()                 # collects what it built as usual
        gc.enable()


@functions_framework.cloud_event
def on_event(event: CloudEvent) -> None:
    from handlers import cloudevent

    cloudevent.on_event(app, event)


@functions_framework.http
def on_http(request: flask.Request) -> flask.typing.ResponseReturnValue:
    from handlers import http

    return http.on_http(app, request)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Huawei FunctionGraph event function (timer, EventGrid, APIG): ``main.handler``."""
    global _entry
    if _entry is None:  # loaded by something else than FunctionGraph: serve the same app
        from handlers.functiongraph import Entry

        _entry = Entry(app)
    return _entry.handle(event, context)
