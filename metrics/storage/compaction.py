"""Compaction: points of closed UTC days move from the row table into compressed chunks.

A point in metrics_point costs about 100 bytes (row header, three keys, a B-tree entry); in a
chunk about 2 (codec.py). Compaction takes, per series, the whole
UTC days before its cutoff: the older of `now - older_than` and the tenant's late window (late
points keep arriving as rows until then), and of those only the points at or before detection's
watermark of the series (a `compaction_horizons` hook of the anomalies app), so the points a
detection pass has yet to read are rows.

Each batch of series is one transaction: it deletes the rows (RETURNING them), merges them into the
chunk of their day (a late point written after an earlier compaction joins its chunk here),
and upserts the chunks. The hourly rollups, refreshed first, are then folded into the chunks' hours
(hours.py) and deleted; when many were, the rollup index is rebuilt to give their pages back. It runs under an exclusive advisory lock per tenant that ingest takes shared only
for batches with points older than the late window, so a late point is either in the rows the
batch moves or checked against the chunk it wrote: never lost, never stored twice. Running it again
moves nothing more. Beat runs it hourly; `manage.py compact_points` runs it now.
"""
from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from cloudwatchdog import locks, pgcopy
from cloudwatchdog.locks import Lock
from cloudwatchdog.timeutil import sql_at, sql_us, to_us
from metrics.models import CHUNK_TABLE, POINT_TABLE, SERIES_TABLE
from metrics.storage import chunks, codec, hours, partitions, rollups
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# Compaction stays this far behind the late window, so a request that started before a compaction
# and did not see its points as late cannot meet a day being compacted.
SAFETY_MARGIN_US = 10 * 60 * 1_000_000

# Each returns {series id: µs} for a tenant: of a series, only points up to that time are compacted.
compaction_horizons: list[Callable[[Tenant], dict[int, int]]] = []


def late_window_us(tenant: Tenant) -> int:
    return (tenant.late_window_seconds or settings.CLOUDWATCHDOG["LATE_WINDOW_SECONDS"]) * 1_000_000


def late_before_us(tenant: Tenant, now_us: int) -> int:
    """Points before this time are late: ingest checks them against the chunks, under the lock."""
    return now_us - late_window_us(tenant)


def points_compact(*, tenant: Tenant | None = None, older_than: timedelta = timedelta(0),
                   now: datetime | None = None, batch_series: int | None = None) -> dict:
    """Compact every tenant's (or one tenant's) closed days; returns what moved.

    Each tenant is its own series of transactions: one tenant's failure is logged and counted, the
    others go on.
    """
    now = now or timezone.now()
    batch_series = batch_series or settings.CLOUDWATCHDOG["COMPACTION_BATCH_SERIES"]
    report = {"tenants": 0, "series": 0, "chunks": 0, "points": 0, "merged_chunks": 0, "chunk_bytes": 0,
              "hours_folded": 0, "rollups_kept": 0, "seconds": 0.0, "failed_tenants": []}
    started = time.perf_counter()
    tenants = [tenant] if tenant is not None else list(Tenant.objects.order_by("id"))
    rollups.rollups_refresh()  # the hourly rollups of the days moved stay: make them current first
    for each in tenants:
        try:
            done = _tenant_compact(each, older_than=older_than, now_us=to_us(now), batch_series=batch_series)
        except DatabaseError:
            logger.exception("compaction failed for tenant %s; the others go on", each.slug)
            report["failed_tenants"].append(each.slug)
            continue
        report["tenants"] += 1
        for name, count in done.items():
            report[name] += count
    # Days compacted by every tenant leave their partitions empty: give their space back.
    report["partitions_truncated"] = partitions.partitions_truncate_emptied(before=now)
    # The folded rollup rows leave their index pages empty: rebuilt when many were (hours.py).
    report["rollup_index_rebuilt"] = hours.rollup_index_reclaim(
        folded=report["hours_folded"], min_folded=settings.CLOUDWATCHDOG["COMPACTION_REINDEX_MIN_FOLDED"])
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _tenant_compact(tenant: Tenant, *, older_than: timedelta, now_us: int, batch_series: int) -> dict:
    done = {"series": 0, "chunks": 0, "points": 0, "merged_chunks": 0, "chunk_bytes": 0, "hours_folded": 0,
            "rollups_kept": 0}
    cutoff_us = min(now_us - int(older_than.total_seconds() * 1_000_000),
                    late_before_us(tenant, now_us) - SAFETY_MARGIN_US)
    horizons: dict[int, int] = {}
    for horizon in compaction_horizons:
        for series_id, until_us in horizon(tenant).items():
            horizons[series_id] = min(until_us, horizons.get(series_id, until_us))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {SERIES_TABLE} WHERE tenant_id = %s ORDER BY id", [tenant.id])
        series_ids = [row[0] for row in cursor.fetchall()]
    for first in range(0, len(series_ids), batch_series):
        batch = series_ids[first:first + batch_series]
        # Days wholly behind the cutoff (the day of the cutoff stays rows), and of those only the
        # points detection has evaluated: a later point of such a day joins its chunk next time.
        closed_us = int(chunks.period_start_us(cutoff_us))
        cutoffs = [min(closed_us, horizons[s] + 1) if s in horizons else closed_us for s in batch]
        with transaction.atomic(), connection.cursor() as cursor:
            moved = _batch_compact(cursor, tenant_id=tenant.id, series_ids=batch, cutoffs_us=cutoffs)
        for name, count in moved.items():
            done[name] += count
    # Rollup rows of compacted days left over (days compacted before migration 0011, late points merged
    # since, a refresh that rewrote a row being folded) into their chunks' hours.
    for name, count in hours.hours_fold_tenant(tenant_id=tenant.id).items():
        done[name] += count
    return done


def _batch_compact(cursor, *, tenant_id: int, series_ids: list[int], cutoffs_us: list[int]) -> dict:
    locks.xact_lock(cursor, Lock.COMPACTION, tenant_id)
    query = cursor.mogrify(
        f"""
        DELETE FROM {POINT_TABLE} p
        USING unnest(%s::bigint[], %s::bigint[]) AS s(series_id, cutoff_us)
        WHERE p.tenant_id = %s AND p.series_id = s.series_id
          AND p.ts < {sql_at('s.cutoff_us')}
        RETURNING p.series_id, p.ts, p.value
        """,
        [series_ids, cutoffs_us, tenant_id],
    ).decode()
    buffer = io.BytesIO()
    pgcopy.copy(cursor, f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", buffer)
    moved_series, moved_ts, moved_values = pgcopy.decode_points(buffer.getbuffer())
    if len(moved_series) == 0:
        return {"series": 0, "chunks": 0, "points": 0, "merged_chunks": 0, "chunk_bytes": 0, "hours_folded": 0}
    series_step, ts_step = np.diff(moved_series), np.diff(moved_ts)
    if not ((series_step > 0) | ((series_step == 0) & (ts_step > 0))).all():
        # DELETE returns rows in the order it met them: per series through the key, usually sorted
        order = np.lexsort((moved_ts, moved_series))
        moved_series, moved_ts, moved_values = moved_series[order], moved_ts[order], moved_values[order]
    periods = chunks.period_start_us(moved_ts)
    starts = np.flatnonzero(np.concatenate(([True], (moved_series[1:] != moved_series[:-1])
                                                   | (periods[1:] != periods[:-1]))))
    ends = np.append(starts[1:], len(moved_series))
    existing = chunks.existing_chunks(cursor, tenant_id=tenant_id, series_ids=moved_series[starts],
                                      periods_us=periods[starts])
    existing_hours = _existing_hours(cursor, tenant_id=tenant_id, pairs=list(existing))
    day_rollups = hours.day_rollups(cursor, tenant_id=tenant_id, series_ids=moved_series[starts].tolist(),
                                    periods_us=periods[starts].tolist())
    records, folded = [], []
    chunk_bytes = merged = 0
    for start, end in zip(starts.tolist(), ends.tolist()):
        series_id, period = int(moved_series[start]), int(periods[start])
        ts_us, values = moved_ts[start:end], moved_values[start:end]
        if (series_id, period) in existing:
            # Late rows of a day compacted before: the chunk's points were there first and win.
            old_ts, old_values = existing[(series_id, period)]
            new = ~np.isin(ts_us, old_ts)
            ts_us = np.concatenate((old_ts, ts_us[new]))
            values = np.concatenate((old_values, values[new]))
            order = np.argsort(ts_us, kind="stable")
            ts_us, values = ts_us[order], values[order]
            merged += 1
        data = codec.encode(ts_us, values)
        chunk_bytes += len(data)
        # The day's refreshed rollup rows go into the chunk row as it is written (no second version of it).
        hour_stats, folded_here = hours.fold(period_us=period, ts_us=ts_us, hours=existing_hours.get((series_id, period)),
                                             rollups=day_rollups.get((series_id, period), []))
        folded += [(series_id, *row) for row in folded_here]
        records.append((tenant_id, series_id, period, int(ts_us[0]), int(ts_us[-1]), len(ts_us),
                        float(np.sum(values)), float(values.min()), float(values.max()), data, hour_stats))
    _chunks_write(cursor, records)
    hours.rollups_delete(cursor, tenant_id=tenant_id, folded=folded)
    return {"series": len(np.unique(moved_series)), "chunks": len(records), "points": int(len(moved_series)),
            "merged_chunks": merged, "chunk_bytes": chunk_bytes, "hours_folded": len(folded)}


def _existing_hours(cursor, *, tenant_id: int, pairs: list[tuple[int, int]]) -> dict:
    """The stored hours of these (series, period µs) chunks that have some."""
    if not pairs:
        return {}
    cursor.execute(
        f"""
        SELECT c.series_id, {sql_us('c.period_start')}, c.hours
        FROM unnest(%s::bigint[], %s::bigint[]) AS s(series_id, period_us)
        JOIN {CHUNK_TABLE} c ON c.tenant_id = %s AND c.series_id = s.series_id AND c.period_start = {sql_at('s.period_us')}
        WHERE c.hours IS NOT NULL
        """,
        [[int(p[0]) for p in pairs], [int(p[1]) for p in pairs], tenant_id],
    )
    return {(series_id, period): blob for series_id, period, blob in cursor.fetchall()}


_CHUNK_COLUMNS = "tenant_id, series_id, period_start, first_ts, last_ts, count, sum, min, max, data, hours"


def _chunks_write(cursor, records: list[tuple]) -> None:
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS compacted_chunks (LIKE {CHUNK_TABLE}) ON COMMIT DELETE ROWS")
    cursor.execute("DELETE FROM compacted_chunks")
    stream = pgcopy.encode_rows(records, ("int8", "int8", "timestamptz_us", "timestamptz_us", "timestamptz_us",
                                          "int4", "float8", "float8", "float8", "bytea", "bytea"))
    pgcopy.copy(cursor, f"COPY compacted_chunks ({_CHUNK_COLUMNS}) FROM STDIN WITH (FORMAT binary)", io.BytesIO(stream))
    cursor.execute(
        f"""
        INSERT INTO {CHUNK_TABLE} ({_CHUNK_COLUMNS}) SELECT {_CHUNK_COLUMNS} FROM compacted_chunks
        ON CONFLICT (tenant_id, series_id, period_start) DO UPDATE
        SET first_ts = excluded.first_ts, last_ts = excluded.last_ts, count = excluded.count, sum = excluded.sum,
            min = excluded.min, max = excluded.max, data = excluded.data, hours = excluded.hours
        """
    )
