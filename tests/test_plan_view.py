"""The plan view, over plans made by the pure planner from records this test writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from failjob_reaper.plan import Everything, Plan, ScopeListing, make_plan
from failjob_reaper.plan_view import guard_data, guard_text, plan_rows, render_table
from failjob_reaper.policy import Guards, default_policy
from tests.conftest import EXPIRED, FRESH, failed_task

NOW = datetime.now(UTC)


def plan_of(*listings: ScopeListing, max_deletions: int = 500) -> Plan:
    policy = default_policy()
    policy = policy.model_copy(update={"guards": Guards(max_deletions_per_sweep=max_deletions)})
    return make_plan(listings, policy, NOW + timedelta(seconds=1), id_field="resource_id",
                     target=Everything(), dry_run=True)


def test_records_sharing_a_delete_id_are_all_kept_when_one_is_kept() -> None:
    old = failed_task(EXPIRED)
    sibling = failed_task(FRESH, resource_id=old["resource_id"])
    alone = failed_task(EXPIRED)
    rows = plan_rows(plan_of(ScopeListing(None, [old, sibling, alone])))

    by_job = {row.job_id: row for row in rows}
    assert by_job[alone["job_id"]].action == "would_delete"
    assert by_job[sibling["job_id"]].action == "retained"
    assert by_job[sibling["job_id"]].retain_until is not None
    assert by_job[old["job_id"]].action == "retained"
    assert "same resource_id is kept" in by_job[old["job_id"]].reason
    assert rows[0].job_id == alone["job_id"]  # what goes comes first


def test_a_tripped_guard_keeps_every_row_and_counts_how_far_over() -> None:
    records = [failed_task(EXPIRED) for _ in range(5)]
    plan = plan_of(ScopeListing(None, records), max_deletions=2)
    rows = plan_rows(plan)

    assert [row.action for row in rows] == ["would_delete"] * 5
    assert plan.guard is not None
    assert guard_data(plan.guard)["over_by"] == 3
    assert "(3 over)" in guard_text(plan.guard, dry_run=True)
    done = plan_rows(plan, done={})  # the real sweep: the guard kept them
    assert {(row.action, row.rule) for row in done} == {("retained", "guard")}


def test_an_incomplete_listing_plans_no_delete_and_says_so() -> None:
    record = failed_task(EXPIRED)
    rows = plan_rows(plan_of(ScopeListing(None, [record]),
                             ScopeListing("g1", [], complete=False, why_incomplete="boom")))
    assert [(row.action, row.rule) for row in rows] == [("retained", "incomplete-listing")]


def test_the_table_has_a_header_and_one_line_per_row() -> None:
    rows = plan_rows(plan_of(ScopeListing(None, [failed_task(EXPIRED), failed_task(FRESH)])))
    lines = render_table(rows).splitlines()
    assert lines[0].split()[:2] == ["ACTION", "TASK"]
    assert len(lines) == 3
