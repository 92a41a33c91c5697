"""Issue 7: per-event overhead of the function over the HTTP calls it has to make.

Setup: the stand-in in its own process (no added latency) holding 9 fresh
(retained) tasks at the top level and no protection groups; an ``OutcomeSink``
in its own process; the function under ``functions-framework`` in its own
process with ``K_SINK`` set - twice: default settings, and ``SWEEP_RATE_LIMIT=0`` -;
a hello-world cloudevent function under the same framework in another. Before
each timed call the bench adds one fresh expired task through the stand-in's
control port (untimed), so every listing holds 10 records.

Timed, interleaved per iteration:

* function (both): a ``sdrs.job.failed`` event (the listed record as data, binary mode)
  POSTed to the function until its 200: inside, GET listing (top level, where
  it is found), DELETE (204), POST ``deleted`` outcome to the sink;
* floor: the same three calls made directly with one pooled ``httpx.Client``
  from the bench process: GET listing + parse + find the record, DELETE, POST
  a binary-mode CloudEvent carrying the record to the sink;
* hello: the same event POSTed to the hello-world function (the inbound hop
  and the framework alone).

overhead = function - floor; of it, hello is what the framework and the
inbound HTTP hop cost with no product code at all.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from bench._procs import (
    MAIN,
    TOKEN,
    Function,
    Server,
    clean_env,
    cloudevent,
    function_env,
    hello_source,
)
from bench._procs import sink as sink_server
from bench._procs import standin as standin_server
from bench._report import Result, Table, fmt_ratio, median, percentile, ratio, say
from standin import bulk_world

_seq = iter(range(1, 10_000_000))


def expired_record() -> dict[str, Any]:
    """A fresh expired record with unique ids (30 days old)."""
    _, jobs = bulk_world(1, 0, datetime.now(UTC), seed=next(_seq) + 1000)
    record = dict(jobs[0][0])
    record["resource_id"] = str(uuid.uuid4())
    record["job_id"] = uuid.uuid4().hex
    return record


def timed_job_failed(
    client: httpx.Client, target: Function, standin: Server | None
) -> float:
    """Seconds for one job-failed event about a new expired task (added to ``standin``)."""
    record = expired_record()
    if standin is not None:
        standin.add_jobs([(record, None)])
    headers, body = cloudevent("sdrs.job.failed", record)
    started = time.perf_counter()
    answer = client.post(target.url, headers=headers, content=body)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"event answered {answer.status_code}: {target.stderr_tail()}")
    return elapsed


def fresh_records(n: int) -> list[dict[str, Any]]:
    _, jobs = bulk_world(n, 0, datetime.now(UTC), expired=False, seed=7)
    return [dict(record) for record, _ in jobs]


class Floor:
    """The three calls the function must make, made directly."""

    def __init__(self, si: Server, sink_url: str) -> None:
        self.http = httpx.Client(timeout=30)
        self.list_url = f"{si.url}/v1/{si.project_id}/task-center/failure-jobs"
        self.sink_url = sink_url
        self.auth = {"X-Auth-Token": TOKEN}

    def call(self, resource_id: str) -> None:
        listing = self.http.get(self.list_url, params={"limit": "1000", "offset": "0"},
                                headers=self.auth)
        record = next(r for r in listing.json()["failure_jobs"]
                      if r["resource_id"] == resource_id)
        deleted = self.http.delete(f"{self.list_url}/{resource_id}", headers=self.auth)
        if deleted.status_code != 204:
            raise RuntimeError(f"floor DELETE answered {deleted.status_code}")
        headers = {"ce-specversion": "1.0", "ce-type": "sdrs.failurejob.deleted",
                   "ce-source": "bench-floor", "ce-id": str(uuid.uuid4()),
                   "ce-subject": resource_id, "content-type": "application/json"}
        body = json.dumps({"outcome": "deleted", "failure_job_id": resource_id,
                           "job": record}).encode()
        posted = self.http.post(self.sink_url, headers=headers, content=body)
        if posted.status_code != 202:
            raise RuntimeError(f"floor sink POST answered {posted.status_code}")

    def close(self) -> None:
        self.http.close()


def run(quick: bool, smoke: bool = False) -> Result:
    n = 5 if smoke else 100 if quick else 600  # per path
    warmup = 2 if smoke else 10 if quick else 30
    series: dict[str, list[float]] = {"function": [], "nolimit": [], "floor": [], "hello": []}
    with contextlib.ExitStack() as stack:
        si = stack.enter_context(standin_server())
        sk = stack.enter_context(sink_server())
        si.add_jobs([(record, None) for record in fresh_records(9)])
        fn = stack.enter_context(Function(MAIN, "on_event", function_env(si, sink_url=sk.url)))
        nolimit = stack.enter_context(Function(MAIN, "on_event", function_env(
            si, sink_url=sk.url, SWEEP_RATE_LIMIT="0")))
        hello_path = stack.enter_context(hello_source())
        hello = stack.enter_context(Function(hello_path, "hello", clean_env()))
        for started in (fn, nolimit, hello):
            started.wait_listening()
        floor = Floor(si, sk.url)
        stack.callback(floor.close)
        client = stack.enter_context(httpx.Client(timeout=30))

        def via_function(target: Function, *, add: bool = True) -> float:
            # The hello world never deletes it: do not grow the listing.
            return timed_job_failed(client, target, si if add else None)

        def via_floor() -> float:
            record = expired_record()
            si.add_jobs([(record, None)])
            started = time.perf_counter()
            floor.call(record["resource_id"])
            return time.perf_counter() - started

        say(f"overhead: {warmup} warm-up + {n} timed iterations (function, floor, function "
            "without rate limit, hello)")
        for i in range(warmup + n):
            f, fl = via_function(fn), via_floor()
            nl, h = via_function(nolimit), via_function(hello, add=False)
            if i >= warmup:
                series["function"].append(f)
                series["floor"].append(fl)
                series["nolimit"].append(nl)
                series["hello"].append(h)
        stats = si.stats()
        counts = sk.stats()["counts"]

    def ms(values: list[float], q: float | None = None) -> float:
        return (median(values) if q is None else percentile(values, q)) * 1000

    table = Table(
        f"One job-failed event, {n} per path, interleaved; stand-in without latency",
        ["path", "median (ms)", "p90 (ms)", "p99 (ms)", "÷ floor (median)"],
    )
    labels = {"floor": "floor: GET + DELETE + sink POST, one pooled httpx.Client",
              "function": "function (ff), default settings (SWEEP_RATE_LIMIT=50)",
              "nolimit": "function (ff), SWEEP_RATE_LIMIT=0",
              "hello": "hello world (ff): event in, 200 out"}
    for key in ("floor", "function", "nolimit", "hello"):
        values = series[key]
        table.add(labels[key], ms(values), ms(values, 90), ms(values, 99),
                  fmt_ratio(ratio(median(values), median(series["floor"]))))
    over = Table("Per-event overhead = function - floor",
                 ["function", "median (ms)", "p99 (ms)", "of which hello world (framework + "
                  "inbound hop), median (ms)", "rest: product code, median (ms)"])
    for key in ("function", "nolimit"):
        over_med = ms(series[key]) - ms(series["floor"])
        over_p99 = ms(series[key], 99) - ms(series["floor"], 99)
        over.add(labels[key], over_med, over_p99, ms(series["hello"]),
                 over_med - ms(series["hello"]))
    result = Result("overhead", "Per-event overhead (issue 7)", [table, over])
    result.notes = [
        "Each timed call gets a fresh expired task added beforehand through the stand-in's "
        "control port (untimed); every listing holds 10 records. Stand-in, sink and the three "
        "functions run in their own processes; the floor runs in the bench process.",
        "p99 overhead is the difference of the two p99s (not a paired difference).",
        "SWEEP_RATE_LIMIT (default 50/s) paces every SDRS request, single events ahead of "
        "sweeps, with a burst: at one event at a time both rows should match.",
        f"Stand-in requests by status: {stats['by_status']}; sink: {counts}.",
    ]
    result.data = {"series": series}
    return result
