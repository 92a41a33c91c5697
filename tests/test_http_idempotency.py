"""Idempotency-Key on the manual HTTP API, through on_http against the session's real
Redis: a call with the key keeps its record (replay, 409 while in progress, 422 for
other content); a call without it keeps none, since no repeat could ever name it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from werkzeug.test import TestResponse

from standin import Fault, OutcomeSink, TaskCenterStandIn
from standin.redis_server import RedisServer
from tests.conftest import EXPIRED, PROJECT, Function, FunctionFactory, failed_task
from tests.test_http_api import API_TOKEN, call, error_of

NAMESPACE = f"fjr:{PROJECT}:"


def idempotency_records(redis_server: RedisServer) -> dict[str, int]:
    """Every idempotency record in Redis (``state/idempotency.py``: ``idem:<hash>``), with
    its TTL in seconds."""
    with redis_server.client() as client:
        return {key: int(client.ttl(key))
                for key in client.scan_iter(match=f"{NAMESPACE}idem:*")}


def state_keys(redis_server: RedisServer) -> list[str]:
    with redis_server.client() as client:
        return sorted(client.scan_iter(match=f"{NAMESPACE}*"))


@pytest.fixture
def on_redis(make_function: FunctionFactory, redis_url: str) -> Function:
    """The on_http target with its state in the session's Redis (emptied for the test);
    an SDRS answer may take 10 s before it counts as lost."""
    return make_function(target="on_http", signature="http", RETRY_API_TOKEN=API_TOKEN,
                         STATE_URL=redis_url, SDRS_REQUEST_TIMEOUT="10")


def test_retry_and_sweep_without_idempotency_key_keep_no_idempotency_record(
    standin: TaskCenterStandIn, sink: OutcomeSink, on_redis: Function,
    redis_server: RedisServer,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)

    retried = call(on_redis, "POST", "/retry", {"failure_job_id": record["resource_id"]})
    swept = call(on_redis, "POST", "/sweep", {"dry_run": True})
    invalid = call(on_redis, "POST", "/retry", {"failure_job_id": "gone-1"},
                   headers={"Idempotency-Key": "k\u00e9y"})  # no key: refused, no record

    assert retried.status_code == 200 and retried.get_json()["outcome"] == "deleted"
    assert swept.status_code == 200 and swept.get_json()["outcome"] == "sweep_completed"
    assert invalid.status_code == 400
    assert error_of(invalid)["code"] == "invalid_idempotency_key"
    assert standin.deletes() == [record["resource_id"]]
    assert idempotency_records(redis_server) == {}
    # The calls did use this Redis: the DELETE's journal entry is there.
    assert f"{NAMESPACE}journal:{record['resource_id']}" in state_keys(redis_server)


def test_retry_and_sweep_with_idempotency_key_keep_their_record_for_24_hours(
    standin: TaskCenterStandIn, sink: OutcomeSink, on_redis: Function,
    redis_server: RedisServer,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)

    retried = call(on_redis, "POST", "/retry", {"failure_job_id": record["resource_id"]},
                   headers={"Idempotency-Key": "INC-4711"})
    swept = call(on_redis, "POST", "/sweep", {"dry_run": True},
                 headers={"Idempotency-Key": "INC-4711 sweep"})

    assert (retried.status_code, swept.status_code) == (200, 200)
    ttls = idempotency_records(redis_server)
    assert len(ttls) == 2  # one per key
    assert all(23 * 3600 < ttl <= 24 * 3600 for ttl in ttls.values()), ttls


def test_a_repeat_with_the_key_replays_and_other_content_is_422(
    standin: TaskCenterStandIn, sink: OutcomeSink, on_redis: Function,
) -> None:
    first, other = failed_task(EXPIRED), failed_task(EXPIRED)
    standin.add_job(first)
    standin.add_job(other)
    key = {"Idempotency-Key": "INC-4712"}

    answer = call(on_redis, "POST", "/retry", {"failure_job_id": first["resource_id"]},
                  headers=key)
    repeat = call(on_redis, "POST", "/retry", {"failure_job_id": first["resource_id"]},
                  headers=key)
    reused = call(on_redis, "POST", "/retry", {"failure_job_id": other["resource_id"]},
                  headers=key)

    assert (answer.status_code, answer.get_json()["outcome"]) == (200, "deleted")
    assert (repeat.status_code, repeat.get_json()) == (200, answer.get_json())
    assert reused.status_code == 422
    assert error_of(reused)["code"] == "idempotency_key_reused"
    assert standin.deletes() == [first["resource_id"]]  # decided once; the other not at all
    assert standin.listed(other["resource_id"])


@pytest.mark.slow
def test_a_repeat_with_the_key_while_the_first_is_handled_is_409(
    standin: TaskCenterStandIn, sink: OutcomeSink, on_redis: Function,
    redis_server: RedisServer,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    body, key = {"failure_job_id": record["resource_id"]}, {"Idempotency-Key": "INC-4713"}
    # The first call's DELETE is answered after the 5 s a repeat waits for it, and more.
    standin.inject("DELETE", "/failure-jobs/", Fault(passthrough=True, late=6.5))
    answers: list[TestResponse] = []
    first = threading.Thread(target=lambda: answers.append(
        call(on_redis, "POST", "/retry", body, headers=key)))
    first.start()
    try:
        _until(lambda: any(r.method == "DELETE" for r in standin.requests))
        repeat = call(on_redis, "POST", "/retry", body, headers=key)
    finally:
        first.join(timeout=30)

    assert repeat.status_code == 409
    assert error_of(repeat)["code"] == "idempotency_key_in_progress"
    assert repeat.headers["Retry-After"] == "5"
    [answer] = answers
    assert (answer.status_code, answer.get_json()["outcome"]) == (200, "deleted")
    assert standin.deletes() == [record["resource_id"]]
    assert len(idempotency_records(redis_server)) == 1


def _until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll a condition that another thread makes true, within a bound."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.01)



@pytest.mark.parametrize("first_route", ["/sweep", "/retry"])
def test_one_key_names_one_request_across_routes(
    standin: TaskCenterStandIn, sink: OutcomeSink, on_redis: Function,
    redis_server: RedisServer, first_route: str,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    key = {"Idempotency-Key": "sw-1"}
    retry_body, sweep_body = {"failure_job_id": record["resource_id"]}, {"dry_run": True}
    first_body = sweep_body if first_route == "/sweep" else retry_body
    second_route = "/retry" if first_route == "/sweep" else "/sweep"
    second_body = retry_body if first_route == "/sweep" else sweep_body

    first = call(on_redis, "POST", first_route, first_body, headers=key)
    assert first.status_code == 200
    deletes, requests, events = standin.deletes(), len(standin.requests), len(sink.events)
    reused = call(on_redis, "POST", second_route, second_body, headers=key)
    repeat = call(on_redis, "POST", first_route, first_body, headers=key)

    assert reused.status_code == 422
    assert error_of(reused)["code"] == "idempotency_key_reused"
    # The second route decided nothing: no request to SDRS, no outcome, no DELETE.
    assert (standin.deletes(), len(standin.requests)) == (deletes, requests)
    assert len(sink.events) == events
    assert (repeat.status_code, repeat.get_json()) == (200, first.get_json())
    assert len(idempotency_records(redis_server)) == 1
    if first_route == "/sweep":
        assert standin.listed(record["resource_id"])  # the dry run deleted nothing
