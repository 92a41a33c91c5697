"""A sweep that loses its state store half-way answers with the truth.

A real ``redis-server`` is stopped in the middle of a ``POST /sweep`` (after the stand-in
answered a few DELETEs): the answer says what was deleted before it stopped, the
``sweep_completed`` says it was cut short, and every DELETE the stand-in received has
its outcome at the sink. The world, not the code under test, says what was deleted: the
stand-in's own log of DELETEs.
"""

from __future__ import annotations

from typing import Any

from standin import OutcomeSink, TaskCenterStandIn
from standin.redis_server import RedisServer
from tests.conftest import EXPIRED, FunctionFactory, data_of, failed_task

API_TOKEN = "manual-api-token-0123456789"
GROUPS = [f"7e57{n:04d}-0000-4000-8000-000000000000" for n in range(4)]


def test_a_sweep_that_loses_redis_half_way_reports_what_it_deleted(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    redis_server: RedisServer, redis_url: str,
) -> None:
    for group in GROUPS:
        standin.add_group(group)
        for _ in range(10):
            standin.add_job(failed_task(EXPIRED), group)

    def lose_redis(_: str) -> None:
        if len(standin.deletes()) == 7 and redis_server.running:
            redis_server.stop()

    standin.after_delete = lose_redis
    http = make_function("on_http", "http", STATE_URL=redis_url, RETRY_API_TOKEN=API_TOKEN,
                         SWEEP_CONCURRENCY="1")
    try:
        answer = http.app.test_client().post(
            "/sweep", json={}, headers={"Authorization": f"Bearer {API_TOKEN}"})
    finally:
        standin.after_delete = None

    deleted = standin.deletes()
    assert 7 <= len(deleted) < 40  # it stopped: no DELETE without its journal entry
    summary: dict[str, Any] = answer.get_json()
    assert answer.status_code == 200, summary
    assert summary["deleted"] == len(deleted)
    assert summary["partial"] is True
    assert "state store unavailable" in summary["partial_reason"]
    assert f"{len(deleted)} deleted before it stopped" in summary["partial_reason"]
    assert summary["error"]["retryable"] is True

    events = [data_of(e) for e in sink.events]
    told = {d["failure_job_id"] for d in events if d["outcome"] == "deleted"}
    assert told == set(deleted)  # every DELETE sent has its outcome, none forgotten
    [completed] = [d for d in events if d["outcome"] == "sweep_completed"]
    assert completed["deleted"] == len(deleted) and completed["partial"] is True


def test_an_event_whose_delete_cannot_be_journaled_sends_no_delete_and_asks_again(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    redis_server: RedisServer, redis_url: str,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = make_function(STATE_URL=redis_url)
    redis_server.stop()
    response = function.send("sdrs.job.failed", record)
    assert response.status_code == 503  # redelivered later
    assert standin.deletes() == []
