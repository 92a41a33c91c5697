"""RSS of the function process over many cheap events, vs hello world.

The function (``functions-framework``, its own process, ``K_SINK`` to an
``OutcomeSink`` in its own process, ``SWEEP_RATE_LIMIT=0`` so that the run
takes seconds rather than ~20 minutes) receives N events from 4 client threads,
in batches of N/10; after every batch, with the function idle, the bench reads
VmRSS of the gunicorn worker from /proc. Every event has a unique id and, where
it names a task, a unique task, so a per-id cache would show as growth.

The mix, by event index modulo 10:

* 0-2: ``sdrs.failurejob.expired`` for a task that is not listed -> ``already_deleted``
  (GET top level, GET protection groups - none -, POST outcome);
* 3-5: rejected: an unknown type, or a ``failure_job_id`` that is no plain token;
* 6-8: ``sdrs.job.failed`` for one of 10 fresh tasks at the top level -> ``retained``;
* 9: ``sdrs.job.failed`` for an expired task added just before through the stand-in's
  control port -> ``deleted`` (GET, DELETE, POST).

Baseline: a hello-world cloudevent function under the same framework, the same
event sequence (no tasks added), measured the same way.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from bench._procs import (
    MAIN,
    Function,
    Server,
    clean_env,
    cloudevent,
    function_env,
    hello_source,
    proc_status,
)
from bench._procs import sink as sink_server
from bench._procs import standin as standin_server
from bench._report import Result, Table, mib, say
from bench.overhead import expired_record
from standin import bulk_world

CLIENTS = 4


def make_event(i: int, fresh: list[dict[str, Any]], si: Server | None
               ) -> tuple[dict[str, str], bytes]:
    kind = i % 10
    if kind <= 2:
        return cloudevent("sdrs.failurejob.expired", {"failure_job_id": str(uuid.uuid4())})
    if kind in (3, 4):
        return cloudevent("bench.unknown.type", {"failure_job_id": str(uuid.uuid4())})
    if kind == 5:
        return cloudevent("sdrs.failurejob.expired", {"failure_job_id": "../../etc/passwd"})
    if kind <= 8:
        return cloudevent("sdrs.job.failed", fresh[i % len(fresh)])
    record = expired_record()
    if si is not None:
        si.add_jobs([(record, None)])
    return cloudevent("sdrs.job.failed", record)


def run_batch(url: str, start: int, count: int, make: Callable[[int], tuple[dict[str, str],
                                                                            bytes]]) -> int:
    """Send events start..start+count-1 from CLIENTS threads; return failures."""
    lock = threading.Lock()
    next_index = [start]
    failures = [0]

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while True:
                with lock:
                    i = next_index[0]
                    if i >= start + count:
                        return
                    next_index[0] += 1
                headers, body = make(i)
                try:
                    ok = http.post(url, headers=headers, content=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if not ok:
                    with lock:
                        failures[0] += 1

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return failures[0]


def trajectory(fn: Function, total: int, make: Callable[[int], tuple[dict[str, str], bytes]]
               ) -> dict[str, Any]:
    fn.wait_listening()
    worker = fn.worker_pid()
    batch = total // 10
    points = [(0, proc_status(worker)["VmRSS"])]
    failures = 0
    for k in range(10):
        failures += run_batch(fn.url, k * batch, batch, make)
        points.append(((k + 1) * batch, proc_status(worker)["VmRSS"]))
    return {"points": points, "failures": failures, "hwm": proc_status(worker)["VmHWM"]}


def run(quick: bool, smoke: bool = False) -> Result:
    total = 100 if smoke else 1000 if quick else 10_000  # 10 batches
    fresh = [dict(r) for r, _ in bulk_world(10, 0, datetime.now(UTC), expired=False,
                                              seed=21)[1]]
    runs: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        si = stack.enter_context(standin_server())
        sk = stack.enter_context(sink_server())
        si.add_jobs([(record, None) for record in fresh])
        say(f"memory: function, {total} events in 10 batches")
        with Function(MAIN, "on_event", function_env(si, sink_url=sk.url,
                                                     SWEEP_RATE_LIMIT="0")) as fn:
            runs["function"] = trajectory(fn, total, lambda i: make_event(i, fresh, si))
        say(f"memory: hello world, {total} events in 10 batches")
        hello_path = stack.enter_context(hello_source())
        with Function(hello_path, "hello", clean_env()) as hello:
            runs["hello"] = trajectory(hello, total, lambda i: make_event(i, fresh, None))
        stats = si.stats()
        counts = sk.stats()["counts"]

    table = Table(
        f"RSS of the gunicorn worker over {total:,} events (VmRSS, /proc, read between "
        "batches)",
        ["function", "after start-up (MiB)", f"after {total // 10:,} (MiB)",
         f"after {total:,} (MiB)", "growth, total (MiB)",
         f"growth after the first {total // 10:,} (MiB)", "per 1,000 events after warm-up "
                                                          "(KiB)", "failed"],
    )
    labels = {"function": "failjob-reaper on_event (SWEEP_RATE_LIMIT=0)",
              "hello": "hello world (same framework, same events)"}
    for key in ("hello", "function"):
        points = runs[key]["points"]
        start, warm, end = points[0][1], points[1][1], points[-1][1]
        steady = (end - warm) / ((total - total // 10) / 1000)
        table.add(labels[key], mib(start), mib(warm), mib(end), mib(end - start),
                  mib(end - warm), steady / 1024, runs[key]["failures"])
    trail = Table("RSS after each batch (MiB)",
                  ["events", *[f"{n:,}" for n, _ in runs["function"]["points"]]])
    for key in ("hello", "function"):
        trail.add(labels[key], *[mib(rss) for _, rss in runs[key]["points"]])
    result = Result("memory", "Memory over many events", [table, trail])
    result.notes = [
        "Mix per 10 events: 3 already_deleted (unlisted task), 3 rejected (unknown type, bad "
        "id), 3 retained (fresh task), 1 deleted (task added just before).",
        f"Stand-in requests: {stats['by_status']}; sink: {counts}.",
    ]
    result.data = runs
    return result
