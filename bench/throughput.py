"""Events per second the function sustains with N concurrent clients, vs hello world.

Stand-in (its own process, no added latency) preloaded with protection groups
of 5 fresh (retained) and 10 expired tasks each; each ``sdrs.job.failed`` event
carries one expired record with its ``server_group_id`` as the hint, so the
function lists that group only (15 records at most), deletes, and posts the
``deleted`` outcome to the sink (its own process). Clients are threads of the
bench process, one pooled ``httpx.Client`` each, taking the next task from a
shared queue; a run ends after its duration or when the preloaded tasks run
out (then the rate counts the time actually used).

Rows: hello world (same framework, same clients, same event bodies);
``rejected`` (an unknown event type: no SDRS call, one outcome); job-failed
events with the default ``SWEEP_RATE_LIMIT`` (20/s, sweeps only) and with it off;
"(ran out)" marks a row that used up its preloaded tasks before the 10 s.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from bench._procs import MAIN, Function, clean_env, cloudevent, function_env, hello_source
from bench._procs import sink as sink_server
from bench._procs import standin as standin_server
from bench._report import Result, Table, fmt_ratio, median, percentile, ratio, say
from standin import bulk_world

CLIENTS = 4
PER_GROUP_EXPIRED = 10
PER_GROUP_FRESH = 5


def preload(n_tasks: int) -> tuple[list[str], list[tuple[dict[str, Any], str | None]],
                                   list[tuple[dict[str, Any], str]]]:
    """Groups, all records to load, and the expired (record, group) pairs in event order."""
    n_groups = max(1, n_tasks // PER_GROUP_EXPIRED)
    now = datetime.now(UTC)
    groups, expired = bulk_world(n_tasks, n_groups, now, top_level_share=0.0, seed=11)
    _, fresh = bulk_world(PER_GROUP_FRESH * n_groups, n_groups, now, expired=False,
                          top_level_share=0.0, seed=12)
    group_ids = [g.id for g in groups]
    # bulk_world assigns task i to group i % n: map the fresh world's groups onto ours.
    fresh_jobs = [(record, group_ids[i % n_groups]) for i, (record, _) in enumerate(fresh)]
    pairs = [(record, str(group)) for record, group in expired]
    return group_ids, [*expired, *fresh_jobs], pairs


def drive(url: str, events: deque[tuple[dict[str, str], bytes]], seconds: float,
          clients: int) -> dict[str, Any]:
    """Post events from ``clients`` threads until ``seconds`` pass or events run out."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while time.perf_counter() < stop_at:
                with lock:
                    if not events:
                        return
                    headers, body = events.popleft()
                started = time.perf_counter()
                try:
                    answer = http.post(url, headers=headers, content=body)
                    ok = answer.status_code == 200
                    status = str(answer.status_code)
                except httpx.HTTPError as exc:
                    ok, status = False, type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors.append(status)

    threads = [threading.Thread(target=client, name=f"bench-client-{i}")
               for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - started
    return {"events": len(latencies), "errors": len(errors), "error_kinds": sorted(set(errors)),
            "seconds": elapsed, "rate": len(latencies) / elapsed if elapsed else 0.0,
            "p50": median(latencies) if latencies else None,
            "p99": percentile(latencies, 99) if latencies else None,
            "exhausted": not events}


def run(quick: bool, smoke: bool = False) -> Result:
    seconds = 0.5 if smoke else 2.0 if quick else 10.0
    n_tasks = 200 if smoke else 1500 if quick else 8000
    warm = 20
    rows: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        si = stack.enter_context(standin_server())
        sk = stack.enter_context(sink_server())
        group_ids, jobs, pairs = preload(n_tasks)
        say(f"throughput: preloading {len(jobs)} tasks in {len(group_ids)} groups")
        si.add_jobs(jobs, groups=group_ids)
        hello_path = stack.enter_context(hello_source())
        functions = {
            "hello": Function(hello_path, "hello", clean_env()),
            "limited": Function(MAIN, "on_event", function_env(si, sink_url=sk.url)),
            "unlimited": Function(MAIN, "on_event", function_env(si, sink_url=sk.url,
                                                                 SWEEP_RATE_LIMIT="0")),
        }
        for fn in functions.values():
            stack.enter_context(fn)
        for fn in functions.values():
            fn.wait_listening()

        def job_events(k: int) -> deque[tuple[dict[str, str], bytes]]:
            taken = [pairs.pop(0) for _ in range(min(k, len(pairs)))]
            return deque(cloudevent("sdrs.job.failed", {**record, "server_group_id": group})
                         for record, group in taken)

        def cheap_events(k: int, event_type: str) -> deque[tuple[dict[str, str], bytes]]:
            return deque(cloudevent(event_type, {"failure_job_id": f"task-{i}"})
                         for i in range(k))

        # Generous upper bounds on what a run can consume; the clock decides.
        budget = int(seconds * 1500)
        Events = deque[tuple[dict[str, str], bytes]]
        plan: list[tuple[str, str, str, Callable[[], Events]]] = [
            ("hello", "hello world (ff), same event bodies", "hello",
             lambda: cheap_events(budget, "sdrs.job.failed")),
            ("rejected", "function: unknown type -> rejected (1 sink POST)", "unlimited",
             lambda: cheap_events(budget, "bench.unknown")),
            ("limited", "function: job.failed -> deleted, default SWEEP_RATE_LIMIT=20",
             "limited", lambda: job_events(int(seconds * 40) + warm)),
            ("unlimited", "function: job.failed -> deleted, SWEEP_RATE_LIMIT=0",
             "unlimited", lambda: job_events(len(pairs))),
        ]
        labels: dict[str, str] = {}
        for key, label, fn_key, make in plan:
            fn = functions[fn_key]
            events = make()
            say(f"throughput: {label}: {CLIENTS} clients, {seconds:.0f}s "
                f"({len(events)} events available)")
            warmup = deque(events.popleft() for _ in range(min(warm, len(events))))
            drive(fn.url, warmup, 30.0, CLIENTS)
            rows[key] = drive(fn.url, events, seconds, CLIENTS)
            labels[key] = label
        stats = si.stats()
        counts = sk.stats()["counts"]

    table = Table(
        f"Throughput: {CLIENTS} concurrent clients, {seconds:g} s per row, loopback",
        ["function / events", "duration", "events/s", "÷ hello world", "answered", "errors",
         "p50 (ms)", "p99 (ms)"],
    )
    hello_rate = rows["hello"]["rate"]
    for key, row in rows.items():
        table.add(labels[key], f"{row['seconds']:.1f} s" + (" (ran out)" if row["exhausted"]
                                                              else ""),
                  row["rate"], fmt_ratio(ratio(row["rate"], hello_rate)), row["events"],
                  row["errors"], (row["p50"] or 0) * 1000, (row["p99"] or 0) * 1000)
    result = Result("throughput", "Throughput", [table])
    result.notes = [
        "Clients are threads in the bench process; the function, the stand-in and the sink "
        "are separate processes, all sharing the machine's 2 cores: the rate is the "
        "system's, with the function's gunicorn worker (8 threads) the busiest process.",
        f"Stand-in requests: {stats['by_status']}; sink: {counts}.",
    ]
    result.data = {"rows": rows, "clients": CLIENTS, "seconds": seconds}
    return result
