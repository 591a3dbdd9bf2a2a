"""Pure presentation helpers: the SLA clock, ages, CSV export, server-rendered SVG charts."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable
from xml.sax.saxutils import escape

from stimmung.schemas.case import Case

CSV_COLUMNS = ["case_id", "queue", "priority", "state", "assignee", "brand", "topics", "sentiment", "language",
               "platform", "influence", "author_pseudonym", "contact_id", "mention_count", "title", "url",
               "created_at", "first_response_due", "first_response_at", "first_response_s", "resolved_at",
               "resolution_s", "sla_breached"]


@dataclass(frozen=True)
class SLAClock:
    status: str  # ok | warn | breached | met | late (answered after the target)
    label: str


def duration(seconds: float) -> str:
    """Short human duration: 45s, 12m, 3h 5m, 2d 4h."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def sla_clock(case: Case, now: datetime, warn_fraction: float = 0.75) -> SLAClock:
    """Time to first response against its target: green, amber past ``warn_fraction`` of the
    allowed time, red past it; once answered, whether it was in time."""
    due = case.first_response_due
    if case.first_response_at is not None:
        took = duration(case.first_response_s if case.first_response_s is not None
                        else (case.first_response_at - case.created_at).total_seconds())
        if case.first_response_at <= due:
            return SLAClock("met", f"answered in {took}")
        return SLAClock("late", f"answered late, in {took}")
    allowed = (due - case.created_at).total_seconds()
    used = (now - case.created_at).total_seconds()
    if now >= due:
        return SLAClock("breached", f"overdue {duration((now - due).total_seconds())}")
    left = duration((due - now).total_seconds())
    if allowed > 0 and used / allowed >= warn_fraction:
        return SLAClock("warn", f"{left} left")
    return SLAClock("ok", f"{left} left")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = ";".join(map(str, value))
    elif isinstance(value, datetime):
        value = value.isoformat()
    text = str(value)
    # Spreadsheets run a cell starting with = + - @ (or a tab/CR) as a formula: a customer's
    # post must not become one in the CRM import (CSV injection).
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text):
        text = "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def cases_csv(cases: Iterable[Case]) -> Iterable[str]:
    """CSV lines (header first), streamed: RFC 4180 quoting, CRLF line ends."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buf.getvalue()
    for case in cases:
        buf.seek(0)
        buf.truncate()
        writer.writerow([_cell(getattr(case, column)) for column in CSV_COLUMNS])
        yield buf.getvalue()


# --- charts -----------------------------------------------------------------------------------------
STATE_COLOURS = {"open": "#d9480f", "in_progress": "#1971c2", "done": "#2f9e44"}
SERIES_COLOURS = ["#1971c2", "#e8590c", "#2f9e44", "#9c36b5", "#c2255c", "#0c8599"]


def stacked_bars(title: str, rows: dict[str, dict[str, int]], keys: list[str], colours: dict[str, str],
                 width: int = 520, bar_h: int = 22) -> str:
    """Horizontal stacked bars: one row per label (e.g. queue), one segment per key (state)."""
    label_w, top = 110, 34
    height = top + max(1, len(rows)) * (bar_h + 8) + 28
    biggest = max([sum(v.values()) for v in rows.values()] or [0]) or 1
    scale = (width - label_w - 50) / biggest
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(title)}" class="chart">', f'<title>{escape(title)}</title>',
           f'<text x="0" y="16" class="chart-title">{escape(title)}</text>']
    for n, (label, values) in enumerate(sorted(rows.items())):
        y = top + n * (bar_h + 8)
        out.append(f'<text x="0" y="{y + bar_h - 6}">{escape(label)}</text>')
        x = float(label_w)
        for key in keys:
            count = values.get(key, 0)
            if count:
                w = count * scale
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colours[key]}">'
                           f'<title>{escape(label)} {escape(key)}: {count}</title></rect>')
                x += w
        out.append(f'<text x="{x + 6:.1f}" y="{y + bar_h - 6}">{sum(values.values())}</text>')
    legend_y = height - 8
    for n, key in enumerate(keys):
        out.append(f'<rect x="{label_w + n * 110}" y="{legend_y - 10}" width="10" height="10" fill="{colours[key]}"/>'
                   f'<text x="{label_w + n * 110 + 14}" y="{legend_y}">{escape(key.replace("_", " "))}</text>')
    out.append("</svg>")
    return "".join(out)


def line_chart(title: str, days: list[str], series: dict[str, list[float | None]], unit: str = "min",
               width: int = 520, height: int = 220) -> str:
    """Lines per series (e.g. team) over days; None leaves a gap."""
    left, right, top, bottom = 50, 10, 30, 40
    values = [v for vs in series.values() for v in vs if v is not None]
    peak = max(values or [0]) or 1
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(days) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + i * step, top + plot_h - v / peak * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(title)}" class="chart">', f'<title>{escape(title)}</title>',
           f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#999"/>',
           f'<text x="0" y="{top + 10}">{peak:.1f} {escape(unit)}</text>', f'<text x="0" y="{top + plot_h}">0</text>']
    for i, day in enumerate(days):
        if len(days) <= 8 or i % max(1, len(days) // 7) == 0:
            out.append(f'<text x="{left + i * step - 14:.1f}" y="{height - bottom + 16}">{escape(day[5:])}</text>')
    for n, (name, vs) in enumerate(sorted(series.items())):
        colour = SERIES_COLOURS[n % len(SERIES_COLOURS)]
        points = [xy(i, v) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                       + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>')
        for (x, y), v in zip(points, [v for v in vs if v is not None]):
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{escape(name)}: '
                       f'{v:.1f} {escape(unit)}</title></circle>')
        out.append(f'<rect x="{left + n * 100}" y="{height - 12}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{left + n * 100 + 14}" y="{height - 3}">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def enrichment_value(value: Any, name: str = "") -> str | None:
    """One enrichment field of a mention document for the case page, whatever shape the enricher
    gives it — a flag, a score, a label, or ``{label, score}`` / ``{value, score}`` — and None
    when it has nothing to show (older documents lack the field: no error, no line)."""
    if value is None or value == {} or value == []:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:.2f}"
    if isinstance(value, str):
        return value[:80]
    if isinstance(value, dict):
        label = value.get("label", value.get("value", value.get("is_complaint", value.get("relevant"))))
        score = value.get("score", value.get("probability", value.get("confidence")))
        parts = [enrichment_value(label) if label is not None and label != name else None,
                 f"{score:.2f}" if isinstance(score, (int, float)) and not isinstance(score, bool) else None]
        shown = " ".join(p for p in parts if p)
        return shown or None
    return None
