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
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx
from cloudevents.http import CloudEvent

from failjob_reaper._secrets import mask_secrets
from failjob_reaper._text import escape_control
from failjob_reaper.errors import ConfigError, InvalidInput, OutcomeDeliveryError
from failjob_reaper.events import SweepRequest
from failjob_reaper.ids import validate_id
from failjob_reaper.outcomes import Causation, Emitter, SinkEmitter, SweepSummary
from failjob_reaper.plan import GUARD_RULE, Plan
from failjob_reaper.plan_view import (
    DELETING,
    OutputFormat,
    Row,
    RowFilter,
    csv_lines,
    filter_rows,
    guard_data,
    guard_text,
    json_lines,
    plan_rows,
    table_lines,
)
from failjob_reaper.policy import (
    Policy,
    PolicyError,
    describe_policy,
    format_duration,
    load_policy,
    parse_duration,
    policy_warnings,
)
from failjob_reaper.reaper import Progress
from failjob_reaper.state import StateUnavailable

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_AUTH, EXIT_REFUSED = 0, 1, 2, 3, 4, 5
EXIT_CODES = {
    EXIT_OK: "done: the sweep deleted all it planned (or nothing was due, or --limit stopped "
             "it where asked); the task was explained; the policy is valid (warnings or not)",
    EXIT_PROBLEM: "done with a problem: deletes failed, the sweep was partial, a guard "
                  "stopped it; a dry run or plan: only a guard that would stop the sweep or "
                  "a partial listing (never a failure only a real run could have); explain "
                  "found no such task",
    EXIT_USAGE: "usage or configuration error: a bad flag, a bad setting, an invalid policy, "
                "a --group that names no protection group of the project",
    EXIT_UNAVAILABLE: "the SDRS API, the state store (STATE_URL) or the outcome sink could "
                      "not be reached (connection, timeout, wrong password, 5xx/429 past the "
                      "retry budget)",
    EXIT_AUTH: "the SDRS API refused the credentials or their permissions (401, 403): "
               "check SDRS_AUTH_TOKEN or HUAWEICLOUD_SDK_AK/SK and the IAM policy",
    EXIT_REFUSED: "the SDRS API refused the request (4xx other than 401, 403, 408, 409, 429): "
                  "its message is printed",
}
AUTH_STATUSES = frozenset({401, 403})
_WIDTH = 88


class _Forwarding:
    """Outcomes go to K_SINK when one is set; the CLI keeps what each DELETE came to."""

    def __init__(self, sink: Emitter | None) -> None:
        self.sink = sink
        self.done: dict[str, dict[str, Any]] = {}
        """What each DELETE came to, by its id: its outcome and reason, all the rows need
        (not the whole outcome: a sweep sends tens of thousands)."""
        self._words: dict[str, str] = {}

    def emit(self, event: CloudEvent) -> None:
        data = event.data
        if isinstance(data, dict) and data.get("outcome") in _ANSWERED:
            words = self._words
            outcome, reason = str(data.get("outcome")), str(data.get("reason") or "")
            self.done[str(data.get("failure_job_id"))] = {
                "outcome": words.setdefault(outcome, outcome),
                "reason": words.setdefault(reason, reason)}
        if self.sink is not None:
            self.sink.emit(event)


_ANSWERED = ("deleted", "already_deleted", "delete_failed", "would_delete")
_SENT = ("deleted", "already_deleted", "delete_failed")


class _Watching(httpx.BaseTransport):
    """The SDRS transport, noting whether the API ever refused the credentials, or
    refused a listing itself (a 4xx no retry mends: a bad project, group or region)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.refused_auth = False
        self.refused_listing: int | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        status = response.status_code
        if status in AUTH_STATUSES:
            self.refused_auth = True
        elif request.method == "GET" and _refused_status(status):
            self.refused_listing = status
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
    except StateUnavailable as exc:
        # Every verb alike: one line naming the setting, never a traceback (docs/cli.md).
        said = mask_secrets(escape_control(str(exc).rstrip(".")), _state_password())
        print(f"failjob-reaper: the state store STATE_URL={_shown_state_url()} could not be "
              f"used: {said}. Check that it is running and reachable and that the URL's "
              "password is right, then run again.", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return code


def _shown_state_url() -> str:
    """STATE_URL as set (memory:// unset), its password masked."""
    return masked_url(os.environ.get("STATE_URL") or "memory://")


def _state_password() -> list[str]:
    try:
        password = urlsplit(os.environ.get("STATE_URL") or "").password
    except ValueError:
        return []
    return [password] if password else []


def masked_url(url: str) -> str:
    """``url`` with the password of its user part replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unreadable URL>"
    if not password:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0] if ":" in user else ""
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


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
    sweep.add_argument("--limit", type=_count, metavar="N",
                       help="a canary: send at most N DELETEs this run; the rest is left for "
                            "the next sweep, and the summary says how many")
    _plan_arguments(sweep, PLAN_OUTPUTS)
    sweep.set_defaults(run=_sweep)

    plan = commands.add_parser(
        "plan", help="show what a sweep would do; deletes nothing, publishes nothing",
        description="List and decide like a sweep, then print the plan: every task it would "
                    "delete and every task it keeps, with the rule and retain_until, and "
                    "whether a guard would stop it. Nothing is deleted or published.")
    _plan_arguments(plan, PLAN_OUTPUTS)
    shown = plan.add_argument_group(
        "which rows to show (the plan and its guard are computed on every task listed)")
    shown.add_argument("--older-than", type=_duration, metavar="DURATION",
                       help="tasks that began more than DURATION ago (7d, 12h, P7D)")
    shown.add_argument("--rule", action="append", metavar="NAME",
                       help="tasks decided by this rule (default, keep-latest, a rule's name; "
                            "repeat for several)")
    shown.add_argument("--action", action="append", choices=["would_delete", "retained"],
                       help="tasks with this action (repeat for both)")
    plan.set_defaults(run=_plan)

    explain = commands.add_parser("explain", help="show a task's record and the policy's word")
    explain.add_argument("task_id", help="the failure_job_id, job_id or resource_id")
    explain.add_argument(
        "--by", choices=["failure_job_id", "job_id", "resource_id"], default="failure_job_id",
        help="which field TASK_ID is (failure_job_id: the configured id field)",
    )
    explain.add_argument("--group", metavar="ID", help="look in this protection group first")
    explain.add_argument("--output", choices=["text", "json"], default="text",
                         help="text (default) or one JSON object")
    explain.set_defaults(run=_explain)

    check = commands.add_parser(
        "check-policy", help="validate a policy file and explain it",
        description="Validate a policy file, say in words what it does, and warn about what "
                    "it likely does not mean (a rule that matches every task; keep-latest "
                    "with DELETEs by resource_id). Warnings do not change the exit code.")
    check.add_argument("file")
    check.set_defaults(run=_check_policy)
    return parser


PLAN_OUTPUTS = ["table", "json", "csv", "html"]
"""What ``plan --output`` and ``sweep --output`` write."""


def _plan_arguments(parser: argparse.ArgumentParser, outputs: list[str]) -> None:
    parser.add_argument("--group", metavar="ID", help="one protection group only")
    parser.add_argument("--output", choices=outputs, default="table",
                        help="table (default), JSON lines (one per task, then the guard and "
                             "the summary), CSV (the summary then goes to stderr) or html "
                             "(one self-contained page: the table and charts)")
    parser.add_argument("--max-deletions", type=_count, metavar="N",
                        help="this run only: guards.max_deletions_per_sweep is N (the policy "
                             "file is not changed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _duration(text: str) -> timedelta:
    try:
        value = parse_duration(text, allow_forever=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert value is not None  # allow_forever=False never yields None
    return value


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
    if hasattr(default, "get_secret_value"):  # a secret's default (memory://) holds none
        default = masked_url(default.get_secret_value())
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
    secrets: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        """One line on stderr; a server's words in it never carry a known secret."""
        print(mask_secrets(text, self.secrets), file=sys.stderr)


def _build(args: argparse.Namespace) -> _Built:
    from failjob_reaper.components import build_components
    from failjob_reaper.logs import configure_from_settings, secrets_of
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
    app = build_components(settings, emitter=outcomes, transport=sdrs, index=False,
                    adjust_policy=_max_deletions(getattr(args, "max_deletions", None)))
    # Reach the store before any work, on every verb alike: an unreachable STATE_URL is
    # one line and exit 3 (main), not a traceback later nor a silent fallback.
    app.state.get("cli:probe")
    return _Built(app, outcomes, sdrs, secrets_of(settings))


def _max_deletions(limit: int | None) -> Callable[[Policy], Policy] | None:
    """``--max-deletions``: the loaded policy with another max_deletions_per_sweep."""
    if limit is None:
        return None

    def adjust(policy: Policy) -> Policy:
        guards = policy.guards.model_copy(update={"max_deletions_per_sweep": limit})
        return policy.model_copy(update={"guards": guards})

    return adjust


def _causation(kind: str) -> Causation:
    # Each command is a new input: nothing would ever ask for its idempotency record.
    return Causation(id=str(uuid.uuid4()), source="/cli", type=f"cli.{kind}",
                     deduplicated=False)


def _request(args: argparse.Namespace, kind: str, *, dry_run: bool) -> SweepRequest:
    group = validate_id(args.group, "--group") if args.group else None
    return SweepRequest(trigger="cli", causation=_causation(kind), dry_run=dry_run,
                        server_group_id=group)


def _group_exists(request: SweepRequest, built: _Built) -> int | None:
    """None when ``--group`` is unset or names a protection group; else the exit code,
    with a line that says what to do."""
    from failjob_reaper.sdrs import IncompleteListing, SdrsError

    group = request.server_group_id
    if group is None:
        return None
    try:
        groups = built.app.reaper.client.list_server_groups()
    except IncompleteListing:
        return None  # not every group is known: the sweep's own listing says so
    except SdrsError as exc:
        return _api_failed("listing protection groups", exc, built)
    if group in {str(g.get("id")) for g in groups}:
        return None
    built.say(f"failjob-reaper: --group {group}: no such protection group in project "
              f"{built.app.reaper.config.project_id} ({len(groups)} listed). Check the id "
              "(SDRS console, Protection Groups), or leave --group out to read every group.")
    return EXIT_USAGE


class _Limit:
    """``--limit N``: asked before each DELETE; after N, the reason to stop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.granted = 0
        self.reached = False
        self._lock = threading.Lock()

    @property
    def reason(self) -> str:
        return f"--limit {self.limit} reached"

    def __call__(self) -> str | None:
        with self._lock:
            if self.granted >= self.limit:
                self.reached = True
                return self.reason
            self.granted += 1
            return None


def _sweep(args: argparse.Namespace) -> int:
    built = _build(args)
    request = _request(args, "sweep", dry_run=args.dry_run)
    refused = _group_exists(request, built)
    if refused is not None:
        return refused
    dry_run = built.app.reaper.dry_run(args.dry_run)
    limit = _Limit(args.limit) if args.limit is not None else None
    plans: list[Plan] = []
    try:
        with _progress(args, dry_run) as progress:
            summary: SweepSummary = built.app.sweeper.run(request, progress=progress,
                                                          on_plan=plans.append,
                                                          stop_deleting=limit)
    except OutcomeDeliveryError as exc:
        built.say(f"failjob-reaper: {exc}. Check K_SINK and run again.")
        return EXIT_UNAVAILABLE
    plan = plans[0] if plans else None
    limited = limit is not None and limit.reached
    # A dry run's rows say would_delete for every planned DELETE, unless --limit held
    # some back: then the rows say which ones were held back.
    done = built.outcomes.done if not dry_run or limited else None
    rows: Sequence[Row] = (plan_rows(plan, done, stopped=limit.reason if limited and limit
                                     else None) if plan else [])
    data = {**summary.as_data(), "records": _by_action(rows),
            "deletes_planned": _deletes_planned(rows)}
    if not dry_run:
        data["deletes_sent"] = sum(summary.outcomes.get(name, 0) for name in _SENT)
    if limit is not None:
        data["limit"] = limit.limit
    _report(args.output, rows, plan, data, dry_run=dry_run,
            title="sweep" + (" (dry run)" if dry_run else ""))
    if built.sdrs.refused_auth:
        return EXIT_AUTH
    if summary.error is not None:
        refused_request = not summary.error.get("retryable", True)
        said = escape_control(f"{summary.error.get('message')} ({summary.error.get('code')})")
        built.say("failjob-reaper: listing protection groups: " + (
            f"the SDRS API refused the request: {said}; check SDRS_PROJECT_ID, --group and "
            "SDRS_ENDPOINT (the region)." if refused_request else
            f"the SDRS API could not be reached: {said}; check SDRS_ENDPOINT and the "
            "network, then run again."))
        return EXIT_REFUSED if refused_request else EXIT_UNAVAILABLE
    partial = _partial_besides(summary.partial_reason, limit.reason if limit else None)
    if partial and built.sdrs.refused_listing is not None:
        built.say(f"failjob-reaper: the SDRS API refused a listing (HTTP "
                  f"{built.sdrs.refused_listing}; its message is in the partial reason above); "
                  "nothing was deleted where the listing was refused. Check SDRS_PROJECT_ID, "
                  "--group and SDRS_ENDPOINT (the region).")
        return EXIT_REFUSED
    if dry_run:
        # A dry run fails only where a real run would fail for the same reason: a guard
        # that would stop it, a listing that is not whole. Never a DELETE it did not send.
        return EXIT_PROBLEM if summary.aborted or partial else EXIT_OK
    failed = summary.outcomes.get("delete_failed", 0)
    return EXIT_PROBLEM if failed or partial or summary.aborted else EXIT_OK


def _partial_besides(reasons: str | None, limit_reason: str | None) -> bool:
    """Whether the sweep was partial for any reason but the ``--limit`` asked for."""
    parts = [part for part in (reasons or "").split("; ") if part]
    return any(limit_reason is None or not part.startswith(limit_reason) for part in parts)


def _deletes_planned(rows: Sequence[Row]) -> int:
    """The distinct DELETE ids of the rows the plan deletes (or a guard stopped)."""
    return len({row.failure_job_id for row in rows
                if row.failure_job_id and (row.action in DELETING or row.rule == GUARD_RULE)})


def _by_action(rows: Sequence[Row]) -> dict[str, int]:
    return dict(Counter(row.action for row in rows))


def _plan(args: argparse.Namespace) -> int:
    from failjob_reaper.sdrs import SdrsError

    built = _build(args)
    request = _request(args, "plan", dry_run=True)
    refused = _group_exists(request, built)
    if refused is not None:
        return refused
    chosen = RowFilter(older_than=args.older_than, rules=tuple(args.rule or ()),
                       actions=tuple(args.action or ()), now=built.app.reaper.clock())
    try:
        with _progress(args, True) as progress:
            plan, execution = built.app.sweeper.preview(request, progress=progress)
    except SdrsError as exc:
        return _api_failed("listing protection groups", exc, built)
    rows: Sequence[Row] = plan_rows(plan)
    data: dict[str, Any] = {
        "outcome": "plan", "dry_run": True, "listed": plan.listed,
        "groups": sum(1 for scope in execution.scopes if scope.server_group_id),
        "records": _by_action(rows), "deletes_planned": _deletes_planned(rows),
        "partial": bool(execution.partial_reasons),
        "partial_reason": "; ".join(execution.partial_reasons) or None}
    shown = rows
    if chosen.active:
        shown = filter_rows(rows, chosen)
        data["filter"] = {"shown": len(shown), "of": len(rows), "rows": chosen.describe()}
    _report(args.output, shown, plan, data, dry_run=True, title="plan (nothing is deleted)")
    error = execution.listing_error
    if built.sdrs.refused_auth:
        return EXIT_AUTH
    if error is not None and _refusal(error):
        return _api_failed("listing failed tasks", error, built)
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
    output: OutputFormat | Literal["html"], rows: Sequence[Row], plan: Plan | None,
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
    # Line by line: a plan of 100,000 rows is never held as one string.
    if output == "json":
        for line in json_lines(rows):
            print(line)
        if guard is not None:
            print(json.dumps({"type": "guard", **guard_data(guard)}))
        print(json.dumps({"type": "summary", **summary}))
        return
    if output == "csv":
        for line in csv_lines(rows):
            print(line)
        out = sys.stderr  # stdout stays one CSV document
    else:
        if rows:
            for line in table_lines(rows):
                print(line)
        else:
            print("no failed tasks listed" if "filter" not in summary
                  else "no rows match the filter")
        print()
        out = sys.stdout
    chosen = summary.get("filter")
    if chosen:
        print(f"shown: {chosen['shown']} of {chosen['of']} rows ({chosen['rows']}); the plan "
              f"and the guard count every task listed", file=out)
    if plan is not None and plan.incomplete:
        print("no DELETE planned: " + escape_control("; ".join(plan.incomplete)), file=out)
    if guard is not None:
        print(guard_text(guard, dry_run=dry_run), file=out)
    _print_summary(title, summary, out, dry_run=dry_run)


def _print_summary(title: str, data: Mapping[str, Any], out: TextIO, *, dry_run: bool) -> None:
    """Each count says what it counts: records (one per listed task) or DELETE ids (one
    DELETE, one outcome, may remove several records that share the id)."""
    rows: list[tuple[str, str]] = [("tasks (records) listed", str(data["listed"])),
                                   ("protection groups read", str(data["groups"]))]
    rows += [(f"tasks (records) {action}", str(n))
             for action, n in data.get("records", {}).items() if n]
    rows.append(("DELETEs planned", str(data.get("deletes_planned", 0))))
    if "deletes_sent" in data:
        rows.append(("DELETEs sent", str(data["deletes_sent"])))
    if "limit" in data:
        rows.append(("DELETEs allowed (--limit)", str(data["limit"])))
    if "outcomes" in data:  # a sweep's outcome events: one per DELETE id
        rows += [(f"outcomes (per DELETE id) {name}", str(n))
                 for name, n in data["outcomes"].items() if n]
        rows += [(f"outcomes (per DELETE id) by rule {escape_control(name)}", str(n))
                 for name, n in sorted(data.get("rules", {}).items())]
    if "duration_seconds" in data:
        rows.append(("duration", f"{data['duration_seconds']:.2f}s"))
    width = max(len(name) for name, _ in rows)
    print(title, file=out)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>8}", file=out)
    for key in ("partial_reason", "aborted_reason"):
        if data.get(key):
            print(f"{key.replace('_', ' ')}: {escape_control(str(data[key]))}", file=out)
    if dry_run and data.get("outcomes", {}).get("delete_failed"):
        print("(a dry run sends no DELETE: its delete_failed outcomes are records a real run "
              "could not delete either; they do not change the exit code)", file=out)


def _explain(args: argparse.Namespace) -> int:
    from failjob_reaper.events import TaskRequest
    from failjob_reaper.sdrs import SdrsError

    built = _build(args)
    reaper = built.app.reaper
    task_id = validate_id(args.task_id, "TASK_ID")
    group = validate_id(args.group, "--group") if args.group else None
    field_name = reaper.config.id_field if args.by == "failure_job_id" else args.by
    # The plan an event naming this task would act on: a view of it, never a decision
    # of its own (the same job, the same listings, the same planner).
    request = TaskRequest(task_id=task_id, match_field=field_name, trigger="cli",
                          causation=_causation("explain"), server_group_id=group)
    try:
        plan, _ = reaper.explain(request)
    except SdrsError as exc:
        return _api_failed("listing failed tasks", exc, built)
    named = [p for p in plan.records if p.targeted]
    if not named:
        others = [f"--by {name}" for name in ("job_id", "resource_id") if name != field_name]
        hint = (f"no failed task has {field_name} {task_id} at the top level or in any "
                f"protection group. If {task_id} is another id, try {' or '.join(others)}; "
                "a task already deleted is no longer listed.")
        if plan.incomplete:
            hint += " A listing was incomplete: " + "; ".join(plan.incomplete)
        if args.output == "json":
            print(json.dumps({"found": False, "task_id": task_id, "field": field_name,
                              "message": hint}))
        else:
            print(f"{task_id}: {escape_control(hint)}")
        return EXIT_PROBLEM
    [planned] = named
    row = next((r for r in plan_rows(plan) if r.job_id == planned.job_id), None) \
        or plan_rows(plan)[0]
    where = ", ".join(f"group {s}" if s else "the top level" for s in planned.scopes)
    if args.output == "json":
        print(json.dumps({
            "found": True, "task_id": task_id, "field": field_name,
            "server_group_id": planned.server_group_id, "scopes": list(planned.scopes),
            "record": dict(planned.record), "rule": row.rule, "decision": row.action,
            "reason": row.reason, "retain_until": row.retain_until}, default=str))
        return EXIT_OK
    # Record fields are anyone's text: escaped, none of them can print a line of its own.
    print(f"task {task_id} in {where}:")
    for key, value in planned.record.items():
        print(f"  {escape_control(str(key))}: {escape_control(str(value))}")
    print(f"rule:         {escape_control(row.rule or '-')}")
    print(f"decision:     {row.action}")
    print(f"reason:       {escape_control(row.reason)}")
    print(f"retain_until: {row.retain_until or '-'}")
    return EXIT_OK


def _refusal(exc: Any) -> bool:
    """The API refused the request itself (4xx, not the credentials, not worth a retry)."""
    status = getattr(exc, "status_code", None)
    return status is not None and _refused_status(status) and not getattr(exc, "retryable",
                                                                           False)


def _refused_status(status: int) -> bool:
    # 404 is not a refusal: a group deleted during the sweep lists as not found.
    from failjob_reaper.sdrs import RETRYABLE_STATUSES

    return (400 <= status < 500 and status != 404 and status not in AUTH_STATUSES
            and status not in RETRYABLE_STATUSES)


def _exit_for(exc: Any, built: _Built) -> int:
    """The exit code of an API failure: refused credentials, a refused request, else
    unreachable."""
    if built.sdrs.refused_auth or getattr(exc, "status_code", None) in AUTH_STATUSES:
        return EXIT_AUTH
    return EXIT_REFUSED if _refusal(exc) else EXIT_UNAVAILABLE


def _api_failed(what: str, exc: Any, built: _Built) -> int:
    """One line about a failed API call that says what to do next; the exit code."""
    code = _exit_for(exc, built)
    status = getattr(exc, "status_code", None)
    said = f"{exc.message} ({exc.code}{f', HTTP {status}' if status else ''})"
    if code == EXIT_AUTH:
        then = ("check SDRS_AUTH_TOKEN or HUAWEICLOUD_SDK_AK/SK, SDRS_PROJECT_ID and the "
                "IAM policy")
        verdict = "refused the credentials"
    elif code == EXIT_REFUSED:
        then = "check SDRS_PROJECT_ID, --group and SDRS_ENDPOINT (the region)"
        verdict = "refused the request"
    else:
        then = "check SDRS_ENDPOINT and the network, then run again"
        verdict = "could not be reached"
    built.say(f"failjob-reaper: {what}: the SDRS API {verdict}: "
              f"{escape_control(said)}; {then}.")
    return code


def _check_policy(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.file}: valid. Default retention {format_duration(policy.default_retention)}.")
    for line in describe_policy(policy):
        print(f"- {line}")
    id_field = os.environ.get("SDRS_FAILURE_JOB_ID_FIELD") or "resource_id"
    for warning in policy_warnings(policy, id_field=id_field):
        print(f"warning: {warning}")
    return EXIT_OK
