"""Issue 19: backlogs of up to a million failed tasks, in bounded time and memory.

``python -m bench --only backlog`` (10,000, 100,000 and 1,000,000 tasks) or, to pick
sizes and parts, ``python -m bench.backlog [--sizes 10000 100000] [--parts plan rate
redis faults] [--quick | --smoke] [--json FILE]``.

Every run is the operator's command line, ``failjob-reaper`` (``python -m
failjob_reaper``), in its own process against the stand-in in its own process
(``bench._servers``, loaded with ``bulk_rows``: expired tasks, seed 0), with
``STATE_URL=memory://`` unless said, the guard ``max_deletions_per_sweep`` raised
above every size (a policy file) and ``SWEEP_RATE_LIMIT=0`` (no client-side pacing:
the cost of the function itself). Peak RSS is the child's own ``ru_maxrss``
(``os.wait4``); API calls are counted by the stand-in.

Parts:

* ``plan``   - ``plan`` and ``sweep --dry-run`` over N tasks, in one scope (all at the
               top level) and over 20 groups: wall, API calls, peak RSS, time per 1,000
               tasks, and beside it the floor the API's rate imposes: calls / R;
* ``rate``   - a real ``sweep`` of N expired tasks (plus fresh ones that must stay)
               against the stand-in throttling like the gateway at R requests/s, repeated
               until every expired task is gone: sweeps needed, goodput / R, wrong
               deletes (counted from the world: fresh tasks no longer listed), each
               sweep's duration against ``SWEEP_DEADLINE``;
* ``redis``  - Redis ``used_memory`` before and after a dry-run sweep of N tasks (at most
               100,000) with ``STATE_URL=redis://`` (the lookup index: ``ix:`` buckets,
               ``sv:`` views), per indexed task; and, for each N, ``LookupIndex.record`` of
               a full sweep's listings in this process: Redis bytes per task, the
               buckets' encodings, and ``record``'s own peak per task (tracemalloc);
* ``faults`` - ``plan`` against a server that drips its answers (headers, then one byte a
               second) and one whose listing pages are N MB: time to the answer against
               ``SWEEP_DEADLINE``, peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import httpx

from bench._procs import PY, ROOT, TOKEN, Server, clean_env, server
from bench._report import Result, Table, fmt_ratio, mib, ratio, say
from failjob_reaper.scopes import Scope
from standin.redis_server import RedisServer
from standin.sample_data import bulk_rows

RATE = 100.0
"""R: the API's own rate (requests/s) for the floor, and the throttling stand-in's."""
GROUPS = 20
FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000,)
SMOKE_SIZES = (300,)
DRIP_DEADLINE = 10.0
PAGE_MB = 50.0


def _standin(*, bulk: int, groups: int, fresh: int = 0, throttle: float = 0.0,
             drip: float = 0.0, page_mb: float = 0.0) -> contextlib.AbstractContextManager[Server]:
    return server("standin", "--token", TOKEN, "--bulk", str(bulk), "--groups", str(groups),
                  "--fresh", str(fresh), "--throttle", str(throttle), "--drip", str(drip),
                  "--page-mb", str(page_mb), timeout=600)


def _policy(tmp: Path) -> str:
    path = tmp / "backlog-policy.json"
    path.write_text(json.dumps({"default_retention": "7d",
                                "guards": {"max_deletions_per_sweep": 100_000_000}}))
    return str(path)


FUNCTION_SWEEP = """
import json, uuid
from failjob_reaper.components import load_components
from failjob_reaper.events import SweepRequest
from failjob_reaper.outcomes import Causation
components = load_components()
request = SweepRequest(trigger="timer", dry_run=True, causation=Causation(
    id=str(uuid.uuid4()), source="/bench", type="bench.sweep", deduplicated=False))
print(json.dumps(components.sweeper.run(request).as_data()))
"""
"""A dry-run sweep as the function runs one (its components, the lookup index kept): the
command line keeps no index (one command, one process), so it cannot show the index's
cost."""


def run_cli(si: Server, args: Sequence[str], *, policy: str, timeout: float,
            command: Sequence[str] | None = None, **env: str) -> dict[str, Any]:
    """``failjob-reaper ARGS --output json --no-progress`` (or ``python COMMAND``) in its
    own process: wall time, exit code, peak RSS (``ru_maxrss`` of that process alone) and
    its summary line."""
    values = {"SDRS_ENDPOINT": si.url, "SDRS_PROJECT_ID": si.project_id or "",
              "SDRS_AUTH_TOKEN": TOKEN, "RETENTION_POLICY_FILE": policy,
              "SWEEP_RATE_LIMIT": "0", "SWEEP_DEADLINE": "3600", "STATE_URL": "memory://",
              "LOG_LEVEL": "WARNING"}
    values.update(env)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            [PY, *(command or ["-m", "failjob_reaper", *args, "--output", "json",
                               "--no-progress"])],
            cwd=ROOT, env=clean_env(**values), stdout=out, stderr=err)
        killed = False
        rss_kib = 0
        code: int | None = None
        while code is None:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                rss_kib = usage.ru_maxrss
                process.returncode = code
                break
            if time.perf_counter() - started > timeout:
                killed = True
                process.kill()
                _, status, usage = os.wait4(process.pid, 0)
                code, rss_kib = os.waitstatus_to_exitcode(status), usage.ru_maxrss
                process.returncode = code
                break
            time.sleep(0.05)  # polling the child, bounded by `timeout`
        wall = time.perf_counter() - started
        summary = _last_json_line(out)
        err.seek(0)
        stderr = err.read()[-2000:].decode("utf-8", "replace")
    return {"wall": wall, "code": code, "killed": killed, "rss": rss_kib * 1024,
            "summary": summary, "stderr": stderr}


def _last_json_line(stream: Any) -> dict[str, Any] | None:
    """The summary: the last line of the JSON-lines output, read from the end of the file
    (a plan of 1,000,000 tasks prints 1,000,000 lines before it)."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - 65536))
    lines = stream.read().splitlines()
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return None


def min_calls(n_tasks: int, n_groups: int) -> int:
    """The fewest listing calls of a complete plan of ``bulk_rows(n_tasks, n_groups)``:
    the groups' pages and each scope's pages (1,000 records each) plus its empty one."""
    top = n_tasks if n_groups == 0 else int(n_tasks * 0.05)
    rest = n_tasks - top
    scopes = [top] + [rest // n_groups + (1 if i < rest % n_groups else 0)
                      for i in range(n_groups)]
    return (n_groups // 1000 + 1) + sum(-(-n // 1000) + 1 for n in scopes)


# -- parts ------------------------------------------------------------------------------


def plan_part(sizes: Sequence[int], policy: str, timeout: float) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for n in sizes:
        for groups in (0, GROUPS):
            say(f"backlog: stand-in with {n:,} tasks, {groups} groups")
            with _standin(bulk=n, groups=groups) as si:
                for command in (["plan"], ["sweep", "--dry-run"]):
                    si.reset_log()
                    say(f"backlog: {' '.join(command)} over {n:,} tasks / {groups} groups")
                    got = run_cli(si, command, policy=policy, timeout=timeout)
                    stats = si.stats()
                    runs.append({"tasks": n, "groups": groups, "command": " ".join(command),
                                 "calls": stats["requests"], "min_calls": min_calls(n, groups),
                                 **got})
    return runs


def rate_part(n: int, fresh: int, policy: str, deadline: float,
              max_sweeps: int, groups: int = GROUPS) -> dict[str, Any]:
    """Real sweeps at R = RATE against the throttling stand-in until every expired task
    is gone (or ``max_sweeps``)."""
    _, fresh_rows = bulk_rows(fresh, 0, datetime.now(UTC), expired=False, seed=1)
    fresh_ids = {resource_id for _, _, _, resource_id, _ in fresh_rows}
    sweeps: list[dict[str, Any]] = []
    with _standin(bulk=n, groups=groups, fresh=fresh, throttle=RATE) as si:
        for i in range(max_sweeps):
            say(f"backlog: real sweep {i + 1} of {n:,} expired tasks at R = {RATE:g}/s")
            got = run_cli(si, ["sweep"], policy=policy, timeout=deadline * 3 + 120,
                          SWEEP_DEADLINE=str(deadline), SWEEP_RATE_LIMIT=str(RATE * 10))
            stats = si.stats()
            summary = got["summary"] or {}
            sweeps.append({"wall": got["wall"], "code": got["code"], "rss": got["rss"],
                           "killed": got["killed"],
                           "duration": summary.get("duration_seconds"),
                           "deleted": summary.get("deleted"), "left": stats["jobs"],
                           "reason": summary.get("partial_reason")
                           or summary.get("aborted_reason") or "-",
                           "by_status": stats["by_status"], "stderr": got["stderr"][-300:]})
            if stats["jobs"] <= fresh or got["killed"]:
                break
        left_ids = _listed_ids(si)
    wrong = len(fresh_ids - left_ids)
    deleted_204 = sweeps[-1]["by_status"].get("DELETE 204", 0) if sweeps else 0
    return {"tasks": n, "fresh": fresh, "groups": groups, "deadline": deadline,
            "sweeps": sweeps,
            "wrong_deletes": wrong, "expired_left": len(left_ids - fresh_ids),
            "deleted_204": deleted_204}


def _listed_ids(si: Server) -> set[str]:
    """Every resource_id the stand-in still lists, in every scope (read by the bench, not
    by the code under test)."""
    base = f"{si.url}/v1/{si.project_id}"
    ids: set[str] = set()
    with httpx.Client(headers={"X-Auth-Token": TOKEN}, timeout=60) as http:

        def pages(path: str, params: dict[str, str], key: str) -> Iterator[dict[str, Any]]:
            offset = 0
            while True:
                for _ in range(600):  # the throttling stand-in answers 429 past its rate
                    answer = http.get(f"{base}{path}", params={**params, "offset": offset})
                    if answer.status_code != 429:
                        break
                    time.sleep(0.05)  # waiting out the gateway's rate, bounded
                items = answer.raise_for_status().json()[key]
                if not items:
                    return
                yield from items
                offset += len(items)

        scopes = [None, *(g["id"] for g in pages("/server-groups", {}, "server_groups"))]
        for scope in scopes:
            params = {"server_group_id": scope} if scope else {}
            ids.update(r["resource_id"] for r in pages("/task-center/failure-jobs", params,
                                                        "failure_jobs"))
    return ids


def redis_part(n: int, policy: str, timeout: float) -> dict[str, Any]:
    with RedisServer() as redis_server, _standin(bulk=n, groups=GROUPS) as si, \
            redis_server.client() as client:
        before, keys_before = int(client.info("memory")["used_memory"]), int(client.dbsize())
        say(f"backlog: dry-run sweep of {n:,} tasks as the function runs it, STATE_URL=redis://")
        got = run_cli(si, [], policy=policy, timeout=timeout, STATE_URL=redis_server.url,
                      command=["-c", FUNCTION_SWEEP])
        after, keys_after = int(client.info("memory")["used_memory"]), int(client.dbsize())
        index_keys = sum(1 for _ in client.scan_iter(match="*ix:*", count=10_000))
        view_keys = sum(1 for _ in client.scan_iter(match="*sv:*", count=10_000))
    return {"tasks": n, "used_before": before, "used_after": after, "keys_before": keys_before,
            "keys_after": keys_after, "ix_keys": index_keys, "sv_keys": view_keys,
            "wall": got["wall"], "code": got["code"], "rss": got["rss"]}


class _Rows(Sequence[dict[str, Any]]):
    """``count`` failed-task records from ``start``, each made on access (as the compact
    listings hand them out): what ``record`` holds is its own, not the listing's."""

    def __init__(self, start: int, count: int) -> None:
        self._start, self._n = start, count

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | Sequence[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        n = self._start + i % self._n
        h = f"{n * 0x9E3779B97F4A7C15 % 2**128:032x}"
        return {"resource_id": f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}",
                "job_id": f"ff808082686f229a{n:016x}", "job_status": "FAIL"}


def index_record_part(n: int) -> dict[str, Any]:
    """``LookupIndex.record`` of a full sweep's listings of ``n`` tasks (5 % at the top
    level, the rest over ``GROUPS`` groups) into a real redis-server, in this process:
    Redis ``used_memory`` before and after, the wall of ``record``, and its own peak
    (tracemalloc, in a second run over the same listings); then ``scopes_for`` of a
    sample of tasks: each must name its scope."""
    from failjob_reaper.plan import OneTask, ScopeListing
    from failjob_reaper.scopes import LookupIndex
    from failjob_reaper.state import open_store

    now = datetime.now(UTC)
    top = n * 5 // 100
    per_group, extra = divmod(n - top, GROUPS)
    listings, start = [ScopeListing(None, _Rows(0, top), listed_at=now)], top
    for g in range(GROUPS):
        count = per_group + (1 if g < extra else 0)
        listings.append(ScopeListing(f"bench-group-{g:02d}", _Rows(start, count),
                                     listed_at=now))
        start += count
    say(f"backlog: LookupIndex.record of {n:,} tasks in {len(listings)} scopes, in process")
    with RedisServer() as redis_server, redis_server.client() as client:
        store = open_store(redis_server.url, namespace="bench:")
        # Views kept an hour here (the function's live LISTING_MAX_AGE, 60 s), so that
        # all of them are counted however long the run.
        index = LookupIndex(store, "resource_id", clock=lambda: now, view_max_age=3600.0)
        before = int(client.info("memory")["used_memory"])
        t0 = time.perf_counter()
        index.record(listings, whole=True)
        wall = time.perf_counter() - t0
        after = int(client.info("memory")["used_memory"])
        encodings: dict[str, int] = {}
        for key in client.scan_iter(match="bench:ix:*", count=10_000):
            kind = str(client.object("encoding", key))
            encodings[kind] = encodings.get(kind, 0) + 1
        views = sum(int(client.strlen(key))
                    for key in client.scan_iter(match="bench:sv:*", count=10_000))
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        index.record(listings, whole=True)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        sample = range(0, len(listings), max(1, len(listings) // 20))
        t0 = time.perf_counter()
        right = sum(index.scopes_for(OneTask("resource_id", str(listings[i].records[0][
            "resource_id"]))) == [Scope(listings[i].server_group_id)] for i in sample)
        lookup_ms = (time.perf_counter() - t0) / len(sample) * 1000
        store.close()
    return {"tasks": n, "used_before": before, "used_after": after, "wall": wall,
            "peak": peak, "encodings": encodings, "view_bytes": views,
            "lookups": len(sample), "lookups_right": right, "lookup_ms": lookup_ms}


def faults_part(n: int, policy: str, timeout: float, page_mb: float) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    cases = [("drip: headers, then 1 byte/s", 1.0, 0.0),
             (f"listing pages of {page_mb:g} MB", 0.0, page_mb)]
    for label, drip, page in cases:
        with _standin(bulk=n, groups=0, drip=drip, page_mb=page) as si:
            say(f"backlog: plan against a server with {label} (SWEEP_DEADLINE "
                f"{DRIP_DEADLINE:g} s, killed after {timeout:g} s)")
            got = run_cli(si, ["plan"], policy=policy, timeout=timeout,
                          SWEEP_DEADLINE=str(DRIP_DEADLINE))
            runs.append({"server": label, **got})
    return runs


# -- the report ---------------------------------------------------------------------------


def run(quick: bool, smoke: bool = False, sizes: Sequence[int] | None = None,
        parts: Sequence[str] = ("plan", "rate", "redis", "faults"),
        rate_tasks: int | None = None, rate_deadline: float | None = None,
        rate_groups: int = GROUPS, rate_sweeps: int | None = None) -> Result:
    if sizes is None:
        sizes = SMOKE_SIZES if smoke else QUICK_SIZES if quick else FULL_SIZES
    rate_n = rate_tasks or (300 if smoke else 2_000 if quick else 100_000)
    rate_deadline = rate_deadline or (5.0 if smoke else 15.0 if quick else 240.0)
    fresh = 50 if smoke else 500 if quick else 5_000
    redis_n = min(sizes[-1], 100_000)
    page_mb = 2.0 if smoke else PAGE_MB
    fault_timeout = 20.0 if smoke else 60.0
    cli_timeout = 600.0 if smoke or quick else 3600.0
    data: dict[str, Any] = {"rate": RATE, "groups": GROUPS}
    result = Result("backlog", "Backlogs of failed tasks (issue 19)")
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as tmp:
        policy = _policy(Path(tmp))
        if "plan" in parts:
            runs = data["plan"] = plan_part(sizes, policy, cli_timeout)
            result.tables.append(_plan_table(runs))
        if "rate" in parts:
            swept = data["rate"] = rate_part(
                rate_n, fresh, policy, rate_deadline,
                max_sweeps=rate_sweeps or (3 if smoke else 12), groups=rate_groups)
            result.tables.append(_rate_table(swept))
        if "redis" in parts:
            indexed = data["redis"] = redis_part(redis_n, policy, cli_timeout)
            recorded = data["index"] = [index_record_part(n) for n in sizes]
            result.tables.append(_redis_table(indexed, recorded))
        if "faults" in parts:
            faulty = data["faults"] = faults_part(200 if smoke else 2_000, policy,
                                                  fault_timeout, page_mb)
            result.tables.append(_faults_table(faulty, fault_timeout))
    result.data = data
    result.notes = [
        "Every command is `failjob-reaper` in its own process (`--output json "
        "--no-progress`, stdout to a file); peak RSS: the child's own ru_maxrss (os.wait4).",
        f"floor = API calls / R with R = {RATE:g} requests/s: the time the API's own rate "
        "imposes on the same calls; wall ÷ floor < 1 means the stand-in answered faster "
        "than R.",
        "Stand-in: bulk_rows (seed 0), 5% of the tasks at the top level when there are "
        "groups; the guard max_deletions_per_sweep raised above every size; "
        "SWEEP_RATE_LIMIT=0 (no pacing) except in the real sweeps.",
        "Aims (docs): 100,000 listed tasks at 128 MiB peak RSS or less, 1,000,000 at 512 MiB "
        "or less.",
        "Redis: the `sv:` scope views live LISTING_MAX_AGE (60 s); a sweep longer than that "
        "finds the first ones gone when it ends, so the count of `sv:` views may be below "
        "the number of scopes. `ix:` buckets: one generation of the index (INDEX_TTL, 1 h); "
        "a bucket lives to the end of the next one, so Redis holds up to two generations.",
    ]
    return result


def _plan_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(
        f"plan and sweep --dry-run over N tasks (STATE_URL=memory://); floor at R = {RATE:g}/s",
        ["tasks", "groups", "command", "exit", "listed", "wall (s)", "API calls",
         "floor: calls ÷ R (s)", "wall ÷ floor", "per 1,000 tasks (s)", "peak RSS (MiB)"])
    for r in runs:
        floor = r["calls"] / RATE
        listed = (r["summary"] or {}).get("listed")
        exit_text = "killed" if r["killed"] else str(r["code"])
        table.add(r["tasks"], r["groups"], r["command"], exit_text, listed, r["wall"],
                  r["calls"], floor, fmt_ratio(ratio(r["wall"], floor)),
                  r["wall"] / (r["tasks"] / 1000), mib(r["rss"]))
    return table


def _rate_table(swept: dict[str, Any]) -> Table:
    sweeps = swept["sweeps"]
    total = sum(s["wall"] for s in sweeps)
    deleted = swept["tasks"] - swept["expired_left"]
    goodput = deleted / total if total else None
    table = Table(
        f"Real sweeps of {swept['tasks']:,} expired tasks (+{swept['fresh']:,} fresh ones that "
        f"must stay) in {swept.get('groups', GROUPS) or 'one scope (no'} groups"
        f"{')' if not swept.get('groups', GROUPS) else ''} against the stand-in throttling "
        f"at R = {RATE:g}/s, SWEEP_DEADLINE {swept['deadline']:g} s",
        ["sweep", "exit", "deleted", "left listed", "duration (s)", "÷ deadline", "wall (s)",
         "peak RSS (MiB)", "429s so far", "why it ended"])
    for i, s in enumerate(sweeps, 1):
        exit_text = "killed" if s["killed"] else str(s["code"])
        table.add(i, exit_text, s["deleted"], s["left"], s["duration"],
                  fmt_ratio(ratio(s["duration"], swept["deadline"])), s["wall"], mib(s["rss"]),
                  s["by_status"].get("GET 429", 0) + s["by_status"].get("DELETE 429", 0),
                  str(s["reason"])[:100])
    table.add("all", "-", deleted, None, None, None, total, None, None,
              f"sweeps needed {len(sweeps)}; goodput ÷ R "
              f"{fmt_ratio(ratio(goodput, RATE))}; wrong deletes {swept['wrong_deletes']}; "
              f"expired left {swept['expired_left']}")
    return table


def _redis_table(indexed: dict[str, Any], recorded: list[dict[str, Any]]) -> Table:
    table = Table(
        f"Redis memory of the lookup index (INFO memory used_memory): after a dry-run sweep "
        f"of {indexed['tasks']:,} tasks over {GROUPS} groups (the function), and after "
        f"LookupIndex.record of a full sweep's listings (5 % top level, {GROUPS} groups) "
        "in this process, with its own peak (tracemalloc, a second run)",
        ["what", "tasks", "used_memory growth (MiB)", "per 100,000 tasks (MiB)",
         "bytes per task", "of which views (bytes per task)", "keys added", "ix: keys",
         "sv: views", "ix: encodings", "process peak (MiB)", "peak bytes per task",
         "exit", "wall (s)", "µs per task", "lookups right", "ms per lookup"])
    grown = indexed["used_after"] - indexed["used_before"]
    table.add("dry-run sweep", indexed["tasks"], mib(grown),
              mib(grown / indexed["tasks"] * 100_000), grown / indexed["tasks"], None,
              indexed["keys_after"] - indexed["keys_before"], indexed["ix_keys"],
              indexed["sv_keys"], None, None, None, indexed["code"], indexed["wall"], None,
              None, None)
    for r in recorded:
        grown = r["used_after"] - r["used_before"]
        table.add("LookupIndex.record", r["tasks"], mib(grown),
                  mib(grown / r["tasks"] * 100_000), grown / r["tasks"],
                  r["view_bytes"] / r["tasks"], None, sum(r["encodings"].values()), None,
                  ", ".join(f"{k} {v:,}" for k, v in sorted(r["encodings"].items())),
                  mib(r["peak"]), r["peak"] / r["tasks"], None, r["wall"],
                  r["wall"] / r["tasks"] * 1e6, f"{r['lookups_right']}/{r['lookups']}",
                  r["lookup_ms"])
    return table


def _faults_table(runs: list[dict[str, Any]], timeout: float) -> Table:
    table = Table(
        f"plan against misbehaving servers: SWEEP_DEADLINE {DRIP_DEADLINE:g} s, killed after "
        f"{timeout:g} s",
        ["server", "exit", "time to the answer (s)", "÷ deadline", "peak RSS (MiB)",
         "partial reason"])
    for r in runs:
        summary = r["summary"] or {}
        exit_text = "killed" if r["killed"] else str(r["code"])
        reason = summary.get("partial_reason") or (r["stderr"].strip().splitlines() or [""])[-1]
        table.add(r["server"], exit_text, r["wall"],
                  fmt_ratio(ratio(r["wall"], DRIP_DEADLINE)), mib(r["rss"]),
                  str(reason)[:120] or "-")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backlog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, metavar="N",
                        help="task counts for plan/dry-run (default: 10,000 100,000 1,000,000)")
    parser.add_argument("--parts", nargs="+", choices=["plan", "rate", "redis", "faults"],
                        default=["plan", "rate", "redis", "faults"])
    parser.add_argument("--rate-tasks", type=int, metavar="N",
                        help="expired tasks of the real sweeps (default 100,000)")
    parser.add_argument("--rate-deadline", type=float, metavar="S",
                        help="SWEEP_DEADLINE of the real sweeps (default 240)")
    parser.add_argument("--rate-groups", type=int, metavar="G", default=GROUPS,
                        help=f"groups of the real sweeps' world (default {GROUPS}; 0: one scope)")
    parser.add_argument("--rate-sweeps", type=int, metavar="K",
                        help="stop after K real sweeps (default 12)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    result = run(args.quick, smoke=args.smoke, sizes=args.sizes, parts=args.parts,
                 rate_tasks=args.rate_tasks, rate_deadline=args.rate_deadline,
                 rate_groups=args.rate_groups, rate_sweeps=args.rate_sweeps)
    print(result.markdown(), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result.as_dict(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
