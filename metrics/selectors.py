"""Reads for metrics: series discovery, time-series windows and the detection input."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet

from metrics.models import POINT_TABLE, Series
from tenants.models import Tenant

AGGREGATES = {"avg": "avg(value)", "min": "min(value)", "max": "max(value)", "sum": "sum(value)", "count": "count(*)::float8"}


def series_list(
    *,
    tenant: Tenant,
    service: str | None = None,
    metric_name: str | None = None,
    resource_id: str | None = None,
    series_id: int | None = None,
) -> QuerySet[Series]:
    """The tenant's series matching every given filter, oldest first."""
    series = Series.objects.for_tenant(tenant)
    if service:
        series = series.filter(service=service)
    if metric_name:
        series = series.filter(metric_name=metric_name)
    if resource_id:
        series = series.filter(resource_id=resource_id)
    if series_id is not None:
        series = series.filter(id=series_id)
    return series.order_by("id")


def series_get(*, tenant: Tenant, series_id: int) -> Series | None:
    return Series.objects.for_tenant(tenant).filter(id=series_id).first()


@dataclass(frozen=True)
class SeriesStats:
    first_ts: datetime | None
    last_ts: datetime | None
    point_count: int


def series_stats(*, tenant: Tenant, series_ids: list[int]) -> dict[int, SeriesStats]:
    """First and last timestamp and point count of each series (index scans, one query)."""
    if not series_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.id,
                   (SELECT min(ts) FROM {POINT_TABLE} p WHERE p.tenant_id = %s AND p.series_id = s.id),
                   (SELECT max(ts) FROM {POINT_TABLE} p WHERE p.tenant_id = %s AND p.series_id = s.id),
                   (SELECT count(*) FROM {POINT_TABLE} p WHERE p.tenant_id = %s AND p.series_id = s.id)
            FROM unnest(%s::bigint[]) AS s(id)
            """,
            [tenant.id, tenant.id, tenant.id, list(series_ids)],
        )
        return {row[0]: SeriesStats(row[1], row[2], row[3]) for row in cursor.fetchall()}


def timeseries_read(
    *,
    tenant: Tenant,
    series_ids: list[int],
    start: datetime,
    end: datetime,
    step_seconds: int | None = None,
    agg: str = "avg",
    max_points: int = 100_000,
) -> dict[int, list[tuple[datetime, float]]]:
    """Points of each series in (start, end], raw or aggregated into `step_seconds` buckets."""
    result: dict[int, list[tuple[datetime, float]]] = {series_id: [] for series_id in series_ids}
    if not series_ids:
        return result
    with connection.cursor() as cursor:
        if step_seconds:
            # Buckets are aligned to the epoch, so the same step always gives the same buckets.
            cursor.execute(
                f"""
                SELECT series_id, date_bin(make_interval(secs => %s), ts, timestamptz 'epoch') AS bucket,
                       {AGGREGATES[agg]}
                FROM {POINT_TABLE}
                WHERE tenant_id = %s AND series_id = ANY(%s) AND ts > %s AND ts <= %s
                GROUP BY series_id, bucket ORDER BY series_id, bucket LIMIT %s
                """,
                [step_seconds, tenant.id, list(series_ids), start, end, max_points],
            )
        else:
            cursor.execute(
                f"""
                SELECT series_id, ts, value FROM {POINT_TABLE}
                WHERE tenant_id = %s AND series_id = ANY(%s) AND ts > %s AND ts <= %s
                ORDER BY series_id, ts LIMIT %s
                """,
                [tenant.id, list(series_ids), start, end, max_points],
            )
        for series_id, ts, value in cursor.fetchall():
            result[series_id].append((ts, value))
    return result


def points_after(
    *,
    tenant: Tenant,
    after_us: dict[int, int | None],
    until_us: dict[int, int] | None = None,
    limit_per_series: int | None = None,
):
    """Points of each series after its given time (µs since epoch, exclusive; None: all) and up to
    `until_us` (inclusive) when given, in (series, ts) order.

    One set-based query for the whole tenant; returns rows (series_id, ts_us, value).
    """
    if not after_us:
        return []
    series_ids = list(after_us)
    starts = [after_us[s] for s in series_ids]
    ends = [until_us.get(s) if until_us else None for s in series_ids]
    limit = f"LIMIT {int(limit_per_series)}" if limit_per_series else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.series_id, (extract(epoch FROM p.ts) * 1000000)::bigint, p.value
            FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS s(series_id, after_us, until_us)
            CROSS JOIN LATERAL (
                SELECT ts, value FROM {POINT_TABLE} p
                WHERE p.tenant_id = %s AND p.series_id = s.series_id
                  AND p.ts > COALESCE(timestamptz 'epoch' + s.after_us * interval '1 microsecond', '-infinity')
                  AND p.ts <= COALESCE(timestamptz 'epoch' + s.until_us * interval '1 microsecond', 'infinity')
                ORDER BY ts {limit}
            ) p
            ORDER BY s.series_id, p.ts
            """,
            [series_ids, starts, ends, tenant.id],
        )
        return cursor.fetchall()


def points_before(*, tenant: Tenant, before_us: dict[int, int], count: int):
    """The last `count` points of each series strictly before its given time, rows (series_id, ts_us, value)."""
    if not before_us:
        return []
    series_ids = list(before_us)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.series_id, p.ts_us, p.value
            FROM unnest(%s::bigint[], %s::bigint[]) AS s(series_id, before_us)
            CROSS JOIN LATERAL (
                SELECT (extract(epoch FROM ts) * 1000000)::bigint AS ts_us, value FROM {POINT_TABLE} p
                WHERE p.tenant_id = %s AND p.series_id = s.series_id
                  AND p.ts < timestamptz 'epoch' + s.before_us * interval '1 microsecond'
                ORDER BY ts DESC LIMIT %s
            ) p
            ORDER BY s.series_id, p.ts_us
            """,
            [series_ids, [before_us[s] for s in series_ids], tenant.id, count],
        )
        return cursor.fetchall()


def series_first_ts(*, tenant: Tenant, series_ids: list[int]) -> dict[int, int]:
    """The first point's time (µs) of each series that has points."""
    if not series_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.id, (SELECT (extract(epoch FROM min(ts)) * 1000000)::bigint FROM {POINT_TABLE} p
                          WHERE p.tenant_id = %s AND p.series_id = s.id)
            FROM unnest(%s::bigint[]) AS s(id)
            """,
            [tenant.id, list(series_ids)],
        )
        return {series_id: first for series_id, first in cursor.fetchall() if first is not None}


def series_newest_ts(*, tenant: Tenant, until_us: int | None = None) -> dict[int, int]:
    """The newest point's time (µs) of each of the tenant's series that has points (up to `until_us`)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.id, (SELECT (extract(epoch FROM max(p.ts)) * 1000000)::bigint FROM {POINT_TABLE} p
                          WHERE p.tenant_id = s.tenant_id AND p.series_id = s.id
                            AND p.ts <= COALESCE(timestamptz 'epoch' + %s * interval '1 microsecond', 'infinity'))
            FROM metrics_series s WHERE s.tenant_id = %s ORDER BY s.id
            """,
            [until_us, tenant.id],
        )
        return {series_id: newest for series_id, newest in cursor.fetchall() if newest is not None}


def points_page(*, tenant: Tenant, series_id: int, before: datetime, limit: int) -> list[tuple[datetime, float]]:
    """Up to `limit` points of one series strictly before `before`, newest first (keyset paging)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT ts, value FROM {POINT_TABLE} WHERE tenant_id = %s AND series_id = %s AND ts < %s "
            "ORDER BY ts DESC LIMIT %s",
            [tenant.id, series_id, before, limit],
        )
        return cursor.fetchall()
