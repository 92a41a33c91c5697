"""The operators' command line against the stand-in: the installed ``failjob-reaper``
command, run as a real subprocess from a directory outside the repository."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

import pytest

from failjob_reaper.cli import EXIT_CODES
from failjob_reaper.settings import ENV_VARS
from standin import OutcomeSink, TaskCenterStandIn
from standin._http import Fault
from standin.redis_server import RedisServer
from tests.conftest import EXPIRED, FRESH, PROJECT, ROOT, TOKEN, failed_task

COMMAND = Path(sys.executable).parent / "failjob-reaper"
"""Installed by `make venv` (pyproject.toml [project.scripts]) beside the interpreter."""


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command from an empty directory outside the repository."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ENV_VARS and k not in ("PYTHONPATH", "LOG_FORMAT")}
    environ.update(env)
    with tempfile.TemporaryDirectory() as elsewhere:
        assert not Path(elsewhere).resolve().is_relative_to(ROOT)
        return subprocess.run([str(COMMAND), *args], cwd=elsewhere, env=environ,
                              capture_output=True, text=True, timeout=120)


def settings(standin: TaskCenterStandIn, **extra: str) -> dict[str, str]:
    return {"SDRS_ENDPOINT": standin.url, "SDRS_PROJECT_ID": PROJECT, "SDRS_AUTH_TOKEN": TOKEN,
            "SWEEP_RATE_LIMIT": "0", **extra}


def test_sweep_deletes_expired_prints_a_summary_and_exits_0(
    standin: TaskCenterStandIn, sink: OutcomeSink
) -> None:
    expired, fresh = failed_task(EXPIRED), failed_task(FRESH)
    standin.add_job(expired)
    standin.add_job(fresh)
    result = cli("sweep", **settings(standin, K_SINK=sink.url))

    assert result.returncode == 0, result.stderr
    assert standin.deletes() == [expired["resource_id"]]
    assert "deleted" in result.stdout and "listed" in result.stdout
    types = [e["type"] for e in sink.wait_for(2)]
    assert types == ["sdrs.failurejob.deleted", "sdrs.failurejob.sweep_completed"]
    assert TOKEN not in result.stdout + result.stderr


def test_dry_run_sweep_deletes_nothing(standin: TaskCenterStandIn) -> None:
    standin.add_job(failed_task(EXPIRED))
    result = cli("sweep", "--dry-run", **settings(standin))
    assert result.returncode == 0, result.stderr
    assert standin.deletes() == []
    assert "(dry run)" in result.stdout


def test_tripped_guard_exits_1(standin: TaskCenterStandIn, tmp_path: Path) -> None:
    for _ in range(2):
        standin.add_job(failed_task(EXPIRED))
    policy = tmp_path / "p.yaml"
    policy.write_text("guards: {max_deletions_per_sweep: 1}\n")
    result = cli("sweep", **settings(standin, RETENTION_POLICY_FILE=str(policy)))
    assert result.returncode == 1
    assert "aborted reason" in result.stdout
    assert standin.deletes() == []


def test_explain_shows_record_rule_and_retain_until_without_deleting(
    standin: TaskCenterStandIn,
) -> None:
    record = failed_task(FRESH)
    standin.add_group("0f0e0d0c-0000-4000-8000-000000000001", "g")
    standin.add_job(record, "0f0e0d0c-0000-4000-8000-000000000001")
    result = cli("explain", record["job_id"], "--by", "job_id", **settings(standin))

    assert result.returncode == 0, result.stderr
    assert record["resource_name"] in result.stdout
    assert "rule:         default" in result.stdout
    assert "decision:     retain" in result.stdout
    assert "retain_until: 20" in result.stdout
    assert standin.deletes() == []


def test_explain_of_an_unlisted_task_exits_1(standin: TaskCenterStandIn) -> None:
    assert cli("explain", "nosuchtask", **settings(standin)).returncode == 1


def test_bad_group_id_and_missing_settings_exit_2(standin: TaskCenterStandIn) -> None:
    assert cli("sweep", "--group", "../x", **settings(standin)).returncode == 2
    missing = cli("sweep")
    assert missing.returncode == 2
    assert "SDRS_ENDPOINT: required" in missing.stderr
    assert standin.requests == []


def test_unreachable_api_exits_3() -> None:
    result = cli("sweep", SDRS_ENDPOINT="http://127.0.0.1:9", SDRS_PROJECT_ID=PROJECT,
                 SDRS_MAX_ATTEMPTS="1")
    assert result.returncode == 3, result.stdout + result.stderr


def test_help_names_every_variable_and_every_exit_code() -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: failjob-reaper ")
    for variable in ENV_VARS:
        assert variable in result.stdout
    for code in EXIT_CODES:
        assert f"\n  {code}  " in result.stdout
    assert "required" in result.stdout and "401, 403" in result.stdout


def test_python_dash_m_is_the_same_command(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "failjob_reaper", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m failjob_reaper ")


@pytest.mark.parametrize("command", [["sweep"], ["sweep", "--dry-run"], ["explain", "abc"]])
def test_refused_credentials_exit_4_not_unreachable(
    standin: TaskCenterStandIn, command: list[str]
) -> None:
    standin.add_job(failed_task(EXPIRED))
    result = cli(*command, **settings(standin, SDRS_AUTH_TOKEN="not-the-token"))
    assert result.returncode == 4, result.stdout + result.stderr
    assert standin.deletes() == []
    assert {r.status for r in standin.requests} == {401}


def test_forbidden_project_exits_4(standin: TaskCenterStandIn) -> None:
    standin.add_job(failed_task(EXPIRED))
    result = cli("sweep", **settings(standin, SDRS_PROJECT_ID="someone-elses-project"))
    assert result.returncode == 4, result.stdout + result.stderr
    assert {r.status for r in standin.requests} == {403}


def test_delete_refused_with_403_exits_4(standin: TaskCenterStandIn) -> None:
    standin.add_job(failed_task(EXPIRED))
    standin.inject("DELETE", r"/failure-jobs/", Fault(403))
    result = cli("sweep", **settings(standin))
    assert result.returncode == 4, result.stdout + result.stderr


def test_cli_logs_text_by_default_and_json_lines_when_asked(
    standin: TaskCenterStandIn,
) -> None:
    expired = failed_task(EXPIRED)
    standin.add_job(expired)
    text = cli("sweep", "--dry-run", **settings(standin, LOG_LEVEL="INFO"))
    assert text.returncode == 0, text.stderr
    assert f"failjob-reaper INFO would_delete failure_job_id={expired['resource_id']}" in (
        text.stderr)

    as_json = cli("sweep", "--dry-run", **settings(standin, LOG_LEVEL="INFO", LOG_FORMAT="json"))
    assert as_json.returncode == 0, as_json.stderr
    lines = [json.loads(line) for line in as_json.stderr.splitlines()]
    would = [line for line in lines if line.get("outcome") == "would_delete"]
    assert [line["failure_job_id"] for line in would] == [expired["resource_id"]]
    assert all(line["causation_id"] and line["level"] == "INFO" for line in would)
    assert [line["outcome"] for line in lines][-1] == "sweep_completed"
    assert lines[-1]["partial"] is False and lines[-1]["partial_reason"] is None
    assert TOKEN not in text.stdout + text.stderr + as_json.stdout + as_json.stderr


def test_cli_logs_only_warnings_unless_log_level_is_set(standin: TaskCenterStandIn) -> None:
    standin.add_job(failed_task(EXPIRED))
    result = cli("sweep", "--dry-run", **settings(standin))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


# -- the plan an operator reviews -------------------------------------------------------------

GROUP = "0f0e0d0c-0000-4000-8000-0000000000aa"


def seed_backlog(standin: TaskCenterStandIn, expired: int, fresh: int) -> tuple[set[str], set[str]]:
    """A backlog at the top level and in a group; the ids that must go and must stay."""
    standin.add_group(GROUP, "g")
    old = [failed_task(EXPIRED) for _ in range(expired)]
    new = [failed_task(FRESH) for _ in range(fresh)]
    for n, record in enumerate(old + new):
        standin.add_job(record, GROUP if n % 2 else None)
    return {r["resource_id"] for r in old}, {r["resource_id"] for r in new}


def guard_policy(tmp_path: Path, limit: int) -> str:
    policy = tmp_path / "guard.yaml"
    policy.write_text(f"guards: {{max_deletions_per_sweep: {limit}}}\n")
    return str(policy)


def tasks_of(stdout: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert {line["type"] for line in lines} <= {"task", "guard", "summary"}
    return lines


def test_dry_run_over_the_guard_names_every_task_it_would_delete_and_by_how_much(
    standin: TaskCenterStandIn, tmp_path: Path
) -> None:
    doomed, kept = seed_backlog(standin, expired=7, fresh=3)
    env = settings(standin, RETENTION_POLICY_FILE=guard_policy(tmp_path, 4))

    table = cli("sweep", "--dry-run", **env)
    assert table.returncode == 1, table.stderr
    for task_id in doomed | kept:
        assert task_id in table.stdout
    assert ("guard max_deletions_per_sweep would stop this sweep: 7 records planned for deletion, "
            "the limit is 4 (3 over)") in table.stdout
    assert "raise guards.max_deletions_per_sweep to 7 or more" in table.stdout

    as_json = cli("sweep", "--dry-run", "--output", "json", **env)
    assert as_json.returncode == 1, as_json.stderr
    lines = tasks_of(as_json.stdout)
    tasks = [line for line in lines if line["type"] == "task"]
    assert {t["failure_job_id"] for t in tasks if t["action"] == "would_delete"} == doomed
    retained = [t for t in tasks if t["action"] == "retained"]
    assert {t["failure_job_id"] for t in retained} == kept
    assert all(t["rule"] == "default" and str(t["retain_until"]).startswith("20")
               for t in retained)
    assert {t["server_group_id"] for t in tasks} == {None, GROUP}
    (guard,) = [line for line in lines if line["type"] == "guard"]
    assert (guard["tripped"], guard["planned"], guard["over_by"]) == (
        "max_deletions_per_sweep", 7, 3)
    assert lines[-1]["type"] == "summary" and lines[-1]["aborted"] is True
    assert standin.deletes() == []


def test_plan_shows_the_plan_and_neither_deletes_nor_publishes(
    standin: TaskCenterStandIn, sink: OutcomeSink
) -> None:
    doomed, kept = seed_backlog(standin, expired=2, fresh=1)
    result = cli("plan", "--output", "csv", **settings(standin, K_SINK=sink.url))

    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["failure_job_id"]: r["action"] for r in rows} == {
        **dict.fromkeys(doomed, "would_delete"), **dict.fromkeys(kept, "retained")}
    assert "guards: 2 records planned for deletion, at most 500" in result.stderr
    assert standin.deletes() == []
    assert sink.events == []


def test_a_real_sweep_prints_each_task_it_deleted(standin: TaskCenterStandIn) -> None:
    doomed, kept = seed_backlog(standin, expired=3, fresh=1)
    result = cli("sweep", "--output", "json", **settings(standin))

    assert result.returncode == 0, result.stderr
    tasks = [line for line in tasks_of(result.stdout) if line["type"] == "task"]
    assert {t["failure_job_id"]: t["action"] for t in tasks} == {
        **dict.fromkeys(doomed, "deleted"), **dict.fromkeys(kept, "retained")}
    assert set(standin.deletes()) == doomed


def test_a_200_to_a_delete_is_an_unexpected_answer_not_a_refusal(
    standin: TaskCenterStandIn,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    standin.inject("DELETE", r"/failure-jobs/", Fault(200, body=b"{}"))
    result = cli("sweep", "--output", "json", **settings(standin))

    assert result.returncode == 1, result.stderr
    (task,) = [line for line in tasks_of(result.stdout) if line["type"] == "task"]
    assert task["action"] == "delete_failed"
    assert task["reason"] == "DELETE got an unexpected answer 200"


def test_progress_on_a_terminal_says_would_delete_in_a_dry_run_and_ends_listing_at_100(
    standin: TaskCenterStandIn,
) -> None:
    seed_backlog(standin, expired=3, fresh=1)
    environ = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    environ.update(settings(standin))
    controller, terminal = pty.openpty()  # stderr is a terminal: the bars are drawn
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    with tempfile.TemporaryDirectory() as elsewhere:
        process = subprocess.Popen([str(COMMAND), "sweep", "--dry-run"], cwd=elsewhere,
                                   env=environ, stdout=subprocess.PIPE, stderr=terminal)
        os.close(terminal)
        screen = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        process.communicate(timeout=60)
    os.close(controller)
    text = screen.decode(errors="replace")
    assert process.returncode == 0, text
    assert "would delete" in text and "deleting" not in text
    # The listing bar shows 100 % when the listing ends, before any task is decided.
    assert "listing: 100%" in text
    assert text.index("listing: 100%") < text.index("would delete")


def test_a_cli_sweep_against_redis_keeps_no_idempotency_record(
    standin: TaskCenterStandIn, redis_url: str, redis_server: RedisServer
) -> None:
    # Every command is a new input that nothing asks about again: a record kept for it
    # would sit 24 h in the shared store for nothing. The sweep's own keys stay.
    standin.add_job(failed_task(EXPIRED))
    result = cli("sweep", **settings(standin, STATE_URL=redis_url))

    assert result.returncode == 0, result.stderr
    assert len(standin.deletes()) == 1
    with redis_server.client() as client:
        keys = list(client.scan_iter(match=f"fjr:{PROJECT}:*"))
    assert keys, "the sweep used the store"
    assert not [k for k in keys if ":idem:" in k]
