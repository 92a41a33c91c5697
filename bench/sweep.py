"""Issue 3: a sweep of N expired tasks through the real function vs the official SDK loop.

Function side: ``functions-framework --target on_event`` in its own process,
answering one PingSource CloudEvent (``dev.knative.sources.ping``); the clock
runs from the POST to its answer (the sweep is synchronous). Outcomes go to
``K_SINK``, an ``OutcomeSink`` in its own process, or - the ``stdout`` run - to
stdout redirected to /dev/null. Stand-in: its own process, restarted and
reseeded (``bulk_world``, seed 0) before every run, 20 ms added to every answer.

Baseline: ``bench._sdk_loop`` (the official SDK, sequential) in its own process
against a fresh stand-in with the same world.

Ideal bound: API calls / concurrency * latency, with the minimal number of
calls (1 group listing + one listing page per 1,000 records per scope, plus a
closing short page, + one DELETE per task).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench._procs import (
    AK,
    MAIN,
    PY,
    ROOT,
    SK,
    Function,
    cloudevent,
    cpu_seconds,
    function_env,
    proc_status,
    stop_process,
)
from bench._procs import sink as sink_server
from bench._procs import standin as standin_server
from bench._report import Result, Table, fmt_ratio, median, mib, ratio, say
from standin import bulk_world

LATENCY = 0.02
CONCURRENCY = 16
PING = "dev.knative.sources.ping"


def min_calls(n_tasks: int, n_groups: int, top_level_share: float = 0.05) -> int:
    """The fewest API calls a complete sweep of ``bulk_world(n_tasks, n_groups)`` needs."""
    top = n_tasks if n_groups == 0 else int(n_tasks * top_level_share)
    rest = n_tasks - top
    scopes = [top] + [rest // n_groups + (1 if i < rest % n_groups else 0)
                      for i in range(n_groups)]
    group_pages = n_groups // 1000 + 1
    return group_pages + sum(n // 1000 + 1 for n in scopes) + n_tasks


def records_alone_per_1000() -> int:
    """Bytes of 1,000 listed records as Python objects (json.loads of a listing page)."""
    _, jobs = bulk_world(1000, 0, datetime.now(UTC))
    body = json.dumps({"count": 1000, "failure_jobs": [r for r, _ in jobs]}).encode()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        parsed = json.loads(body)["failure_jobs"]
        size = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(parsed) == 1000
    return int(size)


def _policy_file(tmp: Path) -> str:
    path = tmp / "bench-policy.json"
    path.write_text(json.dumps({"default_retention": "7d",
                                "guards": {"max_deletions_per_sweep": 10_000_000}}))
    return str(path)


def function_sweep(n: int, groups: int, *, emit: str, auth: str, policy: str) -> dict[str, Any]:
    """One sweep through functions-framework; wall time of the PingSource event, memory."""
    ideal = min_calls(n, groups) / CONCURRENCY * LATENCY
    with contextlib.ExitStack() as stack:
        si = stack.enter_context(standin_server(bulk=n, groups=groups, latency=LATENCY))
        sk = stack.enter_context(sink_server()) if emit == "sink" else None
        extra = {"SWEEP_CONCURRENCY": str(CONCURRENCY), "SWEEP_RATE_LIMIT": "0",
                 "SWEEP_DEADLINE": "3600", "RETENTION_POLICY_FILE": policy,
                 "SDRS_REQUEST_TIMEOUT": "30"}
        if auth == "aksk":
            extra.update(SDRS_AUTH_TOKEN="", HUAWEICLOUD_SDK_AK=AK, HUAWEICLOUD_SDK_SK=SK)
        env = function_env(si, sink_url=sk.url if sk else None, **extra)
        fn = stack.enter_context(Function(MAIN, "on_event", env))
        fn.wait_listening()
        worker = fn.worker_pid()
        start_mem = proc_status(worker)
        with httpx.Client(timeout=30) as http:
            # One cheap event first (an unknown type: rejected, one outcome), so that lazy
            # first-request work is not counted as growth.
            headers, body = cloudevent("bench.warmup", {})
            answer = http.post(fn.url, headers=headers, content=body)
            if answer.status_code != 200:
                raise RuntimeError(f"warm-up answered {answer.status_code}: {fn.stderr_tail()}")
            base_mem = proc_status(worker)
            si.reset_log()
            if sk:
                sk.reset_sink()
            headers, body = cloudevent(PING, {}, source="/apis/v1/namespaces/bench/pingsources/x")
            pids = {"function": worker, "standin": si.process.pid}
            if sk:
                pids["sink"] = sk.process.pid
            cpu_before = cpu_seconds(pids)
            started = time.perf_counter()
            answer = http.post(fn.url, headers=headers, content=body,
                               timeout=max(120.0, 30 * ideal))
            wall = time.perf_counter() - started
            cpu = {k: v - cpu_before[k] for k, v in cpu_seconds(pids).items()}
        end_mem = proc_status(worker)
        stats = si.stats()
        sink_stats = sk.stats() if sk else None
        if answer.status_code != 200:
            raise RuntimeError(f"sweep answered {answer.status_code}: {fn.stderr_tail()}")
    deletes_ok = stats["by_status"].get("DELETE 204", 0)
    summary = (sink_stats or {}).get("last_sweep") or {}
    return {
        "tasks": n, "groups": groups, "emit": emit, "auth": auth, "wall": wall,
        "calls": stats["requests"], "by_status": stats["by_status"], "left": stats["jobs"],
        "deleted": deletes_ok, "ideal": ideal, "min_calls": min_calls(n, groups),
        "sweep_duration": summary.get("duration_seconds"),
        "sink_counts": (sink_stats or {}).get("counts"),
        "cpu": cpu, "loadavg": os.getloadavg()[0],
        "rss_start": start_mem["VmRSS"], "rss_base": base_mem["VmRSS"],
        "rss_end": end_mem["VmRSS"], "hwm": end_mem["VmHWM"],
    }


def sdk_sweep(n: int, groups: int) -> dict[str, Any]:
    with standin_server(bulk=n, groups=groups, latency=LATENCY) as si:
        bound = min_calls(n, groups) * LATENCY * 3 + 120
        standin_cpu = cpu_seconds({"standin": si.process.pid})["standin"]
        loop = subprocess.Popen(
            [PY, "-m", "bench._sdk_loop", si.url, si.project_id or "", AK, SK],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            out, err = loop.communicate(timeout=bound)
        except subprocess.TimeoutExpired:
            stop_process(loop)
            raise
        if loop.returncode != 0:
            raise RuntimeError(f"SDK loop failed: {err[-2000:]}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        standin_cpu = cpu_seconds({"standin": si.process.pid})["standin"] - standin_cpu
        stats = si.stats()
    result.update(loadavg=os.getloadavg()[0],
                  cpu={"loop": result["cpu"], "standin": standin_cpu})
    result.update(tasks=n, groups=groups, left=stats["jobs"], server_calls=stats["requests"],
                  ideal_sequential=result["calls"] * LATENCY)
    return result


def run(quick: bool) -> Result:
    plans: list[tuple[int, int, str, str, int]]  # (tasks, groups, emit, auth, reps)
    if quick:
        plans = [(500, 10, "sink", "token", 1)]
        sdk_size: tuple[int, int] | None = (500, 10)
    else:
        plans = [(5000, 50, "sink", "token", 3), (5000, 50, "stdout", "token", 1),
                 (5000, 50, "sink", "aksk", 1), (20000, 50, "sink", "token", 1),
                 (20000, 50, "stdout", "token", 1)]
        sdk_size = (5000, 50)

    runs: list[dict[str, Any]] = []
    sdk: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        policy = _policy_file(Path(tmp))
        for tasks, groups, emit, auth, reps in plans:
            for rep in range(reps):
                say(f"sweep: function, {tasks} tasks / {groups} groups, outcomes to {emit}, "
                    f"{auth} auth, run {rep + 1}/{reps}")
                runs.append(function_sweep(tasks, groups, emit=emit, auth=auth, policy=policy))
                if sdk is None and sdk_size == (tasks, groups):
                    say(f"sweep: official SDK sequential loop, {tasks} tasks (takes "
                        f"~{min_calls(tasks, groups) * LATENCY * 1.15:.0f}s)")
                    sdk = sdk_sweep(tasks, groups)
    per_1k_records = records_alone_per_1000()

    result = Result("sweep", "Sweep (issue 3)")
    timing = Table(
        f"Sweep of N expired tasks: {LATENCY * 1000:.0f} ms per API call, concurrency "
        f"{CONCURRENCY}, rate limit off",
        ["tasks", "groups", "run", "n", "wall (s)", "in-function sweep (s)", "API calls",
         "ideal (s)", "wall ÷ ideal", "SDK loop ÷ wall", "CPU s: function / stand-in / sink",
         "client CPU per task (ms)", "load avg"],
    )
    memory = Table(
        "Sweep memory: gunicorn worker of functions-framework (/proc/PID/status)",
        ["tasks", "run", "RSS before (MiB)", "VmHWM after (MiB)", "growth (MiB)",
         "growth per 1k tasks (MiB)", "÷ records alone"],
    )
    if sdk is not None:
        timing.add(sdk["tasks"], sdk["groups"], "official SDK, sequential loop (AK/SK)", 1,
                   sdk["wall"], None, sdk["calls"], sdk["ideal_sequential"],
                   fmt_ratio(ratio(sdk["wall"], sdk["ideal_sequential"])), "1.00x",
                   f"{sdk['cpu']['loop']:.1f} (SDK loop) / {sdk['cpu']['standin']:.1f} / -",
                   sdk["cpu"]["loop"] * 1000 / sdk["tasks"], sdk["loadavg"])
    summary_rows: list[dict[str, Any]] = []
    for tasks, groups, emit, auth, _ in plans:
        group = [r for r in runs if (r["tasks"], r["groups"], r["emit"], r["auth"])
                 == (tasks, groups, emit, auth)]
        wall = median([r["wall"] for r in group])
        durations = [r["sweep_duration"] for r in group if r["sweep_duration"] is not None]
        ideal = group[0]["ideal"]
        label = f"function (ff), outcomes to {'K_SINK' if emit == 'sink' else 'stdout'}" + (
            ", AK/SK signing" if auth == "aksk" else ", token")
        sdk_ratio = (fmt_ratio(ratio(sdk["wall"], wall))
                     if sdk is not None and sdk["tasks"] == tasks else "not run")
        cpu = {k: median([r["cpu"].get(k, float("nan")) for r in group])
               for k in ("function", "standin", "sink")}
        cpu_text = " / ".join("-" if v != v else f"{v:.1f}" for v in cpu.values())
        timing.add(tasks, groups, label, len(group), wall,
                   median(durations) if durations else None, group[0]["calls"], ideal,
                   fmt_ratio(ratio(wall, ideal)), sdk_ratio, cpu_text,
                   cpu["function"] * 1000 / tasks, median([r["loadavg"] for r in group]))
        base = median([r["rss_base"] for r in group])
        hwm = median([r["hwm"] for r in group])
        growth = hwm - base
        per_1k = growth / (tasks / 1000)
        memory.add(tasks, label, mib(base), mib(hwm), mib(growth), mib(per_1k),
                   fmt_ratio(ratio(per_1k, per_1k_records)))
        summary_rows.append({"tasks": tasks, "emit": emit, "auth": auth, "wall": wall,
                             "ideal": ideal, "hwm": hwm, "base": base})
    result.tables += [timing, memory]

    notes = [
        "wall: PingSource CloudEvent POSTed to the running function until its 200 (the sweep "
        "is synchronous); in-function sweep: `duration_seconds` of its `sweep_completed` "
        "outcome; SDK loop: its own clock around client build + loop, in its own process.",
        "ideal = minimal API calls / 16 * 20 ms (SDK row: calls * 20 ms, it is sequential).",
        "CPU: user+system seconds of each process during the timed call (psutil); the function "
        "column is the gunicorn worker; client CPU per task: the function's worker, or the SDK "
        "loop's process. A Python process cannot use more than one core for "
        "Python code (GIL): when function CPU ~ wall, the sweep is CPU-bound in the function.",
        f"records alone: {mib(per_1k_records):.2f} MiB per 1,000 listed records "
        "(tracemalloc of json.loads of a 1,000-record listing page).",
    ]
    sink_rows = {r["tasks"]: r for r in summary_rows if r["emit"] == "sink"
                 and r["auth"] == "token"}
    if 5000 in sink_rows and 20000 in sink_rows:
        slope = (sink_rows[20000]["hwm"] - sink_rows[5000]["hwm"]) / 15
        notes.append(f"marginal peak RSS between 5k and 20k tasks: {mib(slope):.2f} MiB per "
                     "1,000 tasks.")
    incomplete = [r for r in runs if r["left"] or r["deleted"] != r["tasks"]]
    if incomplete:
        notes.append("WARNING: incomplete sweeps: " + "; ".join(
            f"{r['tasks']} tasks/{r['emit']}: {r['deleted']} deleted, {r['left']} left"
            for r in incomplete))
    if sdk is not None and (sdk["left"] or sdk["deleted"] != sdk["tasks"]):
        notes.append(f"WARNING: SDK loop deleted {sdk['deleted']} of {sdk['tasks']}")
    result.notes = notes
    result.data = {"runs": runs, "sdk": sdk, "records_alone_per_1000": per_1k_records,
                   "latency": LATENCY, "concurrency": CONCURRENCY}
    return result
