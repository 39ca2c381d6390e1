"""Reads for anomalies, baselines and detection runs."""
from __future__ import annotations

from datetime import datetime

import numpy as np
from django.db.models import QuerySet

from anomalies.engine import SeriesState, expected_band, restart_at
from anomalies.models import Anomaly, Baseline, DetectionRun
from anomalies.services import _to_us, detection_config_for
from metrics import selectors as metrics_selectors
from metrics.ingest import timestamp_from_us
from tenants.models import Tenant


def anomaly_list(
    *,
    tenant: Tenant,
    service: str | None = None,
    metric_name: str | None = None,
    resource_id: str | None = None,
    series_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    severity: str | None = None,
    status: str | None = None,
) -> QuerySet[Anomaly]:
    """The tenant's anomalies matching every given filter, newest first."""
    anomalies = Anomaly.objects.for_tenant(tenant).select_related("series")
    if service:
        anomalies = anomalies.filter(series__service=service)
    if metric_name:
        anomalies = anomalies.filter(series__metric_name=metric_name)
    if resource_id:
        anomalies = anomalies.filter(series__resource_id=resource_id)
    if series_id is not None:
        anomalies = anomalies.filter(series_id=series_id)
    if start:
        anomalies = anomalies.filter(ts__gt=start)
    if end:
        anomalies = anomalies.filter(ts__lte=end)
    if severity:
        anomalies = anomalies.filter(severity=severity)
    if status:
        anomalies = anomalies.filter(status=status)
    return anomalies.order_by("-ts", "-id")


def baseline_list(*, tenant: Tenant, series_id: int | None = None, status: str | None = None) -> QuerySet[Baseline]:
    baselines = Baseline.objects.for_tenant(tenant).select_related("series")
    if series_id is not None:
        baselines = baselines.filter(series_id=series_id)
    if status:
        baselines = baselines.filter(status=status)
    return baselines.order_by("series_id")


def detection_run_get(*, tenant: Tenant, run_id) -> DetectionRun | None:
    return DetectionRun.objects.for_tenant(tenant).filter(run_id=run_id).first()


def baseline_band(*, tenant: Tenant, series_id: int, start: datetime, end: datetime, max_points: int = 20_000):
    """The expected value and band at each stored point of one series in (start, end], for drawing.

    Computed by the same engine as detection, from the history before `start`, so it matches
    what detection compared each point with.
    """
    config = detection_config_for(tenant=tenant)
    # Baselines refresh at bucket boundaries, so replay from the boundary before `start`.
    start_us = restart_at(_to_us(start), config) - 1
    history = metrics_selectors.points_before(tenant=tenant, before_us={series_id: start_us + 1}, count=config.window_points)
    first = metrics_selectors.series_first_ts(tenant=tenant, series_ids=[series_id]).get(series_id)
    rows = metrics_selectors.points_after(tenant=tenant, after_us={series_id: start_us},
                                          until_us={series_id: _to_us(end)}, limit_per_series=max_points)
    state = SeriesState(
        first_ts_us=first,
        window_ts=np.array([r[1] for r in history], dtype=np.int64),
        window_values=np.array([r[2] for r in history], dtype=np.float64),
    )
    ts = np.array([r[1] for r in rows], dtype=np.int64)
    values = np.array([r[2] for r in rows], dtype=np.float64)
    expected, lower, upper, warm = expected_band(state, ts, values, config)
    band = [
        {
            "timestamp": timestamp_from_us(int(t)), "value": float(v),
            "expected": None if np.isnan(e) else float(e), "lower": None if np.isnan(lo) else float(lo),
            "upper": None if np.isnan(up) else float(up), "status": "ready" if w else "warming",
        }
        for t, v, e, lo, up, w in zip(ts, values, expected, lower, upper, warm)
    ]
    return [item for item in band if item["timestamp"] > start]
