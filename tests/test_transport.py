"""The product's HTTP clients over httpx's own pooled transport, against loopback servers:
round trips, signatures, keep-alive, the connection bound, faults, proxies, TLS contexts."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from cloudevents.http import CloudEvent

from failjob_reaper import tls
from failjob_reaper.outcomes import SinkEmitter
from failjob_reaper.sdrs import (
    AkSkAuth,
    RetryPolicy,
    SdrsError,
    TaskCenterClient,
    transport_for,
)
from standin import Fault, OutcomeSink, TaskCenterStandIn

PROJECT = "0123456789abcdef0123456789abcdef"
AK, SK = "AKTESTTRANSPORT0001", "sk-for-the-transport-tests"
QUICK = RetryPolicy(max_attempts=3, backoff_initial=0.0, backoff_max=0.0)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
              "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def api() -> Iterator[TaskCenterStandIn]:
    with TaskCenterStandIn(project_id=PROJECT) as server:
        yield server


@pytest.fixture(autouse=True)
def no_proxy_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def job(number: int) -> dict[str, object]:
    return {
        "resource_id": f"{number:08d}-0000-4000-8000-000000000000",
        "job_id": f"job-{number}",
        "begin_time": "2020-01-01T00:00:00.000Z",
        "failure_status": "createFail",
    }


def test_list_and_delete_reach_the_api_with_path_query_and_headers(
    api: TaskCenterStandIn,
) -> None:
    api.add_job(job(1))
    client = TaskCenterClient(api.url, PROJECT)
    try:
        listed = client.list_failure_jobs(failure_status="createFail")
        deleted = client.delete_failure_job(str(job(1)["resource_id"]))
    finally:
        client.close()

    assert [r["job_id"] for r in listed] == ["job-1"]
    assert deleted.found and deleted.status_code == 204
    get, *_, delete = api.requests  # the listing pages until an empty page
    assert (get.method, get.path) == ("GET", f"/v1/{PROJECT}/task-center/failure-jobs")
    assert get.query == {"failure_status": "createFail", "limit": "1000", "offset": "0"}
    assert get.headers["user-agent"] == "failjob-reaper"
    assert get.headers["host"] == api.url.partition("://")[2]
    assert delete.path.endswith(f"/failure-jobs/{job(1)['resource_id']}")


def test_ak_sk_signatures_survive_the_wire() -> None:
    with TaskCenterStandIn(project_id=PROJECT, credentials={AK: SK}) as signed:
        signed.add_job(job(2))
        good = TaskCenterClient(signed.url, PROJECT, auth=AkSkAuth(AK, SK, project_id=PROJECT))
        bad = TaskCenterClient(signed.url, PROJECT, retry=QUICK,
                               auth=AkSkAuth(AK, "not-the-secret", project_id=PROJECT))
        try:
            assert len(good.list_failure_jobs()) == 1
            assert good.delete_failure_job(str(job(2)["resource_id"])).found
            with pytest.raises(SdrsError) as refused:
                bad.list_failure_jobs()
        finally:
            good.close()
            bad.close()
    assert refused.value.status_code == 401
    assert not refused.value.retryable


def test_sequential_requests_reuse_one_kept_alive_connection(api: TaskCenterStandIn) -> None:
    client = TaskCenterClient(api.url, PROJECT)
    try:
        for _ in range(5):
            client.list_failure_jobs()
    finally:
        client.close()
    assert len(api.requests) >= 5
    assert len({r.client_port for r in api.requests}) == 1


def test_max_connections_bounds_the_connections_of_concurrent_threads(
    api: TaskCenterStandIn,
) -> None:
    api.latency = 0.05  # requests overlap: 8 threads would open 8 connections unbounded
    client = TaskCenterClient(api.url, PROJECT, max_connections=2)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                client.list_failure_jobs()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    client.close()

    assert errors == []
    assert len(api.requests) >= 24
    assert len({r.client_port for r in api.requests}) <= 2


def test_the_sink_emitter_posts_binary_cloudevents_over_one_connection() -> None:
    with OutcomeSink() as sink:
        emitter = SinkEmitter(sink.url)
        try:
            for n in range(3):
                emitter.emit(CloudEvent({"type": "sdrs.failurejob.deleted", "source": "test",
                                         "id": f"e-{n}"}, {"outcome": "deleted", "n": "ü"}))
            got = sink.wait_for(3)
        finally:
            emitter.close()
        ports = {r.client_port for r in sink.log.snapshot()}
    assert [e["id"] for e in got] == ["e-0", "e-1", "e-2"]
    assert got[0].data == {"outcome": "deleted", "n": "ü"}
    assert len(ports) == 1


# -- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, b'{"error": {"code": "SDRS.0500"}}'],
                         ids=["no-answer", "half-a-body"])
def test_a_dropped_connection_is_retried_as_a_transient_failure(
    api: TaskCenterStandIn, body: bytes | None
) -> None:
    api.add_job(job(4))
    api.inject("GET", "failure-jobs", Fault(500, body=body, close=True))
    client = TaskCenterClient(api.url, PROJECT, retry=QUICK)
    try:
        assert len(client.list_failure_jobs()) == 1
    finally:
        client.close()
    first, *again = api.requests  # then the listing again (and its empty last page)
    assert first.fault is not None and [r.status for r in again] == [200] * len(again)


def test_a_slow_answer_is_a_retryable_timeout(api: TaskCenterStandIn) -> None:
    api.inject("GET", "failure-jobs", *[Fault(200, body=b"{}", delay=2.0)] * 3)
    client = TaskCenterClient(api.url, PROJECT, timeout=0.2, retry=QUICK)
    try:
        with pytest.raises(SdrsError) as err:
            client.list_failure_jobs()
    finally:
        client.close()
    assert (err.value.code, err.value.retryable, err.value.attempts) == (
        "transport.timeout", True, 3)


def test_a_closed_port_is_a_retryable_connection_error() -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        client = TaskCenterClient(f"http://127.0.0.1:{bound.getsockname()[1]}", PROJECT,
                                  retry=QUICK)
        try:
            with pytest.raises(SdrsError) as err:
                client.list_failure_jobs()
        finally:
            client.close()
    assert (err.value.code, err.value.retryable) == ("transport.connection", True)


# -- proxies and TLS -------------------------------------------------------------------------


@pytest.mark.parametrize("wrapped", [False, True], ids=["default", "transport_for"])
def test_a_proxy_in_the_environment_carries_the_requests(
    api: TaskCenterStandIn, monkeypatch: pytest.MonkeyPatch, wrapped: bool
) -> None:
    # The stand-in serves absolute-form targets too, so it can play the forward proxy of a
    # plain-http origin that nothing listens on: only a proxied request gets an answer.
    api.add_job(job(5))
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        origin = f"http://127.0.0.1:{bound.getsockname()[1]}"
        monkeypatch.setenv("HTTP_PROXY", api.url)
        # transport_for: the transport as callers that wrap it (the CLI) get it.
        client = TaskCenterClient(origin, PROJECT, retry=QUICK,
                                  transport=transport_for(origin) if wrapped else None)
        try:
            listed = client.list_failure_jobs()
        finally:
            client.close()
    assert [r["job_id"] for r in listed] == ["job-5"]
    assert len(api.requests) >= 1  # every request went through the proxy


def test_https_clients_share_one_verified_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    real = httpx.create_ssl_context

    def counting(*args: object, **kwargs: object) -> object:
        built.append(1)
        return real()

    tls._verified.cache_clear()
    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    clients = [TaskCenterClient("https://sdrs.example.com", PROJECT),
               TaskCenterClient("https://sdrs.example.org", PROJECT)]
    emitter = SinkEmitter("https://sink.example.com/")
    for client in clients:
        client.close()
    emitter.close()
    tls._verified.cache_clear()
    assert len(built) == 1
    assert tls.context_for("http://127.0.0.1:1") is not tls.context_for("https://a.example")
