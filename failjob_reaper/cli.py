"""The operators' command line: ``python -m failjob_reaper sweep|explain|check-policy``.

Exit codes scripts can rely on:

* 0 - done: the sweep completed with nothing failed; the task was explained; the policy is valid
* 1 - done with a problem: some deletes failed, the sweep was partial or a guard aborted it;
      ``explain`` found no such task
* 2 - usage or configuration error (bad flag, bad setting, invalid policy file)
* 3 - the API or the outcome sink could not be reached
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from cloudevents.http import CloudEvent

from failjob_reaper.errors import ConfigError, InvalidInput, OutcomeDeliveryError
from failjob_reaper.events import SweepRequest
from failjob_reaper.ids import validate_id
from failjob_reaper.outcomes import Causation, Emitter, SinkEmitter, SweepSummary
from failjob_reaper.policy import PolicyError, describe_policy, format_duration, load_policy

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class _Forwarding:
    """Outcomes go to K_SINK when one is set; the CLI shows its own summary either way."""

    def __init__(self, sink: Emitter | None) -> None:
        self.sink = sink

    def emit(self, event: CloudEvent) -> None:
        if self.sink is not None:
            self.sink.emit(event)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"failjob-reaper: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidInput as exc:
        print(f"failjob-reaper: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m failjob_reaper",
        description="Retention for the SDRS task center: sweep, explain one task, check a policy.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    sweep = commands.add_parser("sweep", help="decide every failed task, delete what expired")
    sweep.add_argument("--dry-run", action="store_true", help="decide and report, delete nothing")
    sweep.add_argument("--group", metavar="ID", help="sweep one protection group only")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.set_defaults(run=_sweep)

    explain = commands.add_parser("explain", help="show a task's record and the policy's word")
    explain.add_argument("task_id", help="the failure_job_id, job_id or resource_id")
    explain.add_argument(
        "--by", choices=["failure_job_id", "job_id", "resource_id"], default="failure_job_id",
        help="which field TASK_ID is (failure_job_id: the configured id field)",
    )
    explain.add_argument("--group", metavar="ID", help="look in this protection group first")
    explain.set_defaults(run=_explain)

    check = commands.add_parser("check-policy", help="validate a policy file and explain it")
    check.add_argument("file")
    check.set_defaults(run=_check_policy)
    return parser


def _build(args: argparse.Namespace) -> Any:
    from failjob_reaper.app import build_app
    from failjob_reaper.settings import load_settings

    settings = load_settings()
    sink = (
        SinkEmitter(settings.sink, timeout=settings.sink_timeout, attempts=settings.sink_attempts)
        if settings.sink else None
    )
    return build_app(settings, emitter=_Forwarding(sink))


def _causation(kind: str) -> Causation:
    return Causation(id=str(uuid.uuid4()), source="/cli", type=f"cli.{kind}")


def _sweep(args: argparse.Namespace) -> int:
    app = _build(args)
    group = validate_id(args.group, "--group") if args.group else None
    request = SweepRequest(trigger="cli", causation=_causation("sweep"),
                           dry_run=args.dry_run, server_group_id=group)
    show_progress = not args.no_progress and sys.stderr.isatty()
    try:
        summary = _sweep_with_progress(app, request) if show_progress else app.sweeper.run(request)
    except OutcomeDeliveryError as exc:
        print(f"failjob-reaper: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    _print_summary(summary)
    if summary.error is not None:
        return EXIT_UNAVAILABLE
    failed = summary.outcomes.get("delete_failed", 0)
    return EXIT_PROBLEM if failed or summary.partial or summary.aborted else EXIT_OK


def _sweep_with_progress(app: Any, request: SweepRequest) -> SweepSummary:
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(total=total, desc=phase, unit="task" if phase == "deleting"
                                     else "scope", file=sys.stderr, leave=True)
        bar.total = total
        bar.update(done - bar.n)

    try:
        summary: SweepSummary = app.sweeper.run(request, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    return summary


def _print_summary(summary: SweepSummary) -> None:
    data = summary.as_data()
    rows: list[tuple[str, str]] = [(key, str(data[key]))
                                   for key in ("listed", "groups", "decided", "deleted")]
    rows += [(f"outcome {name}", str(n)) for name, n in data["outcomes"].items() if n]
    rows += [(f"rule {name}", str(n)) for name, n in sorted(data["rules"].items())]
    rows.append(("duration", f"{data['duration_seconds']:.2f}s"))
    title = "sweep" + (" (dry run)" if summary.dry_run else "")
    width = max(len(name) for name, _ in rows)
    print(title)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>8}")
    for key in ("partial_reason", "aborted_reason"):
        if data[key]:
            print(f"{key.replace('_', ' ')}: {data[key]}")


def _explain(args: argparse.Namespace) -> int:
    from failjob_reaper.lookup import find_task
    from failjob_reaper.reaper import Listing
    from failjob_reaper.sdrs import SdrsError

    app = _build(args)
    reaper = app.reaper
    task_id = validate_id(args.task_id, "TASK_ID")
    group = validate_id(args.group, "--group") if args.group else None
    field = reaper.config.id_field if args.by == "failure_job_id" else args.by
    try:
        found = find_task(reaper.client, field, task_id, group)
    except SdrsError as exc:
        print(f"failjob-reaper: listing failed: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if found is None:
        print(f"{task_id}: not listed at the top level nor in any protection group")
        return EXIT_PROBLEM
    listing = Listing(found.scope_records, reaper.config.id_field)
    decision = reaper.decide_record(found.record, listing, found.scope)
    print(f"task {task_id} in {found.scope.server_group_id or 'the top level'}:")
    for key, value in found.record.items():
        print(f"  {key}: {value}")
    action = decision.action
    if action == "delete" and reaper.dry_run(False):
        action = "delete (dry run: would_delete)"
    print(f"rule:         {decision.rule}")
    print(f"decision:     {action}")
    print(f"reason:       {decision.reason}")
    until = decision.retain_until.isoformat() if decision.retain_until else "-"
    print(f"retain_until: {until}")
    return EXIT_OK


def _check_policy(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.file}: valid. Default retention {format_duration(policy.default_retention)}.")
    for line in describe_policy(policy):
        print(f"- {line}")
    return EXIT_OK
