"""The operators' command line: ``failjob-reaper sweep|plan|explain|check-policy``.

Installed as ``failjob-reaper`` (pyproject.toml); ``python -m failjob_reaper`` is the
same. Its exit codes are ``EXIT_CODES``; ``--help`` lists them and every environment
variable the settings read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import httpx
from cloudevents.http import CloudEvent

from failjob_reaper.errors import ConfigError, InvalidInput, OutcomeDeliveryError
from failjob_reaper.events import SweepRequest
from failjob_reaper.ids import validate_id
from failjob_reaper.outcomes import Causation, Emitter, SinkEmitter, SweepSummary
from failjob_reaper.plan import Plan
from failjob_reaper.plan_view import (
    OutputFormat,
    Row,
    guard_data,
    guard_text,
    plan_rows,
    render_csv,
    render_json_lines,
    render_table,
)
from failjob_reaper.policy import PolicyError, describe_policy, format_duration, load_policy
from failjob_reaper.reaper import Progress

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
    """Outcomes go to K_SINK when one is set; the CLI keeps what each DELETE came to."""

    def __init__(self, sink: Emitter | None) -> None:
        self.sink = sink
        self.done: dict[str, dict[str, Any]] = {}
        """Outcome data by DELETE id, for the outcomes a DELETE produced."""

    def emit(self, event: CloudEvent) -> None:
        data = event.data
        if isinstance(data, dict) and data.get("outcome") in _ANSWERED:
            self.done[str(data.get("failure_job_id"))] = data
        if self.sink is not None:
            self.sink.emit(event)


_ANSWERED = ("deleted", "already_deleted", "delete_failed")


class _Watching(httpx.BaseTransport):
    """The SDRS transport, noting whether the API ever refused the credentials."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.refused_auth = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if response.status_code in AUTH_STATUSES:
            self.refused_auth = True
        return response

    def close(self) -> None:
        self.inner.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except BrokenPipeError:
        # `| head` closed stdout: what was done is done; say nothing more, like other tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PROBLEM
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

    sweep = commands.add_parser(
        "sweep", help="decide every failed task, delete what expired, print each task",
        description="List every failed task, decide each, delete what expired (unless "
                    "--dry-run) and print one row per task: what happened to it, the rule "
                    "and retain_until; then the guard verdict and the summary.")
    sweep.add_argument("--dry-run", action="store_true",
                       help="decide and report (outcomes reach K_SINK), delete nothing")
    _plan_arguments(sweep)
    sweep.set_defaults(run=_sweep)

    plan = commands.add_parser(
        "plan", help="show what a sweep would do; deletes nothing, publishes nothing",
        description="List and decide like a sweep, then print the plan: every task it would "
                    "delete and every task it keeps, with the rule and retain_until, and "
                    "whether a guard would stop it. Nothing is deleted or published.")
    _plan_arguments(plan)
    plan.set_defaults(run=_plan)

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


def _plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", metavar="ID", help="one protection group only")
    parser.add_argument("--output", choices=["table", "json", "csv", "html"], default="table",
                        help="table (default), JSON lines (one per task, then the guard and "
                             "the summary), CSV (the summary then goes to stderr) or html "
                             "(one self-contained page: the table and charts)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


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


@dataclass
class _Built:
    app: Any
    outcomes: _Forwarding
    sdrs: _Watching


def _build(args: argparse.Namespace) -> _Built:
    from failjob_reaper.app import build_app
    from failjob_reaper.logs import configure_from_settings
    from failjob_reaper.sdrs import transport_for
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
    outcomes = _Forwarding(sink)
    sdrs = _Watching(transport_for(settings.endpoint, max_connections=settings.max_connections))
    # One command, one process: the lookup index would be written and never read.
    return _Built(build_app(settings, emitter=outcomes, transport=sdrs, index=False),
                  outcomes, sdrs)


def _causation(kind: str) -> Causation:
    # Each command is a new input: nothing would ever ask for its idempotency record.
    return Causation(id=str(uuid.uuid4()), source="/cli", type=f"cli.{kind}",
                     deduplicated=False)


def _request(args: argparse.Namespace, kind: str, *, dry_run: bool) -> SweepRequest:
    group = validate_id(args.group, "--group") if args.group else None
    return SweepRequest(trigger="cli", causation=_causation(kind), dry_run=dry_run,
                        server_group_id=group)


def _sweep(args: argparse.Namespace) -> int:
    built = _build(args)
    request = _request(args, "sweep", dry_run=args.dry_run)
    dry_run = built.app.reaper.dry_run(args.dry_run)
    plans: list[Plan] = []
    try:
        with _progress(args, dry_run) as progress:
            summary: SweepSummary = built.app.sweeper.run(request, progress=progress,
                                                          on_plan=plans.append)
    except OutcomeDeliveryError as exc:
        print(f"failjob-reaper: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    plan = plans[0] if plans else None
    rows = plan_rows(plan, None if dry_run else built.outcomes.done) if plan else []
    _report(args.output, rows, plan, summary.as_data(), dry_run=dry_run,
            title="sweep" + (" (dry run)" if dry_run else ""))
    if built.sdrs.refused_auth:
        return EXIT_AUTH
    if summary.error is not None:
        return EXIT_UNAVAILABLE
    failed = summary.outcomes.get("delete_failed", 0)
    return EXIT_PROBLEM if failed or summary.partial or summary.aborted else EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    from failjob_reaper.sdrs import SdrsError

    built = _build(args)
    request = _request(args, "plan", dry_run=True)
    try:
        with _progress(args, True) as progress:
            plan, execution = built.app.sweeper.preview(request, progress=progress)
    except SdrsError as exc:
        print(f"failjob-reaper: listing protection groups failed: {exc.message}",
              file=sys.stderr)
        return _exit_for(exc, built)
    rows = plan_rows(plan)
    counts = Counter(row.action for row in rows)
    data = {"outcome": "plan", "dry_run": True, "listed": plan.listed,
            "groups": sum(1 for scope in execution.scopes if scope.server_group_id),
            "outcomes": dict(counts), "partial": bool(execution.partial_reasons),
            "partial_reason": "; ".join(execution.partial_reasons) or None}
    _report(args.output, rows, plan, data, dry_run=True, title="plan (nothing is deleted)")
    if built.sdrs.refused_auth:
        return EXIT_AUTH
    tripped = plan.guard is not None and plan.guard.tripped is not None
    return EXIT_PROBLEM if tripped or execution.partial_reasons else EXIT_OK


@contextlib.contextmanager
def _progress(args: argparse.Namespace, dry_run: bool) -> Iterator[Progress | None]:
    """Progress bars on stderr when it is a terminal; log lines go above them."""
    if args.no_progress or not sys.stderr.isatty():
        yield None
        return
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

    try:
        with logging_redirect_tqdm([logging.getLogger(LOGGER_NAME)]):
            yield progress
    finally:
        for bar in bars.values():
            bar.close()


def _report(
    output: OutputFormat | Literal["html"], rows: list[Row], plan: Plan | None,
    summary: Mapping[str, Any], *, dry_run: bool, title: str,
) -> None:
    """The plan's rows, the guard verdict and the summary, in the chosen format."""
    guard = plan.guard if plan is not None else None
    if output == "html":
        from failjob_reaper.plan_html import render_html

        print(render_html(rows, guard_data(guard) if guard is not None else None, summary,
                          now=datetime.now(UTC), title=title,
                          notes=plan.incomplete if plan is not None else ()), end="")
        return
    if output == "json":
        lines = [render_json_lines(rows)] if rows else []
        if guard is not None:
            lines.append(json.dumps({"type": "guard", **guard_data(guard)}))
        lines.append(json.dumps({"type": "summary", **summary}))
        print("\n".join(lines))
        return
    if output == "csv":
        print(render_csv(rows))
        out = sys.stderr  # stdout stays one CSV document
    else:
        print(render_table(rows) if rows else "no failed tasks listed")
        print()
        out = sys.stdout
    if plan is not None and plan.incomplete:
        print("no DELETE planned: " + "; ".join(plan.incomplete), file=out)
    if guard is not None:
        print(guard_text(guard, dry_run=dry_run), file=out)
    _print_summary(title, summary, out)


def _print_summary(title: str, data: Mapping[str, Any], out: TextIO) -> None:
    rows: list[tuple[str, str]] = [(key, str(data[key]))
                                   for key in ("listed", "groups", "decided", "deleted")
                                   if key in data]
    rows += [(f"outcome {name}", str(n)) for name, n in data["outcomes"].items() if n]
    rows += [(f"rule {name}", str(n)) for name, n in sorted(data.get("rules", {}).items())]
    if "duration_seconds" in data:
        rows.append(("duration", f"{data['duration_seconds']:.2f}s"))
    width = max(len(name) for name, _ in rows)
    print(title, file=out)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>8}", file=out)
    for key in ("partial_reason", "aborted_reason"):
        if data.get(key):
            print(f"{key.replace('_', ' ')}: {data[key]}", file=out)


def _explain(args: argparse.Namespace) -> int:
    from failjob_reaper.events import TaskRequest
    from failjob_reaper.sdrs import SdrsError

    built = _build(args)
    reaper = built.app.reaper
    task_id = validate_id(args.task_id, "TASK_ID")
    group = validate_id(args.group, "--group") if args.group else None
    field = reaper.config.id_field if args.by == "failure_job_id" else args.by
    # The plan an event naming this task would act on: a view of it, never a decision
    # of its own (the same job, the same listings, the same planner).
    request = TaskRequest(task_id=task_id, match_field=field, trigger="cli",
                          causation=_causation("explain"), server_group_id=group)
    try:
        plan, _ = reaper.explain(request)
    except SdrsError as exc:
        print(f"failjob-reaper: listing failed: {exc.message}", file=sys.stderr)
        return _exit_for(exc, built)
    named = [p for p in plan.records if p.targeted]
    if not named:
        reason = plan.settled[0].reason if plan.settled else "not listed"
        print(f"{task_id}: {reason}")
        return EXIT_PROBLEM
    [planned] = named
    rows = [row for row in plan_rows(plan) if row.job_id == planned.job_id] or plan_rows(plan)
    row = rows[0]
    where = ", ".join(f"group {s}" if s else "the top level" for s in planned.scopes)
    print(f"task {task_id} in {where}:")
    for key, value in planned.record.items():
        print(f"  {key}: {value}")
    print(f"rule:         {row.rule}")
    print(f"decision:     {row.action}")
    print(f"reason:       {row.reason}")
    print(f"retain_until: {row.retain_until or '-'}")
    return EXIT_OK


def _exit_for(exc: Any, built: _Built) -> int:
    """The exit code of an API failure: refused credentials, else unreachable."""
    refused = built.sdrs.refused_auth or getattr(exc, "status_code", None) in AUTH_STATUSES
    return EXIT_AUTH if refused else EXIT_UNAVAILABLE


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
