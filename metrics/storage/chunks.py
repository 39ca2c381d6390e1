"""Compacted chunks as reads and writes meet them: read with the rows, so that every read sees rows and
chunks as one store, and the write path's check that a point is not already in one.

A chunk holds one series' points of one closed UTC day (compaction.py moves them there). A
point is in exactly one place: compaction moves rows in the transaction that writes the chunk, and
ingest refuses, as duplicates, points a chunk already holds (write.py). Readers here take
per-series time bounds and give numpy arrays (series ids, µs, values) sorted by series then time,
which read.py merges with what it reads from the row table.
"""
from __future__ import annotations

import numpy as np
from django.db import connection

from cloudwatchdog.timeutil import sql_at, sql_us
from metrics.models import CHUNK_TABLE
from metrics.storage import codec

CHUNK_SECONDS = 86400
CHUNK_US = CHUNK_SECONDS * 1_000_000
_EMPTY = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))


def empty_points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(part.copy() for part in _EMPTY)


def period_start_us(ts_us):
    """The start of the chunk period (UTC day) holding a time in µs, or each time of an array."""
    return ts_us // CHUNK_US * CHUNK_US


def chunk_points(*, tenant_id: int, series_ids: list[int], low_us: list[int | None], high_us: list[int | None],
                 newest_count: int | None = None):
    """Decoded points of each series' chunks with low < ts <= high (None: unbounded), sorted by series
    then time. With `newest_count`, only the chunks needed for each series' newest `newest_count`
    points in range are decoded (the caller keeps the last ones)."""
    if not series_ids:
        return empty_points()
    newer = "0"
    if newest_count is not None:
        # Chunks newest first, while the points of newer chunks wholly inside the range are fewer than
        # needed; a chunk that straddles `high` counts as none of its points, so enough are decoded.
        newer = (f"COALESCE(sum(CASE WHEN c.last_ts <= COALESCE({sql_at('s.high_us')}, 'infinity') "
                 "THEN c.count ELSE 0 END) OVER (PARTITION BY c.series_id ORDER BY c.period_start DESC "
                 "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT series_id, data FROM (
                SELECT c.series_id, c.period_start, c.data, {newer} AS newer
                FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS s(series_id, low_us, high_us)
                JOIN {CHUNK_TABLE} c ON c.tenant_id = %s AND c.series_id = s.series_id
                 AND c.period_start > COALESCE({sql_at('s.low_us')} - interval '{CHUNK_SECONDS} seconds', '-infinity')
                 AND c.period_start <= COALESCE({sql_at('s.high_us')}, 'infinity')
                 AND c.last_ts > COALESCE({sql_at('s.low_us')}, '-infinity')
            ) x
            WHERE newer < %s
            ORDER BY series_id, period_start
            """,
            [list(series_ids), list(low_us), list(high_us), tenant_id,
             newest_count if newest_count is not None else 1],
        )
        rows = cursor.fetchall()
    if not rows:
        return empty_points()
    bounds = {series_id: (low, high) for series_id, low, high in zip(series_ids, low_us, high_us)}
    series_parts, ts_parts, value_parts = [], [], []
    for series_id, data in rows:
        ts_us, values = codec.decode(data)
        low, high = bounds[series_id]
        first = 0 if low is None else int(np.searchsorted(ts_us, low, side="right"))
        last = len(ts_us) if high is None else int(np.searchsorted(ts_us, high, side="right"))
        if last > first:
            ts_parts.append(ts_us[first:last])
            value_parts.append(values[first:last])
            series_parts.append(np.full(last - first, series_id, np.int64))
    if not ts_parts:
        return empty_points()
    return np.concatenate(series_parts), np.concatenate(ts_parts), np.concatenate(value_parts)


def merge(chunked, rows):
    """One (series, µs, values) set of arrays sorted by series then time, from chunk points and rows
    (each sorted so). A time in both keeps the chunk's value: it was written first."""
    if len(chunked[0]) == 0:
        return rows
    if len(rows[0]) == 0:
        return chunked
    series_ids = np.concatenate((chunked[0], rows[0]))
    ts_us = np.concatenate((chunked[1], rows[1]))
    values = np.concatenate((chunked[2], rows[2]))
    # Two sorted runs: a stable sort by series merges them in about linear time, chunks first.
    order = np.argsort(series_ids, kind="stable")
    series_ids, ts_us, values = series_ids[order], ts_us[order], values[order]
    same_series = series_ids[1:] == series_ids[:-1]
    if (ts_us[1:][same_series] < ts_us[:-1][same_series]).any():
        order = np.lexsort((ts_us, series_ids))  # late rows inside a chunk's days: a full sort, still stable
        series_ids, ts_us, values = series_ids[order], ts_us[order], values[order]
        same_series = series_ids[1:] == series_ids[:-1]
    repeated = np.concatenate(([False], same_series & (ts_us[1:] == ts_us[:-1])))
    if repeated.any():
        keep = ~repeated
        series_ids, ts_us, values = series_ids[keep], ts_us[keep], values[keep]
    return series_ids, ts_us, values


def _positions(series_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's position within its series, and its series' length (arrays sorted by series)."""
    starts = np.flatnonzero(np.concatenate(([True], series_ids[1:] != series_ids[:-1])))
    lengths = np.diff(np.append(starts, len(series_ids)))
    return np.arange(len(series_ids)) - np.repeat(starts, lengths), np.repeat(lengths, lengths)


def keep_last(points, count: int):
    """The last `count` points of each series (arrays sorted by series then time)."""
    if len(points[0]) == 0:
        return points
    position, length = _positions(points[0])
    keep = length - position <= count
    return tuple(part[keep] for part in points)


def keep_first(points, count: int):
    """The first `count` points of each series (arrays sorted by series then time)."""
    if len(points[0]) == 0:
        return points
    position, _ = _positions(points[0])
    keep = position < count
    return tuple(part[keep] for part in points)


def as_sql_arrays(points) -> tuple[str, str, str]:
    """Points as three PostgreSQL array literals (bigint[], bigint[], float8[]), for queries that
    aggregate them with rows in SQL; repr round-trips a float exactly."""
    series_ids, ts_us, values = points
    return ("{" + ",".join(map(str, series_ids.tolist())) + "}",
            "{" + ",".join(map(str, ts_us.tolist())) + "}",
            "{" + ",".join(map(repr, values.tolist())) + "}")


def chunk_relation(points, name: str = "chunked") -> tuple[str, dict]:
    """A SQL relation (series_id, ts, value) of these points, and its parameters."""
    series_text, ts_text, value_text = as_sql_arrays(points)
    sql = (f"SELECT c.series_id, {sql_at('c.ts_us')} AS ts, c.value "
           f"FROM unnest(%({name}_s)s::bigint[], %({name}_t)s::bigint[], %({name}_v)s::float8[]) "
           f"AS c(series_id, ts_us, value)")
    return sql, {f"{name}_s": series_text, f"{name}_t": ts_text, f"{name}_v": value_text}


def existing_chunks(cursor, *, tenant_id: int, series_ids: np.ndarray, periods_us: np.ndarray) -> dict:
    """The decoded (µs, values) of the chunks of these (series, period start µs) pairs that exist."""
    cursor.execute(
        f"""
        SELECT c.series_id, {sql_us('c.period_start')}, c.data
        FROM unnest(%s::bigint[], %s::bigint[]) AS s(series_id, period_us)
        JOIN {CHUNK_TABLE} c ON c.tenant_id = %s AND c.series_id = s.series_id
         AND c.period_start = {sql_at('s.period_us')}
        """,
        [series_ids.tolist(), periods_us.tolist(), tenant_id],
    )
    return {(series_id, period): codec.decode(data) for series_id, period, data in cursor.fetchall()}


def compacted_duplicates(cursor, *, tenant_id: int, series_ids: np.ndarray, ts_us: np.ndarray) -> np.ndarray:
    """Which of these (late) points a chunk already holds: ingest counts them as duplicates.

    The caller holds the compaction lock shared, so no chunk changes until its transaction ends.
    """
    held = np.zeros(len(ts_us), bool)
    periods = period_start_us(ts_us)
    pairs = np.unique(np.stack((series_ids, periods), axis=1), axis=0)
    existing = existing_chunks(cursor, tenant_id=tenant_id, series_ids=pairs[:, 0], periods_us=pairs[:, 1])
    for (series_id, period), (chunk_ts, _) in existing.items():
        mine = (series_ids == series_id) & (periods == period)
        held[mine] = np.isin(ts_us[mine], chunk_ts)
    return held
