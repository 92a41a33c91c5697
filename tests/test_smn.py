"""SMN out: digests for people, the notice window, and a budget that holds a bad hour down.

The texts are pure functions (tested without a server); the rest runs the function
(``main.handler`` as FunctionGraph calls it) against the task-center stand-in and the
SMN stand-in, which verifies the signature and keeps the messages it took.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from failjob_reaper.alerts import (
    MAX_SUBJECT_BYTES,
    Alert,
    Alerts,
    SmnPublisher,
    SweepWatch,
    drain,
    notice_alert,
    sweep_digest,
)
from failjob_reaper.outcomes import Causation, Outcome, SweepSummary
from failjob_reaper.sdrs import AkSkAuth
from failjob_reaper.state import MemoryStore
from standin import Fault, OutcomeSink, SmnStandIn, TaskCenterStandIn, bulk_world
from tests.conftest import AK, EXPIRED, FRESH, PROJECT, SK, TOKEN, failed_task
from tests.test_functiongraph import (  # noqa: F401 - fixture
    FunctionGraph,
    functiongraph,
    timer_event,
)

TOPIC = f"urn:smn:ap-southeast-3:{PROJECT}:failjob-reaper-alerts"
CAUSE = Causation(id="sweep-1", source="/test")


@pytest.fixture
def smn() -> Iterator[SmnStandIn]:
    with SmnStandIn(project_id=PROJECT, topic_urn=TOPIC, token=TOKEN,
                    credentials={AK: SK}) as server:
        yield server


def smn_env(smn: SmnStandIn, **extra: str) -> dict[str, str]:
    return {"SMN_ENDPOINT": smn.url, "SMN_TOPIC_URN": TOPIC, **extra}


def summary(**fields: Any) -> SweepSummary:
    base: dict[str, Any] = {"project_id": PROJECT, "trigger": "timer", "dry_run": False,
                            "causation": CAUSE, "listed": 10, "decided": 10}
    return SweepSummary(**{**base, **fields})


def retained(task: str, due: datetime) -> Outcome:
    return Outcome(outcome="retained", project_id=PROJECT, failure_job_id=task,
                   trigger="timer", dry_run=False, causation=CAUSE, rule="default",
                   retain_until=due, job={"resource_name": f"name-{task}"})


# -- the texts ---------------------------------------------------------------------------


def test_a_clean_sweep_needs_no_person() -> None:
    assert sweep_digest(summary(deleted=3, outcomes={"deleted": 3}), [], 0) is None


def test_the_guard_digest_names_the_guard_and_the_counts() -> None:
    reason = "3 deletions planned, more than max_deletions_per_sweep 2: nothing deleted"
    alert = sweep_digest(summary(listed=5, aborted=True, aborted_reason=reason,
                                 outcomes={"retained": 5}, rules={"guard": 3}), [], 0)
    assert alert is not None
    assert "guard tripped" in alert.subject
    assert "max_deletions_per_sweep 2" in alert.message
    assert "listed 5" in alert.message and "by the guard: 3" in alert.message


def test_a_subject_never_exceeds_512_bytes_even_in_multibyte_text() -> None:
    alert = sweep_digest(summary(partial=True, partial_reason="x",
                                 server_group_id="é" * 600), [], 0)
    assert alert is not None and len(alert.subject.encode()) <= MAX_SUBJECT_BYTES


def test_the_notice_lists_the_due_tasks_soonest_first_and_counts_the_rest() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    due = [retained(f"t{i}", now + timedelta(hours=30 - i)) for i in range(25)]
    alert = notice_alert(due, 25, timedelta(days=2), PROJECT)
    assert alert is not None
    lines = [line for line in alert.message.splitlines() if line.startswith("- ")]
    assert lines[0].startswith("- t24 ") and len(lines) == 20
    assert "... and 5 more." in alert.message and "within 2d" in alert.subject


def test_the_watch_keeps_only_retained_tasks_due_within_the_window() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    watch = SweepWatch(now, timedelta(hours=24))
    watch.observe(retained("soon", now + timedelta(hours=5)))
    watch.observe(retained("later", now + timedelta(days=3)))
    watch.observe(replace(retained("never", now), retain_until=None))
    assert [o.failure_job_id for o in watch.due] == ["soon"] and watch.due_total == 1


# -- the budget ----------------------------------------------------------------------------


def test_a_bad_hour_sends_a_handful_and_says_what_it_held_back(smn: SmnStandIn) -> None:
    clock = [3600.0 * 1000]
    alerts = Alerts(SmnPublisher(smn.url, PROJECT, TOPIC, auth=AkSkAuth(AK, SK)),
                    MemoryStore(), max_per_hour=3, clock=lambda: clock[0])
    assert all(alerts.send(Alert(f"s{i}", "m")) for i in range(50))  # handed over
    assert alerts.drain() and len(smn.messages) == 3
    clock[0] += 3600  # the next hour
    alerts.send(Alert("next hour", "m"))
    assert alerts.drain()
    assert "47 earlier message(s) were not sent" in smn.messages[-1].message
    alerts.send(Alert("after", "m"))
    assert alerts.drain() and "not sent" not in smn.messages[-1].message


def test_the_budget_holds_across_instances_sharing_redis(
    smn: SmnStandIn, redis_url: str,
) -> None:
    from failjob_reaper.state import open_store

    instances = [Alerts(SmnPublisher(smn.url, PROJECT, TOPIC, auth=AkSkAuth(AK, SK)),
                        open_store(redis_url, namespace=f"fjr:{PROJECT}:"), max_per_hour=4)
                 for _ in range(3)]
    for i in range(30):
        instances[i % 3].send(Alert(f"s{i}", "m"))
    assert drain()
    assert len(smn.messages) == 4


def test_smn_down_is_logged_and_never_raised(
    smn: SmnStandIn, caplog: pytest.LogCaptureFixture,
) -> None:
    smn.inject(Fault(503), Fault(503), Fault(503))
    publisher = SmnPublisher(smn.url, PROJECT, TOPIC, auth=AkSkAuth(AK, SK), sleep=lambda _: None)
    with caplog.at_level(logging.ERROR, logger="failjob_reaper"):
        assert publisher.publish(Alert("s", "m")) is False
    assert "SMN answered 503" in caplog.text and smn.messages == []


def test_publish_is_signed_and_carries_subject_and_message(smn: SmnStandIn) -> None:
    assert SmnPublisher(smn.url, PROJECT, TOPIC, auth=AkSkAuth(AK, SK)).publish(
        Alert("subject", "message"))
    (request,) = smn.requests
    assert request.status == 200 and request.headers["authorization"].startswith(
        "SDK-HMAC-SHA256")
    assert smn.messages[0].subject == "subject" and smn.messages[0].topic_urn == TOPIC


# -- through the function ------------------------------------------------------------------


def test_a_sweep_that_trips_the_guard_sends_one_message_naming_it_and_the_counts(
    standin: TaskCenterStandIn, smn: SmnStandIn, functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    for _ in range(3):
        standin.add_job(failed_task(EXPIRED))
    standin.add_job(failed_task(FRESH))
    policy = {"guards": {"max_deletions_per_sweep": 2}}

    functiongraph(policy=policy, **smn_env(smn))(timer_event())

    assert standin.deletes() == []
    (message,) = smn.wait_for(1)
    assert "guard tripped" in message.subject
    assert "max_deletions_per_sweep 2" in message.message
    assert "3 deletions planned" in message.message and "listed 4" in message.message


def test_a_sweep_over_a_thousand_failures_sends_a_handful_of_messages(
    standin: TaskCenterStandIn, smn: SmnStandIn, sink: OutcomeSink,
    functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    groups, jobs = bulk_world(1000, 0, datetime.now(UTC))
    standin.load(groups, jobs)
    standin.inject("DELETE", r"/failure-jobs/", *[Fault(403)] * 1000)  # every DELETE refused
    policy = {"guards": {"max_deletions_per_sweep": 5000}}

    summary_data = functiongraph(policy=policy, **smn_env(smn))(timer_event())
    assert drain()

    assert summary_data["outcomes"]["delete_failed"] == 1000
    assert 1 <= len(smn.messages) <= 3
    (digest,) = [m for m in smn.messages if "failed" in m.subject]
    assert "delete_failed 1000" in digest.message and "... and 980 more." in digest.message


def test_permanent_failures_outside_sweeps_are_one_message_each_within_the_budget(
    standin: TaskCenterStandIn, smn: SmnStandIn, functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    from tests.test_functiongraph import eventgrid_event

    records = [failed_task(EXPIRED) for _ in range(12)]
    for record in records:
        standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/", *[Fault(403)] * 24)
    function = functiongraph(**smn_env(smn, SMN_MAX_MESSAGES_PER_HOUR="5"))
    for record in records:
        function(eventgrid_event(record))
        function(eventgrid_event(record))  # redelivered: no second message for it
    assert drain()
    assert len(smn.messages) == 5
    assert all("delete failed for" in m.subject for m in smn.messages)


def test_the_notice_lists_the_tasks_due_within_the_window(
    standin: TaskCenterStandIn, smn: SmnStandIn, functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    due = failed_task(timedelta(days=6), resource_name="due-in-a-day")
    later = failed_task(timedelta(days=2), resource_name="due-in-five-days")
    gone = failed_task(EXPIRED, resource_name="expired-already")
    for record in (due, later, gone):
        standin.add_job(record)
    policy = {"default_retention": "7d", "notice": "2d"}

    function = functiongraph(policy=policy, **smn_env(smn))
    function(timer_event())
    function(timer_event())  # the next sweep: the same notice is not sent again
    assert drain()

    assert standin.deletes() == [gone["resource_id"]]
    (notice,) = smn.wait_for(1)
    assert "1 failed task(s) due for deletion within 2d" in notice.subject
    assert "due-in-a-day" in notice.message
    assert "due-in-five-days" not in notice.message and "expired-already" not in notice.message
    assert len(smn.messages) == 1


def test_smn_down_never_blocks_the_sweep_or_its_report(
    standin: TaskCenterStandIn, smn: SmnStandIn, sink: OutcomeSink,
    functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    for _ in range(3):
        standin.add_job(failed_task(EXPIRED))
    smn.inject(*[Fault(503)] * 10)
    result = functiongraph(policy={"guards": {"max_deletions_per_sweep": 1}},
                           **smn_env(smn))(timer_event())
    assert result["aborted"] is True
    assert sink.of_type("sdrs.failurejob.sweep_completed")
    assert drain() and smn.messages == []


def test_secrets_never_reach_a_message(
    standin: TaskCenterStandIn, smn: SmnStandIn, functiongraph: FunctionGraph,  # noqa: F811
) -> None:
    standin.add_job(failed_task(EXPIRED))
    standin.inject("DELETE", r"/failure-jobs/", Fault(403))
    functiongraph(**smn_env(smn))(timer_event())
    assert drain()
    for message in smn.messages:
        assert TOKEN not in message.message and SK not in message.message
