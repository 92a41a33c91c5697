"""Operator alerts through Huawei SMN (docs/huawei-cloud.md): digests for people, rate-limited.

What needs a person, and nothing else:

* a sweep that tripped a guard, ended partial or had ``delete_failed`` tasks: one
  digest per sweep (counts, the reason, the first failures), never one per task;
* a permanent ``delete_failed`` outside sweeps (an event, a manual retry): one each,
  once per task a day;
* the policy's ``notice`` window: what the next sweeps will delete (retained tasks
  whose ``retain_until`` falls within it), once per set of tasks and window.

``POST {SMN_ENDPOINT}/v2/{project_id}/notifications/topics/{topic_urn}/publish`` with
``{"subject", "message"}`` (``huaweicloudsdksmn`` v2 ``PublishMessageRequestBody``:
the subject at most 512 bytes), signed like the SDRS calls. At most
``max_per_hour`` messages a project an hour, counted in the state store (so the
budget holds across instances with Redis); what the budget stops is counted and
said in the next message.

Alerts never delay the answer to the trigger: ``Alerts.send`` hands the alert to a
background sender (one daemon thread per ``Alerts``, so per process, started on the
first alert) through a bounded queue (``queue_size``; an alert that finds it full is
logged at ERROR with its text, and not sent), and returns at once. The sender checks
the budget and publishes. A process that ends waits up to 5 s for its queue
(``atexit``; ``drain()``); a FunctionGraph instance frozen between invocations sends
the rest when it runs again. What is still unsent when a process dies is lost: alerts
are news for a person, every fact in them is also in the outcomes and the logs.

One cause gives one message: SMN has no outbox and a person reads every copy, so an
alert is sent again only where SMN surely did not take it (delivery.py's table for
SMN: nothing sent, 408, 429, 503, a 200 that is not SMN's answer). After a read
timeout, a reset or another 5xx SMN may have taken it: it is not sent again, and the
log line says so with the alert's text. A refusal (another 4xx) is logged with the
alert's text, counted (``SmnPublisher.dropped``) and dropped. SMN failures are
logged, never raised.

The message texts are pure functions (``sweep_digest``, ``failure_alert``,
``notice_alert``); ``Alerts`` is the shell that publishes them.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

import httpx

from failjob_reaper import delivery
from failjob_reaper.delivery import Verdict
from failjob_reaper.outcomes import Outcome, SweepSummary
from failjob_reaper.state import StateStore, StateUnavailable
from failjob_reaper.state import keys as state_keys

log = logging.getLogger("failjob_reaper")

MAX_SUBJECT_BYTES = 512
MAX_LISTED = 20
"""Tasks named one by one in a message; the rest are counted."""
_WINDOW = 3600.0
_FAILED_TASK_TTL = state_keys.SMN_FAILED_TTL
_IDLE = 30.0
"""Seconds the background sender waits for an alert before its thread ends."""


@dataclass(frozen=True)
class Alert:
    subject: str
    message: str


# -- the texts (pure) -------------------------------------------------------------------


def sweep_digest(summary: SweepSummary, failures: Sequence[Outcome], failed_total: int) -> (
    Alert | None
):
    """The digest of a sweep that needs a person, or None when it went as it should."""
    failed = summary.outcomes.get("delete_failed", 0)
    guard = summary.rules.get("guard", 0)
    if not (summary.aborted or summary.partial or failed):
        return None
    scope = f"project {summary.project_id}"
    if summary.server_group_id:
        scope += f", group {summary.server_group_id}"
    if summary.aborted and guard:
        headline = "guard tripped, nothing deleted"
    elif summary.aborted:
        headline = "sweep aborted"
    elif summary.partial:
        headline = "sweep partial"
    else:
        headline = f"{failed} deletion(s) failed"
    lines = [
        f"failjob-reaper sweep of {scope} ({summary.trigger}"
        f"{', dry run' if summary.dry_run else ''}): {headline}.",
        "",
        f"listed {summary.listed}, decided {summary.decided}, deleted {summary.deleted}, "
        f"delete_failed {failed}, retained {summary.outcomes.get('retained', 0)}"
        f"{f' (by the guard: {guard})' if guard else ''}, "
        f"duration {summary.duration_seconds:.1f} s.",
    ]
    if summary.aborted_reason:
        lines.append(f"Aborted: {summary.aborted_reason}")
    if summary.partial_reason:
        lines.append(f"Partial: {summary.partial_reason}")
    if failures:
        lines += ["", "Failed deletions:"]
        lines += [_task_line(outcome) for outcome in failures[:MAX_LISTED]]
        if failed_total > min(len(failures), MAX_LISTED):
            lines.append(f"... and {failed_total - min(len(failures), MAX_LISTED)} more.")
    return Alert(_subject(f"failjob-reaper: {headline} ({scope})"), "\n".join(lines))


def failure_alert(outcome: Outcome) -> Alert:
    """A permanent ``delete_failed`` outside a sweep."""
    lines = [
        f"failjob-reaper could not delete failed task {outcome.failure_job_id} of project "
        f"{outcome.project_id} ({outcome.trigger}); it will not retry by itself.",
        "",
        _task_line(outcome),
    ]
    cause = outcome.causation
    if cause.type or cause.id:
        lines.append(f"Caused by {cause.type or '-'} {cause.id or '-'} from {cause.source or '-'}.")
    return Alert(_subject(f"failjob-reaper: delete failed for {outcome.failure_job_id}"),
                 "\n".join(lines))


def notice_alert(
    due: Sequence[Outcome], due_total: int, window: timedelta, project_id: str
) -> Alert | None:
    """What the next sweeps will delete: retained tasks due within ``window``."""
    if not due:
        return None
    ordered = sorted(due, key=lambda o: (o.retain_until or datetime.max, o.failure_job_id or ""))
    lines = [
        f"failjob-reaper will delete {due_total} failed task(s) of project {project_id} "
        f"within {_span(window)} unless the policy or a hold keeps them:",
        "",
    ]
    lines += [_task_line(outcome) for outcome in ordered[:MAX_LISTED]]
    if due_total > min(len(ordered), MAX_LISTED):
        lines.append(f"... and {due_total - min(len(ordered), MAX_LISTED)} more.")
    return Alert(_subject(f"failjob-reaper: {due_total} failed task(s) due for deletion "
                          f"within {_span(window)} (project {project_id})"), "\n".join(lines))


def _task_line(outcome: Outcome) -> str:
    job = outcome.job or {}
    parts = [f"- {outcome.failure_job_id or '-'}"]
    for key in ("resource_name", "resource_type", "failure_status", "begin_time"):
        if job.get(key):
            parts.append(f"{key}={job[key]}")
    if outcome.retain_until is not None and outcome.outcome == "retained":
        parts.append(f"due={outcome.retain_until.isoformat().replace('+00:00', 'Z')}")
    if outcome.error:
        parts.append(f"error={outcome.error.get('code')}: {outcome.error.get('message')}")
    elif outcome.outcome != "retained" and outcome.reason:
        parts.append(f"reason={outcome.reason}")
    return " ".join(str(part) for part in parts)


def _subject(text: str) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= MAX_SUBJECT_BYTES:
        return text
    return raw[: MAX_SUBJECT_BYTES - 3].decode("utf-8", "ignore") + "..."


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- one sweep's view ---------------------------------------------------------------------


@dataclass
class SweepWatch:
    """Collects, while a sweep runs, what its digest and notice will name (bounded)."""

    now: datetime
    notice: timedelta
    failures: list[Outcome] = field(default_factory=list)
    failed_total: int = 0
    due: list[Outcome] = field(default_factory=list)
    due_total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, outcome: Outcome) -> None:
        with self._lock:
            if outcome.outcome == "delete_failed":
                self.failed_total += 1
                if len(self.failures) < MAX_LISTED:
                    self.failures.append(outcome)
            elif (outcome.outcome == "retained" and self.notice > timedelta(0)
                  and outcome.retain_until is not None
                  and outcome.retain_until <= self.now + self.notice):
                self.due_total += 1
                self.due.append(outcome)
                if len(self.due) > 4 * MAX_LISTED:  # keep the soonest, bounded
                    self.due.sort(key=lambda o: o.retain_until or datetime.max)
                    del self.due[MAX_LISTED:]


# -- the shell ----------------------------------------------------------------------------


class _NotAgain(Exception):
    """SMN may have taken the message, or refused it for good: not sent again."""

    def __init__(self, reason: str, *, refused: bool) -> None:
        super().__init__(reason)
        self.refused = refused


class SmnPublisher:
    """POSTs one message to the topic; True when SMN took it. Never raises.

    Attempts (``attempts`` at most, inside ``window`` seconds, each request bounded as
    a whole) only where SMN surely did not take the message (see the module doc)."""

    def __init__(
        self,
        endpoint: str,
        project_id: str,
        topic_urn: str,
        *,
        auth: httpx.Auth | None,
        timeout: float = 5.0,
        attempts: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        window: float | None = None,
    ) -> None:
        self.url = (f"{endpoint.rstrip('/')}/v2/{project_id}/notifications/topics/"
                    f"{quote(topic_urn, safe=':')}/publish")
        self.attempts = max(1, attempts)
        self.window = window if window is not None else delivery.send_window(attempts, timeout)
        self.policy = delivery.RetryPolicy(max_attempts=self.attempts, deadline=self.window,
                                           backoff_initial=0.2, backoff_max=1.0)
        self.dropped = 0
        """Alerts SMN refused for good (logged at ERROR with their text)."""
        self._sleep = sleep
        self._http = delivery.client(self.url, timeout=timeout, auth=auth, transport=transport)

    def publish(self, alert: Alert) -> bool:
        deadline = time.monotonic() + self.window
        body = {"subject": alert.subject, "message": alert.message}

        def attempt(_: int) -> bool:
            try:
                answer = delivery.send(self._http, "POST", self.url, json_body=body,
                                       deadline=deadline, max_bytes=delivery.ANSWER_MAX_BYTES)
            except httpx.TransportError as exc:
                if delivery.SMN.classify_error(exc) is Verdict.RETRY:
                    raise delivery.Retry(RuntimeError(
                        f"SMN unreachable: {type(exc).__name__}")) from None
                raise _NotAgain(f"no answer from SMN ({type(exc).__name__})",
                                refused=False) from None
            verdict = delivery.SMN.classify(answer)
            if verdict is Verdict.TAKEN:
                return True
            reason = f"SMN answered {delivery.describe(answer)}"
            if verdict is Verdict.RETRY:
                raise delivery.Retry(RuntimeError(reason),
                                     delivery.retry_after(answer.response, self.window))
            raise _NotAgain(reason, refused=verdict is Verdict.REFUSED)

        try:
            return delivery.call(attempt, self.policy, deadline=deadline, sleep=self._sleep)
        except delivery.Retry as exc:
            log.error("smn: alert not sent after %d attempt(s): %s; the alert: %s",
                      exc.attempts, exc.error, delivery.full_json(body))
        except _NotAgain as exc:
            if exc.refused:
                self.dropped += 1
                log.error("smn: alert refused permanently (%s); dropped, this line is its "
                          "only record: %s", exc, delivery.full_json(body))
            else:
                log.error("smn: %s: it may have taken the alert, not sent again (one cause, "
                          "one message); the alert: %s", exc, delivery.full_json(body))
        return False

    def close(self) -> None:
        self._http.close()


_SENDERS: weakref.WeakSet[Alerts] = weakref.WeakSet()


def drain(timeout: float = 10.0) -> bool:
    """Wait until every ``Alerts`` of this process has sent what it was handed (tests,
    a CLI run before it exits); False if one is still at it after ``timeout``."""
    end = time.monotonic() + timeout
    return all(alerts.drain(max(0.0, end - time.monotonic())) for alerts in list(_SENDERS))


# A process that ends (a CLI run, a worker stopped) first sends what it holds, bounded.
atexit.register(drain, 5.0)


class Alerts:
    """Publishes alerts within the hourly budget, shared through the state store, from
    a background sender: ``send`` never waits for SMN (see the module doc)."""

    def __init__(
        self,
        publisher: SmnPublisher,
        state: StateStore,
        *,
        max_per_hour: int = 6,
        clock: Callable[[], float] = time.time,
        queue_size: int = 100,
    ) -> None:
        self.publisher = publisher
        self.state = state
        self.max_per_hour = max_per_hour
        self._clock = clock
        self._queue: queue.Queue[Alert] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        _SENDERS.add(self)

    def sweep_finished(self, summary: SweepSummary, watch: SweepWatch | None) -> None:
        failures = watch.failures if watch else []
        digest = sweep_digest(summary, failures, watch.failed_total if watch else 0)
        if digest is not None:
            self.send(digest)
        if watch is not None and watch.due:
            self._notice(watch, summary.project_id)

    def task_failed(self, outcome: Outcome) -> None:
        """A ``delete_failed`` outside sweeps: alert when permanent, once per task a day."""
        if outcome.outcome != "delete_failed" or outcome.transient_failure:
            return
        if not self._first(state_keys.smn_failed(outcome.failure_job_id), _FAILED_TASK_TTL):
            return
        self.send(failure_alert(outcome))

    def send(self, alert: Alert) -> bool:
        """Hand ``alert`` to the background sender; False when its queue is full."""
        try:
            with self._start_lock:  # the sender does not leave while an alert goes in
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="smn-alerts",
                                                    daemon=True)
                    self._thread.start()
                self._queue.put_nowait(alert)
        except queue.Full:
            log.error("smn: %d alerts waiting already; not sent: %s", self._queue.maxsize,
                      delivery.full_json({"subject": alert.subject, "message": alert.message}))
            return False
        return True

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the sender has handled every alert handed to it (bounded)."""
        end = time.monotonic() + timeout
        waiting = self._queue.all_tasks_done
        with waiting:
            while self._queue.unfinished_tasks:
                left = end - time.monotonic()
                if left <= 0 or not waiting.wait(left):
                    return not self._queue.unfinished_tasks
        return True

    def _run(self) -> None:
        while True:
            try:
                alert = self._queue.get(timeout=_IDLE)
            except queue.Empty:
                with self._start_lock:
                    if self._queue.empty():
                        self._thread = None  # the next alert starts another
                        return
                continue
            try:
                self._deliver(alert)
            except Exception:  # never let one alert stop the sender
                log.exception("smn: alert %r not sent", alert.subject)
            finally:
                self._queue.task_done()

    def _deliver(self, alert: Alert) -> bool:
        """Publish unless this hour's budget is spent; what it stops is counted."""
        hour = int(self._clock() // _WINDOW)
        try:
            sent = self.state.incr(state_keys.smn_sent(hour), 1, state_keys.SMN_SENT_TTL)
            if sent > self.max_per_hour:
                self.state.incr(state_keys.SMN_SUPPRESSED, 1, state_keys.SMN_SUPPRESSED_TTL)
                log.warning("smn: hourly budget of %d messages spent; %r suppressed",
                            self.max_per_hour, alert.subject)
                return False
            suppressed = int(self.state.get(state_keys.SMN_SUPPRESSED) or 0)
        except StateUnavailable as exc:
            log.warning("smn: state store unavailable (%s); sending without the budget", exc)
            suppressed = 0
        if suppressed:
            alert = Alert(alert.subject, alert.message + (
                f"\n\n({suppressed} earlier message(s) were not sent: at most "
                f"{self.max_per_hour} an hour.)"))
        taken = self.publisher.publish(alert)
        if taken and suppressed:
            with contextlib.suppress(StateUnavailable):
                self.state.incr(state_keys.SMN_SUPPRESSED, -suppressed,
                                state_keys.SMN_SUPPRESSED_TTL)
        return taken

    def _notice(self, watch: SweepWatch, project_id: str) -> None:
        ids = sorted(o.failure_job_id or "" for o in watch.due)
        key = hashlib.sha256("\x1f".join([*ids, str(watch.due_total)]).encode()).hexdigest()
        # The same tasks in the same window are announced once, not by every hourly sweep.
        ttl = max(watch.notice.total_seconds(), _WINDOW)
        if not self._first(state_keys.smn_notice(key), ttl):
            return
        alert = notice_alert(watch.due, watch.due_total, watch.notice, project_id)
        if alert is not None:
            self.send(alert)

    def _first(self, key: str, ttl: float) -> bool:
        try:
            return self.state.add(key, "1", ttl)
        except StateUnavailable:
            return True

    def close(self) -> None:
        self.drain(5.0)
        self.publisher.close()
