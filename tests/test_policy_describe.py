"""describe_policy: the plain-English reading of a policy for check-policy."""

from __future__ import annotations

from pathlib import Path

from failjob_reaper.policy import (
    Guards,
    Holds,
    Match,
    Policy,
    Rule,
    default_policy,
    describe_policy,
    load_policy,
    policy_warnings,
)
from tests.test_policy_load import FULL_EXAMPLE


def test_full_example(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FULL_EXAMPLE, encoding="utf-8")
    assert describe_policy(load_policy(path)) == [
        "Failed tasks are kept 7 days after they began (default).",
        "Rules are tried in order; the first that matches decides:",
        "Rule 'drills-are-noise': tasks with resource_type disaster_recovery_drills"
        " are kept 1 day.",
        "Rule 'keep-failovers': tasks with failure_status failoverFail or reverseFail"
        " are kept forever.",
        "Rule 'evs-volume-errors': tasks with error_code matching EVS.*"
        " are deleted as soon as they are seen.",
        "Keep-latest is off.",
        "Never deleted: resource names matching prod-*",
        "Held tasks are kept even by a forced retry.",
        "Tasks without a readable begin_time are kept.",
        "Tasks whose begin_time is more than 5 minutes in the future are kept (clock skew).",
        "A sweep that would delete more than 500 tasks deletes nothing.",
    ]


def test_default_policy() -> None:
    lines = describe_policy(default_policy())
    assert lines[0] == "Failed tasks are kept 7 days after they began (default)."
    assert "No holds." in lines
    assert "Keep-latest is off." in lines
    assert not any(line.startswith("Rule") for line in lines)
    assert lines[-1] == "A sweep that would delete more than 500 tasks deletes nothing."


def test_everything_else() -> None:
    policy = Policy(
        default_retention="forever",
        keep_latest_per_resource=3,
        clock_skew_tolerance="P1DT2H",
        dry_run=True,
        rules=[
            Rule(name="all", match=Match(), retention="PT36H"),
            Rule(
                name="two",
                match=Match(resource_name="db-*", server_group_id=["g1", "g2"]),
                retention="90s",
            ),
        ],
        holds=Holds(resource_ids=("r1", "r2"), job_ids=("j1",)),
        guards=Guards(max_deletions_per_sweep=1, max_deletion_fraction=0.25),
    )
    lines = describe_policy(policy)
    assert lines[0] == "Failed tasks are kept forever (default)."
    assert "Rule 'all': all tasks are kept 1 day 12 hours." in lines
    assert (
        "Rule 'two': tasks with resource_name matching db-* and server_group_id g1 or g2"
        " are kept 1 minute 30 seconds." in lines
    )
    assert "The 3 newest failed tasks of each resource_id are always kept." in lines
    assert "Never deleted: resource IDs r1, r2" in lines
    assert "Never deleted: job IDs j1" in lines
    assert (
        "Tasks whose begin_time is more than 1 day 2 hours in the future are kept (clock skew)."
        in lines
    )
    assert "A sweep that would delete more than 1 task deletes nothing." in lines
    assert (
        "A sweep that would delete more than 25% of the tasks it listed deletes nothing." in lines
    )
    assert lines[-1] == "Dry run: decisions are reported, nothing is deleted."


def test_keep_one_and_zero_deletions() -> None:
    policy = Policy(keep_latest_per_resource=1, guards=Guards(max_deletions_per_sweep=0))
    lines = describe_policy(policy)
    assert "The newest failed task of each resource_id is always kept." in lines
    assert "A sweep deletes nothing (max_deletions_per_sweep is 0)." in lines


# -- warnings: valid policies that likely do not mean what they say ------------------------


def test_a_rule_with_an_empty_match_is_warned_about_and_names_the_rules_it_hides() -> None:
    policy = Policy(rules=(Rule(name="everything", match=Match(), retention="1d"),
                           Rule(name="drills", match=Match(resource_type="drills"),
                                retention=None)))
    (warning,) = policy_warnings(policy)
    assert warning.startswith("rules[0] 'everything' has an empty match: it matches every task")
    assert "the rules after it ('drills') are never reached" in warning
    assert "default_retention never applies" in warning


def test_keep_latest_with_deletes_by_resource_id_is_the_trap_warned_about() -> None:
    policy = Policy(keep_latest_per_resource=1)
    (warning,) = policy_warnings(policy)  # the default id field is resource_id
    assert "keep_latest_per_resource is 1 and a DELETE is sent by resource_id" in warning
    assert "keeps all its tasks, however old" in warning
    assert policy_warnings(policy, id_field="job_id") == []


def test_the_default_policy_and_the_full_example_have_no_warnings(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FULL_EXAMPLE, encoding="utf-8")
    assert policy_warnings(load_policy(path)) == []
    assert policy_warnings(default_policy()) == []
