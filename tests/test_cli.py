"""The operators' command line against the stand-in, as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from failjob_reaper.settings import ENV_VARS
from standin import OutcomeSink, TaskCenterStandIn
from tests.conftest import EXPIRED, FRESH, PROJECT, ROOT, TOKEN, failed_task


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "failjob_reaper", *args], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=120)


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
