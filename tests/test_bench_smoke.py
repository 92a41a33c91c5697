"""Smoke test of the benchmarks: `python -m bench --quick --only sweep` runs and reports.

No timing assertions: the numbers depend on the machine. This only checks that
the benchmark harness still works end to end (stand-in, sink and
functions-framework in their own processes, the official SDK baseline) and
prints the table the README quotes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
