"""The read path of the point store: every read sees the rows and the compacted chunks as one store.

Windows of points raw or aggregated into epoch-aligned steps (whole buckets from the hourly rollups
where they are current), counters by their increase, charts, keyset pages, and the per-series
point sets detection reads (after or before a time, first and newest times, extremes); counts from
the rollups for /metrics and the console. Every answer is the same whether the points are rows or
chunks (metrics/tests/test_compaction.py checks each).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db import connection

from cloudwatchdog import pgcopy
from cloudwatchdog.timeutil import floor, from_us, sql_at, sql_us, to_us
from metrics.models import (
    CHUNK_TABLE,
    INGEST_LOG_TABLE,
    NAN_SAMPLE_TABLE,
    POINT_TABLE,
    ROLLUP_1H_TABLE,
    SERIES_TABLE,
    Series,
)
from metrics.storage import chunks, hours, nans
from metrics.storage.rollups import rollup_for_step
from tenants.models import TENANT_TABLE, Tenant

AGGREGATES = ("avg", "min", "max", "sum", "count")


@dataclass(frozen=True)
class SeriesStats:
    first_ts: datetime | None
    last_ts: datetime | None
    point_count: int


def series_stats(*, tenant: Tenant, series_ids: list[int]) -> dict[int, SeriesStats]:
    """First and last timestamp and point count of each series, in one query of index lookups.

    The count is the chunks' stored counts, the rows of compacted days (late points), and after the
    newest chunk's day the hourly rollups before the newest rolled-up hour and the rows from that hour
    on: a few rows per series whatever its size. Late points into older hours not compacted yet wait
    for the next rollup refresh (a minute). First and last come from the rows and the chunks' stored
    first and last times.
    """
    if not series_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.id,
                   LEAST((SELECT min(ts) FROM {POINT_TABLE} p WHERE p.tenant_id = %(tenant)s AND p.series_id = s.id),
                         c.first_ts),
                   GREATEST((SELECT max(ts) FROM {POINT_TABLE} p WHERE p.tenant_id = %(tenant)s AND p.series_id = s.id),
                            c.last_ts),
                   COALESCE(c.points, 0)
                   + (SELECT count(*) FROM {POINT_TABLE} p WHERE p.tenant_id = %(tenant)s AND p.series_id = s.id
                        AND p.ts < COALESCE(c.until, '-infinity'))
                   + r.before_newest_hour
                   + (SELECT count(*) FROM {POINT_TABLE} p WHERE p.tenant_id = %(tenant)s AND p.series_id = s.id
                        AND p.ts >= COALESCE(r.newest_hour, c.until, '-infinity'))
            FROM unnest(%(series)s::bigint[]) AS s(id)
            CROSS JOIN LATERAL (
                SELECT min(first_ts) AS first_ts, max(last_ts) AS last_ts, sum(count) AS points,
                       max(period_start) + interval '{chunks.CHUNK_SECONDS} seconds' AS until
                FROM {CHUNK_TABLE} WHERE tenant_id = %(tenant)s AND series_id = s.id
            ) c
            CROSS JOIN LATERAL (
                -- after the newest chunk's day only: the rollups of compacted days count points chunks hold
                SELECT COALESCE(sum(count) FILTER (WHERE bucket < newest.hour), 0) AS before_newest_hour,
                       newest.hour AS newest_hour
                FROM (SELECT max(bucket) AS hour FROM {ROLLUP_1H_TABLE}
                      WHERE tenant_id = %(tenant)s AND series_id = s.id
                        AND bucket >= COALESCE(c.until, '-infinity')) newest
                LEFT JOIN {ROLLUP_1H_TABLE} h ON h.tenant_id = %(tenant)s AND h.series_id = s.id
                 AND h.bucket >= COALESCE(c.until, '-infinity')
                GROUP BY newest.hour
            ) r
            """,
            {"tenant": tenant.id, "series": list(series_ids)},
        )
        rows = cursor.fetchall()
    return {series_id: SeriesStats(first, last, int(count)) for series_id, first, last, count in rows}


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
            rows = _aggregated_read(cursor, tenant=tenant, series_ids=list(series_ids), start=start, end=end,
                                    step_seconds=step_seconds, agg=agg, max_points=max_points)
            for series_id, ts, value in rows:
                result[series_id].append((ts, value))
            return result
        elif _chunks_in(tenant, series_ids, start, end):
            start_us, end_us = to_us(start), to_us(end)
            merged = points_after(tenant=tenant, after_us={s: start_us for s in series_ids},
                                  until_us={s: end_us for s in series_ids})
            return _as_lists(result, merged, max_points)
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


def _chunks_in(tenant: Tenant, series_ids, start: datetime | None, end: datetime | None) -> bool:
    """Whether any of these series has a chunk overlapping (start, end] (None: unbounded)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT EXISTS (SELECT 1 FROM {CHUNK_TABLE} WHERE tenant_id = %s AND series_id = ANY(%s)
                           AND period_start <= COALESCE(%s, 'infinity'::timestamptz)
                           AND last_ts > COALESCE(%s, '-infinity'::timestamptz))
            """,
            [tenant.id, list(series_ids), end, start],
        )
        return cursor.fetchone()[0]


def _as_lists(result: dict, points, max_points: int) -> dict[int, list[tuple[datetime, float]]]:
    """Arrays (series, µs, values) sorted by series then time as {series: [(datetime, value)]}, the
    first `max_points` of them, as the row reads give them."""
    series_ids, ts_us, values = (part[:max_points] for part in points)
    for series_id, moment, value in zip(series_ids.tolist(), ts_us.tolist(), values.tolist()):
        result[series_id].append((from_us(moment), value))
    return result


# Sums add in time order (`ORDER BY`), whatever order the plan feeds rows in: the same points give the
# same bits, wherever they are stored (rows or chunks) and however a bucket splits into parts.
_COMBINE = {"avg": "sum(s ORDER BY f) / sum(c)", "min": "min(mn)", "max": "max(mx)", "sum": "sum(s ORDER BY f)",
            "count": "sum(c)::float8",
            "envelope": "sum(s ORDER BY f) / sum(c), min(mn), max(mx)"}  # envelope: charts only, three values a bucket


def _rollup_range(cursor, *, tenant, start, end, step_seconds) -> tuple:
    """The whole rollup buckets strictly inside (start, end] that are refreshed, or (None, None)."""
    rollup = rollup_for_step(step_seconds)
    if rollup is None:
        return None, None
    _, seconds = rollup
    rollup_from = floor(start, seconds) + timedelta(seconds=seconds)
    rollup_to = floor(end, seconds)
    cursor.execute(f"SELECT min(min_ts), max(max_ts) FROM {INGEST_LOG_TABLE} WHERE tenant_id = %s", [tenant.id])
    dirty_low, dirty_high = cursor.fetchone()
    if dirty_low is not None and dirty_high >= rollup_from and dirty_low < rollup_to:
        # Keep the clean part before the dirty range; the rest comes from raw points.
        rollup_to = min(rollup_to, floor(dirty_low, seconds))
    return (rollup_from, rollup_to) if rollup_to > rollup_from else (None, None)


def _aggregated_read(cursor, *, tenant, series_ids, start, end, step_seconds, agg, max_points) -> list[tuple]:
    """Rows (series id, bucket, value or, for envelope, avg, min, max) in series and bucket order."""
    rollup_from, rollup_to = _rollup_range(cursor, tenant=tenant, start=start, end=end, step_seconds=step_seconds)
    rollup = rollup_from is not None
    step = f"make_interval(secs => {int(step_seconds)})"
    params = {"tenant": tenant.id, "series": series_ids, "start": start, "end": end, "rollup_from": rollup_from,
              "rollup_to": rollup_to, "limit": max_points}
    # One look at the chunks over the window: which raw ranges need points decoded, and the hours.
    window_chunks = _window_chunks(cursor, tenant=tenant, series_ids=series_ids, start=start, end=end)
    stored = [(series_id, period_us, blob) for series_id, period_us, _, blob in window_chunks if blob is not None]
    raw_parts = _raw_parts_sql(tenant=tenant, series_ids=series_ids, start=start, end=end, rollup_from=rollup_from,
                               rollup_to=rollup_to, window_chunks=window_chunks, step=step, params=params)
    # At step=1h each bucket inside the rollup range is one hour from one source (a rollup row or a chunk's
    # hour), so its answer is that hour's stats as they are: taken in Python, not sent through SQL as text
    # (a 30-day read of 1,000 series sent 720k hours to be parsed, anti-joined and sorted again).
    if rollup and step_seconds == 3600:
        cursor.execute(
            f"""
            SELECT series_id, b, {_COMBINE[agg]} FROM ({raw_parts}) parts
            GROUP BY series_id, b ORDER BY series_id, b LIMIT %(limit)s
            """,
            params,
        )
        edges = cursor.fetchall()
        hourly, hour_series, hour_buckets = _hour_answers(cursor, tenant_id=tenant.id, series_ids=series_ids,
                                                          start=rollup_from, end=rollup_to, stored=stored, agg=agg)
        # Both are in series and bucket order and share no bucket: one lexsort of the keys merges them.
        keys_series = np.concatenate((np.array([row[0] for row in edges], np.int64), hour_series))
        keys_buckets = np.concatenate((np.array([to_us(row[1]) for row in edges], np.int64), hour_buckets))
        merged = edges + hourly
        return [merged[k] for k in np.lexsort((keys_buckets, keys_series))[:max_points].tolist()]
    rollup_parts = ""
    if rollup:
        # Rollup rows, and the hours of compacted days kept in their chunks (a rollup row overrides).
        hour_sql, hour_params = hours.hour_relation(
            tenant_id=tenant.id, series_ids=series_ids, start=rollup_from, end=rollup_to, stored=stored)
        params.update(hour_params)
        rollup_parts = f"""
        UNION ALL
        SELECT series_id, date_bin({step}, bucket, timestamptz 'epoch'), min(bucket), sum(count)::float8,
               sum(sum ORDER BY bucket), min(min), max(max)
        FROM ({hour_sql}) h
        GROUP BY 1, 2
        """
    cursor.execute(
        f"""
        SELECT series_id, b, {_COMBINE[agg]} FROM ({raw_parts} {rollup_parts}) parts
        GROUP BY series_id, b ORDER BY series_id, b LIMIT %(limit)s
        """,
        params,
    )
    return cursor.fetchall()


def _raw_parts_sql(*, tenant, series_ids, start, end, rollup_from, rollup_to, window_chunks, step, params) -> str:
    """SQL of the per-bucket parts (count, sum, min, max) of the points outside the rollup range: rows and,
    decoded, the compacted points there; their parameters are added to `params`."""
    rollup = rollup_from is not None
    # Compacted points outside the rollup range join the rows, older first, as they were stored.
    ranges = [(start, rollup_from - timedelta(microseconds=1)), (rollup_to - timedelta(microseconds=1), end)] \
        if rollup else [(start, end)]
    chunked = chunks.empty_points()
    for low, high in ranges:
        low_us, high_us = to_us(low), to_us(high)
        if high > low and any(period_us <= high_us and last_us > low_us for _, period_us, last_us, _ in window_chunks):
            part = chunks.chunk_points(tenant_id=tenant.id, series_ids=series_ids, low_us=[to_us(low)] * len(series_ids),
                                       high_us=[to_us(high)] * len(series_ids))
            chunked = tuple(np.concatenate(pair) for pair in zip(chunked, part))
    rows = f"""
        SELECT series_id, ts, value FROM {POINT_TABLE}
        WHERE tenant_id = %(tenant)s AND series_id = ANY(%(series)s) AND ts > %(start)s AND ts <= %(end)s
          {"AND NOT (ts >= %(rollup_from)s AND ts < %(rollup_to)s)" if rollup else ""}
    """
    if len(chunked[0]):
        chunk_sql, chunk_params = chunks.chunk_relation(chunked)
        params.update(chunk_params)
        rows = f"{chunk_sql} UNION ALL {rows}"
    return f"""
        SELECT series_id, date_bin({step}, ts, timestamptz 'epoch') AS b, min(ts) AS f,
               count(*)::float8 AS c, sum(value ORDER BY ts) AS s, min(value) AS mn, max(value) AS mx
        FROM ({rows}) p
        GROUP BY 1, 2
    """


def _hour_answers(cursor, *, tenant_id, series_ids, start, end, stored, agg) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    """The rows a step=1h read answers for the hours in [start, end) (each hour's rollup row, else its
    chunk's stored hour: hours.hour_arrays), with their series and bucket µs. An hour's sum is one value,
    so SQL's `sum(s) / sum(c)` is this one division: the same bits."""
    series, buckets, counts, sums, mins, maxs = hours.hour_arrays(cursor, tenant_id=tenant_id, series_ids=series_ids,
                                                                  start=start, end=end, stored=stored)
    # Series share their hours: one datetime per distinct hour.
    distinct, which = np.unique(buckets, return_inverse=True)
    moments = [from_us(bucket) for bucket in distinct.tolist()]
    moments = [moments[k] for k in which.tolist()]
    counts = counts.astype(np.float64)
    if agg == "envelope":
        rows = list(zip(series.tolist(), moments, (sums / counts).tolist(), mins.tolist(), maxs.tolist()))
    else:
        values = {"avg": lambda: sums / counts, "sum": lambda: sums, "min": lambda: mins, "max": lambda: maxs,
                  "count": lambda: counts}[agg]()
        rows = list(zip(series.tolist(), moments, values.tolist()))
    return rows, series, buckets


def _window_chunks(cursor, *, tenant, series_ids, start, end) -> list[tuple]:
    """(series id, period start µs, last point µs, hours) of the chunks with points in (start, end]."""
    cursor.execute(
        f"""
        SELECT series_id, {sql_us('period_start')}, {sql_us('last_ts')}, hours FROM {CHUNK_TABLE}
        WHERE tenant_id = %s AND series_id = ANY(%s) AND period_start <= %s AND last_ts > %s
        """,
        [tenant.id, list(series_ids), end, start],
    )
    return cursor.fetchall()


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
        per_bucket = "sum(inc ORDER BY ts)" if fn == "increase" else f"sum(inc ORDER BY ts) / {float(step_seconds)}"
        select = (f"SELECT series_id, date_bin({step}, ts, timestamptz 'epoch') AS b, {per_bucket} FROM d "
                  "WHERE secs IS NOT NULL AND ts > %(start)s GROUP BY 1, 2 ORDER BY 1, 2 LIMIT %(limit)s")
    else:
        select = (f"SELECT series_id, ts, {per_point} FROM d WHERE secs IS NOT NULL AND ts > %(start)s "
                  "ORDER BY series_id, ts LIMIT %(limit)s")
    params = {"tenant": tenant.id, "series": list(series_ids), "start": start, "end": end, "limit": max_points}
    parts = [f"""SELECT series_id, ts, value FROM {POINT_TABLE}
                 WHERE tenant_id = %(tenant)s AND series_id = ANY(%(series)s) AND ts > %(start)s AND ts <= %(end)s"""]
    start_us = to_us(start)
    if _chunks_in(tenant, series_ids, start, end):
        chunk_sql, chunk_params = chunks.chunk_relation(chunks.chunk_points(
            tenant_id=tenant.id, series_ids=list(series_ids), low_us=[start_us] * len(series_ids),
            high_us=[to_us(end)] * len(series_ids)))
        parts.insert(0, chunk_sql)
        params.update(chunk_params)
    # Each series' last point at or before the start, wherever it is stored: the first increase's base.
    before = points_before(tenant=tenant, before_us={series_id: start_us + 1 for series_id in series_ids}, count=1)
    if before:
        previous_sql, previous_params = chunks.chunk_relation(
            tuple(np.array(column, dtype) for column, dtype in zip(zip(*before), (np.int64, np.int64, np.float64))),
            name="previous")
        parts.append(previous_sql)
        params.update(previous_params)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH points AS ({" UNION ALL ".join(parts)}
            ), d AS (
                SELECT series_id, ts,
                       CASE WHEN value >= lag(value) OVER w THEN value - lag(value) OVER w ELSE value END AS inc,
                       extract(epoch FROM ts - lag(ts) OVER w)::float8 AS secs
                FROM points WINDOW w AS (PARTITION BY series_id ORDER BY ts)
            )
            {select}
            """,
            params,
        )
        for series_id, ts, value in cursor.fetchall():
            result[series_id].append((ts, value))
    return result


def counters_previous(*, tenant: Tenant, before_us: dict[int, int]) -> dict[int, tuple[int, float]]:
    """The last stored point (µs, value) of each series at or before its given time, where there is one."""
    inclusive = {series_id: ts_us + 1 for series_id, ts_us in before_us.items()}
    return {series_id: (ts_us, value) for series_id, ts_us, value in points_before(
        tenant=tenant, before_us=inclusive, count=1)}


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
    numpy (no Python object per point), merged with the compacted chunks in range."""
    if not after_us:
        return chunks.empty_points()
    series = sorted(after_us)
    starts = [after_us[s] for s in series]
    ends = [until_us.get(s) if until_us else None for s in series]
    rows = _rows_after(tenant=tenant, series=series, starts=starts, ends=ends, limit_per_series=limit_per_series)
    chunked = chunks.chunk_points(tenant_id=tenant.id, series_ids=series, low_us=starts, high_us=ends)
    if len(chunked[0]) == 0:
        return rows
    merged = chunks.merge(chunked, rows)
    return chunks.keep_first(merged, int(limit_per_series)) if limit_per_series else merged


class TooManyPoints(Exception):
    """A read would return more points than the caller allowed."""

    def __init__(self, max_points: int):
        super().__init__(f"more than {max_points} points")
        self.max_points = max_points


def points_window(*, tenant: Tenant, series_ids: list[int], low_us: int, high_us: int,
                  max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every point of these series with low_us <= ts <= high_us, in (series, ts) order, as arrays (series
    ids, µs, values), as points_after reads them, with their NaN samples and staleness markers (nans.py); raises TooManyPoints past `max_points` in all, having read
    at most max_points + 1 rows (the cap is a LIMIT on the COPY), so a huge window costs no more than the cap."""
    if not series_ids:
        return chunks.empty_points()
    series = sorted(series_ids)
    starts, ends = [low_us - 1] * len(series), [high_us] * len(series)
    rows = _rows_after(tenant=tenant, series=series, starts=starts, ends=ends, total_limit=max_points + 1)
    if len(rows[0]) > max_points:
        raise TooManyPoints(max_points)
    chunked = chunks.chunk_points(tenant_id=tenant.id, series_ids=series, low_us=starts, high_us=ends)
    if len(chunked[0]) + len(rows[0]) > max_points:
        raise TooManyPoints(max_points)
    points = chunks.merge(chunked, rows)
    # Only PromQL reads NaN samples and staleness markers; a real point at the same time wins (merge keeps the first).
    nan_samples = nans.nan_samples_window(tenant_id=tenant.id, series_ids=series, low_us=low_us, high_us=high_us)
    if len(nan_samples[0]) == 0:
        return points
    if len(points[0]) + len(nan_samples[0]) > max_points:
        raise TooManyPoints(max_points)
    return chunks.merge(points, nan_samples)


def series_with_points(*, tenant: Tenant, series_ids: list[int], low_us: int, high_us: int) -> set[int]:
    """Which of these series have a point (or a NaN sample: PromQL's series lookups ask) with low_us <= ts <=
    high_us (a compacted day counts when its first and last points span any of the window: it is not decoded)."""
    if not series_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.id FROM unnest(%(series)s::bigint[]) AS s(id)
            WHERE EXISTS (SELECT 1 FROM {POINT_TABLE} p WHERE p.tenant_id = %(tenant)s AND p.series_id = s.id
                            AND p.ts >= {sql_at('%(low)s')} AND p.ts <= {sql_at('%(high)s')})
               OR EXISTS (SELECT 1 FROM {NAN_SAMPLE_TABLE} n WHERE n.tenant_id = %(tenant)s AND n.series_id = s.id
                            AND n.ts >= {sql_at('%(low)s')} AND n.ts <= {sql_at('%(high)s')})
               OR EXISTS (SELECT 1 FROM {CHUNK_TABLE} c WHERE c.tenant_id = %(tenant)s AND c.series_id = s.id
                            AND c.first_ts <= {sql_at('%(high)s')} AND c.last_ts >= {sql_at('%(low)s')})
            """,
            {"series": list(series_ids), "tenant": tenant.id, "low": low_us, "high": high_us},
        )
        return {series_id for (series_id,) in cursor.fetchall()}


def _rows_after(*, tenant: Tenant, series: list[int], starts: list, ends: list, limit_per_series: int | None = None,
                total_limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows (not chunks) of each series in (start, end] (µs, None: unbounded), sorted (series, ts)."""
    # Without ORDER BY: the rows come grouped by series in the order given and by time within
    # each (a nested loop over primary-key scans of partitions in bound order). Sorting a
    # tenant's million rows in PostgreSQL spilled to disk; the order is checked below instead.
    limit = f"ORDER BY ts LIMIT {int(limit_per_series)}" if limit_per_series else ""
    total = f"LIMIT {int(total_limit)}" if total_limit else ""
    with connection.cursor() as cursor:
        query = cursor.mogrify(
            f"""
            SELECT s.series_id, p.ts, p.value
            FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS s(series_id, after_us, until_us)
            CROSS JOIN LATERAL (
                SELECT ts, value FROM {POINT_TABLE} p
                WHERE p.tenant_id = %s AND p.series_id = s.series_id
                  AND p.ts > COALESCE({sql_at('s.after_us')}, '-infinity')
                  AND p.ts <= COALESCE({sql_at('s.until_us')}, 'infinity')
                {limit}
            ) p
            {total}
            """,
            [series, starts, ends, tenant.id],
        ).decode()
        buffer = io.BytesIO()
        pgcopy.copy(cursor, f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", buffer)
    series_ids, ts_us, values = pgcopy.decode_points(buffer.getbuffer())
    if len(series_ids):
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
                  AND p.ts < {sql_at('s.before_us')}
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
    rows = _per_series_before(
        tenant=tenant, before_us=before_us, columns="x.ts_us, x.value",
        aggregate=f"{sql_us('ts')} AS ts_us, value", order_limit="ORDER BY ts DESC LIMIT %s",
        outer="ORDER BY s.series_id, x.ts_us", params=(count,))
    series_ids = sorted(before_us)
    chunked = chunks.chunk_points(tenant_id=tenant.id, series_ids=series_ids, low_us=[None] * len(series_ids),
                                  high_us=[before_us[s] - 1 for s in series_ids], newest_count=count)
    if len(chunked[0]) == 0:
        return rows
    row_arrays = tuple(np.array(column, dtype) for column, dtype in
                       zip(zip(*rows), (np.int64, np.int64, np.float64))) if rows else chunks.empty_points()
    merged = chunks.keep_last(chunks.merge(chunked, row_arrays), count)
    return list(zip(*(part.tolist() for part in merged)))


def series_first_ts(*, tenant: Tenant, series_ids: list[int]) -> dict[int, int]:
    """The first point's time (µs) of each series that has points."""
    if not series_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.id, (extract(epoch FROM LEAST(
                (SELECT min(ts) FROM {POINT_TABLE} p WHERE p.tenant_id = %(tenant)s AND p.series_id = s.id),
                (SELECT min(first_ts) FROM {CHUNK_TABLE} c WHERE c.tenant_id = %(tenant)s AND c.series_id = s.id)
            )) * 1000000)::bigint
            FROM unnest(%(series)s::bigint[]) AS s(id)
            """,
            {"tenant": tenant.id, "series": list(series_ids)},
        )
        return {series_id: first for series_id, first in cursor.fetchall() if first is not None}


def series_newest_ts(*, tenant: Tenant, until_us: int | None = None) -> dict[int, int]:
    """The newest point's time (µs) of each of the tenant's series that has points (up to `until_us`)."""
    until = f"COALESCE({sql_at('%(until)s')}, 'infinity')"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.id, (extract(epoch FROM GREATEST(
                (SELECT max(p.ts) FROM {POINT_TABLE} p
                 WHERE p.tenant_id = s.tenant_id AND p.series_id = s.id AND p.ts <= {until}),
                (SELECT max(c.last_ts) FROM {CHUNK_TABLE} c
                 WHERE c.tenant_id = s.tenant_id AND c.series_id = s.id AND c.last_ts <= {until})
            )) * 1000000)::bigint,
            EXISTS (SELECT 1 FROM {CHUNK_TABLE} c WHERE c.tenant_id = s.tenant_id AND c.series_id = s.id
                    AND c.first_ts <= {until} AND c.last_ts > {until})
            FROM {SERIES_TABLE} s WHERE s.tenant_id = %(tenant)s ORDER BY s.id
            """,
            {"until": until_us, "tenant": tenant.id},
        )
        rows = cursor.fetchall()
    newest = {series_id: ts_us for series_id, ts_us, _ in rows if ts_us is not None}
    # A chunk that holds points on both sides of `until`: its newest point up to it, decoded.
    straddling = {series_id: until_us + 1 for series_id, _, straddles in rows if straddles}
    for series_id, ts_us, _ in points_before(tenant=tenant, before_us=straddling, count=1):
        newest[series_id] = max(newest.get(series_id, ts_us), ts_us)
    return newest


def points_page(*, tenant: Tenant, series_id: int, before: datetime, limit: int) -> list[tuple[datetime, float]]:
    """Up to `limit` points of one series strictly before `before`, newest first (keyset paging)."""
    if _chunks_in(tenant, [series_id], None, before):
        newest = points_before(tenant=tenant, before_us={series_id: to_us(before)}, count=limit)
        return [(from_us(ts_us), value) for _, ts_us, value in reversed(newest)]
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
    extremes = {series_id: (lowest, highest) for series_id, lowest, highest in rows}
    series_ids = list(before_us)
    with connection.cursor() as cursor:
        # Chunks wholly before the time answer from their stored min and max, without decoding.
        cursor.execute(
            f"""
            SELECT c.series_id, min(c.min), max(c.max)
            FROM unnest(%s::bigint[], %s::bigint[]) AS s(series_id, before_us)
            JOIN {CHUNK_TABLE} c ON c.tenant_id = %s AND c.series_id = s.series_id
             AND c.last_ts < {sql_at('s.before_us')}
            GROUP BY c.series_id
            """,
            [series_ids, [before_us[s] for s in series_ids], tenant.id],
        )
        wholly_before = cursor.fetchall()
    straddling = chunks.chunk_points(
        tenant_id=tenant.id, series_ids=series_ids,
        low_us=[int(chunks.period_start_us(before_us[s] - 1)) - 1 for s in series_ids],
        high_us=[before_us[s] - 1 for s in series_ids])
    found = list(wholly_before)
    if len(straddling[0]):
        starts = np.flatnonzero(np.concatenate(([True], straddling[0][1:] != straddling[0][:-1])))
        found += zip(straddling[0][starts].tolist(), np.minimum.reduceat(straddling[2], starts).tolist(),
                     np.maximum.reduceat(straddling[2], starts).tolist())
    for series_id, lowest, highest in found:
        known = extremes.get(series_id)
        extremes[series_id] = (lowest, highest) if known is None else (min(known[0], lowest), max(known[1], highest))
    return extremes


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
        rows = _aggregated_read(cursor, tenant=tenant, series_ids=[series.id], start=start, end=end, step_seconds=step,
                                agg="envelope", max_points=max_buckets + 2)
    return [(ts, avg) for _, ts, avg, _, _ in rows], [(ts, low, high) for _, ts, _, low, high in rows], step


def _compacted_day_counts(*, since: datetime) -> str:
    """SQL (day, series_id, points) from `since` (a UTC midnight): each chunk's count and its day's rows
    (late points not merged yet), and the hourly rollups of days with no chunk for that series (those
    of a compacted day count points its chunk holds). Parameters: tenant, since."""
    day = f"interval '{chunks.CHUNK_SECONDS} seconds'"
    return f"""
        SELECT c.period_start AS day, c.series_id,
               c.count + (SELECT count(*) FROM {POINT_TABLE} p WHERE p.tenant_id = %(tenant)s
                          AND p.series_id = c.series_id AND p.ts >= c.period_start AND p.ts < c.period_start + {day})
                 AS points
        FROM {CHUNK_TABLE} c WHERE c.tenant_id = %(tenant)s AND c.period_start >= %(since)s
        UNION ALL
        SELECT date_bin({day}, r.bucket, timestamptz 'epoch'), r.series_id, r.count
        FROM {ROLLUP_1H_TABLE} r
        WHERE r.tenant_id = %(tenant)s AND r.bucket >= %(since)s
          AND NOT EXISTS (SELECT 1 FROM {CHUNK_TABLE} c WHERE c.tenant_id = r.tenant_id AND c.series_id = r.series_id
                          AND c.period_start = date_bin({day}, r.bucket, timestamptz 'epoch'))
    """


def points_per_day(*, tenant: Tenant, days: int, now: datetime) -> list[tuple[str, int]]:
    """Points stored per UTC day over the last `days` days (compacted days from their chunks' counts,
    the others from the hourly rollups: the current hour counts after the next refresh)."""
    since = floor(now, 86400) - timedelta(days=days - 1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (day AT TIME ZONE 'UTC')::date, sum(points)::bigint FROM ({_compacted_day_counts(since=since)}) d "
            "GROUP BY 1 ORDER BY 1",
            {"tenant": tenant.id, "since": since},
        )
        counted = {day.isoformat(): count for day, count in cursor.fetchall()}
    return [((since + timedelta(days=k)).date().isoformat(), counted.get((since + timedelta(days=k)).date().isoformat(), 0))
            for k in range(days)]


def points_count_since(*, tenant: Tenant, since: datetime) -> tuple[int, int]:
    """(series with points since `since`, about how many points) from its hour on, as the hourly rollups
    count (for a replay's confirmation: the current hour counts after the next refresh): whole days
    after it from per_day counts, the hours of its day from the rollups and its chunks' hours."""
    hour = floor(since, 3600)
    next_day = floor(since, 86400) + timedelta(days=1)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {SERIES_TABLE} WHERE tenant_id = %s", [tenant.id])
        series_ids = [series_id for (series_id,) in cursor.fetchall()]
        hour_sql, params = hours.hour_relation(tenant_id=tenant.id, series_ids=series_ids, start=hour, end=next_day)
        cursor.execute(
            f"""
            SELECT count(DISTINCT series_id), COALESCE(sum(points), 0)::bigint FROM (
                SELECT series_id, points FROM ({_compacted_day_counts(since=next_day)}) d
                UNION ALL SELECT series_id, count FROM ({hour_sql}) h
            ) x WHERE points > 0
            """,
            {**params, "tenant": tenant.id, "since": next_day},
        )
        return cursor.fetchone()
