"""Many instances, one Redis (issue 11, docs/state.md).

Two or three real ``functions-framework`` processes share one real redis-server,
the task-center stand-in and a real outcome sink; the test plays the broker and
delivers a 5xx'd input again to ANOTHER instance. Expected DELETEs come from the
records each test seeds and its policy, and are counted by the stand-in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from failjob_reaper.settings import ENV_VARS
from standin import Fault, OutcomeSink, TaskCenterStandIn
from standin.redis_server import RedisServer
from tests.conftest import EXPIRED, FRESH, PROJECT, ROOT, TOKEN, data_of, failed_task

API_TOKEN = "multi-instance-api-token-0123"
FAILED = "sdrs.job.failed"
SWEEP = "sdrs.failurejob.sweep"
EXPIRED_TYPE = "sdrs.failurejob.expired"
DELETED = "sdrs.failurejob.deleted"
SWEEP_COMPLETED = "sdrs.failurejob.sweep_completed"
_FF_VARS = {"FUNCTION_TARGET", "FUNCTION_SOURCE", "FUNCTION_SIGNATURE_TYPE", "HOST", "PORT",
            "DEBUG", "THREADS", "WORKERS"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Instance:
    """One function instance: ``functions-framework`` in its own process group."""

    def __init__(self, target: str, env: dict[str, str], log_dir: Path) -> None:
        self.target = target
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        signature = "cloudevent" if target == "on_event" else "http"
        self._log = (log_dir / f"{target}-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "functions_framework", "--source", str(ROOT / "main.py"),
             "--target", target, "--signature-type", signature, "--host", "127.0.0.1",
             "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=self._log, stderr=self._log, start_new_session=True,
        )
        self.http = httpx.Client(timeout=60)

    def wait_listening(self, timeout: float = 60) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"{self.target} exited: {self.log_tail()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "function did not start"
                time.sleep(0.05)  # waiting for a port to open, bounded

    def log_tail(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_bytes().decode("utf-8", "replace")[-3000:]

    def send(self, event: CloudEvent) -> httpx.Response:
        headers, body = to_binary(event)
        return self.http.post(self.url + "/", headers=headers, content=body)

    def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        return self.http.post(self.url + path, json=body,
                              headers={"Authorization": f"Bearer {API_TOKEN}", **headers})

    def kill(self) -> None:
        """kill -9 of the instance: its process group (the framework and its worker)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


Start = Callable[..., Instance]


@pytest.fixture
def start_instance(
    standin: TaskCenterStandIn, sink: OutcomeSink, redis_url: str, tmp_path: Path
) -> Iterator[Start]:
    started: list[Instance] = []

    def start(target: str = "on_event", **settings: str) -> Instance:
        env = {k: v for k, v in os.environ.items() if k not in ENV_VARS and k not in _FF_VARS}
        env.update({
            "PYTHONUNBUFFERED": "1",
            "SDRS_ENDPOINT": standin.url, "SDRS_PROJECT_ID": PROJECT, "SDRS_AUTH_TOKEN": TOKEN,
            "K_SINK": sink.url, "STATE_URL": redis_url, "RETRY_API_TOKEN": API_TOKEN,
            "SDRS_BACKOFF_INITIAL": "0.01", "SDRS_BACKOFF_MAX": "0.05",
            "SDRS_REQUEST_TIMEOUT": "2", "SDRS_RETRY_DEADLINE": "2", "SWEEP_RATE_LIMIT": "0",
            "OUTCOME_SINK_TIMEOUT": "1", "OUTCOME_SINK_ATTEMPTS": "1",
        })
        env.update(settings)
        instance = Instance(target, env, tmp_path)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


def start_many(start: Start, n: int, target: str = "on_event", **settings: str
               ) -> list[Instance]:
    instances = [start(target, **settings) for _ in range(n)]
    for instance in instances:  # started together, waited for together: faster
        instance.wait_listening()
    return instances


def event(event_type: str, data: Any, event_id: str | None = None) -> CloudEvent:
    return CloudEvent({"type": event_type, "source": "/test/broker",
                       "id": event_id or str(uuid.uuid4()),
                       "datacontenttype": "application/json"}, data)


def until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polling a condition, bounded


def broker_redeliver(send: Callable[[], httpx.Response], timeout: float = 30.0
                     ) -> httpx.Response:
    """What a broker does with a 5xx: deliver again (here: with a short backoff)."""
    deadline = time.monotonic() + timeout
    while True:
        response = send()
        if response.status_code < 500:
            return response
        assert time.monotonic() < deadline, f"still {response.status_code}: {response.text}"
        time.sleep(0.2)  # the broker's retry interval, bounded


# -- the sending instance dies before its outcome was delivered ---------------------------


def test_kill_9_after_the_delete_redelivered_elsewhere_one_delete_one_deleted(
    standin: TaskCenterStandIn, sink: OutcomeSink, start_instance: Start
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    task = record["resource_id"]
    first, second = start_many(start_instance, 2)
    sink.inject(Fault(status=503, delay=30))  # the sink holds the first outcome, then refuses
    input_event = event(FAILED, record)

    threading.Thread(target=lambda: _ignore_errors(first.send, input_event), daemon=True
                     ).start()
    until(lambda: standin.deletes() == [task], what="the first instance's DELETE")
    until(lambda: len(sink.requests) == 1, what="the outcome POST the sink holds")
    first.kill()

    response = broker_redeliver(lambda: second.send(input_event))

    assert response.status_code == 200
    assert standin.deletes() == [task]
    until(lambda: len(sink.of_type(DELETED)) >= 1, what="the deleted outcome")
    deleted = sink.of_type(DELETED)
    assert [e["subject"] for e in deleted] == [task]
    assert data_of(deleted[0])["job"]["job_id"] == record["job_id"]
    assert [e["type"] for e in sink.events] == [DELETED]  # no already_deleted besides it


def test_kill_9_during_the_delete_the_next_instance_reports_it_from_the_journal(
    standin: TaskCenterStandIn, sink: OutcomeSink, start_instance: Start
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    task = record["resource_id"]
    # Short retry deadline: a killed instance's in-progress record expires sooner.
    first, second = start_many(start_instance, 2, SDRS_RETRY_DEADLINE="1")
    # The DELETE is held a moment, then applied: its sender is dead by then.
    standin.inject("DELETE", "failure-jobs/", Fault(delay=1.0, passthrough=True))
    input_event = event(FAILED, record)

    threading.Thread(target=lambda: _ignore_errors(first.send, input_event), daemon=True
                     ).start()
    until(lambda: standin.deletes() == [task], what="the first instance's DELETE")
    first.kill()  # after the journal entry, before any answer or outcome
    until(lambda: not standin.listed(task), what="the held DELETE applied")

    response = broker_redeliver(lambda: second.send(input_event), timeout=40)

    assert response.status_code == 200
    assert standin.deletes() == [task]  # the second instance found it gone: no DELETE
    assert [(e["type"], e["subject"]) for e in sink.events] == [(DELETED, task)]
    data = data_of(sink.events[0])
    assert data["job"]["job_id"] == record["job_id"]  # from the journal entry
    assert data["causation"]["id"] == input_event["id"]


def _ignore_errors(send: Callable[[CloudEvent], httpx.Response], ce: CloudEvent) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the instance was killed under this request
        send(ce)


# -- Idempotency-Key reuse -------------------------------------------------------------


def test_an_idempotency_key_reused_for_another_task_is_422_and_decides_nothing(
    standin: TaskCenterStandIn, sink: OutcomeSink, start_instance: Start
) -> None:
    task_a, task_b = failed_task(EXPIRED), failed_task(EXPIRED)
    standin.add_job(task_a)
    standin.add_job(task_b)
    first, second = start_many(start_instance, 2, target="on_http")
    sink.inject(Fault(status=503))  # A's outcome is refused: its call answers 503
    key = {"Idempotency-Key": "key-" + uuid.uuid4().hex}

    refused = first.post("/retry", {"failure_job_id": task_a["resource_id"]}, **key)
    reused = second.post("/retry", {"failure_job_id": task_b["resource_id"]}, **key)

    assert refused.status_code == 503
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert standin.deletes() == [task_a["resource_id"]]
    assert standin.listed(task_b["resource_id"])
    repeat = second.post("/retry", {"failure_job_id": task_a["resource_id"]}, **key)
    assert repeat.status_code == 200
    assert repeat.json()["outcome"] == "deleted"
    assert standin.deletes() == [task_a["resource_id"]]
    assert [(e["type"], e["subject"]) for e in sink.events] == [
        (DELETED, task_a["resource_id"])]


# -- two sweeps at once ---------------------------------------------------------------


def test_two_simultaneous_sweeps_one_runs_one_is_skipped(
    standin: TaskCenterStandIn, sink: OutcomeSink, start_instance: Start
) -> None:
    expired = [failed_task(EXPIRED) for _ in range(6)]
    fresh = [failed_task(FRESH) for _ in range(3)]
    for record in expired + fresh:
        standin.add_job(record)
    first, second = start_many(start_instance, 2)
    standin.latency = 0.2  # each request takes a while: the two sweeps overlap
    responses: dict[str, httpx.Response] = {}
    go = threading.Barrier(2)

    def sweep(name: str, instance: Instance) -> None:
        go.wait(timeout=10)
        responses[name] = instance.send(event(SWEEP, {}))

    threads = [threading.Thread(target=sweep, args=(n, i))
               for n, i in (("first", first), ("second", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert {r.status_code for r in responses.values()} == {200}
    summaries = [data_of(e) for e in sink.of_type(SWEEP_COMPLETED)]
    assert len(summaries) == 2
    skipped = [s for s in summaries if s["skipped"]]
    ran = [s for s in summaries if not s["skipped"]]
    assert len(skipped) == 1 and len(ran) == 1
    assert "another sweep" in (skipped[0]["skipped_reason"] or "")
    assert skipped[0]["deleted"] == 0
    assert sorted(standin.deletes()) == sorted(r["resource_id"] for r in expired)
    assert all(standin.listed(r["resource_id"]) for r in fresh)


# -- Redis goes away --------------------------------------------------------------------


def test_redis_going_away_mid_sweep_deletes_nothing_unrecorded_and_answers_5xx(
    standin: TaskCenterStandIn, sink: OutcomeSink, start_instance: Start
) -> None:
    expired = [failed_task(EXPIRED) for _ in range(4)]
    fresh = [failed_task(FRESH) for _ in range(2)]
    for record in expired + fresh:
        standin.add_job(record)
    with RedisServer() as own_redis:
        first, second = start_many(start_instance, 2, STATE_URL=own_redis.url)
        standin.inject("GET", "failure-jobs", Fault(delay=1.0, passthrough=True))
        sweep_event = event(SWEEP, {})
        answers: list[httpx.Response] = []
        worker = threading.Thread(target=lambda: answers.append(first.send(sweep_event)))
        worker.start()
        until(lambda: any(r.method == "GET" and "failure-jobs" in r.path
                          for r in standin.requests), what="the sweep's listing")
        own_redis.stop()  # mid-run: the lease is held, the listing is under way
        worker.join(timeout=60)

        assert answers and answers[0].status_code == 503
        assert standin.deletes() == []  # no DELETE without its journal entry
        single = second.send(event(FAILED, expired[0]))
        assert single.status_code == 503
        assert standin.deletes() == []

        own_redis.start()  # back (empty: no persistence); the broker delivers again
        response = broker_redeliver(lambda: second.send(sweep_event))
        assert response.status_code == 200
    assert sorted(standin.deletes()) == sorted(r["resource_id"] for r in expired)
    assert all(standin.listed(r["resource_id"]) for r in fresh)
    assert len(sink.of_type(DELETED)) == len(expired)


# -- the lookup index and scope views are shared ---------------------------------------


def test_a_fresh_instance_deletes_on_the_scope_views_another_instance_wrote(
    standin: TaskCenterStandIn, sink: OutcomeSink, start_instance: Start
) -> None:
    # 20 groups with one expired task each. The first instance's cold event lists every
    # scope into Redis; the second process, which never listed anything, finds the last
    # group's task there and deletes it after reading that group alone.
    world = []
    for i in range(20):
        record = failed_task(EXPIRED)
        standin.add_group(f"group-{i:03d}")
        standin.add_job(record, f"group-{i:03d}")
        world.append(record)
    first, second = start_many(start_instance, 2)
    assert first.send(event(EXPIRED_TYPE, {"failure_job_id": world[0]["resource_id"]})
                      ).status_code == 200
    standin.reset_log()

    response = second.send(event(EXPIRED_TYPE, {"failure_job_id": world[-1]["resource_id"]}))

    assert response.status_code == 200
    assert standin.deletes() == [world[-1]["resource_id"]]
    listed = {r.query.get("server_group_id") for r in standin.requests if r.method == "GET"}
    assert listed == {"group-019"}
    assert len(standin.requests) <= 3
    until(lambda: len(sink.of_type(DELETED)) == 2, what="both deleted outcomes")
