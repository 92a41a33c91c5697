"""Issue 11: what the shared state in Redis costs (``python -m bench --only state``).

Setup: the stand-in and an ``OutcomeSink`` in their own processes (no added
latency), a real ``redis-server`` on loopback (no persistence), and the
function under ``functions-framework`` twice, in its own process each:
``STATE_URL=memory://`` (the baseline) and ``STATE_URL=redis://...``. Before
each timed call the bench adds one expired task (untimed).

Timed, interleaved per iteration: one ``sdrs.job.failed`` event POSTed to each
function until its 200 (inside: the outbox flush, the idempotency record, the
listing, the journal entry, the DELETE, the outcome recorded, POSTed to the
sink and removed, the answer kept). Extra latency = redis - memory, median and
p99 of the two series.

Memory: Redis ``INFO memory`` ``used_memory`` before and after N decided events
(each leaves an idempotency record with its answer and a journal entry, kept
24 h), reported per 10,000 events.
"""

from __future__ import annotations

import contextlib

import httpx
import redis

from bench._procs import MAIN, Function, function_env
from bench._procs import sink as sink_server
from bench._procs import standin as standin_server
from bench._report import Result, Table, fmt_ratio, median, percentile, ratio, say
from bench.overhead import fresh_records, timed_job_failed
from standin.redis_server import RedisServer


def run(quick: bool, smoke: bool = False) -> Result:
    n = 5 if smoke else 100 if quick else 600
    warmup = 2 if smoke else 10 if quick else 30
    memory_events = 20 if smoke else 500 if quick else 3000
    series: dict[str, list[float]] = {"memory": [], "redis": []}
    with contextlib.ExitStack() as stack:
        si = stack.enter_context(standin_server())
        sk = stack.enter_context(sink_server())
        server = stack.enter_context(RedisServer())
        si.add_jobs([(record, None) for record in fresh_records(9)])
        functions = {
            "memory": stack.enter_context(Function(MAIN, "on_event", function_env(
                si, sink_url=sk.url, SWEEP_RATE_LIMIT="0", STATE_URL="memory://"))),
            "redis": stack.enter_context(Function(MAIN, "on_event", function_env(
                si, sink_url=sk.url, SWEEP_RATE_LIMIT="0", STATE_URL=server.url))),
        }
        for started in functions.values():
            started.wait_listening()
        client = stack.enter_context(httpx.Client(timeout=30))

        def event(target: Function) -> float:
            return timed_job_failed(client, target, si)

        say(f"state: {warmup} warm-up + {n} timed events per backend, interleaved")
        for i in range(warmup + n):
            for name, target in functions.items():
                elapsed = event(target)
                if i >= warmup:
                    series[name].append(elapsed)

        stats = stack.enter_context(server.client())
        before = _used_memory(stats)
        keys_before = int(stats.dbsize())
        say(f"state: {memory_events} more events for Redis memory")
        for _ in range(memory_events):
            event(functions["redis"])
        after = _used_memory(stats)
        keys_after = int(stats.dbsize())

    def ms(values: list[float], q: float | None = None) -> float:
        return (median(values) if q is None else percentile(values, q)) * 1000

    table = Table(
        f"One job-failed event, {n} per backend, interleaved; stand-in without latency",
        ["STATE_URL", "median (ms)", "p90 (ms)", "p99 (ms)", "÷ memory:// (median)"],
    )
    for name in ("memory", "redis"):
        values = series[name]
        table.add("memory://" if name == "memory" else "redis:// (loopback)", ms(values),
                  ms(values, 90), ms(values, 99),
                  fmt_ratio(ratio(median(values), median(series["memory"]))))
    extra = Table("Extra latency per event that Redis adds = redis - memory",
                  ["median (ms)", "p99 (ms)"])
    extra.add(ms(series["redis"]) - ms(series["memory"]),
              ms(series["redis"], 99) - ms(series["memory"], 99))
    per_10k = (after - before) / memory_events * 10_000
    mem = Table(f"Redis memory (INFO memory used_memory) over {memory_events} decided events",
                ["used_memory growth (MiB)", "per 10,000 events (MiB)", "keys per event"])
    mem.add((after - before) / 2**20, per_10k / 2**20,
            (keys_after - keys_before) / memory_events)
    result = Result("state", "Shared state in Redis (issue 11)", [table, extra, mem])
    result.notes = [
        "Both functions run under functions-framework in their own processes; stand-in, "
        "sink and redis-server (no persistence) run in theirs, all on loopback.",
        "Per event with Redis: outbox flush (HGETALL), idempotency record (SET NX, then "
        "compare-and-set to the answer), journal entry (SET NX) before the DELETE, "
        "outcome into the outbox (MULTI HSET+PEXPIRE) and out (HDEL), journal settled "
        "(GET + compare-and-set).",
        "p99 extra is the difference of the two p99s (not a paired difference).",
        "What stays per event for 24 h: the idempotency record with its answer (the "
        "outcome, with the task's record) and the journal entry.",
    ]
    result.data = {"series": series, "used_memory": [before, after],
                   "keys": [keys_before, keys_after]}
    return result


def _used_memory(client: redis.Redis) -> int:
    info = client.info("memory")
    return int(info["used_memory"])
