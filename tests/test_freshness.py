"""Fresh before delete (docs/safety.md): a sweep whose listing grew older than
LISTING_MAX_AGE lists its scopes again once for a window of its next DELETEs, keeps
only the records those DELETEs must weigh, and answers each of them from that one
plan. The clock is injected; the world is the stand-in's, over loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from failjob_reaper import executing
from failjob_reaper.components import Components, build_components
from failjob_reaper.http_api import HttpRequest, serve
from failjob_reaper.plan import (
    Everything,
    ScopeListing,
    Settlement,
    make_plan,
    recheck_deletes,
)
from failjob_reaper.policy import parse_policy
from standin import OutcomeSink, TaskCenterStandIn
from tests.conftest import EXPIRED, FRESH, data_of, failed_task
from tests.reliability_support import settings_for

MAX_AGE = 60.0
TOKEN = "freshness-token-4kQz"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def function(standin: TaskCenterStandIn, sink: OutcomeSink, tmp_path: Path,
             clock: Clock) -> Components:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default_retention": "7d", "guards": {
        "max_deletions_per_sweep": 1000, "max_deletion_fraction": 1.0}}))
    return build_components(settings_for(
        standin.url, K_SINK=sink.url, RETRY_API_TOKEN=TOKEN, SWEEP_CONCURRENCY="1",
        LISTING_MAX_AGE=str(MAX_AGE), RETENTION_POLICY_FILE=str(policy)), clock=clock)


def sweep(app: Components) -> dict[str, Any]:
    answer = serve(app, HttpRequest("POST", "/sweep", {
        "authorization": f"Bearer {TOKEN}", "content-type": "application/json"}, b"{}"))
    assert answer.status == 200, answer.body
    body = answer.json()
    assert isinstance(body, dict)
    return body


def listings_started(standin: TaskCenterStandIn) -> int:
    return sum(1 for r in standin.requests if r.method == "GET"
               and r.path.endswith("/failure-jobs") and r.query.get("offset", "0") == "0")


def on_first_delete(standin: TaskCenterStandIn, act: Callable[[], None]) -> None:
    done: list[str] = []

    def after(failure_job_id: str) -> None:
        if not done:
            done.append(failure_job_id)
            act()

    standin.after_delete = after


def test_a_stale_listing_is_listed_again_once_per_window_of_deletes(
    standin: TaskCenterStandIn, sink: OutcomeSink, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(executing, "RECHECK_WINDOW", 5)
    tasks = [failed_task(EXPIRED) for _ in range(30)]
    for task in tasks:
        standin.add_job(task)
    clock = Clock()
    on_first_delete(standin, lambda: clock.advance(MAX_AGE + 1))  # the listing is stale now

    summary = sweep(function(standin, sink, tmp_path, clock))

    assert sorted(standin.deletes()) == sorted(t["resource_id"] for t in tasks)
    assert summary["deleted"] == 30
    # The sweep's own listing, then one for each window of 5 of the 29 DELETEs left:
    # not one per DELETE, and no DELETE on the stale listing.
    assert listings_started(standin) == 1 + 6


def test_what_changed_meanwhile_is_what_the_new_listing_says(
    standin: TaskCenterStandIn, sink: OutcomeSink, tmp_path: Path,
) -> None:
    tasks = [failed_task(EXPIRED) for _ in range(12)]
    for task in tasks:
        standin.add_job(task)
    gone, failed_again = tasks[5], tasks[8]
    newcomer = failed_task(FRESH, resource_id=failed_again["resource_id"])
    clock = Clock()

    def meanwhile() -> None:
        clock.advance(MAX_AGE + 1)
        standin.remove_job(gone["resource_id"])  # deleted by someone else
        standin.add_job(newcomer)  # the resource failed again: its DELETE would take both

    on_first_delete(standin, meanwhile)
    summary = sweep(function(standin, sink, tmp_path, clock))

    expected = {t["resource_id"] for t in tasks} - {gone["resource_id"],
                                                    failed_again["resource_id"]}
    assert set(standin.deletes()) == expected
    assert standin.listed(failed_again["resource_id"])
    outcomes = {d["failure_job_id"]: d["outcome"] for d in map(data_of, sink.events)
                if "failure_job_id" in d}
    assert outcomes[gone["resource_id"]] == "already_deleted"
    assert summary["outcomes"]["retained"] == 1  # sweeps send no per-task retained event


def test_a_window_whose_new_listing_is_cut_short_deletes_none_of_its_tasks(
    standin: TaskCenterStandIn, sink: OutcomeSink, tmp_path: Path,
) -> None:
    tasks = [failed_task(EXPIRED) for _ in range(12)]
    for task in tasks:
        standin.add_job(task)
    clock = Clock()

    def meanwhile() -> None:
        clock.advance(MAX_AGE + 1)
        standin.ignore_offset = "jobs"  # the next listing repeats its first page: cut short

    on_first_delete(standin, meanwhile)
    summary = sweep(function(standin, sink, tmp_path, clock))

    assert standin.deletes() == [tasks[0]["resource_id"]]
    assert listings_started(standin) == 2  # the sweep's, then one for the whole window
    assert summary["deleted"] == 1 and summary["outcomes"]["retained"] == 11
    assert summary["rules"].get("incomplete-listing") == 11


# -- the planner's answer for a window, pure ----------------------------------------------

POLICY = parse_policy({"default_retention": "7d"})
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def task(job: str, resource: str, days: float) -> dict[str, str]:
    begin = NOW - timedelta(days=days)
    return {"job_id": job, "resource_id": resource,
            "begin_time": begin.strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"}


def test_a_window_is_answered_for_every_delete_it_names() -> None:
    before = [task("a", "r1", 30), task("b", "r2", 20), task("c", "r3", 10)]
    first = make_plan([ScopeListing(None, before)], POLICY, NOW, id_field="resource_id",
                      target=Everything(), guards=False)
    planned = list(first.deletes)
    assert {d.failure_job_id for d in planned} == {"r1", "r2", "r3"}

    # Listed again: r1 failed again a day ago (its DELETE would take that one too), r3's
    # task is gone, r2 is as it was.
    again = [task("a", "r1", 30), task("a2", "r1", 1), task("b", "r2", 20)]
    answers = recheck_deletes(planned, [ScopeListing(None, again)], POLICY, NOW,
                              id_field="resource_id")

    assert set(answers) == {"r1", "r2", "r3"}
    assert not isinstance(answers["r2"], Settlement)
    kept, gone = answers["r1"], answers["r3"]
    assert isinstance(kept, Settlement) and kept.outcome == "retained"
    assert isinstance(gone, Settlement) and gone.outcome == "already_deleted"


def test_an_incomplete_new_listing_deletes_nothing_of_the_window() -> None:
    before = [task("a", "r1", 30), task("b", "r2", 20)]
    first = make_plan([ScopeListing(None, before)], POLICY, NOW, id_field="resource_id",
                      target=Everything(), guards=False)
    assert len(first.deletes) == 2
    answers = recheck_deletes(list(first.deletes), [
        ScopeListing(None, before[:1], complete=False, why_incomplete="deadline")],
        POLICY, NOW, id_field="resource_id")
    assert set(answers) == {"r1", "r2"}
    assert all(isinstance(a, Settlement) and a.outcome == "retained"
               and a.decision is not None and a.decision.rule == "incomplete-listing"
               for a in answers.values())
