"""The command line as a new user meets it (docs/cli.md): the installed ``failjob-reaper``
run from a directory outside the repository against the stand-in, one test per friction
mended. Each states what the world it seeds must give, and that nothing was deleted where
nothing should be."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from failjob_reaper.cli import EXIT_CODES
from standin import TaskCenterStandIn
from standin._http import Fault
from tests.conftest import EXPIRED, FRESH, failed_task
from tests.test_cli import GROUP, cli, settings, tasks_of

INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
"""The one format of retain_until: UTC, whole seconds, Z."""


def summary_line(output: str, label: str) -> int:
    """The count on the summary line ``label``."""
    (line,) = [line for line in output.splitlines() if line.strip().startswith(label + " ")]
    return int(line.split()[-1])


def policy_file(tmp_path: Path, text: str, name: str = "policy.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- --help -----------------------------------------------------------------------------------


def test_help_shows_the_state_url_default_not_a_masked_secret() -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.strip().startswith("STATE_URL")]
    assert line.split()[-1] == "memory://"
    assert "*****" not in result.stdout
    assert "\n  5  " in result.stdout and set(EXIT_CODES) == {0, 1, 2, 3, 4, 5}


# -- one retain_until format ------------------------------------------------------------------


def test_retain_until_has_one_format_in_plan_and_explain(standin: TaskCenterStandIn) -> None:
    kept = failed_task(FRESH)
    standin.add_job(kept)
    env = settings(standin)

    plan = cli("plan", "--output", "json", **env)
    assert plan.returncode == 0, plan.stderr
    (task,) = [t for t in tasks_of(plan.stdout) if t["type"] == "task"]
    assert INSTANT.fullmatch(str(task["retain_until"]))

    text = cli("explain", kept["resource_id"], **env)
    assert text.returncode == 0, text.stderr
    assert f"retain_until: {task['retain_until']}\n" in text.stdout

    as_json = cli("explain", kept["resource_id"], "--output", "json", **env)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["retain_until"] == task["retain_until"]
    assert standin.deletes() == []


# -- counts that say what they count ----------------------------------------------------------


def test_plan_and_dry_run_count_records_and_delete_ids_and_say_which(
    standin: TaskCenterStandIn,
) -> None:
    # Three expired records of one resource (one DELETE by resource_id removes the three),
    # two other expired tasks, one fresh: 6 records; 5 go, in 3 DELETEs.
    shared = failed_task(EXPIRED)
    for record in (shared, failed_task(EXPIRED, resource_id=shared["resource_id"]),
                   failed_task(EXPIRED, resource_id=shared["resource_id"]),
                   failed_task(EXPIRED), failed_task(EXPIRED), failed_task(FRESH)):
        standin.add_job(record)
    env = settings(standin)

    for command in (["plan"], ["sweep", "--dry-run"]):
        result = cli(*command, **env)
        assert result.returncode == 0, result.stderr
        assert summary_line(result.stdout, "tasks (records) listed") == 6
        assert summary_line(result.stdout, "tasks (records) would_delete") == 5
        assert summary_line(result.stdout, "tasks (records) retained") == 1
        assert summary_line(result.stdout, "DELETEs planned") == 3
    dry = cli("sweep", "--dry-run", **env)
    assert summary_line(dry.stdout, "outcomes (per DELETE id) would_delete") == 3
    assert standin.deletes() == []

    real = cli("sweep", **env)
    assert real.returncode == 0, real.stderr
    assert summary_line(real.stdout, "tasks (records) deleted") == 5
    assert summary_line(real.stdout, "DELETEs sent") == 3
    assert len(standin.deletes()) == 3


# -- messages that say what to do next --------------------------------------------------------


def test_explain_of_a_job_id_by_the_default_field_hints_at_by_job_id(
    standin: TaskCenterStandIn,
) -> None:
    record = failed_task(FRESH)
    standin.add_job(record)
    result = cli("explain", record["job_id"], **settings(standin))
    assert result.returncode == 1
    assert "try --by job_id" in result.stdout

    as_json = cli("explain", record["job_id"], "--output", "json", **settings(standin))
    assert as_json.returncode == 1
    answer = json.loads(as_json.stdout)
    assert answer["found"] is False and "--by job_id" in answer["message"]
    assert standin.deletes() == []


@pytest.mark.parametrize("verb", [["plan"], ["sweep"], ["sweep", "--dry-run"]])
def test_a_group_that_does_not_exist_is_named_and_exits_2(
    standin: TaskCenterStandIn, verb: list[str]
) -> None:
    standin.add_group(GROUP, "g")
    standin.add_job(failed_task(EXPIRED), GROUP)
    missing = "0f0e0d0c-0000-4000-8000-00000000dead"
    result = cli(*verb, "--group", missing, **settings(standin))

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"--group {missing}: no such protection group" in result.stderr
    assert "leave --group out" in result.stderr
    assert standin.deletes() == []


@pytest.mark.parametrize("listing", ["/server-groups", "/failure-jobs"])
@pytest.mark.parametrize("verb", [["plan"], ["sweep"], ["sweep", "--dry-run"],
                                  ["explain", "sometask"]], ids=" ".join)
def test_a_400_from_a_listing_is_a_refusal_with_the_apis_message_not_unreachable(
    standin: TaskCenterStandIn, verb: list[str], listing: str
) -> None:
    standin.add_job(failed_task(EXPIRED))
    body = json.dumps({"error_code": "SDRS.1501", "error_msg": "Invalid project id."}).encode()
    standin.inject("GET", listing, *[Fault(400, body=body)] * 3)
    result = cli(*verb, **settings(standin))

    assert result.returncode == 5, result.stdout + result.stderr
    assert "Invalid project id." in result.stdout + result.stderr
    assert "the SDRS API refused" in result.stderr
    assert "could not be reached" not in result.stdout + result.stderr
    assert "Check SDRS_PROJECT_ID" in result.stderr.replace("check SDRS", "Check SDRS")
    assert standin.deletes() == []


# -- one run's guard and a canary -------------------------------------------------------------


def test_max_deletions_overrides_the_guard_for_one_run_only(
    standin: TaskCenterStandIn, tmp_path: Path
) -> None:
    doomed = [failed_task(EXPIRED) for _ in range(4)]
    for record in doomed:
        standin.add_job(record)
    policy = policy_file(tmp_path, "guards: {max_deletions_per_sweep: 2}\n")
    env = settings(standin, RETENTION_POLICY_FILE=policy)

    plan = cli("plan", **env)
    assert plan.returncode == 1  # the file's guard: 4 planned, at most 2
    assert "or pass --max-deletions 4 for one run" in plan.stdout
    lower = cli("plan", "--max-deletions", "3", **env)
    assert lower.returncode == 1 and "the limit is 3 (1 over)" in lower.stdout
    assert standin.deletes() == []

    result = cli("sweep", "--max-deletions", "4", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(standin.deletes()) == sorted(r["resource_id"] for r in doomed)
    assert Path(policy).read_text() == "guards: {max_deletions_per_sweep: 2}\n"


def test_limit_deletes_at_most_n_and_leaves_the_rest_for_the_next_sweep(
    standin: TaskCenterStandIn,
) -> None:
    records = [failed_task(EXPIRED) for _ in range(5)]
    for record in records:
        standin.add_job(record)
    doomed = {r["resource_id"] for r in records}
    env = settings(standin)

    dry = cli("sweep", "--dry-run", "--limit", "2", "--output", "json", **env)
    assert dry.returncode == 0, dry.stderr
    actions = [str(t["action"]) for t in tasks_of(dry.stdout) if t["type"] == "task"]
    assert sorted(actions) == ["left_over"] * 3 + ["would_delete"] * 2
    assert standin.deletes() == []

    canary = cli("sweep", "--limit", "2", **env)
    assert canary.returncode == 0, canary.stdout + canary.stderr
    assert len(standin.deletes()) == 2
    assert summary_line(canary.stdout, "DELETEs sent") == 2
    assert summary_line(canary.stdout, "tasks (records) left_over") == 3
    assert "--limit 2 reached: 3 of 5 deletions left for the next sweep" in canary.stdout

    rest = cli("sweep", **env)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert set(standin.deletes()) == doomed and len(standin.deletes()) == 5


# -- plan filters -----------------------------------------------------------------------------


def test_plan_filters_choose_rows_but_the_plan_and_guard_count_everything(
    standin: TaskCenterStandIn, tmp_path: Path
) -> None:
    old = [failed_task(EXPIRED) for _ in range(3)]
    drill = failed_task(EXPIRED, resource_type="disaster_recovery_drills")
    new = [failed_task(FRESH) for _ in range(2)]
    for record in (*old, drill, *new):
        standin.add_job(record)
    policy = policy_file(tmp_path, "rules:\n  - name: drills\n    match: {resource_type: "
                                   "disaster_recovery_drills}\n    retention: forever\n")
    env = settings(standin, RETENTION_POLICY_FILE=policy)

    def shown(*flags: str) -> tuple[set[str], list[dict[str, object]]]:
        result = cli("plan", "--output", "json", *flags, **env)
        assert result.returncode == 0, result.stderr
        lines = tasks_of(result.stdout)
        return {str(t["job_id"]) for t in lines if t["type"] == "task"}, lines

    older, lines = shown("--older-than", "1d")
    assert older == {r["job_id"] for r in (*old, drill)}
    summary, guard = lines[-1], lines[-2]
    assert summary["filter"] == {"shown": 4, "of": 6, "rows": "begun more than 1d ago"}
    assert guard["planned"] == 3 and summary["records"] == {"would_delete": 3, "retained": 3}
    assert shown("--rule", "drills")[0] == {drill["job_id"]}
    assert shown("--action", "retained")[0] == {r["job_id"] for r in (drill, *new)}
    assert shown("--action", "retained", "--older-than", "1d")[0] == {drill["job_id"]}

    table = cli("plan", "--rule", "drills", **env)
    assert "shown: 1 of 6 rows (rule drills); the plan and the guard count every task" in (
        table.stdout)
    assert cli("plan", "--older-than", "soon", **env).returncode == 2
    assert standin.deletes() == []


# -- check-policy -----------------------------------------------------------------------------


def test_check_policy_takes_an_empty_file_as_the_default_policy(tmp_path: Path) -> None:
    result = cli("check-policy", policy_file(tmp_path, "# nothing set: the defaults\n"))
    assert result.returncode == 0, result.stderr
    assert "valid. Default retention 7d." in result.stdout
    assert "warning" not in result.stdout


def test_check_policy_warns_about_a_rule_that_matches_everything_and_the_keep_latest_trap(
    tmp_path: Path,
) -> None:
    path = policy_file(tmp_path, "keep_latest_per_resource: 1\nrules:\n"
                                 "  - {name: all, match: {}, retention: 1d}\n")
    result = cli("check-policy", path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert "'all' has an empty match: it matches every task" in warnings[0]
    assert "keeps all its tasks, however old" in warnings[1]
    # With DELETEs by a per-task id, keep-latest keeps only the newest: no trap.
    per_task = cli("check-policy", path, SDRS_FAILURE_JOB_ID_FIELD="job_id")
    assert per_task.stdout.count("warning: ") == 1
