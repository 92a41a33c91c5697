"""The HTML plan as text: hostile record fields stay text, nothing points off the page, the
charts count what the rows say, and the command prints it (``plan`` and ``sweep``).

The page in a real browser is tests/test_plan_html_browser.py."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from failjob_reaper.plan_html import due_day, render_html
from failjob_reaper.plan_view import Row
from standin import TaskCenterStandIn
from tests.conftest import EXPIRED, FRESH, TOKEN, failed_task
from tests.test_cli import cli, settings

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
GUARD = {"planned": 1, "listed": 2, "max_deletions_per_sweep": 500,
         "max_deletion_fraction": 1.0, "planned_fraction": 0.5, "tripped": None,
         "over_by": 0, "reason": None}
SUMMARY = {"outcome": "plan", "dry_run": True, "listed": 2, "groups": 0,
           "outcomes": {"would_delete": 1, "retained": 1}, "partial": False,
           "partial_reason": None}
# Every tag the page may hold: none loads anything, none runs anything.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "main", "section", "h1", "h2",
    "p", "span", "strong", "time", "div", "ul", "li", "figure", "figcaption", "table",
    "colgroup", "col", "thead", "tbody", "tr", "th", "td", "svg", "defs", "pattern", "rect",
    "circle", "g", "text", "line", "desc",
}
HOSTILE = ("<script>alert(1)</script>\"'><img src=x onerror=alert(2)>&amp;"
           "\x1b[2J\x00\r\n\u202e\u200b\ud800")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def row(action: str = "retained", *, age: timedelta = timedelta(days=1),
        until: datetime | None = None, rule: str = "default", **fields: Any) -> Row:
    values: dict[str, Any] = {
        "action": action, "failure_job_id": "task-1", "job_id": "job-1",
        "resource_id": "res-1", "resource_name": "web-1", "server_group_id": None,
        "rule": rule, "retain_until": _iso(until) if until else None,
        "begin_time": _iso(NOW - age), "reason": "why",
    }
    values.update(fields)
    return Row(**values)


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's parser reads them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    tags.close()
    return tags


def test_hostile_fields_stay_text_in_every_place() -> None:
    nasty = row("would_delete", failure_job_id=HOSTILE, job_id=HOSTILE, resource_id=HOSTILE,
                resource_name=HOSTILE, server_group_id=HOSTILE, rule=HOSTILE,
                retain_until=HOSTILE, begin_time=HOSTILE, reason=HOSTILE)
    page = render_html([nasty], {**GUARD, "tripped": "max_deletions_per_sweep",
                                 "reason": HOSTILE}, {**SUMMARY, "partial_reason": HOSTILE},
                       now=NOW, title=HOSTILE, notes=[HOSTILE])

    page.encode("utf-8")  # a lone surrogate would not even encode
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202e\u200b\ud800-\udfff]", page)
    tags = parse(page)
    assert {tag for tag, _ in tags.tags} <= ALLOWED_TAGS
    for tag, attributes in tags.tags:
        assert not any(name.startswith("on") or name in ("src", "href")
                       for name in attributes), (tag, attributes)
    text = "".join(tags.text)
    # Shown as it is, its hidden characters as visible escapes: 9 fields, title, notes...
    shown = ("<script>alert(1)</script>\"'><img src=x onerror=alert(2)>&amp;"
             "\\x1b[2J\\x00\\x0d\\x0a\\u202e\\u200b\\ud800")
    assert text.count(shown) >= 10


def test_the_page_points_nowhere_and_forbids_every_fetch() -> None:
    page = render_html([row(), row("would_delete", age=timedelta(days=30))], GUARD, SUMMARY,
                       now=NOW, title="plan")
    assert re.findall(r"https?://[^\s\"'<>]*", page) == ["http://www.w3.org/2000/svg"] * 5
    assert set(re.findall(r"url\(([^)]*)\)", page)) <= {
        f"#{chart}-{kind}" for chart in ("action", "rule", "age", "when", "guard")
        for kind in ("goes", "due")}
    assert "@import" not in page and "<script" not in page.lower()
    csp = next(attributes["content"] for tag, attributes in parse(page).tags
               if tag == "meta" and attributes.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and csp.startswith("default-src 'none'; style-src 'unsafe-inline'")


def _bars(page: str, chart: str) -> dict[str, int]:
    """label -> printed total of each bar of one chart, read from the markup."""
    svg = page[page.index(f'<svg id="chart-{chart}"'):]
    svg = svg[:svg.index("</svg>")]
    return {label: int(total) for label, total in re.findall(
        r'<g class="bar" data-label="([^"]*)" data-total="(\d+)"', svg)}


def test_what_goes_when_counts_24_hour_windows_from_now() -> None:
    day = timedelta(days=1)
    rows = [
        row("would_delete", age=timedelta(days=9)),
        row(until=NOW + day),                       # exactly 24 h: the first window
        row(until=NOW + day + timedelta(seconds=1)),  # just after: the second
        row(until=NOW + 3 * day - timedelta(minutes=1)),
        row(until=NOW - timedelta(hours=1), rule="guard"),  # due, kept back: now
        row(until=NOW + 15 * day),                  # beyond the window
        row(rule="hold"),                           # no date
    ]
    assert [due_day(r, NOW) for r in rows[1:]] == [1, 2, 3, 0, 15, None]
    page = render_html(rows, GUARD, SUMMARY, now=NOW, title="plan", days=14)
    when = _bars(page, "when")
    assert when["now"] == 2 and when["+1"] == 1 and when["+2"] == 1 and when["+3"] == 1
    assert sum(when.values()) == 5 and len(when) == 15
    assert "1 kept task deletable later than 14 days; 1 kept with no date" in page


def test_ages_and_rules_and_actions_are_counted_from_the_rows() -> None:
    rows = [row("would_delete", age=timedelta(days=40), rule="evs"),
            row("would_delete", age=timedelta(days=400), rule="evs"),
            row(age=timedelta(hours=2)),
            row(age=timedelta(days=3), until=NOW + timedelta(days=4)),
            replace(row(rule="begin-time-unparsable"), begin_time="yesterday"),
            row(age=-timedelta(days=1), rule="clock-skew")]
    page = render_html(rows, GUARD, SUMMARY, now=NOW, title="plan")
    assert _bars(page, "action") == {"would_delete": 2, "retained": 4}
    assert _bars(page, "rule") == {"evs": 2, "default": 2, "begin-time-unparsable": 1,
                                   "clock-skew": 1}
    assert _bars(page, "age") == {"&lt; 1 d": 1, "1-7 d": 1, "7-14 d": 0, "14-30 d": 0,
                                  "30-90 d": 1, "90 d-1 y": 0, "\u2265 1 y": 1,
                                  "in the future": 1, "unknown": 1}


def test_a_tripped_guard_and_an_empty_plan_are_said_in_words() -> None:
    tripped = {**GUARD, "planned": 3, "max_deletions_per_sweep": 2,
               "tripped": "max_deletions_per_sweep", "over_by": 1,
               "reason": "3 deletions planned, the limit is 2"}
    page = render_html([row("would_delete")] * 3, tripped, SUMMARY, now=NOW, title="plan")
    text = "".join(parse(page).text)
    assert "Guard max_deletions_per_sweep trips:" in text
    assert "3 planned - TRIPS" in text
    assert "planned, but the guard stops the sweep" in text
    empty = render_html([], None, {"listed": 0}, now=NOW, title="plan")
    assert "no failed tasks listed" in empty and "No guard verdict" in empty


def test_plan_and_sweep_print_the_page(standin: TaskCenterStandIn, tmp_path: Path) -> None:
    expired, fresh = failed_task(EXPIRED), failed_task(FRESH, resource_name=HOSTILE[:40])
    standin.add_job(expired)
    standin.add_job(fresh)

    plan = cli("plan", "--output", "html", **settings(standin))
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.startswith("<!DOCTYPE html>") and plan.stdout.endswith("</html>\n")
    assert plan.stderr == ""
    assert expired["resource_id"] in plan.stdout and fresh["resource_id"] in plan.stdout
    assert "<script>" not in plan.stdout
    assert standin.deletes() == []

    sweep = cli("sweep", "--output", "html", **settings(standin))
    assert sweep.returncode == 0, sweep.stderr
    assert standin.deletes() == [expired["resource_id"]]
    assert '<span class="badge goes">deleted</span>' in sweep.stdout
    assert TOKEN not in plan.stdout + sweep.stdout
