"""The plan as one self-contained HTML page a person looks at: charts, then the table.

``failjob-reaper plan --output html`` (and ``sweep --output html``) prints it. It works on
the plan's view model (``plan_view``: the rows, the guard in numbers, the summary), so
the page shows the same decisions as every other view of the plan; it decides nothing.

What is on it: the plan table (every listed task, what happens to it, the rule,
``begin_time``, ``retain_until`` and the reason), and charts drawn as inline SVG: tasks by
action and by rule, the ages of the backlog (from ``begin_time``), what goes when over the
coming days (from ``retain_until``) and the guards in numbers.

Drawn here, with the standard library only: a chart library would be a dependency for one
page, and the usual ones draw with JavaScript or fetch scripts and fonts from a CDN. This
page fetches nothing: no script, no stylesheet, font or image from anywhere; inline CSS
and SVG only, and a Content-Security-Policy that forbids everything else, so a page that
was ever mis-escaped still could not run a script or call out.

Record fields are hostile (a ``resource_name`` may hold ``<script>``, quotes, terminal
escapes, bidirectional overrides or lone surrogates): every text passes through
:func:`_text`, which escapes it for HTML and shows each control or invisible character as
a visible ``\\xNN`` / ``\\uNNNN`` escape.

Readable without colour and on paper: the kinds of bar differ by pattern (hatched: goes,
dotted: becomes deletable within the window, plain: kept), every bar carries its number,
each SVG has a ``<title>`` and ``<desc>`` and is followed by a table of its data; a print
stylesheet lays the page out for A4/Letter.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from failjob_reaper.plan_view import Row
from failjob_reaper.policy import parse_begin_time

DAYS = 14
"""How many days ahead "what goes when" looks."""

_GOING = frozenset({"would_delete", "deleted", "already_deleted", "delete_failed", "left_over"})

# Kinds of bar: (legend label, fill, stroke). Patterns are defined per SVG (_defs).
_KINDS: dict[str, tuple[str, str, str]] = {
    "goes": ("goes (DELETE)", "url(#{p}-goes)", "#9c3520"),
    "due": ("kept, deletable soon", "url(#{p}-due)", "#8a5208"),
    "kept": ("kept", "#a9bfd6", "#34506e"),
}

# -- text --------------------------------------------------------------------------------

# C0/C1 controls (tab and newline too: a cell shows what the field holds), zero-width and
# bidirectional formatting characters, the BOM and lone surrogates (JSON can carry them;
# they cannot even be encoded as UTF-8).
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f"
                     "\ufeff\ufff9-\ufffb\ud800-\udfff]")


def _escape_char(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _text(value: object, *, plain: bool = False) -> str:
    """``value`` as HTML text: escaped, hidden characters made visible.

    In HTML text the visible escapes are marked (``<span class=esc>``); ``plain`` leaves
    them unmarked, for attribute values, ``<title>`` and SVG text (where no ``span`` is drawn).
    """
    text = "" if value is None else str(value)
    out: list[str] = []
    last = 0
    for match in _HIDDEN.finditer(text):
        out.append(html.escape(text[last:match.start()], quote=True))
        shown = _escape_char(match.group())
        out.append(shown if plain else f'<span class="esc">{shown}</span>')
        last = match.end()
    out.append(html.escape(text[last:], quote=True))
    return "".join(out)


def _plain(value: object) -> str:
    """``value`` with hidden characters made visible, not yet HTML-escaped (for cutting)."""
    return _HIDDEN.sub(lambda m: _escape_char(m.group()), "" if value is None else str(value))


def _cut(value: object, limit: int) -> str:
    """A short label for a chart (the full text is in the data table and the tooltip)."""
    text = _plain(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# -- time --------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _span(delta: timedelta) -> str:
    """A duration for people: 3 d 4 h, 5 h 10 min, 45 min."""
    seconds = int(abs(delta).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days >= 365:
        return f"{days / 365:.1f} y"
    if days:
        return f"{days} d {hours} h" if hours and days < 10 else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


# -- what the charts count ---------------------------------------------------------------

_AGE_BINS: tuple[tuple[str, timedelta | None], ...] = (
    ("< 1 d", timedelta(days=1)),
    ("1-7 d", timedelta(days=7)),
    ("7-14 d", timedelta(days=14)),
    ("14-30 d", timedelta(days=30)),
    ("30-90 d", timedelta(days=90)),
    ("90 d-1 y", timedelta(days=365)),
    ("\u2265 1 y", None),
)
FUTURE, UNKNOWN = "in the future", "unknown"


def _kind(row: Row, now: datetime, days: int) -> str:
    if row.action in _GOING:
        return "goes"
    until = parse_begin_time(row.retain_until)
    return "due" if until is not None and until <= now + timedelta(days=days) else "kept"


def age_bin(row: Row, now: datetime) -> str:
    """Which bar of the age histogram ``row`` counts in (its age from ``begin_time``)."""
    begin = parse_begin_time(row.begin_time)
    if begin is None:
        return UNKNOWN
    age = now - begin
    if age < timedelta(0):
        return FUTURE
    for label, below in _AGE_BINS:
        if below is None or age < below:
            return label
    raise AssertionError("the last bin is open")  # pragma: no cover


def due_day(row: Row, now: datetime) -> int | None:
    """For a retained row: in which 24-hour window from ``now`` it becomes deletable.

    0: already (kept back, e.g. by a guard or an incomplete listing); 1: within 24 hours;
    k: in (k-1 .. k] days. None: no date (held, kept latest, forever, unknown age).
    """
    until = parse_begin_time(row.retain_until)
    if until is None:
        return None
    ahead = (until - now).total_seconds()
    if ahead <= 0:
        return 0
    return int(-(-ahead // 86400))


@dataclass(frozen=True)
class _Bar:
    label: str
    parts: tuple[tuple[str, int], ...]
    """(kind, count) for each kind present, in _KINDS order."""

    @property
    def total(self) -> int:
        return sum(n for _, n in self.parts)


def _bar(label: str, kinds: Counter[str]) -> _Bar:
    return _Bar(label, tuple((kind, kinds[kind]) for kind in _KINDS if kinds[kind]))


# -- the page ----------------------------------------------------------------------------


def render_html(
    rows: Sequence[Row],
    guard: Mapping[str, Any] | None,
    summary: Mapping[str, Any],
    *,
    now: datetime,
    title: str,
    notes: Iterable[str] = (),
    days: int = DAYS,
) -> str:
    """The whole page. ``guard`` is ``plan_view.guard_data`` (None: no guard verdict);
    ``notes``: why no DELETE was planned (incomplete listings), shown at the top."""
    now = _utc(now)
    kinds = [_kind(row, now, days) for row in rows]
    notes = list(notes)

    by_action: dict[str, Counter[str]] = {}
    by_rule: dict[str, Counter[str]] = {}
    by_age: dict[str, Counter[str]] = {label: Counter() for label, _ in _AGE_BINS}
    goes_when: list[Counter[str]] = [Counter() for _ in range(days + 1)]
    later = undated = 0
    for row, kind in zip(rows, kinds, strict=True):
        by_action.setdefault(row.action, Counter())[kind] += 1
        by_rule.setdefault(row.rule or "(no rule)", Counter())[kind] += 1
        by_age.setdefault(age_bin(row, now), Counter())[kind] += 1
        if kind == "goes":
            goes_when[0]["goes"] += 1
            continue
        day = due_day(row, now)
        if day is None:
            undated += 1
        elif day > days:
            later += 1
        else:
            goes_when[day]["due"] += 1
    for extra in (FUTURE, UNKNOWN):
        if not by_age.get(extra):
            by_age.pop(extra, None)

    going = sum(1 for kind in kinds if kind == "goes")
    kept = len(rows) - going
    due = sum(1 for kind in kinds if kind == "due")
    rules = sorted(by_rule.items(), key=lambda item: (-sum(item[1].values()), item[0]))

    charts = [
        _hbars("action", "Tasks by action",
               "How many listed tasks each action applies to.",
               [_bar(action, counts) for action, counts in by_action.items()], "action"),
        _guard_chart(guard),
        _hbars("rule", "Tasks by rule",
               "How many tasks each rule decided, split into those that go and those kept.",
               [_bar(rule, counts) for rule, counts in rules], "rule"),
        _vbars("age", "Ages of the backlog",
               f"How many tasks are how old (from begin_time to {_when(now)}).",
               [_bar(label, counts) for label, counts in by_age.items()],
               "age (from begin_time)", "age"),
        _vbars("when", f"What goes when: now and the next {days} days",
               f"Bar 'now': the tasks this plan deletes. Bar +k: kept tasks whose "
               f"retain_until falls within the k-th 24 hours after {_when(now)}.",
               [_bar("now", goes_when[0]), *(_bar(f"+{day}", goes_when[day])
                                             for day in range(1, days + 1))],
               "days from now", "when",
               footer=(f"Not in the chart: {later} kept task{'' if later == 1 else 's'} "
                       f"deletable later than {days} days; {undated} kept with no date "
                       f"(held, kept latest, kept forever or age unknown)."), wide=True),
    ]

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        # Nothing may load or run, whatever a record holds: no script, no fetch of any kind.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>failjob-reaper: {_text(title, plain=True)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>failjob-reaper <span class=\"sub\">{_text(title)}</span></h1>",
        f'<p class="meta">As of <time datetime="{now.isoformat(timespec="seconds")}">'
        f"{_when(now)}</time>. {_summary_line(summary)}</p>",
        _banner(guard, summary, notes),
        _cards(len(rows), going, kept, due, days, guard),
        "</header>",
        "<main>",
        '<section class="charts" aria-label="charts">',
        *charts,
        "</section>",
        _plan_table(rows, kinds, now),
        _summary_table(summary),
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _summary_line(summary: Mapping[str, Any]) -> str:
    listed = summary.get("listed")
    groups = summary.get("groups")
    bits = []
    if listed is not None:
        bits.append(f"{_text(listed)} distinct failed task{'' if listed == 1 else 's'} listed")
    if groups:
        bits.append(f"in the top level and {_text(groups)} protection "
                    f"group{'' if groups == 1 else 's'}")
    return (" ".join(bits) + ".") if bits else ""


def _banner(guard: Mapping[str, Any] | None, summary: Mapping[str, Any],
            notes: Sequence[str]) -> str:
    lines = []
    if guard is not None and guard.get("tripped"):
        lines.append(f"<strong>Guard {_text(guard['tripped'])} trips:</strong> "
                     f"{_text(guard.get('reason') or '')} A sweep of this plan deletes "
                     "nothing until the guard is raised in the policy file.")
    for note in notes:
        lines.append(f"<strong>No DELETE planned:</strong> {_text(note)}")
    for key in ("partial_reason", "aborted_reason"):
        if summary.get(key):
            lines.append(f"<strong>{_text(key.replace('_', ' '))}:</strong> "
                         f"{_text(summary[key])}")
    if not lines:
        return ""
    items = "".join(f"<li>{line}</li>" for line in lines)
    return f'<div class="banner" role="alert"><span class="icon">!</span><ul>{items}</ul></div>'


def _cards(total: int, going: int, kept: int, due: int, days: int,
           guard: Mapping[str, Any] | None) -> str:
    if guard is None:
        verdict, detail = "none", "no guard verdict"
    elif guard.get("tripped"):
        verdict, detail = "TRIPS", str(guard["tripped"])
    else:
        verdict, detail = "passes", (f"{guard.get('planned', 0)} of at most "
                                     f"{guard.get('max_deletions_per_sweep', '?')}")
    cards = [
        ("tasks", str(total), "in this plan", ""),
        ("goes", str(going), "planned, but the guard stops the sweep"
         if guard is not None and guard.get("tripped") else "to be deleted", "goes"),
        ("kept", str(kept), f"{due} deletable within {days} d", "kept"),
        ("guard", verdict, detail, "tripped" if guard and guard.get("tripped") else ""),
    ]
    return '<ul class="cards">' + "".join(
        f'<li class="card {cls}"><span class="k">{_text(name)}</span>'
        f'<span class="v">{_text(value)}</span><span class="d">{_text(detail)}</span></li>'
        for name, value, detail, cls in cards) + "</ul>"


# -- charts ------------------------------------------------------------------------------


def _defs(prefix: str) -> str:
    return (
        "<defs>"
        f'<pattern id="{prefix}-goes" width="7" height="7" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="7" height="7" fill="#f3d3cb"/>'
        '<rect width="3" height="7" fill="#b8462e"/></pattern>'
        f'<pattern id="{prefix}-due" width="6" height="6" patternUnits="userSpaceOnUse">'
        '<rect width="6" height="6" fill="#f8e3bd"/>'
        '<circle cx="3" cy="3" r="1.5" fill="#9a5c0a"/></pattern>'
        "</defs>"
    )


def _fill(kind: str, prefix: str) -> tuple[str, str]:
    _, fill, stroke = _KINDS[kind]
    return fill.format(p=prefix), stroke


def _legend(prefix: str, kinds: Iterable[str], x: float, y: float) -> str:
    out = []
    for kind in _KINDS:
        if kind not in kinds:
            continue
        fill, stroke = _fill(kind, prefix)
        label = _KINDS[kind][0]
        out.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="14" height="12" fill="{fill}" '
                   f'stroke="{stroke}"/><text x="{x + 19:.1f}" y="{y:.1f}" '
                   f'class="legend">{_text(label, plain=True)}</text>')
        x += 30 + 6.6 * len(label)
    return "".join(out)


def _svg_open(prefix: str, title: str, desc: str, width: int, height: float) -> str:
    return (f'<svg id="chart-{prefix}" class="chart" viewBox="0 0 {width} {height:.0f}" '
            f'role="img" aria-labelledby="chart-{prefix}-title chart-{prefix}-desc" '
            f'xmlns="http://www.w3.org/2000/svg">'
            f'<title id="chart-{prefix}-title">{_text(title, plain=True)}</title>'
            f'<desc id="chart-{prefix}-desc">{_text(desc, plain=True)}</desc>{_defs(prefix)}')


def _count_label(x: float, y: float, n: int, *, anchor: str = "middle",
                 cls: str = "part") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" '
            f'class="{cls}">{n}</text>')


def _hbars(prefix: str, title: str, desc: str, bars: Sequence[_Bar], what: str) -> str:
    """Horizontal bars, one per label, each stacked by kind, the total at its end."""
    width, label_w, right, top, row_h, bar_h = 640, 190, 56, 34, 30, 20
    area = width - label_w - 12 - right
    scale = max((bar.total for bar in bars), default=0) or 1
    height = top + row_h * max(len(bars), 1) + 8
    kinds = {kind for bar in bars for kind, _ in bar.parts}
    svg = [_svg_open(prefix, title, desc, width, height),
           _legend(prefix, kinds, label_w + 12, 16)]
    x0 = label_w + 12
    svg.append(f'<line x1="{x0}" y1="{top - 6}" x2="{x0}" y2="{height - 6:.0f}" class="axis"/>')
    if not bars:
        svg.append(f'<text x="{x0 + 8}" y="{top + 16}" class="empty">no tasks</text>')
    for i, bar in enumerate(bars):
        y = top + i * row_h
        mid = y + bar_h / 2 + 4.5
        svg.append(f'<g class="bar" data-label="{_text(bar.label, plain=True)}" '
                   f'data-total="{bar.total}">'
                   f"<title>{_text(bar.label, plain=True)}: {bar.total}</title>"
                   f'<text x="{label_w}" y="{mid:.1f}" text-anchor="end" class="label">'
                   f"{_text(_cut(bar.label, 26), plain=True)}</text>")
        x = float(x0)
        for kind, n in bar.parts:
            w = n / scale * area
            fill, stroke = _fill(kind, prefix)
            svg.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                       f'fill="{fill}" stroke="{stroke}" class="seg {kind}" data-kind="{kind}" '
                       f'data-count="{n}"/>')
            if len(bar.parts) > 1 and w >= 24:
                svg.append(_count_label(x + w / 2, mid, n))
            x += w
        svg.append(_count_label(x + 6, mid, bar.total, anchor="start", cls="total"))
        svg.append("</g>")
    svg.append("</svg>")
    return _figure(prefix, title, "".join(svg), _data_table(what, bars))


def _ticks(top: int) -> list[int]:
    """0 and a few round values up to at least ``top``."""
    if top <= 0:
        return [0, 1]
    step = 1
    for base in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000):
        step = base
        if top / base <= 5:
            break
    else:
        while top / step > 5:
            step *= 10
    return list(range(0, top + step, step)) if top % step else list(range(0, top + 1, step))


def _vbars(prefix: str, title: str, desc: str, bars: Sequence[_Bar], axis: str, what: str,
           *, footer: str = "", wide: bool = False) -> str:
    """Vertical bars (a histogram), stacked by kind, the total above each."""
    width, left, right, top, bottom = (1300 if wide else 640), 44, 12, 40, 44
    plot_h = 170
    height = top + plot_h + bottom
    ticks = _ticks(max((bar.total for bar in bars), default=0))
    scale = ticks[-1] or 1
    slot = (width - left - right) / max(len(bars), 1)
    bar_w = min(slot * 0.72, 64)
    kinds = {kind for bar in bars for kind, _ in bar.parts}
    base = top + plot_h
    svg = [_svg_open(prefix, title, desc, width, height), _legend(prefix, kinds, left, 16)]
    for tick in ticks:
        y = base - tick / scale * plot_h
        svg.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
                   f'class="{"axis" if tick == 0 else "grid"}"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                   f"{tick}</text>")
    small = len(bars) > 10
    for i, bar in enumerate(bars):
        cx = left + slot * (i + 0.5)
        x = cx - bar_w / 2
        svg.append(f'<g class="bar" data-label="{_text(bar.label, plain=True)}" '
                   f'data-total="{bar.total}">'
                   f"<title>{_text(bar.label, plain=True)}: {bar.total}</title>")
        y = float(base)
        for kind, n in bar.parts:
            h = n / scale * plot_h
            y -= h
            fill, stroke = _fill(kind, prefix)
            svg.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                       f'fill="{fill}" stroke="{stroke}" class="seg {kind}" data-kind="{kind}" '
                       f'data-count="{n}"/>')
            if len(bar.parts) > 1 and h >= 16:
                svg.append(_count_label(cx, y + h / 2 + 4.5, n))
        svg.append(_count_label(cx, y - 5, bar.total, cls="total"))
        svg.append(f'<text x="{cx:.1f}" y="{base + 17}" text-anchor="middle" '
                   f'class="{"label small" if small else "label"}">'
                   f"{_text(_cut(bar.label, 12), plain=True)}</text></g>")
    svg.append(f'<text x="{left + (width - left - right) / 2:.1f}" y="{height - 6}" '
               f'text-anchor="middle" class="axis-title">{_text(axis, plain=True)}</text>')
    svg.append("</svg>")
    return _figure(prefix, title, "".join(svg), _data_table(what, bars, across=True), footer,
                   wide=wide)


def _guard_chart(guard: Mapping[str, Any] | None) -> str:
    prefix, title = "guard", "The guards in numbers"
    if guard is None:
        desc = "No guard verdict: the guards count only for sweeps over every task."
        empty = (_svg_open(prefix, title, desc, 640, 60)
                 + f'<text x="10" y="34" class="empty">{_text(desc, plain=True)}</text></svg>')
        return _figure(prefix, title, empty, "")
    planned = int(guard.get("planned", 0))
    listed = int(guard.get("listed", 0))
    limit = int(guard.get("max_deletions_per_sweep", 0))
    fraction = float(guard.get("planned_fraction", 0.0))
    max_fraction = float(guard.get("max_deletion_fraction", 1.0))
    tripped = guard.get("tripped")
    desc = (f"{planned} deletions planned against max_deletions_per_sweep {limit}; "
            f"{fraction:.1%} of the {listed} listed against max_deletion_fraction "
            f"{max_fraction:.0%}" + (" (off)" if max_fraction >= 1 else "")
            + (f". Guard {tripped} trips." if tripped else ". Both pass."))
    width, label_w, right = 640, 190, 24
    area = width - label_w - 12 - right
    x0 = label_w + 12
    svg = [_svg_open(prefix, title, desc, width, 172), _legend(prefix, {"goes"}, x0, 16)]
    gauges = (
        ("max_deletions_per_sweep", "deletions planned", planned, limit,
         max(planned, limit, 1), f"{planned} planned", f"limit {limit}",
         tripped == "max_deletions_per_sweep"),
        ("max_deletion_fraction", "share of listed", fraction, max_fraction, 1.0,
         f"{fraction:.1%} ({planned} of {listed})",
         f"limit {max_fraction:.0%}" + (" = off" if max_fraction >= 1 else ""),
         tripped == "max_deletion_fraction"),
    )
    for i, (name, label, value, cap, scale, shown, cap_text, trips) in enumerate(gauges):
        y = 46 + i * 64
        w = min(value / scale, 1.0) * area
        cap_x = x0 + min(cap / scale, 1.0) * area
        fill, stroke = _fill("goes", prefix)
        svg.append(
            f'<g class="gauge" data-guard="{name}" data-value="{value}" data-limit="{cap}">'
            f'<text x="{label_w}" y="{y + 10}" text-anchor="end" class="label">'
            f"{_text(label, plain=True)}</text>"
            f'<text x="{label_w}" y="{y + 25}" text-anchor="end" class="small">'
            f"{_text(name, plain=True)}</text>"
            f'<rect x="{x0}" y="{y}" width="{area}" height="22" class="track"/>'
            f'<rect x="{x0}" y="{y}" width="{w:.1f}" height="22" fill="{fill}" '
            f'stroke="{stroke}"/>'
            f'<line x1="{cap_x:.1f}" y1="{y - 6}" x2="{cap_x:.1f}" y2="{y + 28}" class="cap"/>'
            f'<text x="{min(cap_x, x0 + area):.1f}" y="{y + 42}" text-anchor="'
            f'{"end" if cap_x > x0 + area * 0.75 else "middle"}" class="small">'
            f"{_text(cap_text, plain=True)}</text>"
            f'<text x="{x0 + w + 6 if w < area * 0.6 else x0 + w - 6:.1f}" y="{y + 15.5}" '
            f'text-anchor="{"start" if w < area * 0.6 else "end"}" class="total">'
            f'{_text(shown, plain=True)}{" - TRIPS" if trips else ""}</text></g>')
    svg.append("</svg>")
    table = (
        '<table class="data"><thead><tr><th scope="col">guard</th><th scope="col">planned</th>'
        '<th scope="col">limit</th><th scope="col">verdict</th></tr></thead><tbody>'
        f"<tr><th scope=\"row\">max_deletions_per_sweep</th><td>{planned}</td><td>{limit}</td>"
        f"<td>{'trips' if tripped == 'max_deletions_per_sweep' else 'passes'}</td></tr>"
        f"<tr><th scope=\"row\">max_deletion_fraction</th><td>{fraction:.1%} "
        f"({planned} of {listed})</td><td>{max_fraction:.0%}"
        f"{' (off)' if max_fraction >= 1 else ''}</td>"
        f"<td>{'trips' if tripped == 'max_deletion_fraction' else 'passes'}</td></tr>"
        "</tbody></table>")
    return _figure(prefix, title, "".join(svg), table)


def _figure(prefix: str, title: str, svg: str, table: str, footer: str = "", *,
            wide: bool = False) -> str:
    note = f'<p class="note">{_text(footer)}</p>' if footer else ""
    wide_class = ' class="wide"' if wide else ""
    return (f'<figure id="fig-{prefix}"{wide_class}><figcaption>{_text(title)}</figcaption>'
            f"{svg}{note}{table}</figure>")


def _data_table(what: str, bars: Sequence[_Bar], *, across: bool = False) -> str:
    """The chart's numbers as a table: a row per bar, or (``across``) a column per bar."""
    kinds = [kind for kind in _KINDS if any(k == kind for bar in bars for k, _ in bar.parts)]
    if across:
        heads = "".join(f'<th scope="col">{_text(bar.label)}</th>' for bar in bars)
        lines = [(_KINDS[kind][0], [dict(bar.parts).get(kind, 0) for bar in bars])
                 for kind in kinds]
        lines.append(("tasks", [bar.total for bar in bars]))
        cells = "".join(f'<tr><th scope="row">{_text(name)}</th>'
                        + "".join(f"<td>{n}</td>" for n in counts) + "</tr>"
                        for name, counts in lines)
        return (f'<table class="data across" data-chart="{_text(what, plain=True)}"><thead><tr>'
                f'<th scope="col">{_text(what)}</th>{heads}</tr></thead>'
                f"<tbody>{cells}</tbody></table>")
    head = "".join(f'<th scope="col">{_text(_KINDS[kind][0])}</th>' for kind in kinds)
    body = []
    for bar in bars:
        counts = dict(bar.parts)
        cells = "".join(f"<td>{counts.get(kind, 0)}</td>" for kind in kinds)
        body.append(f'<tr><th scope="row">{_text(bar.label)}</th>{cells}'
                    f"<td>{bar.total}</td></tr>")
    return (f'<table class="data" data-chart="{_text(what, plain=True)}"><thead><tr>'
            f'<th scope="col">{_text(what)}</th>{head}<th scope="col">tasks</th></tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


# -- the table ---------------------------------------------------------------------------

# (heading, share of the table's width in %); fixed, so that long ids wrap in their cell.
_COLUMNS = (("#", 3), ("action", 10), ("task (failure_job_id) / job_id", 20),
            ("resource", 12.5), ("group", 9), ("rule", 8), ("age / begin_time", 10.5),
            ("retain_until", 12.5), ("reason", 14.5))


def _plan_table(rows: Sequence[Row], kinds: Sequence[str], now: datetime) -> str:
    cols = "".join(f'<col style="width: {share}%">' for _, share in _COLUMNS)
    head = "".join(f'<th scope="col">{_text(name)}</th>' for name, _ in _COLUMNS)
    body = []
    for n, (row, kind) in enumerate(zip(rows, kinds, strict=True), start=1):
        begin = parse_begin_time(row.begin_time)
        age = (_span(now - begin) if begin is not None and begin <= now
               else "in the future" if begin is not None else "unknown")
        until = parse_begin_time(row.retain_until)
        when = ""
        if until is not None:
            when = (f'<span class="rel">in {_text(_span(until - now))}</span>' if until > now
                    else '<span class="rel">passed</span>')
        resource_id = ("" if row.resource_id == row.failure_job_id else
                       f'<span class="id sub">{_text(row.resource_id or "-")}</span>')
        body.append(
            f'<tr class="{kind}"><td class="n">{n}</td>'
            f'<td><span class="badge {kind}">{_text(row.action)}</span></td>'
            f'<td><span class="id">{_text(row.failure_job_id or "-")}</span>'
            f'<span class="id sub">{_text(row.job_id or "-")}</span></td>'
            f"<td>{_text(row.resource_name or '-')}{resource_id}</td>"
            f'<td class="{"id" if row.server_group_id else ""}">'
            f"{_text(row.server_group_id or 'top level')}</td>"
            f"<td>{_text(row.rule or '-')}</td>"
            f"<td>{_text(age)}<span class=\"id sub\">{_text(row.begin_time or '-')}</span></td>"
            f"<td>{_text(row.retain_until or '-')}{when}</td>"
            f"<td>{_text(row.reason)}</td></tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(_COLUMNS)}" class="empty">no failed tasks listed'
                    "</td></tr>")
    return (f'<section class="plan"><h2>The plan, task by task <span class="sub">{len(rows)} '
            f"task{'' if len(rows) == 1 else 's'}, those that go first</span></h2>"
            f'<table class="plan-table"><colgroup>{cols}</colgroup><thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table></section>")


def _summary_table(summary: Mapping[str, Any]) -> str:
    items: list[tuple[str, object]] = []
    for key, value in summary.items():
        if isinstance(value, Mapping):
            items += [(f"{key} {name}", n) for name, n in value.items()]
        elif value is not None:
            items.append((key, value))
    cells = "".join(f'<tr><th scope="row">{_text(key)}</th><td>{_text(value)}</td></tr>'
                    for key, value in items)
    return (f'<section class="summary"><h2>Summary</h2><table class="data">'
            f"<tbody>{cells}</tbody></table></section>")


_CSS = """
:root { --ink: #1d2733; --muted: #5b6775; --line: #d5dbe2; --paper: #fff; --soft: #f4f6f8;
  --goes: #b8462e; --due: #9a5c0a; --kept: #34506e; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0 auto; max-width: 1320px; padding: 24px 28px 48px; color: var(--ink);
  background: var(--paper); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
  "Noto Sans", "DejaVu Sans", "Liberation Sans", sans-serif; }
h1 { font-size: 24px; margin: 0 0 4px; letter-spacing: -0.01em; }
h1 .sub, h2 .sub { font-weight: 400; color: var(--muted); }
h2 { font-size: 18px; margin: 28px 0 10px; }
h2 .sub { font-size: 14px; margin-left: 6px; }
.meta { margin: 0 0 14px; color: var(--muted); }
.banner { display: flex; gap: 12px; align-items: flex-start; border: 2px solid var(--goes);
  background: #fbeeea; padding: 10px 14px; border-radius: 6px; margin: 0 0 14px; }
.banner .icon { font-weight: 700; border: 2px solid var(--goes); border-radius: 50%;
  width: 24px; height: 24px; text-align: center; line-height: 20px; flex: none; }
.banner ul { margin: 0; padding: 0; list-style: none; }
.cards { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 12px;
  list-style: none; padding: 0; margin: 0 0 8px; }
.card { border: 1px solid var(--line); border-left-width: 6px; border-radius: 6px;
  padding: 8px 12px; background: var(--soft); display: flex; flex-direction: column; }
.card .k { text-transform: uppercase; font-size: 11px; letter-spacing: .06em; color: var(--muted); }
.card .v { font-size: 26px; font-weight: 700; line-height: 1.2; }
.card .d { font-size: 12px; color: var(--muted); }
.card.goes { border-left-color: var(--goes); border-left-style: double; border-left-width: 7px; }
.card.kept { border-left-color: var(--kept); }
.card.tripped { border-color: var(--goes); background: #fbeeea; }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 18px 26px;
  margin-top: 18px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px;
  break-inside: avoid; page-break-inside: avoid; }
figure.wide { grid-column: 1 / -1; }
table.data.across { width: auto; }
table.data.across td { min-width: 2.6em; }
figcaption { font-weight: 700; font-size: 15px; margin-bottom: 4px; }
svg.chart { display: block; width: 100%; height: auto; }
svg text { font-family: inherit; font-size: 12px; fill: var(--ink); }
svg .legend { font-size: 11.5px; fill: var(--muted); }
svg .label { font-size: 12px; }
svg .label.small, svg .small { font-size: 11px; fill: var(--muted); }
svg .tick { font-size: 11px; fill: var(--muted); }
svg .total { font-weight: 700; font-size: 12.5px; }
svg .part { font-size: 11px; font-weight: 700; stroke: #fff; stroke-width: 3px;
  paint-order: stroke; stroke-linejoin: round; }
svg .gauge .total { stroke: #fff; stroke-width: 3px; paint-order: stroke; }
svg .axis { stroke: #6b7684; stroke-width: 1; }
svg .grid { stroke: #e3e7ec; stroke-width: 1; }
svg .track { fill: #eef1f4; stroke: #c9d0d8; }
svg .cap { stroke: var(--ink); stroke-width: 2; stroke-dasharray: 4 2; }
svg .axis-title { font-size: 11.5px; fill: var(--muted); }
svg .empty { fill: var(--muted); font-style: italic; }
.note { margin: 6px 0 0; font-size: 12px; color: var(--muted); }
table { border-collapse: collapse; }
table.data { margin-top: 8px; font-size: 12px; width: 100%; }
table.data th, table.data td { border-top: 1px solid var(--line); padding: 2px 6px;
  white-space: nowrap;
  text-align: right; font-variant-numeric: tabular-nums; }
table.data th:first-child { text-align: left; font-weight: 400; white-space: normal; }
table.data thead th { color: var(--muted); font-weight: 600; border-top: 0; }
.plan-table { width: 100%; font-size: 12.5px; table-layout: fixed; }
.plan-table th, .plan-table td { border-bottom: 1px solid var(--line); padding: 5px 6px;
  text-align: left; vertical-align: top; overflow-wrap: anywhere; }
.plan-table thead th { position: sticky; top: 0; background: #e9edf1; font-size: 11px;
  text-transform: uppercase; letter-spacing: .03em; color: #3a4756; line-height: 1.25;
  border-bottom: 2px solid #9aa6b3; overflow-wrap: normal; }
.plan-table tbody tr:nth-child(even) { background: #f8f9fb; }
.plan-table td.n { color: var(--muted); text-align: right; }
.plan-table .id { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace;
  font-size: 10.5px; }
.plan-table .sub, .plan-table .rel { display: block; color: var(--muted); }
.plan-table .sub { font-size: 10px; }
.badge { display: inline-block; padding: 1px 6px; border-radius: 10px; font-size: 11px;
  font-weight: 600; white-space: nowrap; border: 1px solid; }
.badge.goes { color: #7d2413; border-color: var(--goes); border-style: dashed;
  background: repeating-linear-gradient(45deg, #fbe4de 0 4px, #fff 4px 8px); }
.badge.due { color: #6a3f06; border-color: var(--due); border-style: dotted; background: #fdf3e1; }
.badge.kept { color: #23384f; border-color: var(--kept); background: #e7eef6; }
.esc { font-family: ui-monospace, "DejaVu Sans Mono", monospace; background: #fff3c4;
  border: 1px solid #e0c66b; border-radius: 3px; padding: 0 2px; font-size: .9em; }
.summary table.data { width: auto; min-width: 320px; }
.empty { color: var(--muted); font-style: italic; }
@media (max-width: 900px) { .charts { grid-template-columns: 1fr; }
  .cards { grid-template-columns: repeat(2, minmax(0, 1fr)); } }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  .charts { grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 10pt; }
  figure { padding: 6pt 8pt; }
  table.data th, table.data td { padding: 1px 4px; }
  .plan { break-before: page; }
  .plan-table { font-size: 8.5pt; }
  .plan-table thead { display: table-header-group; }
  .plan-table thead th { position: static; }
  .plan-table tr { break-inside: avoid; page-break-inside: avoid; }
  .banner, .card { break-inside: avoid; }
}
"""
