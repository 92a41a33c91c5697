"""The HTML plan in a real headless browser: ``failjob-reaper plan --output html`` (the
installed command, run from a directory outside the repository against the stand-in), loaded
from a file:// URL in Chromium (the Debian package; ``make test`` installs it).

The browser is driven over the Chrome DevTools Protocol on a pipe (``--remote-debugging-pipe``:
JSON messages ending in NUL on file descriptors 3 and 4), with the standard library only: no
driver package, no chromedriver, no WebSocket client, no port to pick. The test records every
console message, script exception, log entry and network request of the page.

Set UPDATE_DOCS_IMAGES=1 to write the screenshot to docs/images/plan-html.png (the docs link
it); otherwise it goes to the test's temporary directory, so a test run leaves the tree clean.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import math
import os
import queue
import re
import shutil
import signal
import struct
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from standin import TaskCenterStandIn
from tests.conftest import ROOT, TOKEN, failed_task
from tests.test_cli import cli, settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-pipe")
SCREENSHOT = ROOT / "docs" / "images" / "plan-html.png"
ANSWER_WAIT = 60.0
"""Seconds to wait for one answer of the browser before calling it hung (not a speed bound)."""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed and could not be: `make test` installs the Debian "
           "package chromium (apt-get install chromium); the HTML plan's browser test needs it")


# -- a DevTools client on a pipe ---------------------------------------------------------


def _high(fd: int) -> int:
    """``fd`` moved to 10 or above, so that placing the child's 3 and 4 clobbers nothing."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Browser:
    """Chromium with its DevTools endpoint on fds 3 (commands in) and 4 (answers out)."""

    def __init__(self, binary: str, profile: Path, log: Path) -> None:
        to_child_r, self._to_child = map(_high, os.pipe())
        self._from_child, from_child_w = map(_high, os.pipe())
        # posix_spawn places the pipes on 3 and 4 in the child (no Python code runs between
        # fork and exec, which a preexec_fn would do beside the stand-in's threads).
        with log.open("wb") as out:
            self.pid = os.posix_spawn(
                binary, [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                os.environ, file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                    (os.POSIX_SPAWN_DUP2, out.fileno(), 2),
                    (os.POSIX_SPAWN_DUP2, to_child_r, 3),
                    (os.POSIX_SPAWN_DUP2, from_child_w, 4),
                ])
        os.close(to_child_r)
        os.close(from_child_w)
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_child, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._messages.put(json.loads(message))
        self._messages.put(None)

    def _next(self) -> dict[str, Any]:
        try:
            message = self._messages.get(timeout=ANSWER_WAIT)
        except queue.Empty:
            raise AssertionError(f"chromium sent nothing for {ANSWER_WAIT:g} s") from None
        if message is None:
            raise AssertionError("chromium closed its DevTools pipe")
        return message

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        os.write(self._to_child, json.dumps(command).encode() + b"\0")
        while True:
            message = self._next()
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            self.events.append(self._next())

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self.send("Browser.close")
        os.close(self._to_child)
        self._reader.join(timeout=ANSWER_WAIT)  # the pipe ends when chromium has exited
        if self._reader.is_alive():
            os.kill(self.pid, signal.SIGKILL)
            self._reader.join()
        os.waitpid(self.pid, 0)
        os.close(self._from_child)


@dataclass
class Page:
    """What a page did while it loaded, and a way to ask it things."""

    browser: Browser
    session: str
    url: str

    def _events(self, method: str) -> list[dict[str, Any]]:
        return [event["params"] for event in self.browser.events
                if event.get("method") == method and event.get("sessionId") == self.session]

    @property
    def requests(self) -> list[str]:
        return [event["request"]["url"] for event in self._events("Network.requestWillBeSent")]

    @property
    def errors(self) -> list[str]:
        console = [" ".join(str(arg.get("value", arg.get("description", "")))
                            for arg in event.get("args", []))
                   for event in self._events("Runtime.consoleAPICalled")
                   if event.get("type") in ("error", "assert", "warning")]
        thrown = [str(event["exceptionDetails"]) for event in
                  self._events("Runtime.exceptionThrown")]
        logged = [f"{event['entry'].get('source')}: {event['entry'].get('text')}"
                  for event in self._events("Log.entryAdded")
                  if event["entry"].get("level") in ("error", "warning")]
        return console + thrown + logged

    def evaluate(self, expression: str) -> Any:
        answer = self.browser.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True}, self.session)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def screenshot(self, width: int = 1320, most: int = 2400) -> bytes:
        """The page from its top, ``width`` wide, down to its end or ``most`` pixels."""
        height = min(math.ceil(self.evaluate("document.documentElement.scrollHeight")), most)
        self.browser.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            self.session)
        shot = self.browser.send("Page.captureScreenshot", {"format": "png"}, self.session)
        return base64.b64decode(shot["data"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="plan-html-chromium-") as home:
        chromium = Browser(CHROMIUM, Path(home) / "profile", Path(home) / "chromium.log")
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def load(browser: Browser) -> Iterator[Callable[[Path], Page]]:
    targets: list[str] = []

    def open_page(path: Path) -> Page:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        targets.append(target)
        session = browser.send("Target.attachToTarget",
                               {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", None, session)
        browser.send("Emulation.setDeviceMetricsOverride", {
            "width": 1320, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session)
        url = path.resolve().as_uri()
        browser.send("Page.navigate", {"url": url}, session)
        browser.wait_for("Page.loadEventFired", session)
        return Page(browser, session, url)

    yield open_page
    for target in targets:
        browser.send("Target.closeTarget", {"targetId": target})


# -- the world ---------------------------------------------------------------------------

GROUP = "0f0e0d0c-0000-4000-8000-00000000a001"
HOSTILE = "<script>alert(\"x\")</script> \x1b[31m'red' & \"q\" \u202eevil"
POLICY = """\
default_retention: 7d
rules:
  - name: evs-short
    match: {error_code: "EVS.*"}
    retention: 3d
  - name: quota-forever
    match: {error_code: "Quota.*"}
    retention: forever
holds:
  resource_names: ["keep-*"]
guards: {max_deletions_per_sweep: 40, max_deletion_fraction: 0.9}
"""
# What the test's own policy says, written out again: error code prefix -> (rule, retention).
RETENTION = {"EVS.": ("evs-short", timedelta(days=3)),
             "Quota.": ("quota-forever", None),
             "": ("default", timedelta(days=7))}


@dataclass(frozen=True)
class Spec:
    """One failed task of the world, and what the test expects of it."""

    age: timedelta | None  # None: begin_time unreadable
    error_code: str
    name: str | None = None
    group: str | None = None

    @property
    def held(self) -> bool:
        return (self.name or "").startswith("keep-")

    @property
    def rule(self) -> str:
        if self.held:
            return "hold"
        if self.age is None:
            return "begin-time-unparsable"
        return next(rule for prefix, (rule, _) in RETENTION.items()
                    if self.error_code.startswith(prefix))

    @property
    def retention(self) -> timedelta | None:
        return next(keep for prefix, (_, keep) in RETENTION.items()
                    if self.error_code.startswith(prefix))

    @property
    def goes(self) -> bool:
        """Older than its retention, and nothing keeps it."""
        keep = self.retention
        return (not self.held and self.age is not None and keep is not None
                and self.age >= keep)

    @property
    def due_day(self) -> int | None:
        """Kept: in which 24 hours from now it becomes deletable (None: never by age)."""
        keep = self.retention
        if self.goes or self.held or self.age is None or keep is None:
            return None
        return math.ceil((keep - self.age) / timedelta(days=1))

    @property
    def age_bin(self) -> str:
        if self.age is None:
            return "unknown"
        days = self.age / timedelta(days=1)
        for label, below in (("< 1 d", 1), ("1-7 d", 7), ("7-14 d", 14), ("14-30 d", 30),
                             ("30-90 d", 90), ("90 d-1 y", 365)):
            if days < below:
                return label
        return "\u2265 1 y"


H, D = timedelta(hours=1), timedelta(days=1)
# Ages sit well inside their bins and due windows: the command runs moments after this.
WORLD = (
    Spec(5 * H, "EVS.2024"), Spec(30 * H, "EVS.2024", group=GROUP),
    Spec(60 * H, "EVS.1001"), Spec(4 * D, "EVS.2024", group=GROUP), Spec(10 * D, "EVS.2024"),
    Spec(45 * D, "EVS.3000", group=GROUP), Spec(400 * D, "EVS.2024"),
    Spec(1 * H, "ECS.1000"), Spec(84 * H, "ECS.1000", group=GROUP), Spec(156 * H, "ECS.1000"),
    Spec(8 * D, "ECS.1000"), Spec(20 * D, "ECS.1000", group=GROUP), Spec(100 * D, "ECS.1000"),
    Spec(2 * D, "Quota.exceeded"), Spec(60 * D, "Quota.exceeded", group=GROUP),
    Spec(200 * D, "EVS.2024", name="keep-me-1"), Spec(9 * D, "ECS.1000", name=HOSTILE),
    Spec(None, "ECS.1000"),
)


@dataclass
class World:
    specs: tuple[Spec, ...]
    records: list[dict[str, Any]]


@pytest.fixture
def world(standin: TaskCenterStandIn) -> World:
    standin.add_group(GROUP, "web-tier")
    records = []
    for spec in WORLD:
        fields: dict[str, Any] = {"error_code": spec.error_code}
        if spec.name is not None:
            fields["resource_name"] = spec.name
        record = failed_task(spec.age or timedelta(0), **fields)
        if spec.age is None:
            record["begin_time"] = "not a time"
        standin.add_job(record, spec.group)
        records.append(record)
    return World(WORLD, records)


def bars(page: Page, chart: str) -> dict[str, dict[str, int]]:
    """Each bar of a chart as drawn: its printed total and the count of each segment."""
    drawn: list[list[Any]] = page.evaluate(f"""
        Array.from(document.querySelectorAll('#chart-{chart} g.bar')).map(g => [
          g.dataset.label, g.querySelector('text.total').textContent,
          Array.from(g.querySelectorAll('rect.seg')).map(r => [r.dataset.kind,
                                                              r.dataset.count])])""")
    return {label: {"total": int(total), **{kind: int(n) for kind, n in segments}}
            for label, total, segments in drawn}


def expected(counts: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    return {label: {"total": sum(kinds.values()), **{k: n for k, n in kinds.items() if n}}
            for label, kinds in counts.items()}


# -- the tests ---------------------------------------------------------------------------


def test_the_html_plan_in_a_browser_shows_the_world_and_fetches_nothing(
    standin: TaskCenterStandIn, world: World, tmp_path: Path, load: Callable[[Path], Page],
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    result = cli("plan", "--output", "html",
                 **settings(standin, RETENTION_POLICY_FILE=str(policy)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert standin.deletes() == []
    assert TOKEN not in result.stdout
    page_file = tmp_path / "plan.html"
    page_file.write_text(result.stdout, encoding="utf-8")

    page = load(page_file)

    assert page.errors == []
    assert page.requests == [page.url]
    assert page.evaluate("document.scripts.length") == 0
    assert page.evaluate("document.querySelectorAll('[src], link, iframe, object').length") == 0
    text: str = page.evaluate("document.body.innerText")
    for record in world.records:
        assert record["job_id"] in text
        assert record["resource_id"] in text  # the DELETE id (the default id field)
    # The hostile name is shown as text, its hidden characters as visible escapes.
    assert '<script>alert("x")</script>' in text
    assert "\\x1b[31m'red' & \"q\" \\u202eevil" in text

    specs = world.specs
    kinds = ["goes" if s.goes else "due" if s.due_day is not None and s.due_day <= 14
             else "kept" for s in specs]
    by_action: dict[str, Counter[str]] = {}
    by_rule: dict[str, Counter[str]] = {}
    by_age: dict[str, Counter[str]] = {}
    for spec, kind in zip(specs, kinds, strict=True):
        by_action.setdefault("would_delete" if spec.goes else "retained", Counter())[kind] += 1
        by_rule.setdefault(spec.rule, Counter())[kind] += 1
        by_age.setdefault(spec.age_bin, Counter())[kind] += 1
    assert bars(page, "action") == expected(by_action)
    assert bars(page, "rule") == expected(by_rule)
    drawn_ages = bars(page, "age")
    assert {label: bar for label, bar in drawn_ages.items() if bar["total"]} == expected(by_age)

    going = sum(spec.goes for spec in specs)
    due = Counter(spec.due_day for spec in specs if spec.due_day is not None)
    when = bars(page, "when")
    assert when.pop("now") == {"total": going, "goes": going}
    assert when == {f"+{day}": ({"total": due[day], "due": due[day]} if due[day]
                                else {"total": 0}) for day in range(1, 15)}
    undated = sum(1 for s in specs if not s.goes and s.due_day is None)
    assert f"{undated} kept with no date" in text

    gauges = page.evaluate("""Object.fromEntries(Array.from(
        document.querySelectorAll('#chart-guard g.gauge')).map(g => [g.dataset.guard,
        [Number(g.dataset.value), Number(g.dataset.limit), g.querySelector('text.total')
        .textContent]]))""")
    assert gauges["max_deletions_per_sweep"] == [going, 40, f"{going} planned"]
    fraction = round(going / len(specs), 4)
    assert gauges["max_deletion_fraction"] == [
        fraction, 0.9, f"{fraction:.1%} ({going} of {len(specs)})"]

    # Every chart says what it shows in words too, and has its numbers as a table.
    for chart in ("action", "rule", "age", "when", "guard"):
        assert page.evaluate(f"document.querySelector('#chart-{chart} > title').textContent")
        assert page.evaluate(f"document.querySelector('#chart-{chart} > desc').textContent")
    assert page.evaluate("document.querySelectorAll('figure table.data').length") == 5

    # It prints (the print stylesheet's layout, as Chromium's PDF): more than one page.
    pdf = base64.b64decode(page.browser.send("Page.printToPDF", {}, page.session)["data"])
    assert pdf.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 2

    png = page.screenshot()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1320, 2400)  # the page is longer than that
    target = SCREENSHOT if os.environ.get("UPDATE_DOCS_IMAGES") else tmp_path / "plan-html.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(png)


def test_the_harness_sees_requests_and_console_errors(
    tmp_path: Path, load: Callable[[Path], Page],
) -> None:
    """The checks above can fail: a page that calls out and logs an error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><title>bad</title></head><body>'
                   '<img src="http://127.0.0.1:9/x.png" alt="">'
                   '<script>console.error("boom")</script></body></html>')
    page = load(bad)
    assert "http://127.0.0.1:9/x.png" in page.requests
    assert any("boom" in error for error in page.errors)
