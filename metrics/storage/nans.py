"""NaN samples and staleness markers, kept beside the points for PromQL alone.

Prometheus' samples may be NaN: an empty summary's quantiles are, and a series that goes away ends
with a staleness marker (the NaN with bits 0x7FF0000000000002, value.StaleNaN). The point table holds
only finite values, which the rollups, compaction, detection and every other read count on, so these
live in metrics_nan_sample (tenant, series, time, stale), unpartitioned: points_window (PromQL's read)
merges them in, and retention and a tenant's deletion clear them with the points.
"""
from __future__ import annotations

import numpy as np
from django.db import connection

from cloudwatchdog.timeutil import sql_at, sql_us
from metrics.models import NAN_SAMPLE_TABLE

STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN = float(np.array([STALE_NAN_BITS], np.uint64).view(np.float64)[0])
_NAN = float("nan")


def is_stale(values: np.ndarray) -> np.ndarray:
    """Which of these float64 values are staleness markers (compared by bits: every NaN is unequal)."""
    return np.asarray(values, np.float64).view(np.uint64) == STALE_NAN_BITS


def nan_samples_write(*, tenant_id: int, series_ids: np.ndarray, ts_us: np.ndarray,
                      values: np.ndarray) -> tuple[int, int]:
    """Store NaN samples (staleness markers by their bits), first write wins, in the caller's transaction if
    any; returns how many of each kind (NaN, stale) were new. Sorted, so concurrent writers take the key locks
    in one order."""
    order = np.lexsort((ts_us, series_ids))
    stale = is_stale(values)[order]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {NAN_SAMPLE_TABLE} (tenant_id, series_id, ts, stale) "
            f"SELECT %s, s, {sql_at('t')}, x FROM unnest(%s::bigint[], %s::bigint[], %s::bool[]) AS v(s, t, x) "
            "ON CONFLICT DO NOTHING RETURNING stale",
            [tenant_id, series_ids[order].tolist(), ts_us[order].tolist(), stale.tolist()],
        )
        new_stale = [was_stale for (was_stale,) in cursor.fetchall()]
    return len(new_stale) - sum(new_stale), sum(new_stale)


def nan_samples_window(*, tenant_id: int, series_ids: list[int], low_us: int, high_us: int):
    """The NaN samples of these series with low_us <= ts <= high_us as (series ids, µs, values), sorted by
    series then time; a staleness marker's value has the StaleNaN bits."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT series_id, {sql_us('ts')}, stale FROM {NAN_SAMPLE_TABLE} "
            f"WHERE tenant_id = %s AND series_id = ANY(%s) AND ts >= {sql_at('%s')} AND ts <= {sql_at('%s')} "
            "ORDER BY series_id, ts",
            [tenant_id, list(series_ids), low_us, high_us],
        )
        rows = cursor.fetchall()
    series = np.fromiter((row[0] for row in rows), np.int64, len(rows))
    ts_us = np.fromiter((row[1] for row in rows), np.int64, len(rows))
    values = np.fromiter((STALE_NAN if row[2] else _NAN for row in rows), np.float64, len(rows))
    return series, ts_us, values
