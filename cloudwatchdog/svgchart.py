"""A time-series chart drawn as SVG on the server: the line, the expected band, anomalies, shaded periods.

Plain Python, no Django and no JavaScript: the admin embeds the markup, a browser draws it, a test
reads it. What is drawn: the series (one path point per stored point, or per bucket with its
min/max envelope when the range holds too many), the expected line and the band between lower and
upper, anomalies as markers coloured by severity with the reason as their tooltip (`<title>`),
shaded periods (cooldowns, mutes), gaps left as gaps, and time and value ticks people can read.
Colours follow the page's light or dark scheme (`prefers-color-scheme`).

The root element carries the scales (`data-x0`, `data-x1` in µs, `data-y0`, `data-y1` in values,
and the plot box), so a reader can map any coordinate back to time and value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html import escape

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TIME_STEPS = [s * 60 for s in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720)] + [d * 86400 for d in (1, 2, 7, 14, 30)]
_STYLE = """
.cwd-chart{font:11px system-ui,sans-serif;color:#1f2937}
.cwd-chart .axis{stroke:currentColor;stroke-opacity:.35}
.cwd-chart .grid{stroke:currentColor;stroke-opacity:.08}
.cwd-chart text{fill:currentColor;fill-opacity:.75}
.cwd-chart .line{fill:none;stroke:#2563eb;stroke-width:1.4}
.cwd-chart .envelope{fill:#2563eb;fill-opacity:.15;stroke:none}
.cwd-chart .band{fill:#9ca3af;fill-opacity:.35;stroke:none}
.cwd-chart .expected{fill:none;stroke:#6b7280;stroke-width:1;stroke-dasharray:4 3}
.cwd-chart .shade{fill:#f59e0b;fill-opacity:.10}
.cwd-chart .shade.mute{fill:#6b7280;fill-opacity:.15}
.cwd-chart .anomaly{stroke:#fff;stroke-width:1}
.cwd-chart .anomaly.low{fill:#eab308}.cwd-chart .anomaly.medium{fill:#f97316}.cwd-chart .anomaly.high{fill:#dc2626}
.cwd-chart .anomaly.focus{stroke:#111827;stroke-width:2.5}
.cwd-chart .empty{font-size:13px}
@media (prefers-color-scheme: dark){.cwd-chart{color:#e5e7eb}.cwd-chart .line{stroke:#60a5fa}
.cwd-chart .band{fill:#6b7280;fill-opacity:.45}.cwd-chart .anomaly{stroke:#111827}}
"""


@dataclass
class Marker:
    ts_us: int
    value: float
    severity: str
    title: str
    href: str = ""
    focus: bool = False


@dataclass
class Shade:
    start_us: int
    end_us: int
    title: str
    kind: str = "cooldown"  # or "mute"


@dataclass
class Chart:
    start_us: int
    end_us: int
    points: list[tuple[int, float]] = field(default_factory=list)  # the line: raw points, or bucket averages
    envelope: list[tuple[int, float, float]] = field(default_factory=list)  # (ts, min, max) per bucket, if bucketed
    band: list[tuple[int, float, float, float]] = field(default_factory=list)  # (ts, expected, lower, upper)
    markers: list[Marker] = field(default_factory=list)
    shades: list[Shade] = field(default_factory=list)
    gap_us: int | None = None  # a step longer than this between two points is drawn as a gap
    unit: str = ""
    empty_text: str = "No points in this range."


def _fmt(number: float) -> str:
    return f"{number:.1f}"


def _value_label(value: float, step: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e6 or magnitude < 1e-3:
        return f"{value:.3g}"
    decimals = max(0, -int(math.floor(math.log10(step)))) if step > 0 else 0
    return f"{value:,.{min(decimals, 6)}f}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values (1, 2, 2.5, 5 × 10^k apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    ticks, k = [], 0
    while first + k * step <= high + step * 1e-9 and k < 50:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks


def time_ticks(start_us: int, end_us: int, count: int = 7) -> tuple[list[int], str]:
    """Tick times aligned to round UTC steps, and the strftime format their labels use."""
    span = max((end_us - start_us) / 1e6, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= count), _TIME_STEPS[-1])
    step_us = step * 1_000_000
    first = -(-start_us // step_us) * step_us
    ticks = list(range(first, end_us + 1, step_us))
    if step >= 86400:
        fmt = "%m-%d"
    elif span > 86400:
        fmt = "%m-%d %H:%M"
    else:
        fmt = "%H:%M"
    return ticks, fmt


def _segments(items: list, gap_us: int | None) -> list[list]:
    """Runs of consecutive items (ts first) without a step longer than gap_us."""
    runs: list[list] = []
    previous = None
    for item in items:
        if previous is None or (gap_us is not None and item[0] - previous > gap_us):
            runs.append([])
        runs[-1].append(item)
        previous = item[0]
    return runs


def render(chart: Chart, *, width: int = 1000, height: int = 300, chart_id: str = "c") -> str:
    """The chart as one <svg> element; `chart_id` keeps element ids unique when a page shows several."""
    left, right, top, bottom = 70, 14, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, v in chart.points]
    values += [x for _, lo, hi in chart.envelope for x in (lo, hi)]
    values += [x for _, e, lo, hi in chart.band for x in (e, lo, hi) if math.isfinite(x)]
    values += [m.value for m in chart.markers]
    values = [v for v in values if math.isfinite(v)]
    start_us, end_us = chart.start_us, max(chart.end_us, chart.start_us + 1)
    if values:
        y0, y1 = min(values), max(values)
        if y1 == y0:
            y0, y1 = y0 - (abs(y0) * 0.1 or 1), y1 + (abs(y1) * 0.1 or 1)
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad
    else:
        y0, y1 = 0.0, 1.0

    def x(ts_us: int) -> float:
        return left + (ts_us - start_us) / (end_us - start_us) * plot_w

    def y(value: float) -> float:
        return top + (y1 - value) / (y1 - y0) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cwd-chart" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" data-x0="{start_us}" data-x1="{end_us}" data-y0="{y0!r}" data-y1="{y1!r}" '
        f'data-plot="{left} {top} {plot_w} {plot_h}"><style>{_STYLE}</style>',
        f'<defs><clipPath id="plot-{escape(chart_id)}"><rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}"/></clipPath></defs>',
    ]
    value_ticks = nice_ticks(y0, y1)
    tick_step = value_ticks[1] - value_ticks[0] if len(value_ticks) > 1 else 1.0
    for tick in value_ticks:
        ty = y(tick)
        parts.append(f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{_fmt(ty)}" y2="{_fmt(ty)}"/>'
                     f'<text x="{left - 6}" y="{_fmt(ty + 3.5)}" text-anchor="end">{escape(_value_label(tick, tick_step))}'
                     "</text>")
    ticks, fmt = time_ticks(start_us, end_us)
    for tick in ticks:
        tx = x(tick)
        label = (EPOCH + timedelta(microseconds=tick)).strftime(fmt)
        parts.append(f'<line class="grid" x1="{_fmt(tx)}" x2="{_fmt(tx)}" y1="{top}" y2="{top + plot_h}"/>'
                     f'<text x="{_fmt(tx)}" y="{height - 8}" text-anchor="middle">{label}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}"/>'
                 f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>')
    if chart.unit:
        parts.append(f'<text x="4" y="{top + 8}">{escape(chart.unit)}</text>')
    parts.append(f'<g clip-path="url(#plot-{escape(chart_id)})">')
    for shade in chart.shades:
        sx, ex = max(x(shade.start_us), left), min(x(shade.end_us), left + plot_w)
        if ex > sx:
            parts.append(f'<rect class="shade {escape(shade.kind)}" x="{_fmt(sx)}" y="{top}" width="{_fmt(ex - sx)}" '
                         f'height="{plot_h}"><title>{escape(shade.title)}</title></rect>')
    for run in _segments([b for b in chart.band if math.isfinite(b[2]) and math.isfinite(b[3])], chart.gap_us):
        upper = " ".join(f"{_fmt(x(t))},{_fmt(y(hi))}" for t, _, _, hi in run)
        lower = " ".join(f"{_fmt(x(t))},{_fmt(y(lo))}" for t, _, lo, _ in reversed(run))
        parts.append(f'<polygon class="band" points="{upper} {lower}"/>')
        expected = " L".join(f"{_fmt(x(t))},{_fmt(y(e))}" for t, e, _, _ in run)
        parts.append(f'<path class="expected" d="M{expected}"/>')
    for run in _segments(chart.envelope, chart.gap_us):
        upper = " ".join(f"{_fmt(x(t))},{_fmt(y(hi))}" for t, _, hi in run)
        lower = " ".join(f"{_fmt(x(t))},{_fmt(y(lo))}" for t, lo, _ in reversed(run))
        parts.append(f'<polygon class="envelope" points="{upper} {lower}"/>')
    if chart.points:
        path = " ".join(
            "M" + " L".join(f"{_fmt(x(t))},{_fmt(y(v))}" for t, v in run) for run in _segments(chart.points, chart.gap_us))
        parts.append(f'<path class="line" d="{path}"/>')
    parts.append("</g>")
    for marker in chart.markers:
        circle = (f'<circle class="anomaly {escape(marker.severity)}{" focus" if marker.focus else ""}" '
                  f'cx="{_fmt(x(marker.ts_us))}" cy="{_fmt(y(marker.value))}" r="{6 if marker.focus else 4.5}">'
                  f'<title>{escape(marker.title)}</title></circle>')
        parts.append(f'<a href="{escape(marker.href)}">{circle}</a>' if marker.href else circle)
    if not chart.points and not chart.envelope:
        parts.append(f'<text class="empty" x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle">'
                     f'{escape(chart.empty_text)}</text>')
    parts.append("</svg>")
    return "".join(parts)
