"""The manual HTTP API, framework-neutral: ``serve(app, HttpRequest) -> HttpResponse``.

Both adapters call it directly: the functions-framework ``on_http`` target
(``handlers/http.py``, Flask) and FunctionGraph's APIG trigger
(``handlers/functiongraph.py``). Here: routing, bearer auth, body limits, media
types, strict JSON, the request models, errors, and the OpenAPI document built
from the same types. Nothing here imports a web framework.

* ``_core``        routes, checks in order, answers (``serve``)
* ``_types``       ``HttpRequest``/``HttpResponse`` and the typed answer bodies
* ``_body``        reading within the limit, media types, strict JSON
* ``_models``      the request models (pydantic; imported on the first body)
* ``_idempotency`` ``Idempotency-Key`` and trace headers -> causation
* ``_openapi``     the document (built on the first ``GET /openapi.json``)
"""

from failjob_reaper.http_api._core import ROUTES, error_response, serve, token_matches
from failjob_reaper.http_api._types import (
    CLOUDEVENTS_JSON,
    JSON,
    BodyReader,
    ErrorBody,
    HttpRequest,
    HttpResponse,
    error_body,
    header_map,
    json_bytes,
)

__all__ = [
    "CLOUDEVENTS_JSON",
    "JSON",
    "ROUTES",
    "BodyReader",
    "ErrorBody",
    "HttpRequest",
    "HttpResponse",
    "error_body",
    "error_response",
    "header_map",
    "json_bytes",
    "serve",
    "token_matches",
]
