"""One delivery policy (failjob_reaper/delivery.py), destination by destination.

Every answer class through real loopback servers: the sink, EventGrid and SMN
stand-ins, the task-center stand-in, and ``standin.hostile`` (servers that trickle
their headers or their body, or send a page without end). Waits between attempts
are recorded, never slept (``delivery.testing()`` or an injected ``sleep``): no test
measures wall time.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from cloudevents.http import CloudEvent

from failjob_reaper import delivery
from failjob_reaper.alerts import Alert, Alerts, SmnPublisher, drain
from failjob_reaper.delivery import RetryPolicy
from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.outcomes import (
    Causation,
    EventGridEmitter,
    Outcome,
    PartialDelivery,
    Publisher,
    SinkEmitter,
)
from failjob_reaper.sdrs import (
    AkSkAuth,
    IncompleteListing,
    SdrsError,
    TaskCenterClient,
    TokenAuth,
)
from failjob_reaper.state import MemoryStore
from standin import EventGridStandIn, Fault, OutcomeSink, SmnStandIn, TaskCenterStandIn
from standin.hostile import Hostile
from tests.conftest import AK, EXPIRED, PROJECT, SK, TOKEN, FunctionFactory, failed_task

CHANNEL = "b7a1f0c2-3d4e-4f50-8a6b-7c8d9e0f1a2b"
TOPIC = f"urn:smn:ap-southeast-3:{PROJECT}:failjob-reaper-alerts"
HTML = Fault(200, body=b"<html><body>Proxy login</body></html>",
             headers={"Content-Type": "text/html"})
TRANSIENT = [Fault(408), Fault(429), Fault(500), Fault(502), Fault(503), Fault(504),
             Fault(close=True)]
TRANSIENT_IDS = ["408", "429", "500", "502", "503", "504", "dropped"]
REFUSALS = [400, 401, 403, 404, 405, 409, 413, 422]


def outcome(task: str) -> Outcome:
    return Outcome(outcome="deleted", project_id=PROJECT, failure_job_id=task, trigger="event",
                   dry_run=False, causation=Causation(id=f"in-{task}", source="/test"))


def no_sleep(_: float) -> None:
    return None


@pytest.fixture
def waits() -> Iterator[list[float]]:
    with delivery.testing() as recorded:
        yield recorded


# -- the pieces -------------------------------------------------------------------------------


def _answer(headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(503, headers=headers)


def test_retry_after_reads_delta_seconds_and_http_dates_capped() -> None:
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    at = format_datetime(now + timedelta(seconds=7), usegmt=True)
    clock = now.timestamp
    assert delivery.retry_after(_answer({"Retry-After": "3"}), 30, now=clock) == 3.0
    assert delivery.retry_after(_answer({"Retry-After": at}), 30, now=clock) == 7.0
    assert delivery.retry_after(_answer({"Retry-After": "120"}), 30, now=clock) == 30.0
    past = format_datetime(now - timedelta(hours=1), usegmt=True)
    assert delivery.retry_after(_answer({"Retry-After": past}), 30, now=clock) == 0.0
    for bad in ("soon", "-1", "1.5e9", ""):
        assert delivery.retry_after(_answer({"Retry-After": bad}), 30, now=clock) is None
    assert delivery.retry_after(_answer({}), 30, now=clock) is None


@pytest.mark.parametrize(("status", "verdict"), [
    (200, "taken"), (204, "taken"), (408, "retry"), (429, "retry"), (500, "retry"),
    (503, "retry"), (400, "refused"), (404, "refused"), (422, "refused"), (302, "retry"),
])
def test_the_sink_row_of_the_table(status: int, verdict: str) -> None:
    answer = delivery.Answer(httpx.Response(status))
    assert delivery.SINK.classify(answer).value == verdict


def test_the_rows_that_differ_are_data_not_loops() -> None:
    def verdict(destination: delivery.Destination, status: int, body: bytes = b"") -> str:
        return destination.classify(delivery.Answer(httpx.Response(status, content=body))).value

    assert verdict(delivery.SDRS_DELETE, 404) == "taken"  # deletes are idempotent
    assert verdict(delivery.SDRS_DELETE, 409) == "retry"
    assert verdict(delivery.SINK, 409) == "refused"
    assert verdict(delivery.EVENTGRID, 403) == "keep"
    assert verdict(delivery.EVENTGRID, 200, b'{"failed_count": 0, "events": []}') == "taken"
    assert verdict(delivery.EVENTGRID, 200, b'{"ok": true}') == "retry"
    assert verdict(delivery.SMN, 500) == "unknown" and verdict(delivery.SMN, 503) == "retry"
    assert verdict(delivery.SDRS_LISTING, 200, b"<html></html>") == "retry"
    assert verdict(delivery.SDRS_LISTING, 302) == "refused"


def test_the_helper_retries_as_asked_and_gives_up_after_its_attempts(
    waits: list[float],
) -> None:
    calls: list[int] = []

    def attempt(number: int) -> str:
        calls.append(number)
        raise delivery.Retry(RuntimeError("busy"), retry_after=2.5 if number == 1 else None)

    with pytest.raises(delivery.Retry) as caught:
        delivery.call(attempt, RetryPolicy(max_attempts=4, backoff_initial=1, backoff_max=4))
    assert calls == [1, 2, 3, 4] and caught.value.attempts == 4
    assert waits[0] == 2.5 and len(waits) == 3
    assert all(0 <= w <= c for w, c in zip(waits[1:], (2, 4), strict=True))  # full jitter


# -- SDRS -------------------------------------------------------------------------------------


def test_sdrs_retries_honour_retry_after_without_sleeping(
    standin: TaskCenterStandIn, waits: list[float],
) -> None:
    standin.add_job(failed_task(EXPIRED))
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    standin.inject("GET", r"/failure-jobs", Fault(503, headers={"Retry-After": "4"}),
                   Fault(429, headers={"Retry-After": when}), HTML)
    client = TaskCenterClient(standin.url, PROJECT, auth=TokenAuth(TOKEN),
                              retry=RetryPolicy(max_attempts=5, deadline=60))
    assert len(client.list_failure_jobs()) == 1
    assert waits[0] == 4.0 and 15 <= waits[1] <= 20 and len(waits) == 3


def test_the_sdrs_clients_own_sleep_goes_through_the_helper(standin: TaskCenterStandIn) -> None:
    slept: list[float] = []
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/", Fault(503, headers={"Retry-After": "9"}))
    client = TaskCenterClient(standin.url, PROJECT, auth=TokenAuth(TOKEN), sleep=slept.append,
                              retry=RetryPolicy(max_attempts=3, deadline=60))
    result = client.delete_failure_job(record["resource_id"])
    assert result.found and result.attempts == 2 and slept == [9.0]


def test_an_oversized_page_is_refused_unread_and_never_retried() -> None:
    with Hostile("large") as server:  # a page without end
        client = TaskCenterClient(server.url, PROJECT, max_response_bytes=256 * 1024)
        with pytest.raises(IncompleteListing) as caught:
            client.list_failure_jobs()
    # Over the byte bound: not read on, not asked again; the listing is incomplete.
    assert "larger than the byte bound" in caught.value.message
    assert not caught.value.retryable
    assert server.requests == 1


def test_a_compressed_page_is_read_and_a_compressed_bomb_stops_at_the_bound(
    standin: TaskCenterStandIn,
) -> None:
    page = json.dumps({"failure_jobs": [failed_task(EXPIRED)]}).encode()
    bomb = b'{"failure_jobs": [' + b" " * 50_000_000 + b"]}"
    standin.inject("GET", r"/failure-jobs", *(
        Fault(200, body=gzip.compress(body), headers={"Content-Encoding": "gzip"})
        for body in (page, bomb)))
    client = TaskCenterClient(standin.url, PROJECT, auth=TokenAuth(TOKEN), sleep=no_sleep,
                              max_response_bytes=256 * 1024)
    assert client._send("GET", f"/v1/{PROJECT}/task-center/failure-jobs", None,
                        ok=(200,))[0].json() == json.loads(page)
    with pytest.raises(SdrsError) as caught:
        client._send("GET", f"/v1/{PROJECT}/task-center/failure-jobs", None, ok=(200,))
    assert caught.value.code == "SDRS.ResponseTooLarge"


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_a_trickling_sdrs_is_cut_off_at_the_deadline(mode: Any) -> None:
    with Hostile(mode, interval=0.02) as server:
        client = TaskCenterClient(server.url, PROJECT, timeout=30.0, sleep=no_sleep,
                                  retry=RetryPolicy(max_attempts=1, deadline=60))
        deadline = time.monotonic() + 0.3
        with pytest.raises(IncompleteListing, match="deadline reached") as caught:
            client.list_failure_jobs(deadline=deadline)
    assert caught.value.retryable and caught.value.records == []
    assert server.sent > 2  # it was trickling, and each read was shorter than its timeout


def test_a_trickling_delete_is_cut_off_at_the_deadline() -> None:
    with Hostile("headers", interval=0.02) as server:
        client = TaskCenterClient(server.url, PROJECT, timeout=30.0, sleep=no_sleep,
                                  retry=RetryPolicy(max_attempts=2, deadline=60))
        with pytest.raises(SdrsError) as caught:
            client.delete_failure_job("0123456789abcdef", deadline=time.monotonic() + 0.3)
    assert caught.value.retryable and caught.value.code == "SDRS.DeadlineReached"


def test_an_event_against_a_trickling_api_answers_inside_its_deadline(
    make_function: FunctionFactory, sink: OutcomeSink,
) -> None:
    with Hostile("body", interval=0.02) as server:
        function = make_function(SDRS_ENDPOINT=server.url, EVENT_DEADLINE="1",
                                 SDRS_REQUEST_TIMEOUT="30")
        response = function.send("sdrs.job.failed", failed_task(EXPIRED))
    assert response.status_code in (200, 503)  # it answered: the listing was cut off
    assert server.requests >= 1


# -- the sink ---------------------------------------------------------------------------------


def sink_publisher(sink: OutcomeSink, attempts: int = 1, **kwargs: Any) -> Publisher:
    emitter = SinkEmitter(sink.url, attempts=attempts, sleep=no_sleep, **kwargs)
    return Publisher(emitter, source="failjob-reaper")


def test_the_sink_takes_a_2xx(sink: OutcomeSink) -> None:
    publisher = sink_publisher(sink)
    publisher.outcome(outcome("a"))
    assert [e["subject"] for e in sink.events] == ["a"] and publisher.pending == 0


@pytest.mark.parametrize("fault", TRANSIENT, ids=TRANSIENT_IDS)
def test_the_sink_keeps_what_a_transient_answer_did_not_take(
    sink: OutcomeSink, fault: Fault,
) -> None:
    publisher = sink_publisher(sink)
    sink.inject(fault)
    with pytest.raises(OutcomeDeliveryError):
        publisher.outcome(outcome("a"))
    assert publisher.pending == 1 and publisher.dropped == 0
    publisher.flush()  # the next invocation
    assert [e["subject"] for e in sink.events] == ["a"] and publisher.pending == 0


def test_the_sink_retries_transient_answers_without_sleeping(
    sink: OutcomeSink, waits: list[float],
) -> None:
    publisher = Publisher(SinkEmitter(sink.url, attempts=3), source="failjob-reaper")
    sink.inject(Fault(429, headers={"Retry-After": "2"}), Fault(503))
    publisher.outcome(outcome("a"))
    assert [e["subject"] for e in sink.events] == ["a"] and len(sink.requests) == 3
    assert waits[0] == 2.0 and len(waits) == 2


@pytest.mark.parametrize("status", REFUSALS)
def test_a_refusal_by_the_sink_is_logged_in_full_counted_dropped_and_blocks_nothing(
    sink: OutcomeSink, status: int, caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = sink_publisher(sink, attempts=3)
    sink.inject(Fault(status))
    with caplog.at_level(logging.ERROR, logger="failjob_reaper"):
        publisher.outcome(outcome("refused"))  # no error: that event is done
        publisher.outcome(outcome("next"))
    assert [e["subject"] for e in sink.events] == ["next"]
    assert len(sink.requests) == 2  # a refusal is not retried
    assert publisher.pending == 0 and publisher.dropped == 1 and publisher.dropped_total == 1
    (line,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    logged = json.loads(line.getMessage().split("only record: ", 1)[1])
    assert logged["subject"] == "refused" and logged["data"]["outcome"] == "deleted"


def test_a_refused_event_in_the_outbox_no_longer_blocks_the_ones_after_it(
    sink: OutcomeSink,
) -> None:
    publisher = sink_publisher(sink)
    sink.inject(Fault(503), Fault(503))
    for name in ("a", "b"):
        with pytest.raises(OutcomeDeliveryError):
            publisher.outcome(outcome(name))
    sink.inject(Fault(422))  # the sink changed its mind about "a"
    publisher.flush()
    assert [e["subject"] for e in sink.events] == ["b"] and publisher.pending == 0
    assert publisher.dropped == 1


def test_the_dropped_counter_is_shared_through_the_state_store(
    sink: OutcomeSink, redis_url: str,
) -> None:
    from failjob_reaper.state import open_store

    namespace = f"fjr:{uuid.uuid4().hex}:"
    instances = [Publisher(SinkEmitter(sink.url, attempts=1), source="s",
                           state=open_store(redis_url, namespace=namespace))
                 for _ in range(2)]
    sink.inject(Fault(400), Fault(400))
    instances[0].outcome(outcome("a"))
    instances[1].outcome(outcome("b"))
    assert [p.dropped for p in instances] == [1, 1]
    assert instances[0].dropped_total == 2


def test_a_trickling_sink_is_cut_off_inside_its_window() -> None:
    with Hostile("headers", interval=0.02) as server:
        emitter = SinkEmitter(server.url, timeout=30, attempts=1, window=0.3)
        with pytest.raises(OutcomeDeliveryError, match="ReadTimeout"):
            emitter.emit(CloudEvent({"type": "t", "source": "s", "id": "1"}, {"n": 1}))


def test_on_event_answers_2xx_when_the_sink_refuses_and_the_next_event_too(
    make_function: FunctionFactory, standin: TaskCenterStandIn, sink: OutcomeSink,
) -> None:
    first, second = failed_task(EXPIRED), failed_task(EXPIRED)
    standin.add_job(first)
    standin.add_job(second)
    function = make_function()
    sink.inject(Fault(400))
    assert function.send("sdrs.job.failed", first).status_code == 200
    assert function.send("sdrs.job.failed", second).status_code == 200
    assert [e["subject"] for e in sink.events] == [second["resource_id"]]


# -- EventGrid -------------------------------------------------------------------------------


@pytest.fixture
def eventgrid() -> Iterator[EventGridStandIn]:
    with EventGridStandIn(project_id=PROJECT, channel_id=CHANNEL,
                          credentials={AK: SK}) as server:
        yield server


def eg_emitter(eventgrid: EventGridStandIn, attempts: int = 1) -> EventGridEmitter:
    return EventGridEmitter(eventgrid.url, PROJECT, CHANNEL, auth=AkSkAuth(AK, SK),
                            attempts=attempts, sleep=no_sleep)


@pytest.mark.parametrize("fault", [
    *TRANSIENT, HTML, Fault(200, body=b'{"ok": true}'), Fault(204, body=b""),
    Fault(200, body=b'{"failed_count": 0, "events": [' + b" " * 100_000 + b"]}"),
], ids=[*TRANSIENT_IDS, "html-200", "no-results", "204", "oversized"])
def test_eventgrid_keeps_what_it_did_not_answer_for(
    eventgrid: EventGridStandIn, fault: Fault,
) -> None:
    publisher = Publisher(eg_emitter(eventgrid), source="failjob-reaper")
    eventgrid.inject(fault)
    with pytest.raises(PartialDelivery):
        publisher.outcomes([outcome("a"), outcome("b")])
    assert publisher.pending == 2 and publisher.dropped == 0
    publisher.flush()
    assert sorted(e["subject"] for e in eventgrid.events) == ["a", "b"]


def test_eventgrid_sends_again_after_a_page_that_is_not_its_answer(
    eventgrid: EventGridStandIn, waits: list[float],
) -> None:
    eventgrid.inject(HTML)
    EventGridEmitter(eventgrid.url, PROJECT, CHANNEL, auth=AkSkAuth(AK, SK)).emit_many(
        [CloudEvent({"type": "t", "source": "s", "id": "1"}, {"n": 1})])
    assert eventgrid.received_ids == ["1"] and len(waits) == 1


@pytest.mark.parametrize("status", [s for s in REFUSALS if s not in (401, 403, 404)])
def test_a_refusal_by_eventgrid_is_dropped_and_counted(
    eventgrid: EventGridStandIn, status: int, caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = Publisher(eg_emitter(eventgrid, attempts=3), source="failjob-reaper")
    eventgrid.inject(Fault(status))
    with caplog.at_level(logging.ERROR, logger="failjob_reaper"):
        publisher.outcome(outcome("refused"))
        publisher.outcome(outcome("next"))
    assert [e["subject"] for e in eventgrid.events] == ["next"]
    assert publisher.pending == 0 and publisher.dropped == 1
    assert "refused permanently" in caplog.text


@pytest.mark.parametrize("status", [401, 403, 404])
def test_eventgrid_refusing_the_deployment_keeps_the_events(
    eventgrid: EventGridStandIn, status: int,
) -> None:
    publisher = Publisher(eg_emitter(eventgrid, attempts=3), source="failjob-reaper")
    eventgrid.inject(Fault(status))
    with pytest.raises(OutcomeDeliveryError):
        publisher.outcome(outcome("a"))
    assert publisher.pending == 1 and publisher.dropped == 0 and len(eventgrid.requests) == 1


def test_a_trickling_eventgrid_is_cut_off_inside_its_window() -> None:
    with Hostile("body", interval=0.02) as server:
        emitter = EventGridEmitter(server.url, PROJECT, CHANNEL, auth=None, timeout=30,
                                   attempts=1, window=0.3)
        with pytest.raises(PartialDelivery):
            emitter.emit(CloudEvent({"type": "t", "source": "s", "id": "1"}, {"n": 1}))


# -- SMN ---------------------------------------------------------------------------------------


@pytest.fixture
def smn() -> Iterator[SmnStandIn]:
    with SmnStandIn(project_id=PROJECT, topic_urn=TOPIC, credentials={AK: SK},
                    token=TOKEN) as server:
        yield server


def smn_publisher(smn: SmnStandIn, **kwargs: Any) -> SmnPublisher:
    kwargs.setdefault("sleep", no_sleep)
    return SmnPublisher(smn.url, PROJECT, TOPIC, auth=AkSkAuth(AK, SK), **kwargs)


def test_smn_takes_a_2xx_with_its_answer(smn: SmnStandIn) -> None:
    assert smn_publisher(smn).publish(Alert("s", "m"))
    assert [m.subject for m in smn.messages] == ["s"]


@pytest.mark.parametrize("fault", [Fault(408), Fault(429), Fault(503), HTML],
                         ids=["408", "429", "503", "html-200"])
def test_smn_is_sent_again_only_what_it_surely_did_not_take(
    smn: SmnStandIn, fault: Fault,
) -> None:
    smn.inject(fault)
    assert smn_publisher(smn).publish(Alert("s", "m"))
    assert len(smn.requests) == 2 and len(smn.messages) == 1


def test_smn_unreachable_is_tried_again() -> None:
    with SmnStandIn(project_id=PROJECT, topic_urn=TOPIC) as server:
        url = server.url
    slept: list[float] = []
    publisher = SmnPublisher(url, PROJECT, TOPIC, auth=None, attempts=3, sleep=slept.append)
    assert publisher.publish(Alert("s", "m")) is False
    assert len(slept) == 2  # connection refused: nothing sent, so tried 3 times


@pytest.mark.parametrize("fault", [Fault(500), Fault(502), Fault(504), Fault(close=True)],
                         ids=["500", "502", "504", "dropped"])
def test_smn_that_may_have_taken_it_gets_it_once(
    smn: SmnStandIn, fault: Fault, caplog: pytest.LogCaptureFixture,
) -> None:
    smn.inject(fault)
    with caplog.at_level(logging.ERROR, logger="failjob_reaper"):
        assert smn_publisher(smn, attempts=3).publish(Alert("s", "m")) is False
    assert len(smn.requests) == 1
    assert "may have taken the alert" in caplog.text and '"subject":"s"' in caplog.text


@pytest.mark.parametrize("status", REFUSALS)
def test_a_refusal_by_smn_is_logged_counted_and_dropped(
    smn: SmnStandIn, status: int, caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = smn_publisher(smn, attempts=3)
    smn.inject(Fault(status))
    with caplog.at_level(logging.ERROR, logger="failjob_reaper"):
        assert publisher.publish(Alert("s", "m")) is False
    assert len(smn.requests) == 1 and publisher.dropped == 1
    assert "refused permanently" in caplog.text and '"message":"m"' in caplog.text


def test_a_timed_out_smn_gets_the_message_once(
    smn: SmnStandIn, caplog: pytest.LogCaptureFixture,
) -> None:
    alerts = Alerts(smn_publisher(smn, timeout=0.2, attempts=3), MemoryStore())
    smn.hold()
    with caplog.at_level(logging.ERROR, logger="failjob_reaper"):
        alerts.send(Alert("slow", "m"))
        assert alerts.drain()  # the sender gave up waiting, and did not send it again
    smn.release()
    smn.wait_for(1)
    assert len(smn.requests) == 1 and [m.subject for m in smn.messages] == ["slow"]
    assert "may have taken the alert" in caplog.text


@pytest.mark.parametrize("entry", ["on_event", "POST /retry"])
def test_a_slow_smn_never_delays_the_answer_to_the_trigger(
    make_function: FunctionFactory, standin: TaskCenterStandIn, smn: SmnStandIn,
    caplog: pytest.LogCaptureFixture, entry: str,
) -> None:
    from tests.test_http_api import API_TOKEN, call

    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/", Fault(403))  # a permanent failure: an alert
    # SMN's timeout is long: a sender in the answer's path would wait on the hold, and
    # time out before the release (then the log says so and this test fails).
    settings = {"SMN_ENDPOINT": smn.url, "SMN_TOPIC_URN": TOPIC, "OUTCOME_SINK_TIMEOUT": "60"}
    if entry == "on_event":
        function = make_function(**settings)
    else:
        function = make_function(target="on_http", signature="http",
                                 RETRY_API_TOKEN=API_TOKEN, **settings)
    smn.hold()
    try:
        with caplog.at_level(logging.ERROR, logger="failjob_reaper"):
            if entry == "on_event":
                response = function.send("sdrs.job.failed", record)
            else:
                response = call(function, "POST", "/retry",
                                {"failure_job_id": record["resource_id"]})
            assert response.status_code == 200  # answered while SMN holds the alert
            smn.wait_held(1)
            assert smn.messages == []
    finally:
        smn.release()
    assert drain()
    (message,) = smn.messages
    assert "delete failed for" in message.subject and len(smn.requests) == 1
    assert "smn:" not in caplog.text
