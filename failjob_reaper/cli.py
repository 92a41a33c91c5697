"""The operators' command line: ``failjob-reaper sweep|plan|explain|check-policy``.

Installed as ``failjob-reaper`` (pyproject.toml); ``python -m failjob_reaper`` is the
same. Its exit codes are ``EXIT_CODES``; ``--help`` lists them and every environment
variable the settings read.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import uuid
from collections.abc import Sequence
from typing import Any

from cloudevents.http import CloudEvent

from failjob_reaper.errors import ConfigError, InvalidInput, OutcomeDeliveryError
from failjob_reaper.events import SweepRequest
from failjob_reaper.ids import validate_id
from failjob_reaper.outcomes import Causation, Emitter, SinkEmitter, SweepSummary
from failjob_reaper.policy import PolicyError, describe_policy, format_duration, load_policy

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_AUTH = 0, 1, 2, 3, 4
EXIT_CODES = {
    EXIT_OK: "done: the sweep deleted all it planned (or nothing was due); the task was "
             "explained; the policy is valid",
    EXIT_PROBLEM: "done with a problem: deletes failed, the sweep was partial, a guard "
                  "stopped it (a dry run that would trip one too); explain found no such task",
    EXIT_USAGE: "usage or configuration error: a bad flag, a bad setting, an invalid policy",
    EXIT_UNAVAILABLE: "the SDRS API or the outcome sink could not be reached (connection, "
                      "timeout, 5xx/429 past the retry budget)",
    EXIT_AUTH: "the SDRS API refused the credentials or their permissions (401, 403): "
               "check SDRS_AUTH_TOKEN or HUAWEICLOUD_SDK_AK/SK and the IAM policy",
}
AUTH_STATUSES = frozenset({401, 403})
_WIDTH = 88


class _Forwarding:
    """Outcomes go to K_SINK when one is set; the CLI shows its own summary either way."""

    def __init__(self, sink: Emitter | None) -> None:
        self.sink = sink
        self.seen: list[dict[str, Any]] = []

    def emit(self, event: CloudEvent) -> None:
        if isinstance(event.data, dict):
            self.seen.append(event.data)
        if self.sink is not None:
            self.sink.emit(event)

    @property
    def refused_auth(self) -> bool:
        return any(data.get("status_code") in AUTH_STATUSES for data in self.seen)


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


def _prog() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m failjob_reaper" if name in ("", "__main__.py", "-c") else name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description=textwrap.fill(
            "Retention for the SDRS task center: sweep, explain one task, check a policy. "
            'Settings come from the environment (below; README.md, "Configuration", says '
            "what each one means).", width=_WIDTH),
        epilog=_environment_help() + "\n\n" + _exit_code_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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


def _environment_help() -> str:
    from failjob_reaper.settings import Settings, env_names

    lines = ["environment variables (unset or empty: the default):"]
    for name, info in Settings.model_fields.items():
        names = env_names(name)
        if not names:
            continue
        label = names[0] + (f" (or {', '.join(names[1:])})" if names[1:] else "")
        lines.append(f"  {label:<36} {_default_text(info)}")
    return "\n".join(lines)


def _default_text(info: Any) -> str:
    from typing import Literal, get_args, get_origin

    if info.is_required():
        return "required"
    choices = [arg for part in (info.annotation, *get_args(info.annotation))
               if get_origin(part) is Literal for arg in get_args(part)]
    default = info.default
    shown = ("unset" if default is None else "default " + (
        str(default).lower() if isinstance(default, bool)
        else f"{default:g}" if isinstance(default, float) else str(default)))
    return f"{'|'.join(map(str, choices))}, {shown}" if choices else shown


def _exit_code_help() -> str:
    return "exit codes:\n" + "\n".join(
        textwrap.fill(text, width=_WIDTH, initial_indent=f"  {code}  ", subsequent_indent="     ")
        for code, text in EXIT_CODES.items())


def _build(args: argparse.Namespace) -> tuple[Any, _Forwarding]:
    from failjob_reaper.app import build_app
    from failjob_reaper.logs import configure_from_settings
    from failjob_reaper.settings import load_settings

    settings = load_settings()
    # The CLI prints what it did itself: its log says warnings only, unless LOG_LEVEL is set.
    if "log_level" not in settings.model_fields_set:
        settings = settings.model_copy(update={"log_level": "WARNING"})
    configure_from_settings(settings, default="text")
    sink = (
        SinkEmitter(settings.sink, timeout=settings.sink_timeout, attempts=settings.sink_attempts)
        if settings.sink else None
    )
    forwarding = _Forwarding(sink)
    return build_app(settings, emitter=forwarding), forwarding


def _causation(kind: str) -> Causation:
    return Causation(id=str(uuid.uuid4()), source="/cli", type=f"cli.{kind}")


def _sweep(args: argparse.Namespace) -> int:
    app, forwarding = _build(args)
    group = validate_id(args.group, "--group") if args.group else None
    request = SweepRequest(trigger="cli", causation=_causation("sweep"),
                           dry_run=args.dry_run, server_group_id=group)
    show_progress = not args.no_progress and sys.stderr.isatty()
    dry_run = app.reaper.dry_run(args.dry_run)
    try:
        summary = (_sweep_with_progress(app, request, dry_run) if show_progress
                   else app.sweeper.run(request))
    except OutcomeDeliveryError as exc:
        print(f"failjob-reaper: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    _print_summary(summary)
    if summary.error is not None:
        return EXIT_UNAVAILABLE
    if forwarding.refused_auth:
        return EXIT_AUTH
    failed = summary.outcomes.get("delete_failed", 0)
    return EXIT_PROBLEM if failed or summary.partial or summary.aborted else EXIT_OK


def _sweep_with_progress(app: Any, request: SweepRequest, dry_run: bool) -> SweepSummary:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from failjob_reaper.logs import LOGGER_NAME

    bars: dict[str, Any] = {}
    # What the bar says: a dry run deletes nothing, whatever the phase is called inside.
    names = {"deleting": "would delete" if dry_run else "deleting"}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(total=total, desc=names.get(phase, phase),
                                     unit="scope" if phase == "listing" else "task",
                                     file=sys.stderr, leave=True)
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.refresh()  # tqdm skips redraws closer than 0.1 s: the last one must show

    import logging

    try:
        with logging_redirect_tqdm([logging.getLogger(LOGGER_NAME)]):
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

    app, _ = _build(args)
    reaper = app.reaper
    task_id = validate_id(args.task_id, "TASK_ID")
    group = validate_id(args.group, "--group") if args.group else None
    field = reaper.config.id_field if args.by == "failure_job_id" else args.by
    try:
        found = find_task(reaper.client, field, task_id, group)
    except SdrsError as exc:
        print(f"failjob-reaper: listing failed: {exc.message}", file=sys.stderr)
        return _exit_for(exc)
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


def _exit_for(exc: Any) -> int:
    """The exit code of an API failure: refused credentials, else unreachable."""
    return EXIT_AUTH if getattr(exc, "status_code", None) in AUTH_STATUSES else EXIT_UNAVAILABLE


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
