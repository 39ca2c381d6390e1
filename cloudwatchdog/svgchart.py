"""A time-series chart drawn as SVG on the server: the line, the expected band, anomalies, shaded periods.

Plain Python, no Django and no JavaScript: the admin embeds the markup, a browser draws it, a test
reads it. What is drawn: the series (one path point per stored point, or per bucket with its
min/max envelope when the range holds too many), the expected line and the band between lower and
upper, anomalies as markers coloured by severity with the reason as their tooltip (`<title>`),
shaded periods (alarms, cooldowns, mutes), the alert threshold as a dotted line where recent alerts
raised it above the band, gaps left as gaps, and time and value ticks people can read.
Colours follow the page's light or dark scheme (`prefers-color-scheme`).

The root element carries the scales (`data-x0`, `data-x1` in µs, `data-y0`, `data-y1` in values,
and the plot box), so a reader can map any coordinate back to time and value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from html import escape

from cloudwatchdog.timeutil import EPOCH

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
.cwd-chart .alert{fill:none;stroke:#dc2626;stroke-opacity:.6;stroke-width:1;stroke-dasharray:1 3}
.cwd-chart .shade.alarm{fill:#dc2626;fill-opacity:.07}
.cwd-chart .shade{fill:#f59e0b;fill-opacity:.10}
.cwd-chart .shade.mute{fill:#6b7280;fill-opacity:.15}
.cwd-chart .anomaly{stroke:#fff;stroke-width:1}
.cwd-chart .anomaly.low{fill:#eab308}.cwd-chart .anomaly.medium{fill:#f97316}.cwd-chart .anomaly.high{fill:#dc2626}
.cwd-chart .anomaly.focus{stroke:#111827;stroke-width:2.5}
.cwd-chart .empty{font-size:13px}
@media (prefers-color-scheme: dark){.cwd-chart{color:#e5e7eb}.cwd-chart .line{stroke:#60a5fa}
.cwd-chart .band{fill:#6b7280;fill-opacity:.45}.cwd-chart .anomaly{stroke:#111827}
.cwd-chart .alert{stroke:#f87171;stroke-opacity:.9}}
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
    kind: str = "cooldown"  # or "mute", "alarm"


@dataclass
class Chart:
    start_us: int
    end_us: int
    points: list[tuple[int, float]] = field(default_factory=list)  # the line: raw points, or bucket averages
    envelope: list[tuple[int, float, float]] = field(default_factory=list)  # (ts, min, max) per bucket, if bucketed
    band: list[tuple[int, float, float, float]] = field(default_factory=list)  # (ts, expected, lower, upper)
    # The alert threshold where it is wider than the band (the gain after recent alerts): (ts, lower, upper).
    # Not part of the value range: far out, it is clipped rather than squashing the series.
    alert_band: list[tuple[int, float, float]] = field(default_factory=list)
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


@dataclass(frozen=True)
class _Frame:
    """Where the plot sits in the SVG and how times and values map onto it."""

    width: int
    height: int
    left: int
    top: int
    plot_w: int
    plot_h: int
    start_us: int
    end_us: int
    y0: float
    y1: float

    def x(self, ts_us: int) -> float:
        return self.left + (ts_us - self.start_us) / (self.end_us - self.start_us) * self.plot_w

    def y(self, value: float) -> float:
        return self.top + (self.y1 - value) / (self.y1 - self.y0) * self.plot_h

    def xy(self, ts_us: int, value: float) -> str:
        return f"{_fmt(self.x(ts_us))},{_fmt(self.y(value))}"


def _frame(chart: Chart, width: int, height: int) -> _Frame:
    """The value range covers everything drawn (5% padding); a flat series gets ±10% around its value."""
    left, right, top, bottom = 70, 14, 10, 26
    values = [v for _, v in chart.points]
    values += [x for _, lo, hi in chart.envelope for x in (lo, hi)]
    values += [x for _, e, lo, hi in chart.band for x in (e, lo, hi)]
    values += [m.value for m in chart.markers]
    values = [v for v in values if math.isfinite(v)]
    y0, y1 = (min(values), max(values)) if values else (0.0, 1.0)
    if y1 == y0:
        y0, y1 = y0 - (abs(y0) * 0.1 or 1), y1 + (abs(y1) * 0.1 or 1)
    pad = (y1 - y0) * 0.05
    return _Frame(width, height, left, top, width - left - right, height - top - bottom, chart.start_us,
                  max(chart.end_us, chart.start_us + 1), y0 - pad, y1 + pad)


def _axes(f: _Frame, unit: str) -> list[str]:
    parts = []
    value_ticks = nice_ticks(f.y0, f.y1)
    tick_step = value_ticks[1] - value_ticks[0] if len(value_ticks) > 1 else 1.0
    for tick in value_ticks:
        ty = f.y(tick)
        parts.append(f'<line class="grid" x1="{f.left}" x2="{f.left + f.plot_w}" y1="{_fmt(ty)}" y2="{_fmt(ty)}"/>'
                     f'<text x="{f.left - 6}" y="{_fmt(ty + 3.5)}" text-anchor="end">'
                     f"{escape(_value_label(tick, tick_step))}</text>")
    ticks, fmt = time_ticks(f.start_us, f.end_us)
    for tick in ticks:
        tx = _fmt(f.x(tick))
        label = (EPOCH + timedelta(microseconds=tick)).strftime(fmt)
        parts.append(f'<line class="grid" x1="{tx}" x2="{tx}" y1="{f.top}" y2="{f.top + f.plot_h}"/>'
                     f'<text x="{tx}" y="{f.height - 8}" text-anchor="middle">{label}</text>')
    bottom = f.top + f.plot_h
    parts.append(f'<line class="axis" x1="{f.left}" x2="{f.left + f.plot_w}" y1="{bottom}" y2="{bottom}"/>'
                 f'<line class="axis" x1="{f.left}" x2="{f.left}" y1="{f.top}" y2="{bottom}"/>')
    if unit:
        parts.append(f'<text x="4" y="{f.top + 8}">{escape(unit)}</text>')
    return parts


def _layers(f: _Frame, chart: Chart) -> list[str]:
    """Shaded periods, the band with its expected line, the envelope and the line, back to front."""
    parts = []
    for shade in chart.shades:
        sx, ex = max(f.x(shade.start_us), f.left), min(f.x(shade.end_us), f.left + f.plot_w)
        if ex > sx:
            parts.append(f'<rect class="shade {escape(shade.kind)}" x="{_fmt(sx)}" y="{f.top}" width="{_fmt(ex - sx)}" '
                         f'height="{f.plot_h}"><title>{escape(shade.title)}</title></rect>')
    for run in _segments([b for b in chart.band if math.isfinite(b[2]) and math.isfinite(b[3])], chart.gap_us):
        upper = " ".join(f.xy(t, hi) for t, _, _, hi in run)
        lower = " ".join(f.xy(t, lo) for t, _, lo, _ in reversed(run))
        parts.append(f'<polygon class="band" points="{upper} {lower}"/>')
        parts.append(f'<path class="expected" d="M{" L".join(f.xy(t, e) for t, e, _, _ in run)}"/>')
    for run in _segments([b for b in chart.alert_band if math.isfinite(b[1]) and math.isfinite(b[2])], chart.gap_us):
        for edge in (1, 2):
            parts.append(f'<path class="alert" d="M{" L".join(f.xy(b[0], b[edge]) for b in run)}">'
                         "<title>alert threshold (the band widened after recent alerts)</title></path>")
    for run in _segments(chart.envelope, chart.gap_us):
        upper = " ".join(f.xy(t, hi) for t, _, hi in run)
        lower = " ".join(f.xy(t, lo) for t, lo, _ in reversed(run))
        parts.append(f'<polygon class="envelope" points="{upper} {lower}"/>')
    if chart.points:
        path = " ".join("M" + " L".join(f.xy(t, v) for t, v in run) for run in _segments(chart.points, chart.gap_us))
        parts.append(f'<path class="line" d="{path}"/>')
    return parts


def _markers(f: _Frame, markers: list[Marker]) -> list[str]:
    parts = []
    for marker in markers:
        circle = (f'<circle class="anomaly {escape(marker.severity)}{" focus" if marker.focus else ""}" '
                  f'cx="{_fmt(f.x(marker.ts_us))}" cy="{_fmt(f.y(marker.value))}" r="{6 if marker.focus else 4.5}">'
                  f'<title>{escape(marker.title)}</title></circle>')
        parts.append(f'<a href="{escape(marker.href)}">{circle}</a>' if marker.href else circle)
    return parts


def render(chart: Chart, *, width: int = 1000, height: int = 300, chart_id: str = "c") -> str:
    """The chart as one <svg> element; `chart_id` keeps element ids unique when a page shows several."""
    f = _frame(chart, width, height)
    clip = f"plot-{escape(chart_id)}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cwd-chart" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" data-x0="{f.start_us}" data-x1="{f.end_us}" data-y0="{f.y0!r}" data-y1="{f.y1!r}" '
        f'data-plot="{f.left} {f.top} {f.plot_w} {f.plot_h}"><style>{_STYLE}</style>',
        f'<defs><clipPath id="{clip}"><rect x="{f.left}" y="{f.top}" width="{f.plot_w}" height="{f.plot_h}"/>'
        "</clipPath></defs>",
        *_axes(f, chart.unit),
        f'<g clip-path="url(#{clip})">', *_layers(f, chart), "</g>",
        *_markers(f, chart.markers),
    ]
    if not chart.points and not chart.envelope:
        parts.append(f'<text class="empty" x="{f.left + f.plot_w / 2}" y="{f.top + f.plot_h / 2}" '
                     f'text-anchor="middle">{escape(chart.empty_text)}</text>')
    parts.append("</svg>")
    return "".join(parts)
