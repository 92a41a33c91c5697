"""A policy in plain English, for ``check-policy``: an operator should be able
to read back what a file means before a sweep acts on it; and the warnings about a
valid policy that likely does not do what its author meant (``policy_warnings``)."""

from __future__ import annotations

from datetime import timedelta

from ._durations import describe_duration
from ._model import Match, Policy


def describe_policy(policy: Policy) -> list[str]:
    """One sentence per line: default, rules, keep-latest, holds, the
    safety checks on begin_time, then the sweep guards."""
    lines = [f"Failed tasks {_kept(policy.default_retention)} (default)."]
    if policy.rules:
        lines.append("Rules are tried in order; the first that matches decides:")
        for rule in policy.rules:
            lines.append(
                f"Rule {rule.name!r}: {_subject(rule.match)} {_kept(rule.retention, rule=True)}."
            )
    if policy.keep_latest_per_resource:
        n = policy.keep_latest_per_resource
        newest = "newest failed task ... is" if n == 1 else f"{n} newest failed tasks ... are"
        lines.append(f"The {newest} always kept.".replace("...", "of each resource_id"))
    else:
        lines.append("Keep-latest is off.")

    holds = policy.holds
    if holds.resource_ids:
        lines.append(f"Never deleted: resource IDs {', '.join(holds.resource_ids)}")
    if holds.resource_names:
        lines.append(f"Never deleted: resource names matching {', '.join(holds.resource_names)}")
    if holds.job_ids:
        lines.append(f"Never deleted: job IDs {', '.join(holds.job_ids)}")
    if holds.resource_ids or holds.resource_names or holds.job_ids:
        lines.append("Held tasks are kept even by a forced retry.")
    else:
        lines.append("No holds.")

    lines.append("Tasks without a readable begin_time are kept.")
    lines.append(
        "Tasks whose begin_time is more than "
        f"{describe_duration(policy.clock_skew_tolerance)} in the future are kept (clock skew)."
    )

    guards = policy.guards
    if guards.max_deletions_per_sweep == 0:
        lines.append("A sweep deletes nothing (max_deletions_per_sweep is 0).")
    else:
        count = guards.max_deletions_per_sweep
        lines.append(
            f"A sweep that would delete more than {count} task{'' if count == 1 else 's'} "
            "deletes nothing."
        )
    if guards.max_deletion_fraction < 1:
        share = f"{guards.max_deletion_fraction * 100:g}%"
        lines.append(
            f"A sweep that would delete more than {share} of the tasks it listed deletes nothing."
        )
    if policy.dry_run:
        lines.append("Dry run: decisions are reported, nothing is deleted.")
    return lines


def _kept(retention: timedelta | None, *, rule: bool = False) -> str:
    if retention is None:
        return "are kept forever"
    if retention == timedelta(0):
        return "are deleted as soon as they are seen"
    after = "" if rule else " after they began"
    return f"are kept {describe_duration(retention)}{after}"


_GLOBS = frozenset({"error_code", "resource_name", "job_type"})


def _subject(match: Match) -> str:
    given = match.given()
    if not given:
        return "all tasks"
    parts = []
    for field, values in given.items():
        how = " matching" if field in _GLOBS else ""
        parts.append(f"{field}{how} {' or '.join(values)}")
    return "tasks with " + " and ".join(parts)


DEFAULT_ID_FIELD = "resource_id"
"""The DELETE id field when SDRS_FAILURE_JOB_ID_FIELD is unset (docs/configuration.md)."""


def policy_warnings(policy: Policy, *, id_field: str = DEFAULT_ID_FIELD) -> list[str]:
    """What a valid policy does that its author likely did not mean, one line each.

    ``id_field``: the record field a DELETE is sent with (SDRS_FAILURE_JOB_ID_FIELD).
    """
    warnings = []
    for index, rule in enumerate(policy.rules):
        if not rule.match.given():
            later = policy.rules[index + 1:]
            unreachable = (f"; the rules after it ({', '.join(repr(r.name) for r in later)}) "
                           "are never reached" if later else "")
            warnings.append(
                f"rules[{index}] {rule.name!r} has an empty match: it matches every task, so "
                f"every task not held {_kept(rule.retention, rule=True)}{unreachable} and "
                "default_retention never applies. Give it a match (resource_type, "
                "failure_status, error_code, ...) or use default_retention instead.")
    if policy.keep_latest_per_resource and id_field == "resource_id":
        n = policy.keep_latest_per_resource
        warnings.append(
            f"keep_latest_per_resource is {n} and a DELETE is sent by resource_id "
            "(SDRS_FAILURE_JOB_ID_FIELD): one DELETE removes every failed task of a "
            f"resource at once, so a resource whose {n} newest task{'s are' if n > 1 else ' is'}"
            " kept keeps all its tasks, however old. Set keep_latest_per_resource to 0, "
            "or send DELETEs by a per-task id if the API takes one.")
    return warnings
