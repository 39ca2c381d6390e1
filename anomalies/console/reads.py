"""The console's reads: a series' chart (points, band, anomalies, cooldowns, alarms, mutes) as SVG, a
tenant's overview and the what-if preview. Built from the selectors and the point store's face only,
for the console's pages."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from anomalies import selectors
from anomalies.engine import SeriesState, detect, restart_at
from anomalies.models import Anomaly, Incident, Notification
from cloudwatchdog import svgchart
from cloudwatchdog.timeutil import format_iso, to_us
from metrics import selectors as metrics_selectors
from metrics import storage as metrics_storage
from metrics.models import Series
from tenants.models import Tenant

RANGES = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(days=1), "7d": timedelta(days=7),
          "30d": timedelta(days=30)}
MAX_ANOMALY_MARKERS = 500


@dataclass
class SeriesChart:
    svg: str
    start: datetime
    end: datetime
    step_seconds: int | None  # None: raw points
    points: int
    anomalies: list[Anomaly]
    band_drawn: bool


def series_chart(*, tenant: Tenant, series: Series, start: datetime, end: datetime,
                 anomaly_href: Callable[[Anomaly], str] = lambda anomaly: "", focus_ids: frozenset[int] = frozenset(),
                 chart_id: str = "c", markers: list[svgchart.Marker] | None = None) -> SeriesChart:
    """The chart of one of the tenant's series over (start, end]. The band is the engine's (the one
    GET /api/v1/baselines draws) wherever raw points are drawn; bucketed ranges show the min/max envelope."""
    points, envelope, step = metrics_storage.chart_points(tenant=tenant, series=series, start=start, end=end)
    band, alert_band = [], []
    if step is None and points:
        for item in selectors.baseline_band(tenant=tenant, series_id=series.id, start=start, end=end):
            if item["lower"] is not None and item["upper"] is not None:
                band.append((to_us(item["timestamp"]), item["expected"], item["lower"], item["upper"]))
                alert_band.append((to_us(item["timestamp"]), item["alert_lower"], item["alert_upper"]))
        if all(a[1:] == b[2:] for a, b in zip(alert_band, band)):
            alert_band = []  # no alert in reach: the threshold is the band
    anomalies = selectors.anomalies_in_range(tenant=tenant, series_id=series.id, start=start, end=end,
                                             limit=MAX_ANOMALY_MARKERS)
    if markers is None:
        markers = [svgchart.Marker(to_us(a.ts), a.value, a.severity, f"{format_iso(a.ts)} {a.severity}: {a.reason}",
                                   anomaly_href(a), a.id in focus_ids) for a in anomalies]
    shades = [svgchart.Shade(to_us(a.ts), to_us(a.ts) + int(a.suppression.get("cooldown_seconds", 0)) * 1_000_000,
                             f"cooldown after the anomaly at {format_iso(a.ts)}") for a in anomalies
              if a.suppression.get("cooldown_seconds") and not a.escalation]
    for incident in selectors.incidents_overlapping(tenant=tenant, series_id=series.id, start=start, end=end):
        until = incident.resolved_at or end
        shades.append(svgchart.Shade(to_us(incident.started_at), to_us(until), (
            f"in alarm from {format_iso(incident.started_at)} to {format_iso(incident.resolved_at)}"
            if incident.resolved_at else f"in alarm since {format_iso(incident.started_at)}, still")
            if incident.kind == "anomaly" else f"no data from {format_iso(incident.started_at)}", kind="alarm"))
    for start_us, end_us in selectors.mute_windows(tenant=tenant, series_ids=[series.id]).get(series.id, []):
        shades.append(svgchart.Shade(start_us, end_us, "muted", kind="mute"))
    if step is not None:
        gap_us = int(step * 1.5e6)
    elif len(points) > 2:
        steps = sorted(to_us(b[0]) - to_us(a[0]) for a, b in zip(points, points[1:]))
        gap_us = max(steps[len(steps) // 2] * 3, 1)
    else:
        gap_us = None
    chart = svgchart.Chart(
        start_us=to_us(start), end_us=to_us(end), points=[(to_us(ts), v) for ts, v in points],
        envelope=[(to_us(ts), lo, hi) for ts, lo, hi in envelope], band=band, alert_band=alert_band, markers=markers,
        shades=shades,
        gap_us=gap_us, unit=("per second" if series.kind == "counter" else series.unit),
    )
    return SeriesChart(svgchart.render(chart, chart_id=chart_id), start, end, step, len(points), anomalies, bool(band))


@dataclass
class Overview:
    series_count: int
    points_per_day: list[tuple[str, int]]
    rejected: list[tuple[str, str, int]]  # (protocol, reason, count) over 7 days
    anomalies_24h: dict
    anomalies_7d: dict
    runs: list
    incidents_open: dict  # peak severity -> {open, acknowledged}: what is on fire now
    silences_active: int
    detection: selectors.DetectionLag


def tenant_overview(*, tenant: Tenant, now: datetime) -> Overview:
    return Overview(
        series_count=metrics_selectors.series_count(tenant=tenant),
        points_per_day=metrics_storage.points_per_day(tenant=tenant, days=7, now=now),
        rejected=metrics_selectors.rejections_since(tenant=tenant, since=now - timedelta(days=7)),
        anomalies_24h=selectors.anomaly_counts(tenant=tenant, since=now - timedelta(days=1)),
        anomalies_7d=selectors.anomaly_counts(tenant=tenant, since=now - timedelta(days=7)),
        runs=selectors.detection_runs_recent(tenant=tenant, limit=10),
        incidents_open=selectors.incidents_open_counts(tenant=tenant),
        silences_active=selectors.silences_active_count(tenant=tenant, now=now),
        detection=selectors.detection_lag(tenant=tenant),
    )


@dataclass
class WhatIf:
    series: Series
    current: list  # findings under the tenant's current settings
    proposed: list  # findings under the proposed ones
    current_chart: str
    proposed_chart: str


def what_if(*, tenant: Tenant, series_list: list[Series], days: int, proposed_overrides: dict, now: datetime,
            ) -> list[WhatIf]:
    """Replay the last `days` days of each series in memory under its current settings and under the
    proposed tenant overrides, each series with its own rules on top either way (what saving them
    would make of it; ValueError if they are not valid).

    Nothing is written: both runs start from the state rebuilt at the window's first UTC day
    boundary with their own configuration, and evaluate the same stored points."""
    current = selectors.detection_configs_for(tenant=tenant, series=series_list)
    proposed = selectors.detection_configs_for(tenant=tenant, series=series_list, tenant_overrides=proposed_overrides)
    start_us = restart_at(to_us(now - timedelta(days=days)))
    end = now
    results = []
    for series in series_list:
        outcomes = []
        for config in (current[series.id], proposed[series.id]):
            state = selectors.states_at(tenant=tenant, restart_us={series.id: start_us}, configs={series.id: config}).get(
                series.id, SeriesState())
            _, ts, values = metrics_storage.points_after(tenant=tenant, after_us={series.id: start_us - 1},
                                                         until_us={series.id: to_us(end)})
            ts, values = selectors.detection_input(tenant=tenant, points={series.id: (ts, values)},
                                                   after_us={series.id: start_us - 1})[series.id]
            findings, _, _ = detect(state, ts, values, config)
            outcomes.append(findings)
        charts = []
        for label, findings in zip(("current", "proposed"), outcomes):
            markers = [svgchart.Marker(f.ts_us, f.value, Anomaly.severity_for(f.score), f.reason) for f in findings]
            charts.append(series_chart(tenant=tenant, series=series, start=now - timedelta(days=days), end=end,
                                       markers=markers, chart_id=f"{label}-{series.id}").svg)
        results.append(WhatIf(series, outcomes[0], outcomes[1], charts[0], charts[1]))
    return results


@dataclass
class TimelineEntry:
    at: datetime
    kind: str  # opened, anomaly, escalation, message, attempt, status, resolved
    text: str
    href: str = ""
    failed: bool = False


def incident_timeline(*, tenant: Tenant, incident: Incident, anomalies: list[Anomaly],
                      anomaly_href: Callable[[Anomaly], str],
                      notification_href: Callable[[Notification], str]) -> list[TimelineEntry]:
    """What happened to an incident, oldest first: its anomalies and escalations, every message about it
    and each attempt to deliver one (channel, event, result, error), and every change of its status with
    who made it and their note."""
    entries = [TimelineEntry(incident.started_at, "opened", "The alarm began." if incident.kind == Incident.KIND_ANOMALY
                             else f"The series went silent. {incident.reason}")]
    for anomaly in anomalies:
        kind = "escalation" if anomaly.escalation else "anomaly"
        entries.append(TimelineEntry(anomaly.ts, kind, f"{anomaly.severity} {kind}: {anomaly.reason}",
                                     anomaly_href(anomaly)))
    for notification in selectors.incident_notifications(tenant=tenant, incident=incident):
        channel = f"{notification.channel.name} ({notification.channel.kind})"
        queued = {"silenced": "held back by a silence", "pending": "waiting to be sent",
                  "gave_up": "given up", "delivered": "queued"}[notification.status]
        entries.append(TimelineEntry(notification.created_at, "message",
                                     f"incident.{notification.event} to {channel}: {queued}.",
                                     notification_href(notification)))
        for number, attempt in enumerate(notification.attempts_logged, 1):
            answer = f"HTTP {attempt.status_code}" if attempt.status_code else "no answer"
            result = f"failed: {attempt.error[:300]}" if attempt.error else "delivered"
            entries.append(TimelineEntry(attempt.at, "attempt", (
                f"incident.{notification.event} to {channel}, attempt {number}: {result} ({answer}, "
                f"{attempt.latency_ms} ms)."), notification_href(notification), failed=bool(attempt.error)))
    for event in selectors.incident_events(tenant=tenant, incident_id=incident.id):
        note = f" “{event.note}”" if event.note else ""
        entries.append(TimelineEntry(event.at, "status",
                                     f"{event.from_status} → {event.to_status} by {event.actor}.{note}"))
    if incident.resolved_at is not None:
        entries.append(TimelineEntry(incident.resolved_at, "resolved", "The alarm ended: the series was back inside "
                                     "its band for the recovery time." if incident.kind == Incident.KIND_ANOMALY
                                     else "The series reported again."))
    order = {"opened": 0, "anomaly": 1, "escalation": 1, "resolved": 2, "message": 3, "attempt": 4, "status": 5}
    return sorted(entries, key=lambda entry: (entry.at, order[entry.kind]))
