"""The pure planner and the answer interpreter: worlds stated by the test, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from failjob_reaper.plan import (
    Everything,
    OneResource,
    OneTask,
    ScopeListing,
    interpret_delete,
    make_plan,
)
from failjob_reaper.policy import parse_policy

NOW = datetime(2026, 1, 10, tzinfo=UTC)
OLD = (NOW - timedelta(days=30)).isoformat()
NEW = (NOW - timedelta(hours=1)).isoformat()
G = "a1b2c3d4-0000-4000-8000-000000000001"


def rec(job_id: str, resource_id: str, begin: str, **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "resource_id": resource_id, "begin_time": begin, **extra}


def plan(listings: list[ScopeListing], policy: dict[str, Any] | None = None, **kw: Any) -> Any:
    kw.setdefault("target", Everything())
    return make_plan(listings, parse_policy(policy or {}), NOW, id_field="resource_id", **kw)


def test_a_shared_id_across_scopes_is_not_deleted_when_one_record_is_kept() -> None:
    top = ScopeListing(None, [rec("j1", "r1", OLD)])
    group = ScopeListing(G, [rec("j2", "r1", NEW)])  # same DELETE path, still fresh
    result = plan([top, group])
    assert result.deletes == ()
    [kept] = result.settled
    assert kept.outcome == "retained" and "same resource_id" in kept.reason


def test_a_delete_names_every_record_it_removes_in_every_scope() -> None:
    top = ScopeListing(None, [rec("j1", "r1", OLD)])
    group = ScopeListing(G, [rec("j2", "r1", OLD)])
    [delete] = plan([top, group]).deletes
    assert delete.failure_job_id == "r1"
    assert {p.key for p in delete.removes} == {"job:j1", "job:j2"}
    assert set(delete.scopes) == {None, G}


def test_a_record_on_two_pages_and_in_two_scopes_is_one_record() -> None:
    same = rec("j1", "r1", OLD)
    other = rec("j2", "r2", NEW)
    result = plan([ScopeListing(None, [same, same, other, other]), ScopeListing(G, [same])])
    assert result.listed == 2
    assert [d.failure_job_id for d in result.deletes] == ["r1"]


def test_fraction_guard_counts_distinct_records() -> None:
    # 1 expired of 3 distinct records is 0.33: repeats of the fresh ones must not dilute it,
    # and repeats of the expired one must not inflate it.
    records = [rec("a", "ra", OLD)] * 3 + [rec("b", "rb", NEW)] * 5 + [rec("c", "rc", NEW)]
    result = plan([ScopeListing(None, records)], {"guards": {"max_deletion_fraction": 0.3}})
    assert result.guard is not None
    assert (result.guard.planned, result.guard.listed) == (1, 3)
    assert result.guard.tripped == "max_deletion_fraction"
    assert result.deletes == ()
    assert [s.decision.rule for s in result.settled if s.failure_job_id == "ra"] == ["guard"]


def test_an_incomplete_listing_blocks_every_delete() -> None:
    complete = ScopeListing(None, [rec("j1", "r1", OLD)])
    broken = ScopeListing(G, [], complete=False, why_incomplete="no progress")
    result = plan([complete, broken])
    assert result.deletes == ()
    assert result.incomplete and "no progress" in result.incomplete[0]
    [kept] = result.settled
    assert kept.decision is not None and kept.decision.rule == "incomplete-listing"


def test_one_task_target_plans_only_that_task() -> None:
    listing = ScopeListing(None, [rec("j1", "r1", OLD), rec("j2", "r2", OLD)])
    [delete] = plan([listing], target=OneTask("job_id", "j2")).deletes
    assert delete.failure_job_id == "r2"
    missing = plan([listing], target=OneTask("job_id", "nope"))
    assert [s.outcome for s in missing.settled] == ["already_deleted"]


def test_one_resource_target_decides_each_of_its_tasks_with_keep_latest() -> None:
    listing = ScopeListing(None, [rec("j1", "r1", OLD), rec("j2", "r1", NEW),
                                  rec("j3", "r2", OLD)])
    policy = {"keep_latest_per_resource": 1}
    result = make_plan([listing], parse_policy(policy), NOW, id_field="job_id",
                       target=OneResource("r1"))
    assert [d.failure_job_id for d in result.deletes] == ["j1"]
    assert [s.failure_job_id for s in result.settled] == ["j2"]
    assert result.guard is None


def test_records_without_a_usable_id_fail_without_a_delete() -> None:
    listing = ScopeListing(None, [rec("j1", "../x", OLD), rec("j2", "batch", OLD)])
    result = plan([listing])
    assert result.deletes == ()
    assert [s.outcome for s in result.settled] == ["delete_failed", "delete_failed"]


def test_interpreter() -> None:
    def outcome(status: int | None, **kw: Any) -> str | None:
        kw.setdefault("earlier_answer_lost", False)
        kw.setdefault("still_listed", None)
        return interpret_delete(status, id_field="resource_id", **kw).outcome

    assert outcome(204) == "deleted"
    assert outcome(404) is None  # needs a re-listing first
    assert outcome(404, still_listed=False) == "already_deleted"
    assert outcome(404, earlier_answer_lost=True) == "deleted"
    still = interpret_delete(404, earlier_answer_lost=False, still_listed=True,
                             id_field="resource_id")
    assert still.outcome == "delete_failed" and "SDRS_FAILURE_JOB_ID_FIELD" in still.reason
    assert outcome(None, error={"message": "timeout"}) == "delete_failed"


def test_a_record_listed_in_many_scopes_is_one_record_and_the_copy_that_keeps_it_wins() -> None:
    # More listings than the planner asks one by one (it then keeps one dictionary of
    # identities): the answer must not change with how copies are found.
    for scopes in (3, 40):
        groups = [f"a1b2c3d4-0000-4000-8000-{n:012d}" for n in range(scopes)]
        listings = [ScopeListing(g, [rec("shared", "r-shared", OLD), rec(f"own-{n}", f"r{n}", OLD)])
                    for n, g in enumerate(groups)]
        # The last scope's copy of the shared record is still fresh: the copy that keeps wins.
        listings[-1] = ScopeListing(groups[-1], [rec("shared", "r-shared", NEW),
                                                 rec(f"own-{scopes - 1}", f"r{scopes - 1}", OLD)])
        result = plan(listings, {"guards": {"max_deletion_fraction": 1.0}})
        assert result.listed == scopes + 1
        assert sorted(d.failure_job_id for d in result.deletes) == sorted(
            f"r{n}" for n in range(scopes))
        [shared] = [p for p in result.records if p.job_id == "shared"]
        assert shared.decision.action == "retain"
        assert set(shared.scopes) == set(groups)
