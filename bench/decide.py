"""Issue 19: what ``policy.decide`` costs per listed record (``python -m bench.decide``).

A sweep of 1,000,000 listed tasks decides each of them inside its deadline, so the
decision's own CPU counts. Records: ``standin.sample_data.bulk_rows`` (the stand-in's
backlog: 20 groups, unique resources), kept in ``failjob_reaper.records.RecordTable``
(one per group) as the planner keeps them, decided as the planner decides them
(``decide(record, policy, now, siblings=..., force=False, server_group_id=...)``), in
this process: a CPU measurement, no I/O.

* expired (8 to 90 days old: every one deleted) and fresh (1 minute to 6 days: every one
  retained, with its ``retain_until``);
* under the issue's policy ``{"default_retention": "7d"}`` and under a busier one (two
  holds, three rules on error code, resource type and group, the default last);
* baseline, measured in the same run: ``json.loads`` of the same record bodies (what
  reading each record off the wire costs at the least); the ratio travels between
  machines better than microseconds.

Each figure is the process's CPU time in the best of ``--repeat`` passes over all records
(the machine is shared: the best pass is the one least disturbed). The decisions are
counted against the world: every expired record deleted, every fresh one retained.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench._report import Result, Table, fmt_ratio, ratio, say
from failjob_reaper.policy import Policy, decide, parse_policy
from failjob_reaper.records import RecordTable
from standin.sample_data import bulk_rows

NOW = datetime(2026, 12, 1, tzinfo=UTC)
GROUPS = 20
POLICIES: dict[str, dict[str, Any]] = {
    "7d": {"default_retention": "7d"},
    "rules+holds": {
        "default_retention": "7d",
        "holds": {"resource_ids": ["no-such-resource"], "resource_names": ["keep-*"]},
        "rules": [
            {"name": "evs", "match": {"error_code": "EVS.*"}, "retention": "8d"},
            {"name": "drills", "match": {"resource_type": "disaster_recovery_drills"},
             "retention": "6d"},
            {"name": "one-group", "match": {"server_group_id": "no-such-group"},
             "retention": "forever"},
        ],
    },
}


def _world(n: int, expired: bool) -> tuple[list[bytes], list[tuple[Any, str | None]]]:
    """The record bodies, and each record compact with the group it was listed in."""
    _, rows = bulk_rows(n, GROUPS, NOW, expired)
    tables: dict[str | None, RecordTable] = {}
    bodies: list[bytes] = []
    records: list[tuple[Any, str | None]] = []
    for body, group, *_ in rows:
        bodies.append(body)
        table = tables.get(group) or tables.setdefault(group, RecordTable())
        table.add(json.loads(body))
        records.append((table[len(table) - 1], group))
    return bodies, records


def _best(passes: int, once: Callable[[], object]) -> float:
    """CPU seconds of this process in the fastest of ``passes`` runs of ``once`` (CPU time:
    on a shared machine, wall time also counts the other processes' turns)."""
    best = float("inf")
    for _ in range(passes):
        gc.collect()
        started = time.process_time()
        once()
        best = min(best, time.process_time() - started)
    return best


def _loads_all(bodies: Sequence[bytes]) -> list[Any]:
    return [json.loads(body) for body in bodies]


def _decide_all(records: Sequence[tuple[Any, str | None]], policy: Policy) -> list[str]:
    return [decide(record, policy, NOW, siblings=(record,), force=False,
                   server_group_id=group).action for record, group in records]


def run(quick: bool, smoke: bool = False, n: int | None = None, repeat: int | None = None
        ) -> Result:
    n = n or (2_000 if smoke else 20_000 if quick else 100_000)
    passes = repeat or (1 if smoke else 3)
    policies = {name: parse_policy(data) for name, data in POLICIES.items()}
    table = Table(
        f"decide() per record, {n:,} bulk records (best of {passes})",
        ["records", "policy", "decisions", "decide (us/record)", "json.loads (us/record)",
         "decide ÷ json.loads"],
    )
    data: dict[str, Any] = {"records": n, "passes": passes, "rows": []}
    wrong = 0
    for expired in (True, False):
        kind = "expired" if expired else "fresh"
        say(f"decide: {n:,} {kind} records")
        bodies, records = _world(n, expired)
        baseline = _best(passes, partial(_loads_all, bodies)) / n
        for name, policy in policies.items():
            actions = _decide_all(records, policy)  # also warms what a policy prepares
            want = "delete" if expired else "retain"
            wrong += sum(1 for action in actions if action != want)
            per = _best(passes, partial(_decide_all, records, policy)) / n
            counted = f"{actions.count('delete'):,} delete, {actions.count('retain'):,} retain"
            table.add(kind, name, counted, per * 1e6, baseline * 1e6,
                      fmt_ratio(ratio(per, baseline)))
            data["rows"].append({"records": kind, "policy": name, "decide_us": per * 1e6,
                                 "json_loads_us": baseline * 1e6, "ratio": ratio(per, baseline),
                                 "deletes": actions.count("delete")})
    data["wrong_decisions"] = wrong
    notes = [
        "In-process CPU: the decision alone, no listing, no I/O; `siblings` is the record "
        "itself, as the planner passes a resource's records.",
        f"Decisions against the world: {wrong} wrong (every expired record deleted, every "
        "fresh one retained).",
    ]
    if wrong:
        notes.append("WARNING: a decision differs from the world's")
    return Result("decide", "decide() per record (issue 19)", [table], notes, data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decide", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, metavar="N", help="records (default 100,000)")
    parser.add_argument("--repeat", type=int, metavar="K", help="passes, best kept (default 3)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    result = run(args.quick, smoke=args.smoke, n=args.n, repeat=args.repeat)
    print(result.markdown(), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result.as_dict(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
