"""``python -m bench [--quick | --smoke] [--only NAME ...] [--json [FILE]]``: run, print tables."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import BENCHMARKS
from bench._report import say

RESULTS = Path(__file__).resolve().parent / "results"
ALIASES = {"cold-start": "coldstart", "cold_start": "coldstart", "per-event": "overhead"}


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent.parent,
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip()


def _environment(argv: list[str]) -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "command": "python -m bench " + " ".join(argv),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "git": _git("rev-parse", "--short", "HEAD")
        + (" (dirty)" if _git("status", "--porcelain", "--untracked-files=no") else ""),
    }


def _run(module: ModuleType, *, quick: bool, smoke: bool) -> Any:
    """``run(quick)``; with --smoke, ``run(True, smoke=True)`` where the benchmark has that
    form, else its quick one."""
    if smoke and "smoke" in inspect.signature(module.run).parameters:
        return module.run(True, smoke=True)
    return module.run(quick or smoke)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="shortened runs for CI smoke (well under 2 minutes)")
    parser.add_argument("--smoke", action="store_true",
                        help="the tiniest runs, for tests/test_bench_smoke.py: every part "
                             "runs end to end, the numbers mean nothing (a benchmark without "
                             "a smoke form runs its --quick one)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help=f"run only these: {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", nargs="?", const="", metavar="FILE",
                        help="also write the results as JSON (default: bench/results/"
                             "bench-<time>.json; a bare file name goes under bench/results/)")
    args = parser.parse_args(argv)

    names = list(BENCHMARKS)
    if args.only:
        names = [ALIASES.get(n, n) for n in args.only]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")

    env = _environment(argv)
    form = " (smoke)" if args.smoke else " (quick)" if args.quick else ""
    print(f"## Benchmarks{form}\n")
    print(f"`{env['command']}` - {env['date']}, Python {env['python']}, {env['cpus']} CPUs "
          f"({env['machine']}), load average at start {env['loadavg_at_start']}, "
          f"git {env['git']}\n", flush=True)

    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        started = time.monotonic()
        say(f"{name}: start")
        try:
            result = _run(module, quick=args.quick, smoke=args.smoke)
        except Exception as exc:  # report and go on with the next benchmark
            failed.append(name)
            say(f"{name}: FAILED: {type(exc).__name__}: {exc}")
            print(f"### {name}\n\nFAILED: `{type(exc).__name__}: {exc}`\n", flush=True)
            continue
        elapsed = time.monotonic() - started
        say(f"{name}: done in {elapsed:.0f}s")
        print(result.markdown(), flush=True)
        record = result.as_dict()
        record["elapsed"] = elapsed
        results.append(record)

    if args.json is not None:
        target = Path(args.json) if args.json else RESULTS / (
            "bench-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            + ("-smoke" if args.smoke else "-quick" if args.quick else "") + ".json")
        if not target.parent.name or target.parent == Path("."):
            target = RESULTS / target.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"environment": env, "results": results,
                                      "failed": failed}, indent=2, default=str))
        say(f"JSON written to {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
