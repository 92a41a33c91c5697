"""The command line's edges a hostile world pushes on (docs/cli.md): an unreachable state
store, record fields written to be read as something else, secrets a server echoes, and
dry runs that must not fail for what only a real run could do. The installed command,
run from a directory outside the repository, against the stand-in and real Redis."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from standin import TaskCenterStandIn
from standin._http import Fault
from standin.redis_server import RedisServer
from tests.conftest import EXPIRED, FRESH, TOKEN, failed_task
from tests.test_cli import cli, settings, tasks_of

PASSWORD = "right-Pass-5a9c"
WRONG = "wrong-Pass-7d1e"
VERBS = [["sweep", "--dry-run"], ["plan"], ["explain", "sometask"], ["sweep"]]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound and never listened on: a connection to it is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture(scope="module")
def locked_redis() -> Iterator[RedisServer]:
    """A redis-server that wants a password."""
    with RedisServer(password=PASSWORD) as server:
        yield server


def assert_one_line_about_state_url(output: str, shown_url: str) -> None:
    lines = [line for line in output.splitlines() if line]
    assert len(lines) == 1, output
    assert lines[0].startswith(f"failjob-reaper: the state store STATE_URL={shown_url} "
                               "could not be used: ")
    assert "then run again" in lines[0]


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_a_closed_state_store_port_is_one_line_and_exit_3_on_every_verb(
    standin: TaskCenterStandIn, closed_port: int, verb: list[str]
) -> None:
    standin.add_job(failed_task(EXPIRED))
    url = f"redis://:{WRONG}@127.0.0.1:{closed_port}/0"
    result = cli(*verb, **settings(standin, STATE_URL=url))

    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout == ""
    assert_one_line_about_state_url(result.stderr, f"redis://:***@127.0.0.1:{closed_port}/0")
    assert WRONG not in result.stderr
    assert standin.requests == []  # nothing asked of the API, nothing deleted


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_a_wrong_state_store_password_is_one_line_and_exit_3_on_every_verb(
    standin: TaskCenterStandIn, locked_redis: RedisServer, verb: list[str]
) -> None:
    standin.add_job(failed_task(EXPIRED))
    url = f"redis://:{WRONG}@127.0.0.1:{locked_redis.port}/0"
    result = cli(*verb, **settings(standin, STATE_URL=url))

    assert result.returncode == 3, result.stdout + result.stderr
    assert_one_line_about_state_url(result.stderr,
                                     f"redis://:***@127.0.0.1:{locked_redis.port}/0")
    assert "Traceback" not in result.stderr and WRONG not in result.stderr
    assert standin.deletes() == []


def test_the_right_password_works_so_the_refusal_above_is_the_password(
    standin: TaskCenterStandIn, locked_redis: RedisServer
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{locked_redis.port}/0"
    result = cli("plan", **settings(standin, STATE_URL=url))
    assert result.returncode == 0, result.stderr


# -- output safe for its reader ---------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1"]
"""(A cell starting with a carriage return is neutralised the same way; the unit tests
hold it, as reading the command's output as text turns that character into a newline.)"""


def test_csv_cells_that_would_start_a_formula_are_neutralised(
    standin: TaskCenterStandIn,
) -> None:
    for name in FORMULAS:
        standin.add_job(failed_task(EXPIRED, resource_name=name))
    result = cli("plan", "--output", "csv", **settings(standin))

    assert result.returncode == 0, result.stderr
    names = {row["resource_name"] for row in csv.DictReader(io.StringIO(result.stdout))}
    assert names == {"'" + name for name in FORMULAS}
    assert standin.deletes() == []


FAKE_LINE = "prod-x\ndecision:     delete\x1b[2J\x1b]0;owned\x07"


def test_explain_shows_control_characters_escaped_so_no_field_prints_a_line(
    standin: TaskCenterStandIn,
) -> None:
    record = failed_task(FRESH, resource_name=FAKE_LINE, error_code="EVS\r\n\x9b31m")
    standin.add_job(record)
    result = cli("explain", record["resource_id"], **settings(standin))

    assert result.returncode == 0, result.stderr
    decisions = [line for line in result.stdout.splitlines() if line.startswith("decision:")]
    assert decisions == ["decision:     retained"]
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\x9b" not in result.stdout and "\r" not in result.stdout
    assert "  resource_name: prod-x\\ndecision:     delete\\x1b[2J\\x1b]0;owned\\x07\n" in (
        result.stdout)
    assert "  error_code: EVS\\r\\n\\x9b31m\n" in result.stdout


def test_the_table_shows_control_characters_escaped(
    standin: TaskCenterStandIn, tmp_path: Path
) -> None:
    # A hold by name puts the resource_name in the reason column.
    policy = tmp_path / "holds.yaml"
    policy.write_text('holds: {resource_names: ["prod-*"]}\n')
    record = failed_task(EXPIRED, resource_name=FAKE_LINE)
    standin.add_job(record)
    result = cli("plan", **settings(standin, RETENTION_POLICY_FILE=str(policy)))

    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    (row,) = [line for line in result.stdout.splitlines() if record["resource_id"] in line]
    assert row.startswith("retained ")
    assert "resource_name prod-x\\ndecision:     delete\\x1b[2J" in row
    assert standin.deletes() == []


def test_json_output_keeps_the_field_exactly_and_escaped_by_json(
    standin: TaskCenterStandIn,
) -> None:
    record = failed_task(FRESH, resource_name=FAKE_LINE)
    standin.add_job(record)
    result = cli("plan", "--output", "json", **settings(standin))
    assert "\x1b" not in result.stdout
    (task,) = [t for t in tasks_of(result.stdout) if t["type"] == "task"]
    assert task["resource_name"] == FAKE_LINE


# -- secrets a server echoes ------------------------------------------------------------------


@pytest.mark.parametrize("echo", [TOKEN, TOKEN.upper(), TOKEN.lower(),
                                  base64.b64encode(TOKEN.encode()).decode(),
                                  base64.b64encode(f"user:{TOKEN}".encode()).decode()],
                         ids=["as sent", "upper", "lower", "base64", "base64 in Basic"])
def test_a_token_the_api_echoes_in_any_common_encoding_is_masked_in_the_cli_error(
    standin: TaskCenterStandIn, echo: str
) -> None:
    body = json.dumps({"error_code": "APIGW.0101", "error_msg": f"bad token {echo}"}).encode()
    standin.inject("GET", r"/server-groups", Fault(400, body=body))
    result = cli("plan", **settings(standin, LOG_LEVEL="DEBUG"))

    assert result.returncode == 5, result.stdout + result.stderr
    output = result.stdout + result.stderr
    # (Inside a longer base64 text the characters that also encode "user:" stay.)
    assert re.search(r"bad token [A-Za-z0-9+/=]{0,8}\*\*\*[A-Za-z0-9+/=]{0,3} \(APIGW", output)
    assert echo not in output and TOKEN.lower() not in output.lower()


# -- dry runs -----------------------------------------------------------------------------------


def test_a_dry_run_does_not_fail_for_records_without_a_usable_id(
    standin: TaskCenterStandIn,
) -> None:
    # The DELETE id field is resource_id: these records have none a DELETE could carry.
    # Only a real run could fail on them; a dry run sends nothing and reports no failure.
    usable = failed_task(EXPIRED)
    standin.add_job(usable)
    standin.add_job(failed_task(EXPIRED, resource_id=None))
    standin.add_job(failed_task(EXPIRED, resource_id="../../etc"))
    env = settings(standin)

    for verb in (["sweep", "--dry-run"], ["plan"]):
        result = cli(*verb, "--output", "json", **env)
        assert result.returncode == 0, result.stdout + result.stderr
        tasks = [t for t in tasks_of(result.stdout) if t["type"] == "task"]
        # What a dry run can say: the policy lets all three go; two have no DELETE id,
        # which their reason tells (a real run reports delete_failed for them).
        assert sorted(str(t["failure_job_id"]) for t in tasks
                      if t["action"] == "would_delete") == sorted(
                          [usable["resource_id"], "None", "None"])
        assert not [t for t in tasks if t["action"] == "delete_failed"]
        assert sum("a real run reports delete_failed" in str(t["reason"]) for t in tasks) == 2
    assert standin.deletes() == []
