"""Rollups of points into hourly count/sum/min/max, kept up to date incrementally.

Every ingest transaction appends the time range it wrote to `metrics_ingest_log` (one row). The
refresh claims those rows and rebuilds the touched hours from the points (rows, and the chunks of
compacted days when a late point lands in one). A rebuild replaces a bucket's row, so late points
are included and a refresh that runs twice changes nothing. There is no minute rollup: with points
a minute apart it would cost as much as the points (a row each), and the chunks read fast enough.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction

from cloudwatchdog import locks
from cloudwatchdog.locks import Lock
from cloudwatchdog.timeutil import floor, sql_at, to_us
from metrics.models import CHUNK_TABLE, INGEST_LOG_TABLE, POINT_TABLE, ROLLUP_1H_TABLE, SERIES_TABLE
from metrics.storage import chunks
from tenants.models import TENANT_TABLE

logger = logging.getLogger(__name__)


def ingest_log_statement(*, tenant_id: int, min_us: int, max_us: int) -> tuple[str, list]:
    """The statement (SQL, parameters) an ingest transaction runs to record the time range it wrote."""
    return (
        f"INSERT INTO {INGEST_LOG_TABLE} (tenant_id, min_ts, max_ts) VALUES "
        f"(%s, {sql_at('%s')}, {sql_at('%s')})",
        [tenant_id, min_us, max_us],
    )


def _merged_ranges(ranges: list[tuple[datetime, datetime]], seconds: int) -> list[tuple[datetime, datetime]]:
    """Bucket-aligned [start, end) ranges covering the given [min, max] ranges, overlapping ones merged."""
    aligned = sorted((floor(low, seconds), floor(high, seconds) + timedelta(seconds=seconds)) for low, high in ranges)
    merged: list[list[datetime]] = []
    for start, end in aligned:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def rollups_refresh() -> dict:
    """Rebuild the rollup buckets touched since the last refresh, tenant by tenant; returns what was rebuilt.

    Each tenant is refreshed in its own transaction: one tenant's failure is logged and counted,
    its log rows stay for the next refresh, and the other tenants' rollups go on.
    """
    report = {"tenants": 0, "hour_ranges": 0, "failed_tenants": [], "orphan_points_deleted": 0}
    # One refresh at a time; ingest is never blocked (it only appends to the log).
    with connection.cursor() as cursor, locks.held_if_free(cursor, Lock.ROLLUPS_REFRESH, 0) as held:
        if not held:
            return report
        cursor.execute(f"SELECT DISTINCT tenant_id FROM {INGEST_LOG_TABLE} ORDER BY 1")
        for (tenant_id,) in cursor.fetchall():
            try:
                with transaction.atomic():
                    done = _tenant_refresh(cursor, tenant_id=tenant_id)
                for name, count in done.items():
                    report[name] += count
            except DatabaseError:
                logger.exception("rollup refresh failed for tenant %s; the others go on", tenant_id)
                report["failed_tenants"].append(tenant_id)
    return report


def _tenant_refresh(cursor, *, tenant_id: int) -> dict:
    """Refresh one tenant's touched ranges; returns what it did, counted as rollups_refresh reports."""
    done = {"tenants": 0, "hour_ranges": 0, "orphan_points_deleted": 0}
    cursor.execute(f"DELETE FROM {INGEST_LOG_TABLE} WHERE tenant_id = %s RETURNING min_ts, max_ts", [tenant_id])
    ranges = cursor.fetchall()
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {TENANT_TABLE} WHERE id = %s)", [tenant_id])
    if not cursor.fetchone()[0]:
        # Written by a request that authenticated just before its tenant was deleted (web processes
        # cache keys for a few seconds): the points are nobody's now.
        for low, high in ranges:
            cursor.execute(f"DELETE FROM {POINT_TABLE} WHERE tenant_id = %s AND ts >= %s AND ts <= %s",
                           [tenant_id, low, high])
            done["orphan_points_deleted"] += cursor.rowcount
        return done
    done["tenants"] = 1
    for start, end in _merged_ranges(ranges, 3600):
        if not _rebuild_with_chunks(cursor, tenant_id=tenant_id, table=ROLLUP_1H_TABLE, seconds=3600, start=start, end=end):
            _rebuild(cursor, tenant_id=tenant_id, table=ROLLUP_1H_TABLE, source=POINT_TABLE,
                     seconds=3600, start=start, end=end, time_column="ts", raw=True)
        done["hour_ranges"] += 1
    return done


def _rebuild_with_chunks(cursor, *, tenant_id, table, seconds, start, end) -> bool:
    """Rebuild [start, end) from rows and compacted points when chunks hold part of it (a late point
    into a compacted day); False when no chunk does, and nothing was done."""
    cursor.execute(
        f"SELECT DISTINCT series_id FROM {CHUNK_TABLE} WHERE tenant_id = %s AND period_start > %s AND period_start < %s "
        "ORDER BY 1",
        [tenant_id, start - timedelta(seconds=chunks.CHUNK_SECONDS), end],
    )
    series_ids = [row[0] for row in cursor.fetchall()]
    if not series_ids:
        return False
    start_us, end_us = to_us(start), to_us(end)
    compacted = chunks.chunk_points(tenant_id=tenant_id, series_ids=series_ids, low_us=[start_us - 1] * len(series_ids),
                                    high_us=[end_us - 1] * len(series_ids))
    compacted_sql, params = chunks.chunk_relation(compacted)
    params.update({"tenant": tenant_id, "start": start, "end": end, "seconds": seconds})
    cursor.execute(f"DELETE FROM {table} WHERE tenant_id = %(tenant)s AND bucket >= %(start)s AND bucket < %(end)s", params)
    cursor.execute(
        f"""
        INSERT INTO {table} (tenant_id, series_id, bucket, count, sum, min, max)
        SELECT %(tenant)s, series_id, date_bin(make_interval(secs => %(seconds)s), ts, timestamptz 'epoch'),
               count(*), sum(value ORDER BY ts), min(value), max(value)
        FROM ({compacted_sql}
              UNION ALL
              SELECT s.id, p.ts, p.value FROM {SERIES_TABLE} s
              CROSS JOIN LATERAL (
                  SELECT ts, value FROM {POINT_TABLE} p
                  WHERE p.tenant_id = %(tenant)s AND p.series_id = s.id AND p.ts >= %(start)s AND p.ts < %(end)s
              ) p
              WHERE s.tenant_id = %(tenant)s) points
        GROUP BY 1, 2, 3
        """,
        params,
    )
    return True


# Sums add in time order (`sum(value ORDER BY ts)`): the same bits whatever order the refresh's plan
# feeds rows in (bench/storage.py saw two loads of the same points give other sums), and the bits a
# read of the same points summed raw gets, so an hour answers alike from rollups, chunks or rows.
def _rebuild(cursor, *, tenant_id, table, source, seconds, start, end, time_column, raw) -> None:
    aggregates = ("count(*), sum(value ORDER BY ts), min(value), max(value)" if raw
                  else "sum(count), sum(sum), min(min), max(max)")
    cursor.execute(f"DELETE FROM {table} WHERE tenant_id = %s AND bucket >= %s AND bucket < %s", [tenant_id, start, end])
    # Each of the tenant's series through the primary key (tenant_id, series_id, time): a range
    # scan per series, with no index on time alone for ingest to keep up.
    cursor.execute(
        f"""
        INSERT INTO {table} (tenant_id, series_id, bucket, count, sum, min, max)
        SELECT %s, s.id, date_bin(make_interval(secs => %s), {time_column}, timestamptz 'epoch'), {aggregates}
        FROM {SERIES_TABLE} s
        CROSS JOIN LATERAL (
            SELECT * FROM {source} p
            WHERE p.tenant_id = %s AND p.series_id = s.id AND p.{time_column} >= %s AND p.{time_column} < %s
        ) p
        WHERE s.tenant_id = %s
        GROUP BY 1, 2, 3
        """,
        [tenant_id, seconds, tenant_id, start, end, tenant_id],
    )


def rollup_for_step(step_seconds: int) -> tuple[str, int] | None:
    """The rollup a stepped read may take whole buckets from: the hourly one when its resolution
    divides the step, else None (raw points)."""
    if step_seconds % 3600 == 0:
        return ROLLUP_1H_TABLE, 3600
    return None
