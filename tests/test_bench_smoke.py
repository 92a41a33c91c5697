"""Smoke tests of the benchmarks: every `python -m bench --only NAME` runs and reports.

No timing assertions: the numbers depend on the machine. These only check that
each benchmark still works end to end (stand-in, sink, redis-server and
functions-framework in their own processes, the baselines) and prints its tables,
in its shortest form: `--smoke` (tiny sizes) where a benchmark has one, else `--quick`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from failjob_reaper.settings import ENV_VARS
from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_sweep_benchmark_runs_and_prints_its_table(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "sweep", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| tasks | groups | run |"))
    for column in ("wall (s)", "API calls", "ideal (s)", "wall ÷ ideal", "SDK loop ÷ wall"):
        assert f"| {column} |" in header, header
    rows = [line for line in lines if line.startswith("| 500 | 10 |")]
    assert any("official SDK" in row for row in rows), rows
    assert any("function (ff)" in row for row in rows), rows
    assert "growth per 1k tasks (MiB)" in result.stdout
    assert "WARNING" not in result.stdout  # every task was deleted, by both

    data = json.loads(out.read_text())
    assert data["failed"] == []
    (sweep,) = data["results"]
    assert sweep["data"]["sdk"]["deleted"] == 500
    assert all(run["deleted"] == 500 and run["left"] == 0 for run in sweep["data"]["runs"])


def run_bench(name: str, form: str, tmp_path: Path, timeout: float = 240
              ) -> tuple[str, dict[str, Any]]:
    """``python -m bench FORM --only NAME --json``: its stdout and its one result."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", form, "--only", name, "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["failed"] == []
    (bench,) = data["results"]
    assert bench["name"] == name
    assert f"### {bench['heading']}" in result.stdout
    assert bench["tables"]
    for table in bench["tables"]:  # each table printed, with its header and its rows
        assert f"**{table['title']}**" in result.stdout
        assert "| " + " | ".join(table["columns"]) + " |" in result.stdout
        assert table["rows"], table["title"]
        assert all(len(row) == len(table["columns"]) for row in table["rows"]), table
    return result.stdout, bench


def column(table: dict[str, Any], name: str) -> list[Any]:
    index = table["columns"].index(name)
    return [row[index] for row in table["rows"]]


def _state(bench: dict[str, Any]) -> None:
    latency, _extra, memory = bench["tables"]
    assert column(latency, "STATE_URL") == ["memory://", "redis:// (loopback)"]
    assert column(memory, "keys per event")[0] > 0  # the events did reach Redis


def _overhead(bench: dict[str, Any]) -> None:
    paths = column(bench["tables"][0], "path")
    assert len(paths) == 4 and paths[0].startswith("floor") and "hello world" in paths[-1]


def _memory(bench: dict[str, Any]) -> None:
    rss = bench["tables"][0]
    assert len(rss["rows"]) == 2
    assert column(rss, "failed") == [0, 0]  # every event answered 200, by both


def _throughput(bench: dict[str, Any]) -> None:
    table = bench["tables"][0]
    assert len(table["rows"]) == 4
    assert all(n > 0 for n in column(table, "answered"))
    assert column(table, "errors") == [0, 0, 0, 0]


def _ratelimit(bench: dict[str, Any]) -> None:
    sweeps, cpu = bench["tables"]
    assert len(sweeps["rows"]) == 2  # adaptive and the limiter off
    for tasks, deleted, left in zip(column(sweeps, "tasks"), column(sweeps, "deleted (204)"),
                                    column(sweeps, "left"), strict=True):
        assert deleted + left == tasks  # what was not deleted is still listed
    assert len(cpu["rows"]) == 2  # httpx's transport and the one before


def _lookup(bench: dict[str, Any]) -> None:
    table = bench["tables"][0]
    assert set(column(table, "groups (N)")) == {1, 10}  # the --quick sizes


def _coldstart(bench: dict[str, Any]) -> None:
    assert bench["heading"].startswith("Cold start")
    assert len(bench["tables"][0]["rows"]) >= 2  # the function and its hello world


def _bounds(bench: dict[str, Any]) -> None:
    plans, events = bench["tables"]
    assert column(plans, "API") == ["floor", "baseline", "headers", "body", "large"]
    assert "killed" not in column(plans, "exit")  # each plan ended by itself
    assert "no answer" not in column(events, "answer")  # each event was answered


def _backlog(bench: dict[str, Any]) -> None:
    plans, _sweeps, redis, faults = bench["tables"]
    assert set(column(plans, "command")) == {"plan", "sweep --dry-run"}
    assert set(column(plans, "groups")) == {0, 20}
    assert column(plans, "listed") == column(plans, "tasks")  # every task listed, each run
    assert all(calls > 0 for calls in column(plans, "API calls"))
    rate = bench["data"]["rate"]
    assert rate["wrong_deletes"] == 0 and rate["expired_left"] == 0  # counted from the world
    assert column(redis, "ix: keys")[0] > 0  # the sweep did write the lookup index
    assert len(faults["rows"]) == 2


def _decide(bench: dict[str, Any]) -> None:
    (table,) = bench["tables"]
    assert column(table, "records") == ["expired", "expired", "fresh", "fresh"]
    assert bench["data"]["wrong_decisions"] == 0  # counted from the world's ages


SMOKE: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "state": ("--smoke", _state),
    "overhead": ("--smoke", _overhead),
    "memory": ("--smoke", _memory),
    "throughput": ("--smoke", _throughput),
    "ratelimit": ("--smoke", _ratelimit),
    "lookup": ("--quick", _lookup),  # its own sizes: N = 1 and 10
    "coldstart": ("--quick", _coldstart),  # builds bench/results/runtime-venv once
    "bounds": ("--smoke", _bounds),
    "backlog": ("--smoke", _backlog),
    "decide": ("--smoke", _decide),
}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(SMOKE))
def test_benchmark_runs_end_to_end_and_prints_its_tables(name: str, tmp_path: Path) -> None:
    form, check = SMOKE[name]
    _, bench = run_bench(name, form, tmp_path)
    check(bench)


def test_every_benchmark_has_a_smoke_test() -> None:
    from bench import BENCHMARKS

    assert set(BENCHMARKS) == {"sweep", *SMOKE}
