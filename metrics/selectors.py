"""Reads for metrics: series discovery, time-series windows and the detection input."""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db import connection
from django.db.models import QuerySet

from cloudwatchdog import pgcopy
from cloudwatchdog.timeutil import floor
from metrics.models import INGEST_LOG_TABLE, POINT_TABLE, ROLLUP_1H_TABLE, SERIES_TABLE, IngestRejection, Series
from metrics.rollups import rollup_for_step
from tenants.models import TENANT_TABLE, Tenant

AGGREGATES = ("avg", "min", "max", "sum", "count")


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


def series_field_values(*, tenants: QuerySet[Tenant], field: str, limit: int = 200) -> list[str]:
    """The distinct values of a series field (service or metric_name) among these tenants' series,
    sorted, at most `limit` (the admin's filters list them)."""
    if field not in ("service", "metric_name"):
        raise ValueError(f"not a filterable series field: {field}")
    return list(Series.objects.for_tenants(tenants).order_by(field).values_list(field, flat=True)
                .distinct()[:limit])


def series_get(*, tenant: Tenant, series_id: int) -> Series | None:
    return Series.objects.for_tenant(tenant).filter(id=series_id).first()


@dataclass(frozen=True)
class SeriesStats:
    first_ts: datetime | None
    last_ts: datetime | None
    point_count: int


def series_stats(*, tenant: Tenant, series_ids: list[int]) -> dict[int, SeriesStats]:
    """First and last timestamp and point count of each series, in one query of index lookups.

    The count adds the hourly rollups before the newest rolled-up hour to the raw points from that
    hour on, so it costs a few rows per series whatever its size; only late points into older
    hours wait for the next rollup refresh (a minute).
    """
    if not series_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.id,
                   (SELECT min(ts) FROM {POINT_TABLE} p WHERE p.tenant_id = %(tenant)s AND p.series_id = s.id),
                   (SELECT max(ts) FROM {POINT_TABLE} p WHERE p.tenant_id = %(tenant)s AND p.series_id = s.id),
                   r.before_newest_hour + (SELECT count(*) FROM {POINT_TABLE} p
                                           WHERE p.tenant_id = %(tenant)s AND p.series_id = s.id
                                             AND p.ts >= COALESCE(r.newest_hour, '-infinity'))
            FROM unnest(%(series)s::bigint[]) AS s(id)
            CROSS JOIN LATERAL (
                SELECT COALESCE(sum(count) FILTER (WHERE bucket < newest.hour), 0) AS before_newest_hour,
                       newest.hour AS newest_hour
                FROM (SELECT max(bucket) AS hour FROM {ROLLUP_1H_TABLE}
                      WHERE tenant_id = %(tenant)s AND series_id = s.id) newest
                LEFT JOIN {ROLLUP_1H_TABLE} h ON h.tenant_id = %(tenant)s AND h.series_id = s.id
                GROUP BY newest.hour
            ) r
            """,
            {"tenant": tenant.id, "series": list(series_ids)},
        )
        return {row[0]: SeriesStats(row[1], row[2], int(row[3])) for row in cursor.fetchall()}


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
    """Points of each series in (start, end], raw or aggregated into `step_seconds` buckets.

    Buckets are aligned to the epoch. A step that is a multiple of a rollup's resolution reads
    whole rollup buckets and only the edges of the window (and any range ingest touched since
    the last rollup refresh) from raw points; the answer is the same as from raw points alone.
    """
    result: dict[int, list[tuple[datetime, float]]] = {series_id: [] for series_id in series_ids}
    if not series_ids:
        return result
    with connection.cursor() as cursor:
        if step_seconds:
            _aggregated_read(cursor, tenant=tenant, series_ids=list(series_ids), start=start, end=end,
                             step_seconds=step_seconds, agg=agg, max_points=max_points)
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


_COMBINE = {"avg": "sum(s) / sum(c)", "min": "min(mn)", "max": "max(mx)", "sum": "sum(s)", "count": "sum(c)::float8",
            "envelope": "sum(s) / sum(c), min(mn), max(mx)"}  # envelope: charts only, three values a bucket


def _aggregated_read(cursor, *, tenant, series_ids, start, end, step_seconds, agg, max_points) -> None:
    rollup = rollup_for_step(step_seconds)
    rollup_from = rollup_to = None
    if rollup is not None:
        table, seconds = rollup
        # Whole rollup buckets strictly inside (start, end]; ranges not yet refreshed read raw.
        rollup_from = floor(start, seconds) + timedelta(seconds=seconds)
        rollup_to = floor(end, seconds)
        cursor.execute(f"SELECT min(min_ts), max(max_ts) FROM {INGEST_LOG_TABLE} WHERE tenant_id = %s", [tenant.id])
        dirty_low, dirty_high = cursor.fetchone()
        if dirty_low is not None and dirty_high >= rollup_from and dirty_low < rollup_to:
            # Keep the clean part before the dirty range; the rest comes from raw points.
            rollup_to = min(rollup_to, floor(dirty_low, seconds))
        if rollup_to <= rollup_from:
            rollup = None
    step = f"make_interval(secs => {int(step_seconds)})"
    raw_parts = f"""
        SELECT series_id, date_bin({step}, ts, timestamptz 'epoch') AS b,
               count(*)::float8 AS c, sum(value) AS s, min(value) AS mn, max(value) AS mx
        FROM {POINT_TABLE}
        WHERE tenant_id = %(tenant)s AND series_id = ANY(%(series)s) AND ts > %(start)s AND ts <= %(end)s
          {"AND NOT (ts >= %(rollup_from)s AND ts < %(rollup_to)s)" if rollup else ""}
        GROUP BY 1, 2
    """
    rollup_parts = ""
    if rollup:
        rollup_parts = f"""
        UNION ALL
        SELECT series_id, date_bin({step}, bucket, timestamptz 'epoch'), sum(count)::float8, sum(sum), min(min), max(max)
        FROM {rollup[0]}
        WHERE tenant_id = %(tenant)s AND series_id = ANY(%(series)s) AND bucket >= %(rollup_from)s AND bucket < %(rollup_to)s
        GROUP BY 1, 2
        """
    cursor.execute(
        f"""
        SELECT series_id, b, {_COMBINE[agg]} FROM ({raw_parts} {rollup_parts}) parts
        GROUP BY series_id, b ORDER BY series_id, b LIMIT %(limit)s
        """,
        {"tenant": tenant.id, "series": series_ids, "start": start, "end": end, "rollup_from": rollup_from,
         "rollup_to": rollup_to, "limit": max_points},
    )


COUNTER_FUNCTIONS = ("rate", "increase")


def counter_read(*, tenant: Tenant, series_ids: list[int], start: datetime, end: datetime, fn: str,
                 step_seconds: int | None = None, max_points: int = 100_000) -> dict[int, list[tuple[datetime, float]]]:
    """Counters in (start, end] by their increase (fn=increase) or increase per second (fn=rate).

    Raw: one value per stored point, against the point before it (the last one before `start`
    included). With a step: the increases of the points in each epoch-aligned bucket summed, and
    for a rate divided by the step's seconds. A drop counts as a restart from zero, as in
    metrics.counters (which does the same for detection, on arrays).
    """
    result: dict[int, list[tuple[datetime, float]]] = {series_id: [] for series_id in series_ids}
    if not series_ids:
        return result
    per_point = "inc" if fn == "increase" else "inc / secs"
    if step_seconds:
        step = f"make_interval(secs => {int(step_seconds)})"
        per_bucket = "sum(inc)" if fn == "increase" else f"sum(inc) / {float(step_seconds)}"
        select = (f"SELECT series_id, date_bin({step}, ts, timestamptz 'epoch') AS b, {per_bucket} FROM d "
                  "WHERE secs IS NOT NULL AND ts > %(start)s GROUP BY 1, 2 ORDER BY 1, 2 LIMIT %(limit)s")
    else:
        select = (f"SELECT series_id, ts, {per_point} FROM d WHERE secs IS NOT NULL AND ts > %(start)s "
                  "ORDER BY series_id, ts LIMIT %(limit)s")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH points AS (
                SELECT series_id, ts, value FROM {POINT_TABLE}
                WHERE tenant_id = %(tenant)s AND series_id = ANY(%(series)s) AND ts > %(start)s AND ts <= %(end)s
                UNION ALL
                SELECT s.series_id, p.ts, p.value FROM unnest(%(series)s::bigint[]) AS s(series_id)
                CROSS JOIN LATERAL (
                    SELECT ts, value FROM {POINT_TABLE}
                    WHERE tenant_id = %(tenant)s AND series_id = s.series_id AND ts <= %(start)s
                    ORDER BY ts DESC LIMIT 1
                ) p
            ), d AS (
                SELECT series_id, ts,
                       CASE WHEN value >= lag(value) OVER w THEN value - lag(value) OVER w ELSE value END AS inc,
                       extract(epoch FROM ts - lag(ts) OVER w)::float8 AS secs
                FROM points WINDOW w AS (PARTITION BY series_id ORDER BY ts)
            )
            {select}
            """,
            {"tenant": tenant.id, "series": list(series_ids), "start": start, "end": end, "limit": max_points},
        )
        for series_id, ts, value in cursor.fetchall():
            result[series_id].append((ts, value))
    return result


def counters_previous(*, tenant: Tenant, before_us: dict[int, int]) -> dict[int, tuple[int, float]]:
    """The last stored point (µs, value) of each series at or before its given time, where there is one."""
    inclusive = {series_id: ts_us + 1 for series_id, ts_us in before_us.items()}
    return {series_id: (ts_us, value) for series_id, ts_us, value in points_before(
        tenant=tenant, before_us=inclusive, count=1)}


def counter_series_ids(*, tenant: Tenant, series_ids) -> set[int]:
    """Which of these series are counters."""
    return set(Series.objects.for_tenant(tenant).filter(id__in=list(series_ids), kind="counter")
               .values_list("id", flat=True))


def points_after(
    *,
    tenant: Tenant,
    after_us: dict[int, int | None],
    until_us: dict[int, int] | None = None,
    limit_per_series: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of each series after its given time (µs since epoch, exclusive; None: all) and up to
    `until_us` (inclusive) when given, in (series, ts) order, as three arrays (series ids, µs,
    values): one set-based query for the whole tenant, streamed with a binary COPY straight into
    numpy (no Python object per point)."""
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    if not after_us:
        return empty
    series = sorted(after_us)
    starts = [after_us[s] for s in series]
    ends = [until_us.get(s) if until_us else None for s in series]
    # Without ORDER BY: the rows come grouped by series in the order given and by time within
    # each (a nested loop over primary-key scans of partitions in bound order). Sorting a
    # tenant's million rows in PostgreSQL spilled to disk; the order is checked below instead.
    limit = f"ORDER BY ts LIMIT {int(limit_per_series)}" if limit_per_series else ""
    with connection.cursor() as cursor:
        query = cursor.mogrify(
            f"""
            SELECT s.series_id, p.ts, p.value
            FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS s(series_id, after_us, until_us)
            CROSS JOIN LATERAL (
                SELECT ts, value FROM {POINT_TABLE} p
                WHERE p.tenant_id = %s AND p.series_id = s.series_id
                  AND p.ts > COALESCE(timestamptz 'epoch' + s.after_us * interval '1 microsecond', '-infinity')
                  AND p.ts <= COALESCE(timestamptz 'epoch' + s.until_us * interval '1 microsecond', 'infinity')
                {limit}
            ) p
            """,
            [series, starts, ends, tenant.id],
        ).decode()
        buffer = io.BytesIO()
        cursor.cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", buffer)
    series_ids, ts_us, values = pgcopy.decode_points(buffer.getbuffer())
    if len(series_ids) == 0:
        return empty
    series_step, ts_step = np.diff(series_ids), np.diff(ts_us)
    if not ((series_step > 0) | ((series_step == 0) & (ts_step > 0))).all():
        order = np.lexsort((ts_us, series_ids))  # a plan that did not keep the order
        series_ids, ts_us, values = series_ids[order], ts_us[order], values[order]
    return series_ids, ts_us, values


def _per_series_before(*, tenant: Tenant, before_us: dict[int, int], columns: str, aggregate: str,
                       order_limit: str = "", outer: str = "", params: tuple = ()) -> list[tuple]:
    """One set-based query over each series' points strictly before its own time (µs): for every
    series, `SELECT s.series_id, {columns}` from a LATERAL `SELECT {aggregate} ... {order_limit}` on
    its primary-key range, then `{outer}` (extra WHERE/ORDER BY); `params` fill `order_limit`."""
    series_ids = list(before_us)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.series_id, {columns}
            FROM unnest(%s::bigint[], %s::bigint[]) AS s(series_id, before_us)
            CROSS JOIN LATERAL (
                SELECT {aggregate} FROM {POINT_TABLE} p
                WHERE p.tenant_id = %s AND p.series_id = s.series_id
                  AND p.ts < timestamptz 'epoch' + s.before_us * interval '1 microsecond'
                {order_limit}
            ) x
            {outer}
            """,
            [series_ids, [before_us[s] for s in series_ids], tenant.id, *params],
        )
        return cursor.fetchall()


def points_before(*, tenant: Tenant, before_us: dict[int, int], count: int):
    """The last `count` points of each series strictly before its given time, rows (series_id, ts_us, value)."""
    if not before_us:
        return []
    return _per_series_before(
        tenant=tenant, before_us=before_us, columns="x.ts_us, x.value",
        aggregate="(extract(epoch FROM ts) * 1000000)::bigint AS ts_us, value", order_limit="ORDER BY ts DESC LIMIT %s",
        outer="ORDER BY s.series_id, x.ts_us", params=(count,))


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
            FROM {SERIES_TABLE} s WHERE s.tenant_id = %s ORDER BY s.id
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


def series_extremes_before(*, tenant: Tenant, before_us: dict[int, int]) -> dict[int, tuple[float, float]]:
    """The lowest and highest value of each series strictly before its given time (µs)."""
    if not before_us:
        return {}
    rows = _per_series_before(tenant=tenant, before_us=before_us, columns="x.lowest, x.highest",
                              aggregate="min(value) AS lowest, max(value) AS highest", outer="WHERE x.lowest IS NOT NULL")
    return {series_id: (lowest, highest) for series_id, lowest, highest in rows}


def rollup_backlog() -> list[tuple[str, int, datetime | None]]:
    """(tenant slug, ingest log rows the rollup refresh has not consumed, the oldest time they cover) per
    tenant with a backlog, for /metrics."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.slug, count(*), min(l.min_ts) FROM {INGEST_LOG_TABLE} l JOIN {TENANT_TABLE} t ON t.id = l.tenant_id "
            "GROUP BY t.slug ORDER BY t.slug"
        )
        return cursor.fetchall()


CHART_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)


def chart_points(*, tenant: Tenant, series: Series, start: datetime, end: datetime, max_points: int = 2000,
                 max_buckets: int = 1000):
    """What a chart of one series over (start, end] draws: (points, envelope, step seconds or None).

    Raw points when there are at most `max_points` (a counter: its rate per second); otherwise one
    value per bucket of the smallest step that gives at most `max_buckets` — the average with the
    min/max envelope in one read, whole buckets from the rollups — so a 30-day chart reads 720
    hourly rows.
    """
    if series.kind == "counter":
        raw = counter_read(tenant=tenant, series_ids=[series.id], start=start, end=end, fn="rate",
                           max_points=max_points + 1)[series.id]
    else:
        raw = timeseries_read(tenant=tenant, series_ids=[series.id], start=start, end=end,
                              max_points=max_points + 1)[series.id]
    if len(raw) <= max_points:
        return raw, [], None
    span = (end - start).total_seconds()
    step = next((s for s in CHART_STEPS if span / s <= max_buckets), CHART_STEPS[-1])
    if series.kind == "counter":
        return counter_read(tenant=tenant, series_ids=[series.id], start=start, end=end, fn="rate",
                            step_seconds=step)[series.id], [], step
    with connection.cursor() as cursor:
        _aggregated_read(cursor, tenant=tenant, series_ids=[series.id], start=start, end=end, step_seconds=step,
                         agg="envelope", max_points=max_buckets + 2)
        rows = cursor.fetchall()
    return [(ts, avg) for _, ts, avg, _, _ in rows], [(ts, low, high) for _, ts, _, low, high in rows], step


def points_per_day(*, tenant: Tenant, days: int, now: datetime) -> list[tuple[str, int]]:
    """Points stored per UTC day over the last `days` days (from the hourly rollups: the current hour
    counts after the next refresh)."""
    since = floor(now, 86400) - timedelta(days=days - 1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT date_trunc('day', bucket AT TIME ZONE 'UTC')::date, sum(count)::bigint FROM {ROLLUP_1H_TABLE} "
            "WHERE tenant_id = %s AND bucket >= %s GROUP BY 1 ORDER BY 1",
            [tenant.id, since],
        )
        counted = {day.isoformat(): count for day, count in cursor.fetchall()}
    return [((since + timedelta(days=k)).date().isoformat(), counted.get((since + timedelta(days=k)).date().isoformat(), 0))
            for k in range(days)]


def rejections_since(*, tenant: Tenant, since: datetime) -> list[tuple[str, str, int]]:
    """(protocol, reason, points refused) since the UTC day of `since`, most first."""
    rows: dict[tuple[str, str], int] = {}
    for protocol, reason, count in IngestRejection.objects.for_tenant(tenant).filter(day__gte=since.date()).values_list(
            "protocol", "reason", "count"):
        rows[(protocol, reason)] = rows.get((protocol, reason), 0) + count
    return sorted(((p, r, n) for (p, r), n in rows.items()), key=lambda row: -row[2])


def points_count_since(*, tenant: Tenant, since: datetime) -> tuple[int, int]:
    """(series with points since `since`, about how many points) from the hourly rollups (for a replay's
    confirmation: the current hour counts after the next refresh)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(DISTINCT series_id), COALESCE(sum(count), 0)::bigint FROM {ROLLUP_1H_TABLE} "
            "WHERE tenant_id = %s AND bucket >= %s",
            [tenant.id, floor(since, 3600)],
        )
        return cursor.fetchone()
