"""The infra manifests against the running code: what they send, on_event accepts."""

from __future__ import annotations

import json
from typing import Any

import yaml

from standin import OutcomeSink, TaskCenterStandIn
from tests.conftest import EXPIRED, ROOT, FunctionFactory, data_of, failed_task

KNATIVE = ROOT / "infra" / "knative"


def _documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KNATIVE / name).read_text()) if d]


def test_pingsource_payload_starts_a_sweep(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    [ping] = _documents("pingsource.yaml")
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = make_function()
    response = function.send(
        "dev.knative.sources.ping", json.loads(ping["spec"]["data"]),
        source="/apis/v1/namespaces/failjob-reaper/pingsources/failjob-reaper-sweep",
    )

    assert response.status_code == 200
    assert standin.deletes() == [record["resource_id"]]
    summary = data_of(sink.of_type("sdrs.failurejob.sweep_completed")[0])
    assert (summary["trigger"], summary["deleted"]) == ("timer", 1)


def test_every_trigger_filter_type_is_decided_not_rejected(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    types = [t["spec"]["filter"]["attributes"]["type"] for t in _documents("trigger.yaml")]
    assert types
    function = make_function()
    for event_type in types:
        record = failed_task(EXPIRED)
        standin.add_job(record)
        response = function.send(event_type, {"failure_job_id": record["resource_id"]})
        assert response.status_code == 200
    outcomes = [e["type"] for e in sink.wait_for(len(types))]
    assert outcomes == ["sdrs.failurejob.deleted"] * len(types)
