"""Issue 13: what one expiry event costs against the number of protection groups.

World: N protection groups, each holding one fresh (retained) task, the last one
also the expired and the fresh tasks the events name; the stand-in in its own process, 20 ms
added to every answer. Each event is an ``sdrs.failurejob.expired`` for a task in
the last group, no group hint, POSTed to the function (functions-framework, its
own process, default settings) until its 200; the calls are the stand-in's count.

* cold index: the first event of a freshly started function (a new instance):
  it lists the groups, the top level and every group, and warms the index;
* warm index: the events after it, each for another task of the last group
  (listed by that first scan, so known to the index), alternately one that the
  policy keeps (no DELETE: the indexed group alone is read) and one that expired
  (a DELETE, which must weigh every scope, the DELETE path being project-wide:
  the other scopes by their views, listed less than LISTING_MAX_AGE ago);
* warm, views too old: the same expired events with LISTING_MAX_AGE=0.001 s, so
  that no view is recent: every other scope is read again (what any event that
  deletes costs once the last complete listing is older than LISTING_MAX_AGE);
* before: the code before this issue (``bench.ratelimit.BASELINE``), which
  searched the hinted group, the top level, then each group, for every event.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx

from bench._procs import MAIN, ROOT, Function, Server, cloudevent, function_env
from bench._procs import sink as sink_server
from bench._procs import standin as standin_server
from bench._report import Result, Table, fmt_ratio, median, percentile, ratio, say
from bench.overhead import expired_record, fresh_records
from bench.ratelimit import BASELINE, baseline_tree

LATENCY = 0.02
EXPIRED = "sdrs.failurejob.expired"


def _world(si: Server, groups: int, targets: int) -> list[dict[str, Any]]:
    """The targets alternate: expired, kept, expired, kept, ..."""
    ids = [f"bench-group-{i:04d}" for i in range(groups)]
    fresh = fresh_records(groups + targets)
    jobs: list[tuple[dict[str, Any], str | None]] = list(zip(fresh, ids, strict=False))
    kept = [dict(r, resource_id=f"kept-{n}-{r['resource_id']}"[:64], job_id=f"kept{n}")
            for n, r in enumerate(fresh[groups:])]
    chosen = [expired_record() if n % 2 == 0 else kept[n] for n in range(targets)]
    jobs += [(record, ids[-1]) for record in chosen]
    si.add_jobs(jobs, groups=ids)
    return chosen


def _event(http: httpx.Client, fn: Function, si: Server, record: dict[str, Any]) -> tuple[
        float, int]:
    si.reset_log()
    headers, body = cloudevent(EXPIRED, {"failure_job_id": record["resource_id"]})
    started = time.perf_counter()
    answer = http.post(fn.url, headers=headers, content=body)
    seconds = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"event answered {answer.status_code}: {fn.stderr_tail()}")
    return seconds, int(si.stats()["requests"])


def _function(si: Server, sink_url: str, root: Path | None, **extra: str) -> Function:
    if root is None:
        return Function(MAIN, "on_event", function_env(si, sink_url=sink_url, **extra))
    env = function_env(si, sink_url=sink_url, PYTHONPATH=str(root))
    return Function(root / "main.py", "on_event", env, cwd=root)


def measure(groups: int, *, colds: int, warms: int, root: Path | None = None,
            **extra: str) -> dict[str, Any]:
    """``colds`` fresh functions, each answering one cold event then ``warms`` warm ones
    (``root``: another tree of the function, measured the same way; ``extra``: its
    settings)."""
    cold: list[tuple[float, int]] = []
    warm: list[tuple[float, int]] = []
    warm_kept: list[tuple[float, int]] = []
    with contextlib.ExitStack() as stack:
        si = stack.enter_context(standin_server(latency=LATENCY, groups=0))
        sk = stack.enter_context(sink_server())
        targets = _world(si, groups, colds * (1 + warms))
        http = stack.enter_context(httpx.Client(timeout=120))
        pending = iter(targets)
        for _ in range(colds):
            with _function(si, sk.url, root, **extra) as fn:
                fn.wait_listening()
                cold.append(_event(http, fn, si, next(pending)))
                for _ in range(warms):
                    record = next(pending)
                    kept = str(record["job_id"]).startswith("kept")
                    (warm_kept if kept else warm).append(_event(http, fn, si, record))
    return {"groups": groups, "cold": cold, "warm": warm, "warm_kept": warm_kept,
            "before": root is not None, "settings": extra}


def _row(table: Table, label: str, groups: int, samples: list[tuple[float, int]],
         base: float | None) -> float:
    seconds = [s for s, _ in samples]
    calls = [c for _, c in samples]
    mid = median(seconds)
    table.add(groups, label, len(samples), median(calls), max(calls), mid * 1000,
              percentile(seconds, 99) * 1000, fmt_ratio(ratio(mid, base)) if base else "1.00x")
    return mid


def run(quick: bool) -> Result:
    sizes = [1, 10] if quick else [1, 10, 100, 200]
    colds, warms = (1, 4) if quick else (2, 20)
    runs: list[dict[str, Any]] = []
    with baseline_tree() as old:
        for groups in sizes:
            say(f"lookup: {groups} groups, {colds} cold + {colds * warms} warm events")
            runs.append(measure(groups, colds=colds, warms=warms))
            say(f"lookup: {groups} groups, views older than LISTING_MAX_AGE")
            runs.append(measure(groups, colds=1, warms=2 if quick else 4,
                                LISTING_MAX_AGE="0.001"))
            say(f"lookup: {groups} groups, before ({BASELINE})")
            runs.append(measure(groups, colds=colds, warms=0 if quick else 3, root=old))
    table = Table(
        f"One expiry event for a task in the last of N groups, no group hint, "
        f"{LATENCY * 1000:.0f} ms per call, default settings",
        ["groups (N)", "index", "events", "API calls (median)", "API calls (max)",
         "latency median (ms)", "latency p99 (ms)", "÷ warm kept at N = 1"],
    )
    base: float | None = None
    for run_ in runs:
        if run_["before"]:
            _row(table, f"before ({BASELINE}): no index", run_["groups"],
                 run_["cold"] + run_["warm"], base)
            continue
        if run_["settings"]:
            _row(table, "warm, task expired, views too old (DELETE after reading every "
                 "scope)", run_["groups"], run_["warm"], base)
            continue
        if base is None:
            base = median([s for s, _ in run_["warm_kept"]])
        _row(table, "cold (fresh instance)", run_["groups"], run_["cold"], base)
        _row(table, "warm, task kept (no DELETE)", run_["groups"], run_["warm_kept"], base)
        _row(table, "warm, task expired (DELETE; other scopes by their recent views)",
             run_["groups"], run_["warm"], base)
    result = Result("lookup", "Per-event cost against groups: the lookup index (issue 13)")
    result.tables.append(table)
    result.notes = [
        "API calls: requests the stand-in received for the event (listings and the "
        "DELETE); latency: POST of the CloudEvent to its 200, outcome delivered to the sink.",
        "Every event is paced by the adaptive rate (default ceiling 50/s): a cold event "
        "at N = 200 is ~404 calls (each scope pages on to an empty page: complete "
        "listings, issue 10), so ~8 s at 50/s; before this issue single events were not "
        "paced (a burst of N listings at the API), and stopped at a short page.",
        "A view stands for a scope only while its listing is younger than LISTING_MAX_AGE "
        "(default 60 s): at a steady stream of events, a deleting event pays the full scan "
        "once per LISTING_MAX_AGE and one listing otherwise; the 'views too old' rows are "
        "that scan.",
        f"The stand-in is started in its own process for each N (repo {ROOT.name}); the "
        "machine is shared: read the ratios.",
    ]
    result.data = {"runs": runs}
    return result
