"""Schemathesis against the served OpenAPI document: the manual HTTP API does what
its document says, never answers 5xx, and never deletes on a request it refuses.

The document is loaded from the function itself (GET /openapi.json through
functions-framework's WSGI app); requests go to the same app in process, the
task-center stand-in and the sink listen on loopback. Generation is bounded and
derandomized, so a run is reproducible and takes seconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode

from standin import OutcomeSink, TaskCenterStandIn
from tests.conftest import EXPIRED, FRESH, FunctionFactory, failed_task

API_TOKEN = "schemathesis-token-Q7vz"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
MAX_EXAMPLES = 50


@pytest.fixture
def served(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> Any:
    """The function over a stand-in with expired and fresh tasks, so valid calls do work."""
    group = "a1b2c3d4-0000-4000-8000-00000000000a"
    standin.add_group(group, "group-a")
    for age in (EXPIRED, EXPIRED, FRESH):
        standin.add_job(failed_task(age))
    standin.add_job(failed_task(EXPIRED), group)
    standin.add_job(failed_task(EXPIRED, resource_id="0123456789abcdef"))
    function = make_function(target="on_http", signature="http", RETRY_API_TOKEN=API_TOKEN,
                             SWEEP_EMIT_RETAINED="false")
    return function.app


def _exercise(
    operation: Any, mode: GenerationMode, standin: TaskCenterStandIn,
    statuses: Counter[tuple[str, int]],
) -> None:
    label = operation.label

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        deletes_before = len(standin.deletes())
        response = case.call(headers=dict(AUTH))
        statuses[(label, response.status_code)] += 1
        assert response.status_code < 500, response.text
        if 400 <= response.status_code < 500:
            assert len(standin.deletes()) == deletes_before, (
                f"{label} answered {response.status_code} but sent a DELETE")
        case.validate_response(response, headers=dict(AUTH))

    check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_conforms_to_its_document_and_never_deletes_on_4xx(
    standin: TaskCenterStandIn, served: Any, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", served)
    statuses: Counter[tuple[str, int]] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and not operation.body:
            continue  # nothing to get wrong in a GET without parameters
        _exercise(operation, mode, standin, statuses)

    print(mode, sorted(statuses.items()))
    labels = {label for label, _ in statuses}
    assert labels >= {"POST /retry", "POST /sweep", "GET /healthz"}
