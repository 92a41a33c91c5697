"""The manual HTTP API, framework-neutral: ``serve(app, HttpRequest) -> HttpResponse``.

Both adapters call it directly: the functions-framework ``on_http`` target
(``handlers/http.py``, Flask) and FunctionGraph's APIG trigger
(``handlers/functiongraph.py``). Here: routing, bearer auth, body limits, media
types, strict JSON, the request models, errors, and the OpenAPI document built
from the same types. Nothing here imports a web framework, and each name is imported
from its module when first asked for.

* ``_core``        routes, checks in order, answers (``serve``)
* ``_types``       ``HttpRequest``/``HttpResponse`` and the typed answer bodies
* ``_body``        reading within the limit, media types, strict JSON
* ``_errors``      ``HttpError``; ``error_body`` and ``JSON`` (the CloudEvent target's too)
* ``_models``      the request models (pydantic; imported on the first body)
* ``_idempotency`` ``Idempotency-Key`` and trace headers -> causation
* ``_openapi``     the document (built on the first ``GET /openapi.json``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from failjob_reaper._lazy import lazy_exports

if TYPE_CHECKING:
    from failjob_reaper.http_api._core import ROUTES, error_response, serve, token_matches
    from failjob_reaper.http_api._errors import JSON, error_body
    from failjob_reaper.http_api._types import (
        CLOUDEVENTS_JSON,
        BodyReader,
        ErrorBody,
        HttpRequest,
        HttpResponse,
        header_map,
        json_bytes,
    )

__getattr__ = lazy_exports(__name__, {
    "_core": "ROUTES error_response serve token_matches",
    "_errors": "JSON error_body",
    "_types": "CLOUDEVENTS_JSON BodyReader ErrorBody HttpRequest HttpResponse header_map "
              "json_bytes",
})

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
