"""EventGrid out: outcomes PutEvents'd to a custom channel, batched, signed, per-event retries.

Against ``standin.EventGridStandIn`` over loopback: it verifies the AK/SK signature
with the official algorithm (or the IAM token), keeps the events it took and the
ids of each call, and scripts per-event failures, 5xx and 429.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from failjob_reaper.delivery import Refused
from failjob_reaper.errors import ConfigError, OutcomeDeliveryError
from failjob_reaper.outcomes import (
    Causation,
    EventGridEmitter,
    FanoutEmitter,
    Outcome,
    PartialDelivery,
    Publisher,
)
from failjob_reaper.sdrs import AkSkAuth, RotatingAkSkAuth, TokenAuth
from failjob_reaper.settings import load_settings
from standin import EventGridStandIn, Fault, OutcomeSink, TaskCenterStandIn
from tests.conftest import AK, EXPIRED, PROJECT, SK, TOKEN, FunctionFactory, failed_task

CHANNEL = "b7a1f0c2-3d4e-4f50-8a6b-7c8d9e0f1a2b"


@pytest.fixture
def eventgrid() -> Iterator[EventGridStandIn]:
    with EventGridStandIn(project_id=PROJECT, channel_id=CHANNEL,
                          credentials={AK: SK}, token=TOKEN) as server:
        yield server


def emitter(eventgrid: EventGridStandIn, **kwargs: Any) -> EventGridEmitter:
    kwargs.setdefault("auth", AkSkAuth(AK, SK, project_id=PROJECT))
    return EventGridEmitter(eventgrid.url, PROJECT, CHANNEL, sleep=lambda _: None, **kwargs)


def events(n: int) -> list[CloudEvent]:
    return [CloudEvent({"type": "sdrs.failurejob.deleted", "source": "failjob-reaper",
                        "id": str(uuid.uuid4()), "subject": f"task-{i}",
                        "datacontenttype": "application/json"}, {"n": i})
            for i in range(n)]


def outcome(task: str) -> Outcome:
    return Outcome(outcome="deleted", project_id=PROJECT, failure_job_id=task, trigger="event",
                   dry_run=False, causation=Causation(id=f"in-{task}", source="/test"))


def test_outcomes_go_in_batches_of_at_most_ten_each_signed(eventgrid: EventGridStandIn) -> None:
    sent = events(23)
    emitter(eventgrid).emit_many(sent)
    assert [len(batch) for batch in eventgrid.batches] == [10, 10, 3]
    assert eventgrid.received_ids == [str(e["id"]) for e in sent]
    for request in eventgrid.requests:
        assert request.status == 200
        assert request.headers["authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK},")
        assert request.path == f"/v1/{PROJECT}/channels/{CHANNEL}/events"


def test_the_wire_event_is_cloudevents_json_with_an_eventgrid_time(
    eventgrid: EventGridStandIn,
) -> None:
    emitter(eventgrid).emit(events(1)[0])
    (taken,) = eventgrid.events
    assert taken["specversion"] == "1.0" and taken["datacontenttype"] == "application/json"
    assert taken["data"] == {"n": 0}
    assert taken["time"].endswith("Z") and len(taken["time"]) == len("2018-04-05T17:31:00Z")


def test_a_failed_event_of_a_batch_is_resent_alone_and_no_other(
    eventgrid: EventGridStandIn,
) -> None:
    sent = events(5)
    eventgrid.fail_positions(2)
    emitter(eventgrid).emit_many(sent)
    first, second = eventgrid.batches
    assert first == [str(e["id"]) for e in sent]
    assert second == [first[2]]
    assert sorted(eventgrid.received_ids) == sorted(first)  # each taken exactly once


def test_an_event_that_keeps_failing_is_the_only_one_reported_undelivered(
    eventgrid: EventGridStandIn,
) -> None:
    sent = events(4)
    for _ in range(3):
        eventgrid.fail_positions(0)
    with pytest.raises(PartialDelivery) as caught:
        emitter(eventgrid, attempts=3).emit_many(sent)
    assert caught.value.undelivered == {str(sent[0]["id"])}
    assert len(eventgrid.batches) == 3
    assert set(eventgrid.received_ids) == {str(e["id"]) for e in sent[1:]}


@pytest.mark.parametrize("fault", [Fault(503), Fault(429, headers={"Retry-After": "0"}),
                                   Fault(500), Fault(close=True)])
def test_a_refused_or_lost_call_is_sent_again_whole(
    eventgrid: EventGridStandIn, fault: Fault
) -> None:
    sent = events(3)
    eventgrid.inject(fault)
    emitter(eventgrid).emit_many(sent)
    assert eventgrid.received_ids == [str(e["id"]) for e in sent]


def test_a_channel_that_stays_down_leaves_every_event_undelivered(
    eventgrid: EventGridStandIn,
) -> None:
    sent = events(3)
    eventgrid.inject(Fault(503), Fault(503), Fault(503))
    with pytest.raises(PartialDelivery) as caught:
        emitter(eventgrid, attempts=3).emit_many(sent)
    assert caught.value.undelivered == {str(e["id"]) for e in sent}
    assert eventgrid.events == []


def test_wrong_credentials_keep_the_events_instead_of_dropping_them(
    eventgrid: EventGridStandIn,
) -> None:
    sent = events(2)
    with pytest.raises(OutcomeDeliveryError) as caught:
        emitter(eventgrid, auth=AkSkAuth(AK, "not-the-secret")).emit_many(sent)
    assert isinstance(caught.value, PartialDelivery)
    assert caught.value.undelivered == {str(e["id"]) for e in sent}
    assert {r.status for r in eventgrid.requests} == {401}


def test_the_iam_token_signs_too(eventgrid: EventGridStandIn) -> None:
    emitter(eventgrid, auth=TokenAuth(TOKEN)).emit_many(events(2))
    assert len(eventgrid.events) == 2
    assert all(r.headers["x-auth-token"] == TOKEN for r in eventgrid.requests)


def test_the_agency_rotating_credentials_sign_too(eventgrid: EventGridStandIn) -> None:
    auth = RotatingAkSkAuth(project_id=PROJECT)
    eventgrid._credentials = {"AGENCYAK": "agency-sk"}  # the agency's, not the user's
    auth.update("AGENCYAK", "agency-sk", "security-token")
    emitter(eventgrid, auth=auth).emit(events(1)[0])
    (request,) = eventgrid.requests
    assert request.status == 200 and request.headers["x-security-token"] == "security-token"


def test_a_batch_refused_as_malformed_is_split_and_only_the_bad_event_refused(
    eventgrid: EventGridStandIn,
) -> None:
    good = events(2)
    bad = CloudEvent({"type": "x", "source": "s", "id": "bad-1"}, {"n": 9})
    eventgrid.inject(Fault(400))  # the whole batch: which event? none can tell
    eventgrid.inject(Fault(passthrough=True), Fault(400), Fault(passthrough=True))
    with pytest.raises(Refused) as caught:
        emitter(eventgrid).emit_many([good[0], bad, good[1]])
    assert set(caught.value.refused) == {"bad-1"}
    assert eventgrid.received_ids == [str(good[0]["id"]), str(good[1]["id"])]


def test_the_publisher_logs_a_refused_event_in_full_counts_and_drops_it(
    eventgrid: EventGridStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = Publisher(emitter(eventgrid), source="failjob-reaper")
    eventgrid.inject(Fault(400))  # the whole batch of three
    eventgrid.inject(Fault(passthrough=True), Fault(422), Fault(passthrough=True))
    with caplog.at_level(logging.ERROR, logger="failjob_reaper"):
        publisher.outcomes([outcome("a"), outcome("b"), outcome("c")])  # no error: done
    assert [e["subject"] for e in eventgrid.events] == ["a", "c"]
    assert publisher.pending == 0 and publisher.dropped == 1 and publisher.dropped_total == 1
    (line,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    logged = json.loads(line.getMessage().split("only record: ", 1)[1])
    assert logged["subject"] == "b" and logged["data"]["failure_job_id"] == "b"


def test_the_publisher_keeps_only_the_undelivered_event_and_sends_it_later(
    eventgrid: EventGridStandIn,
) -> None:
    publisher = Publisher(emitter(eventgrid, attempts=1), source="failjob-reaper")
    eventgrid.fail_positions(1)
    with pytest.raises(PartialDelivery):
        publisher.outcomes([outcome("a"), outcome("b"), outcome("c")])
    assert publisher.pending == 1
    assert [e["subject"] for e in eventgrid.events] == ["a", "c"]
    publisher.flush()
    assert publisher.pending == 0
    assert [e["subject"] for e in eventgrid.events] == ["a", "c", "b"]


def test_sink_and_eventgrid_together_each_get_every_event_once(
    eventgrid: EventGridStandIn, sink: OutcomeSink
) -> None:
    from failjob_reaper.outcomes import SinkEmitter

    fanout = FanoutEmitter([SinkEmitter(sink.url), emitter(eventgrid, attempts=1)])
    sent = events(3)
    eventgrid.fail_positions(1)
    with pytest.raises(PartialDelivery) as caught:
        fanout.emit_many(sent)
    assert caught.value.undelivered == {str(sent[1]["id"])}
    fanout.emit_many([sent[1]])  # the outbox's retry
    assert sink.received_ids == [str(e["id"]) for e in sent]  # not twice for the retry
    assert sorted(eventgrid.received_ids) == sorted(str(e["id"]) for e in sent)


# -- through the function -------------------------------------------------------------------


def test_on_event_outcomes_reach_the_channel_signed_and_also_the_sink(
    make_function: FunctionFactory, standin: TaskCenterStandIn, sink: OutcomeSink,
    eventgrid: EventGridStandIn,
) -> None:
    task = failed_task(EXPIRED)
    standin.add_job(task)
    function = make_function(EG_ENDPOINT=eventgrid.url, EG_CHANNEL_ID=CHANNEL,
                             SDRS_AUTH_TOKEN="", HUAWEICLOUD_SDK_AK=AK, HUAWEICLOUD_SDK_SK=SK)
    standin._credentials = {AK: SK}
    response = function.send("sdrs.job.failed", task)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert standin.deletes() == [task["resource_id"]]
    (taken,) = eventgrid.events
    assert taken["type"] == "sdrs.failurejob.deleted" and taken["subject"] == task["resource_id"]
    assert [e["id"] for e in sink.events] == [taken["id"]]
    assert eventgrid.requests[0].headers["authorization"].startswith("SDK-HMAC-SHA256")


def test_a_channel_that_is_down_makes_on_event_ask_for_redelivery(
    make_function: FunctionFactory, standin: TaskCenterStandIn, eventgrid: EventGridStandIn,
) -> None:
    task = failed_task(EXPIRED)
    standin.add_job(task)
    function = make_function(EG_ENDPOINT=eventgrid.url, EG_CHANNEL_ID=CHANNEL, K_SINK="",
                             OUTCOME_SINK_ATTEMPTS="2")
    eventgrid.inject(Fault(503), Fault(503))
    assert function.send("sdrs.job.failed", task).status_code == 503
    assert function.send("sdrs.job.failed", task, event_id="again").status_code == 200
    assert [e["type"] for e in eventgrid.events][-1].startswith("sdrs.failurejob.")
    assert standin.deletes() == [task["resource_id"]]


# -- settings ---------------------------------------------------------------------------------


BASE = {"SDRS_ENDPOINT": "https://sdrs.ap-southeast-3.myhuaweicloud.com",
        "SDRS_PROJECT_ID": PROJECT, "SDRS_AUTH_TOKEN": TOKEN}


@pytest.mark.parametrize(("env", "message"), [
    ({"EG_ENDPOINT": "http://eg.example.com", "EG_CHANNEL_ID": CHANNEL},
     "EG_ENDPOINT: must use https"),
    ({"EG_ENDPOINT": "https://eg.example.com/v1", "EG_CHANNEL_ID": CHANNEL},
     "EG_ENDPOINT: must be a base URL"),
    ({"EG_ENDPOINT": "https://eg.example.com", "EG_CHANNEL_ID": "../x"},
     "EG_CHANNEL_ID: must be the channel's id"),
    ({"EG_ENDPOINT": "https://eg.example.com"}, "EG_CHANNEL_ID: required with EG_ENDPOINT"),
    ({"EG_CHANNEL_ID": CHANNEL}, "EG_ENDPOINT: required with EG_CHANNEL_ID"),
    ({"SMN_ENDPOINT": "https://smn.example.com", "SMN_TOPIC_URN": "arn:aws:sns:x"},
     "SMN_TOPIC_URN: must look like urn:smn:"),
    ({"SMN_TOPIC_URN": f"urn:smn:ap-southeast-3:{PROJECT}:t"},
     "SMN_ENDPOINT: required with SMN_TOPIC_URN"),
])
def test_output_settings_are_checked_at_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({**BASE, **env})


def test_loopback_outputs_need_no_credentials_but_real_ones_do() -> None:
    loopback = {"SDRS_ENDPOINT": "http://127.0.0.1:1", "SDRS_PROJECT_ID": PROJECT}
    settings = load_settings({**loopback, "EG_ENDPOINT": "http://127.0.0.1:2/",
                              "EG_CHANNEL_ID": CHANNEL})
    assert settings.eg_endpoint == "http://127.0.0.1:2"
    with pytest.raises(ConfigError, match="EG_ENDPOINT: needs credentials"):
        load_settings({**loopback, "EG_ENDPOINT": "https://eg.example.com",
                       "EG_CHANNEL_ID": CHANNEL})


def test_secrets_never_reach_the_channel(eventgrid: EventGridStandIn) -> None:
    emitter(eventgrid).emit_many(events(2))
    for request in eventgrid.requests:
        assert SK not in request.body.decode() and SK not in json.dumps(request.headers)
