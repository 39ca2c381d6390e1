"""A time-series chart drawn as SVG on the server: the line, the expected band, anomalies, shaded periods.

Plain Python, no Django and no JavaScript: the admin embeds the markup, a browser draws it, a test
reads it. What is drawn: the series (one path point per stored point, or per bucket with its
min/max envelope when the range holds too many), the expected line and the band between lower and
upper, anomalies as markers coloured by severity with the reason as their tooltip (`<title>`),
shaded periods (alarms, cooldowns, mutes), the alert threshold as a dotted line where recent alerts
raised it above the band, gaps left as gaps, and time and value ticks people can read.
Colours follow the admin's theme toggle (`html[data-theme]`) and, on auto, `prefers-color-scheme`; the
chart comes in three sizes (`render_fitted`) so its text stays readable at any width; a line marks now,
and the time axis carries the date.

The root element carries the scales (`data-x0`, `data-x1` in µs, `data-y0`, `data-y1` in values,
and the plot box), so a reader can map any coordinate back to time and value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from html import escape

from cloudwatchdog.timeutil import EPOCH
from cloudwatchdog.units import number

_TIME_STEPS = [s * 60 for s in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720)] + [d * 86400 for d in (1, 2, 7, 14, 30)]
# Colours follow the admin's theme toggle (html[data-theme]), and the system's scheme when it is on auto;
# text takes the admin's own text colours, so it contrasts with the page it sits on.
_DARK_RULES = [".cwd-chart .line{stroke:#60a5fa}", ".cwd-chart .envelope{fill:#60a5fa}",
               ".cwd-chart .band{fill:#6b7280;fill-opacity:.45}", ".cwd-chart .anomaly{stroke:#111827}",
               ".cwd-chart .anomaly.focus{stroke:#f9fafb}", ".cwd-chart .alert{stroke:#f87171;stroke-opacity:.9}",
               ".cwd-chart line.now{stroke:#a78bfa}"]


def _dark(scope: str) -> str:
    return "".join(f"{scope} {rule}" for rule in _DARK_RULES)


_STYLE = """
.cwd-chart{font-family:system-ui,sans-serif;color:var(--body-fg,#1f2937)}
.cwd-chart .axis{stroke:currentColor;stroke-opacity:.35}
.cwd-chart .grid{stroke:currentColor;stroke-opacity:.08}
.cwd-chart text{fill:var(--body-quiet-color,#4b5563)}
.cwd-chart .line{fill:none;stroke:#2563eb;stroke-width:1.4}
.cwd-chart .envelope{fill:#2563eb;fill-opacity:.15;stroke:none}
.cwd-chart .band{fill:#9ca3af;fill-opacity:.35;stroke:none}
.cwd-chart .expected{fill:none;stroke:#6b7280;stroke-width:1;stroke-dasharray:4 3}
.cwd-chart .alert{fill:none;stroke:#dc2626;stroke-opacity:.6;stroke-width:1;stroke-dasharray:1 3}
.cwd-chart line.now{stroke:#7c3aed;stroke-width:1.2;stroke-dasharray:5 3}
.cwd-chart .shade.alarm{fill:#dc2626;fill-opacity:.07}
.cwd-chart .shade{fill:#f59e0b;fill-opacity:.10}
.cwd-chart .shade.mute{fill:#6b7280;fill-opacity:.15}
.cwd-chart .anomaly{stroke:#fff;stroke-width:1}
.cwd-chart .anomaly.low{fill:#eab308}.cwd-chart .anomaly.medium{fill:#f97316}.cwd-chart .anomaly.high{fill:#dc2626}
.cwd-chart .anomaly.focus{stroke:#111827;stroke-width:2.5}
.cwd-chart .unit{font-weight:600}
""" + _dark("html[data-theme=dark]") + \
    "@media (prefers-color-scheme: dark){" + _dark("html:not([data-theme=light])") + "}"


@dataclass(frozen=True)
class Size:
    """One layout of the chart: its drawing's width and height, its font size and how many ticks fit."""

    name: str
    width: int
    height: int
    font: float
    time_ticks: int
    value_ticks: int
    shown_below: float  # CSS px: this size is shown while the chart's box is narrower (see render_fitted)


# SVG text scales with the drawing, so no one drawing keeps it >= 10 px from a phone to a wide screen:
# each size is shown over a range of box widths where font × box / width stays >= 10 px
# (narrow from 300 px: 13.5 × 300 / 400 = 10.1; medium from 560: 10.4; wide from 900: 10.35).
NARROW = Size("narrow", 400, 280, 13.5, 4, 4, 560)
MEDIUM = Size("medium", 700, 300, 13, 5, 5, 900)
WIDE = Size("wide", 1000, 300, 11.5, 7, 5, math.inf)
SIZES = (WIDE, MEDIUM, NARROW)


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
    unit: str = ""  # as people write it (°C, B/s, requests): cloudwatchdog.units.unit_label
    now_us: int | None = None  # drawn as a line when it falls in the range
    empty_text: str = "No points in this range."


def _fmt(coordinate: float) -> str:
    return f"{coordinate:.1f}"


def _value_labels(ticks: list[float]) -> list[str]:
    """Tick values to 4 significant digits, as values are written everywhere; more only where 4 would
    misstate a tick (10,000.5 read as 10,000 beside 10,001)."""
    step = min((b - a for a, b in zip(ticks, ticks[1:])), default=0.0)
    for digits in range(4, 13):
        labels = [number(tick, digits) for tick in ticks]
        if all(abs(_read(label) - tick) <= step / 10 for label, tick in zip(labels, ticks)):
            return labels
    return labels


def _read(label: str) -> float:
    return float(label.replace(",", ""))


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
    font: float
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


def _value_range(chart: Chart) -> tuple[float, float]:
    """The value range covers everything drawn (5% padding); a flat series gets ±10% around its value."""
    values = [v for _, v in chart.points]
    values += [x for _, lo, hi in chart.envelope for x in (lo, hi)]
    values += [x for _, e, lo, hi in chart.band for x in (e, lo, hi)]
    values += [m.value for m in chart.markers]
    values = [v for v in values if math.isfinite(v)]
    y0, y1 = (min(values), max(values)) if values else (0.0, 1.0)
    if y1 == y0:
        y0, y1 = y0 - (abs(y0) * 0.1 or 1), y1 + (abs(y1) * 0.1 or 1)
    pad = (y1 - y0) * 0.05
    return y0 - pad, y1 + pad


def _text_width(text: str, font: float) -> float:
    return len(text) * font * 0.6  # about a digit's advance in system-ui: enough to keep labels apart


def _frame(chart: Chart, size: Size) -> tuple[_Frame, list[tuple[float, str]]]:
    """Where the plot sits (the left margin fits the value labels, the top the unit, the bottom two rows
    of time labels), and the value ticks with their labels."""
    y0, y1 = _value_range(chart)
    ticks = nice_ticks(y0, y1, size.value_ticks)
    labels = _value_labels(ticks)
    font = size.font
    left = int(max([_text_width(label, font) for label in labels] + [2 * font]) + font)
    top, bottom, right = int(font * 1.8), int(font * 2.9), int(font)
    frame = _Frame(size.width, size.height, font, left, top, size.width - left - right, size.height - top - bottom,
                   chart.start_us, max(chart.end_us, chart.start_us + 1), y0, y1)
    return frame, list(zip(ticks, labels))


def _time_axis(f: _Frame, count: int) -> list[str]:
    """Tick times under the plot and, below them, the date: under the first tick and wherever the day
    changes (the year, where the ticks are days already), each label kept clear of the one before."""
    ticks, fmt = time_ticks(f.start_us, f.end_us, count)
    date_fmt = "%Y" if "%d" in fmt else "%Y-%m-%d"
    bottom = f.top + f.plot_h
    parts, last_date, date_right = [], None, -math.inf
    for tick in ticks or [f.start_us]:
        tx = f.x(tick)
        moment = EPOCH + timedelta(microseconds=tick)
        if ticks:
            parts.append(f'<line class="grid" x1="{_fmt(tx)}" x2="{_fmt(tx)}" y1="{f.top}" y2="{bottom}"/>'
                         + _label(f, tx, bottom + f.font * 1.2, moment.strftime(fmt)))
        date = moment.strftime(date_fmt)
        half = _text_width(date, f.font) / 2
        if date != last_date and tx - half > date_right + f.font:
            parts.append(_label(f, tx, bottom + f.font * 2.5, date, "date"))
            last_date, date_right = date, tx + half
    return parts


def _label(f: _Frame, x: float, y: float, text: str, css: str = "") -> str:
    """A label centred on x, moved inside the drawing where it would stick out of an edge."""
    half = _text_width(text, f.font) / 2
    x = min(max(x, half + 2), f.width - half - 2)
    css_class = f' class="{css}"' if css else ""
    return f'<text{css_class} x="{_fmt(x)}" y="{_fmt(y)}" text-anchor="middle">{escape(text)}</text>'


def _axes(f: _Frame, value_ticks: list[tuple[float, str]], unit: str, count: int) -> list[str]:
    parts = []
    for tick, label in value_ticks:
        ty = f.y(tick)
        parts.append(f'<line class="grid" x1="{f.left}" x2="{f.left + f.plot_w}" y1="{_fmt(ty)}" y2="{_fmt(ty)}"/>'
                     f'<text x="{_fmt(f.left - f.font * 0.5)}" y="{_fmt(ty + f.font * 0.35)}" text-anchor="end">'
                     f"{escape(label)}</text>")
    parts += _time_axis(f, count)
    bottom = f.top + f.plot_h
    parts.append(f'<line class="axis" x1="{f.left}" x2="{f.left + f.plot_w}" y1="{bottom}" y2="{bottom}"/>'
                 f'<line class="axis" x1="{f.left}" x2="{f.left}" y1="{f.top}" y2="{bottom}"/>')
    if unit:
        parts.append(f'<text class="unit" x="2" y="{_fmt(f.font)}">{escape(unit)}</text>')
    return parts


def _now(f: _Frame, now_us: int | None) -> list[str]:
    """The present as a line, so a range that reaches past it shows where the data must stop."""
    if now_us is None or not f.start_us <= now_us <= f.end_us:
        return []
    nx = f.x(now_us)
    return [f'<line class="now" x1="{_fmt(nx)}" x2="{_fmt(nx)}" y1="{f.top}" y2="{f.top + f.plot_h}"/>',
            f'<text class="now" x="{_fmt(nx - f.font * 0.3)}" y="{_fmt(f.top - f.font * 0.4)}" text-anchor="end">'
            "now</text>"]


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
        radius = f.font * (0.52 if marker.focus else 0.4)
        circle = (f'<circle class="anomaly {escape(marker.severity)}{" focus" if marker.focus else ""}" '
                  f'cx="{_fmt(f.x(marker.ts_us))}" cy="{_fmt(f.y(marker.value))}" r="{_fmt(radius)}">'
                  f'<title>{escape(marker.title)}</title></circle>')
        parts.append(f'<a href="{escape(marker.href)}">{circle}</a>' if marker.href else circle)
    return parts


def render(chart: Chart, *, size: Size = WIDE, chart_id: str = "c") -> str:
    """The chart as one <svg> element; `chart_id` keeps element ids unique when a page shows several."""
    f, value_ticks = _frame(chart, size)
    clip = f"plot-{escape(chart_id)}-{size.name}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cwd-chart" viewBox="0 0 {f.width} {f.height}" width="100%" '
        f'role="img" data-size="{size.name}" style="font-size:{size.font}px" data-x0="{f.start_us}" '
        f'data-x1="{f.end_us}" data-y0="{f.y0!r}" data-y1="{f.y1!r}" data-plot="{f.left} {f.top} {f.plot_w} {f.plot_h}">'
        f"<style>{_STYLE}</style>",
        f'<defs><clipPath id="{clip}"><rect x="{f.left}" y="{f.top}" width="{f.plot_w}" height="{f.plot_h}"/>'
        "</clipPath></defs>",
        *_axes(f, value_ticks, chart.unit, size.time_ticks),
        f'<g clip-path="url(#{clip})">', *_layers(f, chart), "</g>",
        *_now(f, chart.now_us),
        *_markers(f, chart.markers),
    ]
    if not chart.points and not chart.envelope:
        parts.append(f'<text class="empty" x="{_fmt(f.left + f.plot_w / 2)}" y="{_fmt(f.top + f.plot_h / 2)}" '
                     f'text-anchor="middle">{escape(chart.empty_text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_fitted(chart: Chart, *, chart_id: str = "c") -> str:
    """The chart in each of SIZES, of which the page shows the one that fits the box it is in (a CSS
    container query), so its text stays >= 10 px from a 390 px phone to a wide screen."""
    queries, lower = [], 0.0
    for size in reversed(SIZES):
        upper = "" if math.isinf(size.shown_below) else f" and (width < {size.shown_below:g}px)"
        queries.append(f"@container (width >= {lower:g}px){upper}{{.cwd-fit>svg[data-size={size.name}]{{display:block}}}}")
        lower = size.shown_below
    style = ".cwd-fit{container-type:inline-size}.cwd-fit>svg{display:none}" + "".join(queries)
    return (f'<div class="cwd-fit"><style>{style}</style>'
            + "".join(render(chart, size=size, chart_id=chart_id) for size in SIZES) + "</div>")
