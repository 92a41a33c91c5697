"""The defects of issue 10, each through the production entry path against the stand-in.

Every test states its world (records seeded, policy written) and asserts the DELETEs
the stand-in received: none, or exactly the ones the world says may go.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from failjob_reaper.settings import ENV_VARS
from standin import HTML_200, Fault, OutcomeSink, TaskCenterStandIn
from tests.conftest import (
    EXPIRED,
    FRESH,
    PROJECT,
    ROOT,
    TOKEN,
    FunctionFactory,
    data_of,
    failed_task,
)

PING = "dev.knative.sources.ping"
FAILED = "sdrs.job.failed"
EXPIRY = "sdrs.failurejob.expired"
GROUP = "5ff3c7a2-0000-4000-8000-00000000000a"
HELD = {"holds": {"resource_names": ["prod-*"]}}


def summary_of(sink: OutcomeSink) -> dict[str, Any]:
    [summary] = sink.of_type("sdrs.failurejob.sweep_completed")
    return data_of(summary)


def outcomes_of(sink: OutcomeSink) -> list[dict[str, Any]]:
    return [data_of(e) for e in sink.events
            if e["type"] != "sdrs.failurejob.sweep_completed"]


def fast(**env: str) -> dict[str, str]:
    return {"SDRS_MAX_ATTEMPTS": "2", "SDRS_BACKOFF_INITIAL": "0", "SDRS_BACKOFF_MAX": "0",
            **env}


# -- batch is not a task id ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["batch", "BATCH", "action", "detail"])
def test_an_event_naming_an_endpoint_as_its_task_is_rejected_without_any_request(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory, name: str
) -> None:
    make_function().send(EXPIRY, {"failure_job_id": name})
    [event] = sink.wait_for(1)
    assert event["type"] == "sdrs.failurejob.rejected"
    assert standin.requests == []


def test_a_listed_record_whose_id_is_batch_is_never_deleted(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    standin.add_job(failed_task(EXPIRED, resource_id="batch"))
    ok = failed_task(EXPIRED)
    standin.add_job(ok)
    make_function().send(PING, {})

    assert standin.deletes() == [ok["resource_id"]]
    assert standin.batch_calls() == []
    failed = [d for d in outcomes_of(sink) if d["outcome"] == "delete_failed"]
    assert [d["error"]["code"] for d in failed] == ["reaper.no_id"]


# -- the shared-id rule across scopes ---------------------------------------------------------


def test_same_resource_id_at_top_level_and_in_a_group_keeps_the_held_one(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    standin.add_group(GROUP)
    expired = failed_task(EXPIRED)
    held = failed_task(EXPIRED, resource_id=expired["resource_id"], resource_name="prod-db")
    standin.add_job(expired)
    standin.add_job(held, GROUP)
    other_group_fresh = failed_task(EXPIRED)
    standin.add_job(other_group_fresh)
    standin.add_job(dict(failed_task(FRESH), resource_id=other_group_fresh["resource_id"]),
                    GROUP)
    function = make_function(policy=HELD)

    function.send(PING, {})
    assert standin.deletes() == []  # each DELETE would remove a record the policy keeps
    assert summary_of(sink)["listed"] == 4

    sink.clear()
    function.send(FAILED, expired)  # a single event weighs the other scopes too
    assert standin.deletes() == []
    [outcome] = outcomes_of(sink)
    assert outcome["outcome"] == "retained"
    assert "same resource_id" in outcome["reason"]
    assert standin.listed(held["resource_id"])


def test_same_resource_id_in_two_scopes_both_expired_is_one_delete(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    standin.add_group(GROUP)
    top = failed_task(EXPIRED)
    inside = failed_task(EXPIRED, resource_id=top["resource_id"])
    standin.add_job(top)
    standin.add_job(inside, GROUP)
    make_function().send(PING, {})

    assert standin.deletes() == [top["resource_id"]]
    summary = summary_of(sink)
    assert (summary["listed"], summary["deleted"]) == (2, 1)


# -- repeated groups and records ----------------------------------------------------------------


def test_repeated_groups_and_records_do_not_inflate_listed_past_the_fraction_guard(
    sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    # 7 expired of 17 distinct records is 0.41, above a 0.4 guard: nothing may go, however
    # often the server repeats its groups and records.
    with TaskCenterStandIn(project_id=PROJECT, token=TOKEN, repeat_records=3,
                           repeat_groups=2) as odd:
        odd.add_group(GROUP)
        for i in range(17):
            odd.add_job(failed_task(EXPIRED if i < 7 else FRESH), GROUP if i % 2 else None)
        make_function(SDRS_ENDPOINT=odd.url,
                      policy={"guards": {"max_deletion_fraction": 0.4}}).send(PING, {})
        assert odd.deletes() == []
    summary = summary_of(sink)
    assert summary["listed"] == 17
    assert "7 of 17" in summary["aborted_reason"]


# -- capped pages, count as page size ----------------------------------------------------------


def test_capped_pages_with_count_as_page_size_are_read_to_the_end(
    sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    policy = {"rules": [{"name": "keep-failovers", "match": {"failure_status": "failoverFail"},
                         "retention": "forever"}], **HELD}
    with TaskCenterStandIn(project_id=PROJECT, token=TOKEN, max_page=100,
                           count_mode="page") as capped:
        expired = failed_task(timedelta(days=30))  # newest: on page 1
        capped.add_job(expired)
        capped.add_jobs((failed_task(timedelta(days=60), failure_status="failoverFail"), None)
                        for _ in range(150))
        sibling = failed_task(timedelta(days=90), resource_id=expired["resource_id"],
                              resource_name="prod-db")  # oldest: on page 2, held
        capped.add_job(sibling)
        make_function(SDRS_ENDPOINT=capped.url, policy=policy).send(PING, {})

        assert capped.deletes() == []
        assert capped.listed(sibling["resource_id"])
    summary = summary_of(sink)
    assert (summary["listed"], summary["partial"]) == (152, False)


# -- ignored offset ------------------------------------------------------------------------------


@pytest.fixture
def offset_ignored() -> Iterator[tuple[TaskCenterStandIn, list[dict[str, Any]]]]:
    """A stand-in that answers every page as the first, with 12 expired records."""
    with TaskCenterStandIn(project_id=PROJECT, token=TOKEN, max_page=5,
                           ignore_offset=True) as odd:
        records = [failed_task(EXPIRED) for _ in range(12)]
        odd.add_jobs((r, None) for r in records)
        yield odd, records


def test_a_server_that_ignores_offset_gives_a_partial_sweep_without_any_delete(
    sink: OutcomeSink, make_function: FunctionFactory,
    offset_ignored: tuple[TaskCenterStandIn, list[dict[str, Any]]],
) -> None:
    odd, _ = offset_ignored
    make_function(SDRS_ENDPOINT=odd.url).send(PING, {})
    assert odd.deletes() == []
    listings = [r for r in odd.requests if r.path.endswith("failure-jobs")]
    assert len(listings) == 2  # the second page brought nothing new: stop
    summary = summary_of(sink)
    assert summary["partial"] is True
    assert "ignore offset" in summary["partial_reason"]
    assert summary["deleted"] == 0


def test_a_server_that_ignores_offset_ends_a_single_event_without_delete(
    sink: OutcomeSink, make_function: FunctionFactory,
    offset_ignored: tuple[TaskCenterStandIn, list[dict[str, Any]]],
) -> None:
    odd, records = offset_ignored
    response = make_function(SDRS_ENDPOINT=odd.url).send(FAILED, records[0])
    assert odd.deletes() == []
    assert response.status_code == 200  # permanent: a redelivery would page forever too
    [outcome] = outcomes_of(sink)
    # The plan's answer on every path: kept while a listing is incomplete.
    assert (outcome["outcome"], outcome["rule"]) == ("retained", "incomplete-listing")
    assert outcome["error"]["code"] == "SDRS.IncompleteListing"
    assert outcome["error"]["retryable"] is False


def test_a_listing_has_no_page_bound_and_is_read_to_its_empty_page(
    sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    # 60 pages of 10: more pages than the bound listings had before issue 19 (50).
    with TaskCenterStandIn(project_id=PROJECT, token=TOKEN, max_page=10) as capped:
        records = [failed_task(EXPIRED) for _ in range(600)]
        capped.add_jobs((r, None) for r in records)
        make_function(SDRS_ENDPOINT=capped.url,
                      policy={"guards": {"max_deletions_per_sweep": 1000}}).send(PING, {})
        listings = [r for r in capped.requests if r.path.endswith("failure-jobs")]
        assert sorted(capped.deletes()) == sorted(r["resource_id"] for r in records)
    assert len(listings) >= 61  # 60 full pages and the empty one
    summary = summary_of(sink)
    assert summary["partial"] is False and summary["deleted"] == 600


class _EndlessPage(TaskCenterStandIn):
    """Answers every listing with the same 1,000-record page, forever."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        records = [failed_task(EXPIRED) for _ in range(1000)]
        import json
        self._page = json.dumps({"count": 1000, "failure_jobs": records}).encode()

    def _list_jobs(self, query: Any) -> Any:
        from standin._http import Response
        return Response(200, self._page)


def test_memory_stays_bounded_against_a_server_repeating_a_full_page_forever(
    sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    process = psutil.Process()
    with _EndlessPage(project_id=PROJECT, token=TOKEN) as endless:
        function = make_function(SDRS_ENDPOINT=endless.url, SWEEP_DEADLINE="20")
        before = process.memory_info().rss
        peak = before
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.wait(0.02):
                peak = max(peak, process.memory_info().rss)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            function.send(PING, {})
            function.send(FAILED, {"job_id": "ff808082686f229a0000000000ffffff"})
        finally:
            done.set()
            watcher.join()
        assert endless.deletes() == []
    assert peak - before < 150 * 2**20
    assert summary_of(sink)["partial"] is True


# -- HTML 200 --------------------------------------------------------------------------------------


def test_an_html_page_answered_200_is_no_listing(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("GET", r"failure-jobs$", HTML_200, HTML_200)
    function = make_function(SDRS_MAX_ATTEMPTS="1")  # an HTML page is retried like a 503
    function.send(FAILED, record)
    function.send(PING, {})

    assert standin.deletes() == []
    [outcome] = outcomes_of(sink)[:1]
    assert outcome["outcome"] == "delete_failed"
    assert outcome["error"]["code"] == "SDRS.BadListing"
    assert summary_of(sink)["partial"] is True


# -- fresh before delete -----------------------------------------------------------------------


def test_a_new_failure_appearing_during_a_sweep_keeps_its_resource(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    first = failed_task(timedelta(days=20))  # newer: deleted first
    second = failed_task(timedelta(days=30))
    standin.add_job(first)
    standin.add_job(second)
    newcomer = failed_task(FRESH, resource_id=second["resource_id"])

    def a_new_failure(failure_job_id: str) -> None:
        if failure_job_id == first["resource_id"]:
            standin.add_job(newcomer)  # the resource failed again meanwhile

    standin.after_delete = a_new_failure
    make_function(LISTING_MAX_AGE="0.001", SWEEP_CONCURRENCY="1").send(PING, {})

    assert standin.deletes() == [first["resource_id"]]
    assert standin.listed(second["resource_id"])
    kept = [d for d in outcomes_of(sink) if d["failure_job_id"] == second["resource_id"]]
    assert kept == [] or kept[0]["outcome"] == "retained"
    assert summary_of(sink)["outcomes"]["retained"] == 1


# -- wrong group hint --------------------------------------------------------------------------


def test_a_group_hint_that_names_no_group_searches_the_other_scopes(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    standin.add_group(GROUP)
    record = failed_task(EXPIRED)
    standin.add_job(record, GROUP)
    make_function().send(EXPIRY, {"failure_job_id": record["resource_id"],
                                  "server_group_id": "no-such-group-0001"})

    assert standin.deletes() == [record["resource_id"]]
    [outcome] = outcomes_of(sink)
    assert (outcome["outcome"], outcome["server_group_id"]) == ("deleted", GROUP)


# -- the lost answer ---------------------------------------------------------------------------


def test_a_delete_applied_but_answered_late_then_404_is_deleted(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"failure-jobs/", Fault(passthrough=True, late=1.5))
    response = make_function(**fast(SDRS_REQUEST_TIMEOUT="0.5")).send(FAILED, record)

    assert response.status_code == 200
    assert standin.deletes() == [record["resource_id"]] * 2
    [outcome] = outcomes_of(sink)
    assert (outcome["outcome"], outcome["status_code"], outcome["attempts"]) == (
        "deleted", 404, 2)
    assert "answer was lost" in outcome["reason"]


# -- outcome ids -------------------------------------------------------------------------------


def test_records_without_a_usable_id_get_distinct_outcome_ids(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    for bad in ("../x", "a b", ""):
        standin.add_job(failed_task(EXPIRED, resource_id=bad))
    make_function().send(PING, {})

    failed = [e for e in sink.events if e["type"] == "sdrs.failurejob.delete_failed"]
    assert len(failed) == 3
    assert len({e["id"] for e in failed}) == 3
    assert standin.deletes() == []


# -- a huge number in the policy file ----------------------------------------------------------


def _python(code: str, tmp_path: Path, **values: str) -> subprocess.CompletedProcess[str]:
    policy = tmp_path / "policy.yaml"
    policy.write_text("keep_latest_per_resource: " + "9" * 5000 + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS and k != "FUNCTION_TARGET"}
    env.update(SDRS_ENDPOINT="http://127.0.0.1:1", SDRS_PROJECT_ID=PROJECT,
               RETENTION_POLICY_FILE=str(policy), **values)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_5000_digit_integer_in_the_policy_stops_startup_with_one_line(
    tmp_path: Path,
) -> None:
    result = _python("import main", tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("failjob-reaper: configuration error: RETENTION_POLICY_FILE")
    assert "digits" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_5000_digit_integer_in_the_policy_leaves_the_functiongraph_import_alive(
    tmp_path: Path,
) -> None:
    code = ("import main\n"
            "try:\n"
            "    main.handler({'trigger_type': 'TIMER', 'user_event': ''}, None)\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__)\n")
    result = _python(code, tmp_path, RUNTIME_FUNC_NAME="failjob-reaper")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ConfigurationFailed"
    assert "Traceback" not in result.stderr
