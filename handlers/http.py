"""The functions-framework ``http`` target: a Flask request onto the HTTP core.

Everything the manual API does is in ``failjob_reaper.http_api`` (routes, auth,
limits, errors; docs/http-api.md). Here only what Flask/WSGI needs: the headers as
text, the body as a stream read within the limit, and the answer as a
``flask.Response``.
"""

from __future__ import annotations

from collections.abc import Iterator

import flask

from failjob_reaper.components import Components
from failjob_reaper.http_api import HttpRequest, HttpResponse, header_map, serve


def on_http(app: Components, request: flask.Request) -> flask.Response:
    """Serve one call of the manual HTTP API; never raises, never shows a traceback."""
    body = _StreamBody(request)
    answer = serve(app, HttpRequest(
        method=request.method,
        path=request.path,
        headers=header_map((name, _text(value)) for name, value in request.headers.items()),
        body=body,
        query=request.query_string.decode("latin-1"),
    ))
    return _flask_response(answer, streamed=not body.complete)


class _StreamBody:
    """The WSGI input, read at most once and never past the limit (``BodyReader``)."""

    def __init__(self, request: flask.Request) -> None:
        self.request = request
        self.complete = False

    def __call__(self, limit: int) -> bytes | None:
        declared = self.request.content_length
        if declared is not None and declared > limit:
            return None
        stream = self.request.stream
        chunks: list[bytes] = []
        received = 0
        while received <= limit:
            chunk = stream.read(limit + 1 - received)
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
        if received > limit:
            return None
        self.complete = True
        return b"".join(chunks)


def _flask_response(answer: HttpResponse, *, streamed: bool) -> flask.Response:
    """``streamed``: the body was not read (whole). After each response functions-framework
    calls ``request.get_data()`` unless the response is a stream: for a refused chunked
    upload that would buffer all the client sends. As a stream, the WSGI server discards
    the rest itself."""
    payload: bytes | Iterator[bytes] = _once(answer.body) if streamed else answer.body
    return flask.Response(payload, status=answer.status, headers=dict(answer.headers))


def _once(data: bytes) -> Iterator[bytes]:
    yield data


def _text(value: str) -> str:
    # WSGI hands header values over as latin-1 decoded bytes: undo that, so the core
    # sees the text the client sent (a non-ASCII token compares as its UTF-8 bytes).
    try:
        return value.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value
