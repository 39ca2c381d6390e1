"""The console's reads: a series' chart (points, band, anomalies, cooldowns, alarms, mutes) as SVG, a
tenant's overview and the what-if preview. Built from the selectors and the point store's face only,
for the console's pages."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import numpy as np
from django.utils import timezone

from anomalies import selectors
from anomalies.engine import DetectionConfig, SeriesState, detect, restart_at
from anomalies.models import Anomaly, Incident, Notification
from cloudwatchdog import svgchart, units
from cloudwatchdog.timeutil import format_utc, from_us, to_us
from metrics import selectors as metrics_selectors
from metrics import storage as metrics_storage
from metrics.models import Series
from tenants.models import Tenant

RANGES = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(days=1), "7d": timedelta(days=7),
          "30d": timedelta(days=30)}
MAX_ANOMALY_MARKERS = 500


@dataclass
class SeriesChart:
    fitted: str  # the drawing in each size, the page showing the one that fits (svgchart.render_fitted)
    start: datetime
    end: datetime
    step_seconds: int | None  # None: raw points
    points: int
    anomalies: list[Anomaly]
    band_drawn: bool
    newest: tuple | None = None  # (ts_us, value, expected, lower, upper) at the newest point drawn with its band


def series_chart(*, tenant: Tenant, series: Series, start: datetime, end: datetime,
                 anomaly_href: Callable[[Anomaly], str] = lambda anomaly: "", focus_ids: frozenset[int] = frozenset(),
                 chart_id: str = "c", markers: list[svgchart.Marker] | None = None,
                 bands: tuple[list, list] | None = None, now: datetime | None = None,
                 drawn: tuple | None = None) -> SeriesChart:
    """The chart of one of the tenant's series over (start, end]. The band is the engine's (the one
    GET /api/v1/baselines draws) wherever raw points are drawn, or `bands` (the band and alert tuples
    under other settings, per bucket where the points are); bucketed ranges show the min/max envelope.
    `drawn`: metrics.storage.chart_points' answer, when the caller has it already."""
    points, envelope, step = drawn or metrics_storage.chart_points(tenant=tenant, series=series, start=start, end=end)
    band, alert_band = [], []
    if points and bands is not None:
        band, alert_band = bands
    elif step is None and points:
        for item in selectors.baseline_band(tenant=tenant, series_id=series.id, start=start, end=end):
            if item["lower"] is not None and item["upper"] is not None:
                band.append((to_us(item["timestamp"]), item["expected"], item["lower"], item["upper"]))
                alert_band.append((to_us(item["timestamp"]), item["alert_lower"], item["alert_upper"]))
    if band:
        if all(a[1:] == b[2:] for a, b in zip(alert_band, band)):
            alert_band = []  # no alert in reach: the threshold is the band
    anomalies = selectors.anomalies_in_range(tenant=tenant, series_id=series.id, start=start, end=end,
                                             limit=MAX_ANOMALY_MARKERS)
    if markers is None:
        markers = [svgchart.Marker(to_us(a.ts), a.value, a.severity, f"{format_utc(a.ts, seconds=True)} {a.severity}: "
                                   f"{a.reason}", anomaly_href(a), a.id in focus_ids) for a in anomalies]
    shades = [svgchart.Shade(to_us(a.ts), to_us(a.ts) + int(a.suppression.get("cooldown_seconds", 0)) * 1_000_000,
                             f"cooldown after the anomaly at {format_utc(a.ts)}") for a in anomalies
              if a.suppression.get("cooldown_seconds") and not a.escalation]
    for incident in selectors.incidents_overlapping(tenant=tenant, series_id=series.id, start=start, end=end):
        until = incident.resolved_at or end
        shades.append(svgchart.Shade(to_us(incident.started_at), to_us(until), (
            f"in alarm from {format_utc(incident.started_at)} to {format_utc(incident.resolved_at)}"
            if incident.resolved_at else f"in alarm since {format_utc(incident.started_at)}, still")
            if incident.kind == "anomaly" else f"no data from {format_utc(incident.started_at)}", kind="alarm"))
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
        gap_us=gap_us, unit=units.value_label(kind=series.kind, ucum=series.unit),
        now_us=to_us(now or timezone.now()),
    )
    newest = (to_us(points[-1][0]), points[-1][1], *band[-1][1:]) if band and band[-1][0] == to_us(points[-1][0]) \
        else None
    return SeriesChart(svgchart.render_fitted(chart, chart_id=chart_id), start, end, step, len(points), anomalies,
                       bool(band), newest)


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
class Change:
    """One anomaly of the what-if table: raised only with the proposed settings (added), only with
    the current ones (removed), or with both (kept), matched by time."""
    kind: str
    ts: datetime
    value: float
    severity: str  # the proposed one; a removed anomaly's current one
    severity_now: str | None  # a kept anomaly's current severity, when the proposed one differs
    reason: str
    href: str  # the stored anomaly's page; an added one's, the series page around its time


@dataclass
class WhatIf:
    series: Series
    current: list  # findings under the tenant's current settings
    proposed: list  # findings under the proposed ones
    current_chart: str
    proposed_chart: str
    changes: list[Change]

    @property
    def counts(self) -> dict[str, int]:
        return {kind: sum(change.kind == kind for change in self.changes) for kind in ("added", "removed", "kept")}


def what_if(*, tenant: Tenant, series_list: list[Series], days: int, proposed_overrides: dict, now: datetime,
            anomaly_href: Callable[[Anomaly], str] = lambda anomaly: "",
            series_href: Callable[[Series, datetime], str] = lambda series, ts: "") -> list[WhatIf]:
    """Replay the last `days` days of each series in memory under its current settings and under the
    proposed tenant overrides, each series with its own rules on top either way (what saving them
    would make of it; ValueError if they are not valid): the findings, the band and the anomalies
    added, removed and kept.

    Nothing is written: both runs start from the state rebuilt at the window's first UTC day
    boundary with their own configuration, and evaluate the same stored points."""
    configs = (selectors.detection_configs_for(tenant=tenant, series=series_list),
               selectors.detection_configs_for(tenant=tenant, series=series_list, tenant_overrides=proposed_overrides))
    start, start_us = now - timedelta(days=days), restart_at(to_us(now - timedelta(days=days)))
    restart = {series.id: start_us for series in series_list}
    # One read of the points and one state rebuild per configuration for all the series together.
    states = [selectors.states_at(tenant=tenant, restart_us=restart, configs=by_series) for by_series in configs]
    ids, ts, values = metrics_storage.points_after(tenant=tenant, after_us={sid: start_us - 1 for sid in restart},
                                                   until_us={sid: to_us(now) for sid in restart})
    inputs = selectors.detection_input(tenant=tenant, points={sid: (ts[ids == sid], values[ids == sid]) for sid in restart},
                                       after_us={sid: start_us - 1 for sid in restart})
    percentages = metrics_selectors.percentage_series_ids(tenant=tenant, series_ids=list(restart))
    results = []
    for series in series_list:
        outcomes, charts = [], []
        # Both charts draw the same points (bucketed past 2,000, as the series page): read them once.
        drawn = metrics_storage.chart_points(tenant=tenant, series=series, start=start, end=now)
        for label, by_series, state_of in zip(("current", "proposed"), configs, states):
            state, config = state_of.get(series.id, SeriesState()), by_series[series.id]
            findings, _, _ = detect(state, *inputs[series.id], config)
            # The points from the UTC day boundary to `start` only warm the replay up: not shown.
            findings = [f for f in findings if f.ts_us > to_us(start)]
            band = selectors.band_along(state=state, ts=inputs[series.id][0], values=inputs[series.id][1],
                                        config=config, percentage=series.id in percentages)
            markers = [svgchart.Marker(f.ts_us, f.value, Anomaly.severity_for(f.score), f.reason) for f in findings]
            charts.append(series_chart(tenant=tenant, series=series, start=start, end=now, markers=markers,
                                       chart_id=f"{label}-{series.id}", drawn=drawn,
                                       bands=_band_tuples(inputs[series.id][0], band, after_us=to_us(start),
                                                          step_seconds=drawn[2])).fitted)
            outcomes.append(findings)
        stored = {to_us(a.ts): a for a in selectors.anomalies_in_range(tenant=tenant, series_id=series.id, start=start,
                                                                        end=now, limit=MAX_ANOMALY_MARKERS)}
        changes = _changes(*outcomes, stored=stored, anomaly_href=anomaly_href,
                           series_href=lambda ts, series=series: series_href(series, ts))
        results.append(WhatIf(series, outcomes[0], outcomes[1], charts[0], charts[1], changes))
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


def _band_tuples(ts: np.ndarray, band: tuple[np.ndarray, ...], after_us: int,
                 step_seconds: int | None = None) -> tuple[list, list]:
    """series_chart's band and alert tuples from band_along's arrays: the points after `after_us`
    where the band is known (in numpy: a dict per point cost half the preview's time). Where the
    chart draws buckets of `step_seconds`, one per bucket: the mean expected value and the widest
    band in it (no alert threshold)."""
    expected, lower, upper, _, alert_lower, alert_upper = band
    if not len(ts):
        return [], []
    drawn = (ts > after_us) & ~np.isnan(lower) & ~np.isnan(upper)
    if step_seconds is not None:
        if not drawn.any():
            return [], []
        step_us = step_seconds * 1_000_000
        buckets = ts[drawn] // step_us * step_us
        firsts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
        mean = np.add.reduceat(expected[drawn], firsts) / np.diff(np.r_[firsts, len(buckets)])
        return (list(zip(buckets[firsts].tolist(), mean.tolist(), np.minimum.reduceat(lower[drawn], firsts).tolist(),
                         np.maximum.reduceat(upper[drawn], firsts).tolist())), [])
    at = ts[drawn].tolist()
    return (list(zip(at, expected[drawn].tolist(), lower[drawn].tolist(), upper[drawn].tolist())),
            list(zip(at, alert_lower[drawn].tolist(), alert_upper[drawn].tolist())))


def _changes(current: list, proposed: list, *, stored: dict[int, Anomaly], anomaly_href: Callable[[Anomaly], str],
             series_href: Callable[[datetime], str]) -> list[Change]:
    """The anomalies added, removed and kept, in time order: findings matched by their timestamp."""
    now_at = {f.ts_us: f for f in current}
    proposed_at = {f.ts_us: f for f in proposed}
    changes = []
    for ts_us in sorted(now_at.keys() | proposed_at.keys()):
        finding = proposed_at.get(ts_us) or now_at[ts_us]
        kind = "kept" if ts_us in now_at and ts_us in proposed_at else "added" if ts_us in proposed_at else "removed"
        severity = Anomaly.severity_for(finding.score)
        severity_now = Anomaly.severity_for(now_at[ts_us].score) if kind == "kept" else None
        ts = from_us(ts_us)
        # An added anomaly has no page of its own: its series' page shows the time it would be raised.
        href = (anomaly_href(stored[ts_us]) if kind != "added" and ts_us in stored else
                series_href(ts) if kind == "added" else "")
        changes.append(Change(kind, ts, finding.value, severity, severity_now if severity_now != severity else None,
                              finding.reason, href))
    return changes


def settings_changed(*, current_overrides: dict | None, proposed_overrides: dict) -> dict:
    """The settings whose tenant-wide value the proposed overrides change, with their proposed values
    (a setting dropped from the overrides changes back to its default)."""
    try:
        current = DetectionConfig.from_overrides(current_overrides).as_dict()
    except ValueError:
        current = DetectionConfig().as_dict()  # stored overrides the engine no longer accepts run as defaults
    proposed = DetectionConfig.from_overrides(proposed_overrides).as_dict()
    return {name: value for name, value in proposed.items() if value != current[name]}


@dataclass
class SaveScope:
    """What each way of saving previewed settings reaches."""
    metric_names: list[str]  # the previewed series' metrics: a rule for each
    metric_series: int  # the tenant's series of those metrics
    tenant_series: int  # the tenant's series
    tenant_series_changed: int  # those a tenant-wide save changes: not shielded by rules setting it all


def save_scope(*, tenant: Tenant, series_list: list[Series], changed: dict) -> SaveScope:
    metric_names = sorted({series.metric_name for series in series_list})
    return SaveScope(
        metric_names=metric_names,
        metric_series=metrics_selectors.series_list(tenant=tenant).filter(metric_name__in=metric_names).count(),
        tenant_series=metrics_selectors.series_count(tenant=tenant),
        tenant_series_changed=selectors.series_count_changed_by(tenant=tenant, settings=changed),
    )
