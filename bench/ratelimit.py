"""Issue 13: a sweep at the API's own limit, and what httpx's transport costs.

**At the limit.** The stand-in throttles like the API gateway (a token bucket of
R requests/s, burst R, 429 ``APIG.0308 ... limit:R,time:1 second`` beyond it),
20 ms added to every answer. A PingSource sweep of N expired tasks over 20
groups through functions-framework, default settings (nothing tuned to R), for
R = 5, 20, 100, next to: the ceiling raised above every R (``SWEEP_RATE_LIMIT=1000``),
the limiter off (``SWEEP_RATE_LIMIT=0``), the code before this issue with its
fixed limiter at 20/s (``BASELINE``, extracted with ``git archive``), and the
official SDK's sequential loop with the SDK's own retry of 429s.
Goodput: DELETEs answered 204 per second of the sweep's wall time.

**Transport.** The same sweep without throttling (limiter off, concurrency 16)
with this code (httpx's own pooled transport) and with ``BASELINE`` (the
hand-written ``http.client`` transport): client CPU per deleted task.

``SWEEP_DEADLINE=3600`` everywhere (a sweep at 5/s outlasts the default 240 s);
``max_deletions_per_sweep`` raised in the policy.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
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
    stop_process,
)
from bench._procs import sink as sink_server
from bench._procs import standin as standin_server
from bench._report import Result, Table, fmt_ratio, median, ratio, say

BASELINE = "d9f45c9"
"""The last commit with the fixed 20/s-style limiter (sweeps only) and KeepAliveTransport."""

LATENCY = 0.02
GROUPS = 20
PING = "dev.knative.sources.ping"


@contextlib.contextmanager
def baseline_tree(commit: str = BASELINE) -> Iterator[Path]:
    """The function's files at ``commit`` in a temporary directory (never committed)."""
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        archive = subprocess.run(["git", "archive", commit, "main.py", "failjob_reaper",
                                  "handlers"], cwd=ROOT, capture_output=True, check=True,
                                 timeout=60)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True, timeout=60)
        yield Path(tmp)


def _policy(tmp: Path) -> str:
    path = tmp / "bench-policy.json"
    path.write_text(json.dumps({"default_retention": "7d",
                                "guards": {"max_deletions_per_sweep": 10_000_000}}))
    return str(path)


def function_sweep(tasks: int, throttle: float, *, policy: str, root: Path | None = None,
                   **settings: str) -> dict[str, Any]:
    """One sweep through functions-framework (``root``: another tree of the function)."""
    with contextlib.ExitStack() as stack:
        si = stack.enter_context(standin_server(bulk=tasks, groups=GROUPS, latency=LATENCY,
                                                throttle=throttle))
        sk = stack.enter_context(sink_server())
        extra = {"RETENTION_POLICY_FILE": policy, "SWEEP_DEADLINE": "3600",
                 "SDRS_REQUEST_TIMEOUT": "30", **settings}
        source, cwd = MAIN, ROOT
        if root is not None:
            source, cwd = root / "main.py", root
            extra["PYTHONPATH"] = str(root)
        env = function_env(si, sink_url=sk.url, **extra)
        fn = stack.enter_context(Function(source, "on_event", env, cwd=cwd))
        fn.wait_listening()
        worker = fn.worker_pid()
        with httpx.Client(timeout=30) as http:
            headers, body = cloudevent("bench.warmup", {})
            warm = http.post(fn.url, headers=headers, content=body)
            if warm.status_code != 200:
                raise RuntimeError(f"warm-up answered {warm.status_code}: {fn.stderr_tail()}")
            si.reset_log()
            headers, body = cloudevent(PING, {}, source="/bench/ratelimit")
            cpu_before = cpu_seconds({"function": worker})["function"]
            started = time.perf_counter()
            answer = http.post(fn.url, headers=headers, content=body, timeout=3600)
            wall = time.perf_counter() - started
            cpu = cpu_seconds({"function": worker})["function"] - cpu_before
        stats = si.stats()
        summary = sk.stats().get("last_sweep") or {}
    by_status: dict[str, int] = stats["by_status"]
    deleted = by_status.get("DELETE 204", 0)
    throttled = sum(n for key, n in by_status.items() if key.endswith(" 429"))
    return {"tasks": tasks, "throttle": throttle, "settings": settings,
            "baseline": root is not None, "status": answer.status_code, "wall": wall,
            "requests": stats["requests"], "by_status": by_status, "deleted": deleted,
            "throttled": throttled, "left": stats["jobs"], "cpu": cpu,
            "partial": summary.get("partial"), "loadavg": os.getloadavg()[0]}


def sdk_sweep(tasks: int, throttle: float) -> dict[str, Any]:
    with standin_server(bulk=tasks, groups=GROUPS, latency=LATENCY, throttle=throttle) as si:
        loop = subprocess.Popen(
            [PY, "-m", "bench._sdk_loop", si.url, si.project_id or "", AK, SK,
             "--retry-throttled"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = loop.communicate(timeout=3600)
        except subprocess.TimeoutExpired:
            stop_process(loop)
            raise
        stats = si.stats()
    by_status: dict[str, int] = stats["by_status"]
    result: dict[str, Any] = {"tasks": tasks, "throttle": throttle, "sdk": True,
                              "by_status": by_status, "requests": stats["requests"],
                              "deleted": by_status.get("DELETE 204", 0),
                              "throttled": sum(n for k, n in by_status.items()
                                               if k.endswith(" 429")),
                              "left": stats["jobs"], "loadavg": os.getloadavg()[0]}
    if loop.returncode != 0:
        result.update(wall=None, cpu=None, error=err.strip().splitlines()[-1:])
    else:
        loop_result = json.loads(out.strip().splitlines()[-1])
        result.update(wall=loop_result["wall"], cpu=loop_result["cpu"])
    return result


VARIANTS: list[tuple[str, dict[str, str], bool]] = [
    ("adaptive, default settings (ceiling 50/s)", {}, False),
    ("adaptive, ceiling above every R (SWEEP_RATE_LIMIT=1000)", {"SWEEP_RATE_LIMIT": "1000"},
     False),
    ("limiter off (SWEEP_RATE_LIMIT=0)", {"SWEEP_RATE_LIMIT": "0"}, False),
    (f"before ({BASELINE}): fixed 20/s, sweeps only", {"SWEEP_RATE_LIMIT": "20"}, True),
]


def run(quick: bool, smoke: bool = False) -> Result:
    if quick:
        plan = [(20.0, 20 if smoke else 100)]
        variants = [VARIANTS[0], VARIANTS[2]]
        cpu_tasks, with_sdk = 40 if smoke else 300, False
    else:
        # 2,000 tasks at 5/s is 400 s per row; 500 keeps the run under an hour.
        plan = [(5.0, 500), (20.0, 2000), (100.0, 2000)]
        variants = VARIANTS
        cpu_tasks, with_sdk = 2000, True
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp, baseline_tree() as old:
        policy = _policy(Path(tmp))
        for rate, tasks in plan:
            for label, settings, baseline in variants:
                say(f"ratelimit: R={rate:g}, {tasks} tasks, {label}")
                row = function_sweep(tasks, rate, policy=policy,
                                     root=old if baseline else None, **settings)
                rows.append({"label": label, **row})
            if with_sdk:
                say(f"ratelimit: R={rate:g}, {tasks} tasks, official SDK loop")
                rows.append({"label": "official SDK loop, its own retry of 429s",
                             **sdk_sweep(tasks, rate)})
        if not quick:  # the same ceiling, both transports, at R = 100
            say("ratelimit: R=100, before, SWEEP_RATE_LIMIT=50")
            rows.append({"label": f"before ({BASELINE}), SWEEP_RATE_LIMIT=50 (same ceiling)",
                         **function_sweep(2000, 100.0, policy=policy, root=old,
                                          SWEEP_RATE_LIMIT="50")})
        cpu_rows = []
        reps = 1 if quick else 3
        for rep in range(reps):  # interleaved: new, old, new, old, ...
            for name, root in (("httpx's own pooled transport (now)", None),
                               (f"KeepAliveTransport over http.client ({BASELINE})", old)):
                say(f"ratelimit: transport CPU, {name}, run {rep + 1}/{reps}")
                cpu_rows.append({"label": name, **function_sweep(
                    cpu_tasks, 0.0, policy=policy, root=root, SWEEP_RATE_LIMIT="0",
                    SWEEP_CONCURRENCY="16")})

    result = Result("ratelimit", "Sweep at the API's limit, transport CPU (issue 13)")
    table = Table(
        f"Sweep of N expired tasks over {GROUPS} groups against a gateway allowing R "
        f"requests/s (429 APIG.0308 beyond), {LATENCY * 1000:.0f} ms per call",
        ["R (req/s)", "tasks", "client", "wall (s)", "deleted (204)", "goodput (204/s)",
         "goodput ÷ R", "requests", "429s", "429 share", "left"],
    )
    for row in rows:
        wall = row.get("wall")
        goodput = row["deleted"] / wall if wall else None
        table.add(row["throttle"], row["tasks"], row["label"], wall, row["deleted"], goodput,
                  fmt_ratio(ratio(goodput, row["throttle"])) if goodput else None,
                  row["requests"], row["throttled"],
                  f"{100 * row['throttled'] / max(1, row['requests']):.1f} %", row["left"])
    cpu = Table(
        f"Client CPU per deleted task, {cpu_tasks} tasks, no throttling, limiter off, "
        f"concurrency 16, {LATENCY * 1000:.0f} ms per call (median of {reps}, interleaved)",
        ["transport", "n", "wall (s)", "function CPU (s)", "CPU per task (ms)",
         "÷ KeepAliveTransport"],
    )
    per_task: dict[str, float] = {}
    for label in dict.fromkeys(r["label"] for r in cpu_rows):
        group = [r for r in cpu_rows if r["label"] == label]
        per_task[label] = median([r["cpu"] / max(1, r["deleted"]) for r in group]) * 1000
    old_label = next(iter(reversed(per_task)))
    for label, value in per_task.items():
        group = [r for r in cpu_rows if r["label"] == label]
        cpu.add(label, len(group), median([r["wall"] for r in group]),
                median([r["cpu"] for r in group]), value,
                fmt_ratio(ratio(value, per_task[old_label])))
    result.tables += [table, cpu]
    result.notes = [
        "goodput = DELETEs answered 204 / wall time of the PingSource event (listing "
        f"included: 1 + {GROUPS + 1} calls); 429 share = 429 answers / all requests the "
        "stand-in received during the sweep.",
        "Default settings: SWEEP_CONCURRENCY 8, SWEEP_RATE_LIMIT 50 (the ceiling; the "
        "adaptive rate starts there), retries 5 attempts with 0.5-8 s full-jitter backoff. "
        "At R = 100 the default ceiling (50) is the bound, not R.",
        "The stand-in, the sink, the function and the SDK loop each run in their own "
        "process; 2 CPUs shared with other work: read the ratios.",
    ]
    result.data = {"rows": rows, "cpu_rows": cpu_rows, "baseline": BASELINE}
    return result
