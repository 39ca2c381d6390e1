"""The hourly stats of compacted days, kept in their chunk row instead of as rollup rows.

A rollup row costs about 100 bytes (heap and primary key) for an hour's count/sum/min/max: at a
point a minute, more than the compressed points themselves. Once a day is compacted, its rollup
rows are folded into the chunk's `hours` (codec.encode_hours, about 15 bytes an hour) and deleted.

The rule every reader keeps: **a rollup row for (series, hour) overrides the chunk's hour.** A late
point into a compacted day is refreshed into a rollup row (rollups._rebuild_with_chunks) holding the
chunk's points and the late rows; that row is the hour's truth until a compaction merges the late
rows into the chunk and folds the row again. An hour is folded only when its rollup row counts
exactly the chunk's own points in that hour, so a chunk's hours describe its points and nothing
else; any other rollup row stays, and is read as it is. The fold copies the rollup's float bits,
so sums stay what SQL added, in time order.
"""
from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
from django.db import DatabaseError, connection, transaction

from cloudwatchdog import locks
from cloudwatchdog.locks import Lock
from cloudwatchdog.timeutil import sql_at, sql_us, to_us
from metrics.models import CHUNK_TABLE, ROLLUP_1H_TABLE
from metrics.storage import chunks, codec

logger = logging.getLogger(__name__)

HOUR_US = 3_600_000_000
ROLLUP_INDEX = "metrics_rollup_1h_pkey"


def hours_fold_tenant(*, tenant_id: int, batch_chunks: int = 1000) -> dict:
    """Fold every rollup row of the tenant's compacted days that matches its chunk (a transaction per
    batch of chunks, under the compaction lock); returns how many hours were folded and how many rollup
    rows stay (late points not merged yet). Restartable: what is folded is gone from the rollups."""
    done = {"hours_folded": 0, "rollups_kept": 0}
    after = (-1, -1)
    while True:
        with connection.cursor() as cursor:
            # Chunks with rollup rows in their day, in key order from where the last batch stopped.
            cursor.execute(
                f"""
                SELECT DISTINCT c.series_id, {sql_us('c.period_start')}
                FROM {ROLLUP_1H_TABLE} r
                JOIN {CHUNK_TABLE} c ON c.tenant_id = r.tenant_id AND c.series_id = r.series_id
                 AND c.period_start = date_bin(interval '{chunks.CHUNK_SECONDS} seconds', r.bucket, timestamptz 'epoch')
                WHERE r.tenant_id = %s AND (c.series_id, c.period_start) > (%s, {sql_at('%s')})
                ORDER BY 1, 2 LIMIT %s
                """,
                [tenant_id, after[0], after[1], batch_chunks],
            )
            pairs = cursor.fetchall()
        if not pairs:
            return done
        with transaction.atomic(), connection.cursor() as cursor:
            locks.xact_lock(cursor, Lock.COMPACTION, tenant_id)
            folded, kept = _fold(cursor, tenant_id=tenant_id, pairs=pairs)
        done["hours_folded"] += folded
        done["rollups_kept"] += kept
        after = pairs[-1]


def _fold(cursor, *, tenant_id: int, pairs: list[tuple[int, int]]) -> tuple[int, int]:
    series_ids, periods = [p[0] for p in pairs], [p[1] for p in pairs]
    cursor.execute(
        f"""
        SELECT c.series_id, {sql_us('c.period_start')}, c.data, c.hours
        FROM unnest(%s::bigint[], %s::bigint[]) AS s(series_id, period_us)
        JOIN {CHUNK_TABLE} c ON c.tenant_id = %s AND c.series_id = s.series_id AND c.period_start = {sql_at('s.period_us')}
        """,
        [series_ids, periods, tenant_id],
    )
    stored = {(series_id, period): (data, hours) for series_id, period, data, hours in cursor.fetchall()}
    rollups = day_rollups(cursor, tenant_id=tenant_id, series_ids=series_ids, periods_us=periods)
    updates, folded = [], []
    for key, rows in rollups.items():
        if key not in stored:
            continue
        data, hours = stored[key]
        blob, folded_here = fold(period_us=key[1], ts_us=codec.decode(data)[0], hours=hours, rollups=rows)
        if folded_here:
            updates.append((key[0], key[1], blob))
            folded += [(key[0], *row) for row in folded_here]
    if updates:
        cursor.execute(
            f"""
            UPDATE {CHUNK_TABLE} c SET hours = u.hours
            FROM unnest(%s::bigint[], %s::bigint[], %s::bytea[]) AS u(series_id, period_us, hours)
            WHERE c.tenant_id = %s AND c.series_id = u.series_id AND c.period_start = {sql_at('u.period_us')}
            """,
            [[u[0] for u in updates], [u[1] for u in updates], [u[2] for u in updates], tenant_id],
        )
    rollups_delete(cursor, tenant_id=tenant_id, folded=folded)
    return len(folded), sum(len(rows) for rows in rollups.values()) - len(folded)


def rollup_index_reclaim(*, folded: int, min_folded: int) -> bool:
    """Rebuild the rollup table's primary key when a compaction folded (deleted) at least `min_folded`
    rollup rows; True when it was rebuilt.

    Folding a closed day deletes a day of rollup rows per series; VACUUM leaves their B-tree pages
    empty, and until later days' rollups reuse them they cost more than the rows left (at 1,000 series
    x 1,000 points, 0.70 of 3.51 bytes a point). REINDEX CONCURRENTLY rebuilds it from the rows left
    (the uncompacted days, a small index) without blocking ingest, the refresh or reads; it cannot run
    in a transaction, so a caller inside one (a test's) keeps the pages. A failure is logged and leaves
    the old index in use; the invalid copy it leaves is dropped, so the next pass starts clean.
    """
    if folded < min_folded or connection.in_atomic_block:
        return False
    with connection.cursor() as cursor, locks.held_if_free(cursor, Lock.ROLLUP_REINDEX, 0) as held:
        if not held:
            return False  # another compaction is rebuilding it now
        try:
            _drop_invalid_copies(cursor)
            cursor.execute(f"REINDEX INDEX CONCURRENTLY {ROLLUP_INDEX}")
        except DatabaseError:
            logger.exception("rebuilding %s failed; its emptied pages wait for the next compaction", ROLLUP_INDEX)
            _drop_invalid_copies(cursor)
            return False
    return True


def _drop_invalid_copies(cursor) -> None:
    """Drop what an interrupted REINDEX CONCURRENTLY left: invalid `<index>_ccnew` / `_ccold` indexes."""
    cursor.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass AND NOT i.indisvalid AND c.relname LIKE %s",
        [ROLLUP_1H_TABLE, f"{ROLLUP_INDEX}_cc%"],
    )
    for (name,) in cursor.fetchall():
        cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


def day_rollups(cursor, *, tenant_id: int, series_ids: list[int], periods_us: list[int]) -> dict[tuple[int, int], list]:
    """The rollup rows (bucket µs, count, sum, min, max) of each (series, chunk period) given."""
    cursor.execute(
        f"""
        SELECT r.series_id, s.period_us, {sql_us('r.bucket')}, r.count, r.sum, r.min, r.max
        FROM unnest(%s::bigint[], %s::bigint[]) AS s(series_id, period_us)
        JOIN {ROLLUP_1H_TABLE} r ON r.tenant_id = %s AND r.series_id = s.series_id
         AND r.bucket >= {sql_at('s.period_us')} AND r.bucket < {sql_at(f's.period_us + {chunks.CHUNK_US}')}
        ORDER BY 1, 2, 3
        """,
        [list(series_ids), list(periods_us), tenant_id],
    )
    rollups: dict[tuple[int, int], list[tuple]] = {}
    for series_id, period, *row in cursor.fetchall():
        rollups.setdefault((series_id, period), []).append(tuple(row))
    return rollups


def fold(*, period_us: int, ts_us: np.ndarray, hours: bytes | memoryview | None, rollups: list[tuple]) -> tuple:
    """A chunk's hours with the rollup rows (bucket µs, count, sum, min, max) that count exactly its own
    points in their hour folded in: (the encoded hours or None when there are none, the rows folded)."""
    entries = {}
    if hours is not None:
        entries = {int(h): stats for h, *stats in zip(*(part.tolist() for part in codec.decode_hours(hours)))}
    own = np.bincount((ts_us - period_us) // HOUR_US, minlength=24)
    folded = []
    for bucket_us, count, total, low, high in rollups:
        hour = (bucket_us - period_us) // HOUR_US
        if count == own[hour]:
            entries[hour] = [count, total, low, high]
            folded.append((bucket_us, count, total, low, high))
    if not entries:
        return None, folded
    ordered = sorted(entries.items())
    columns = [np.array(column) for column in zip(*(stats for _, stats in ordered))]
    return codec.encode_hours(np.array([hour for hour, _ in ordered]), *columns), folded


def rollups_delete(cursor, *, tenant_id: int, folded: list[tuple]) -> None:
    """Delete folded rollup rows (series, bucket µs, count, sum, min, max), each only if still as read:
    one a refresh rewrote meanwhile stays, and overrides the chunk's hour."""
    if not folded:
        return
    cursor.execute(
        f"""
        DELETE FROM {ROLLUP_1H_TABLE} r
        USING unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::float8[], %s::float8[], %s::float8[])
              AS f(series_id, bucket_us, count, sum, min, max)
        WHERE r.tenant_id = %s AND r.series_id = f.series_id AND r.bucket = {sql_at('f.bucket_us')}
          AND r.count = f.count AND r.sum = f.sum AND r.min = f.min AND r.max = f.max
        """,
        [*([row[k] for row in folded] for k in range(6)), tenant_id],
    )


def hour_relation(*, tenant_id: int, series_ids: list[int], start: datetime, end: datetime,
                  stored: list[tuple] | None = None) -> tuple[str, dict]:
    """A SQL relation (series_id, bucket, count, sum, min, max) of the hourly stats of these series in
    [start, end): the rollup rows, and the hours kept in chunks that no rollup row overrides. `stored`:
    the (series id, period µs, hours) of the chunks over the range if the caller has read them. Its
    parameters are named hours_*; the caller passes them with its own."""
    if stored is None:
        stored = _stored_hours(tenant_id=tenant_id, series_ids=series_ids, start=start, end=end)
    params = {"hours_tenant": tenant_id, "hours_series": list(series_ids), "hours_start": start, "hours_end": end}
    sql = (f"SELECT series_id, bucket, count, sum, min, max FROM {ROLLUP_1H_TABLE} "
           "WHERE tenant_id = %(hours_tenant)s AND series_id = ANY(%(hours_series)s) "
           "AND bucket >= %(hours_start)s AND bucket < %(hours_end)s")
    columns: list[list] = [[], [], [], [], [], []]
    start_us, end_us = to_us(start), to_us(end)
    for series_id, period_us, blob in stored:
        hours, counts, sums, mins, maxs = codec.decode_hours(blob)
        buckets = period_us + hours * HOUR_US
        keep = (buckets >= start_us) & (buckets < end_us)
        columns[0] += [series_id] * int(keep.sum())
        for column, part in zip(columns[1:], (buckets, counts, sums, mins, maxs)):
            column += part[keep].tolist()
    if not columns[0]:
        return sql, params
    texts = ["{" + ",".join(map(str, column)) + "}" for column in columns[:3]]
    texts += ["{" + ",".join(map(repr, column)) + "}" for column in columns[3:]]  # repr round-trips a float
    params.update(zip(("hours_s", "hours_b", "hours_c", "hours_sum", "hours_min", "hours_max"), texts))
    sql += f"""
        UNION ALL
        SELECT h.series_id, {sql_at('h.bucket_us')}, h.count, h.sum, h.min, h.max
        FROM unnest(%(hours_s)s::bigint[], %(hours_b)s::bigint[], %(hours_c)s::bigint[], %(hours_sum)s::float8[],
                    %(hours_min)s::float8[], %(hours_max)s::float8[]) AS h(series_id, bucket_us, count, sum, min, max)
        WHERE NOT EXISTS (SELECT 1 FROM {ROLLUP_1H_TABLE} r WHERE r.tenant_id = %(hours_tenant)s
                          AND r.series_id = h.series_id AND r.bucket = {sql_at('h.bucket_us')})"""
    return sql, params


def hour_arrays(cursor, *, tenant_id: int, series_ids: list[int], start: datetime, end: datetime,
                stored: list[tuple]) -> tuple[np.ndarray, ...]:
    """What hour_relation holds, as arrays (series, bucket µs, count, sum, min, max) in series and bucket
    order: the rollup rows, and the hours of the `stored` (series id, period µs, hours) chunks that no
    rollup row overrides."""
    cursor.execute(
        f"SELECT series_id, {sql_us('bucket')}, count, sum, min, max FROM {ROLLUP_1H_TABLE} "
        "WHERE tenant_id = %s AND series_id = ANY(%s) AND bucket >= %s AND bucket < %s",
        [tenant_id, list(series_ids), start, end],
    )
    rows = cursor.fetchall()
    parts = [tuple(np.array(column, dtype) for column, dtype in zip(zip(*rows), _HOUR_DTYPES))] if rows else []
    if stored:
        # Decoded chunk by chunk, then placed and cut to the range in one pass over all of them.
        decoded = [codec.decode_hours(blob) for _, _, blob in stored]
        sizes = [len(day[0]) for day in decoded]
        columns = [np.concatenate([day[k] for day in decoded]) for k in range(5)]
        series = np.repeat(np.array([row[0] for row in stored], np.int64), sizes)
        buckets = np.repeat(np.array([row[1] for row in stored], np.int64), sizes) + columns[0] * HOUR_US
        keep = (buckets >= to_us(start)) & (buckets < to_us(end))
        parts.append((series[keep], buckets[keep], *(column[keep] for column in columns[1:])))
    if not parts:
        return tuple(np.array([], dtype) for dtype in _HOUR_DTYPES)
    columns = [np.concatenate(column) for column in zip(*parts)]
    # A rollup row (first in `parts`) overrides a chunk's hour: keep the first of each (series, bucket).
    order = np.lexsort((columns[1], columns[0]))  # stable: among equal keys, the rollup row stays first
    columns = [column[order] for column in columns]
    first = np.concatenate(([True], (columns[0][1:] != columns[0][:-1]) | (columns[1][1:] != columns[1][:-1])))
    return tuple(column[first] for column in columns)


_HOUR_DTYPES = (np.int64, np.int64, np.int64, np.float64, np.float64, np.float64)


def _stored_hours(*, tenant_id: int, series_ids: list[int], start: datetime, end: datetime) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT series_id, {sql_us('period_start')}, hours FROM {CHUNK_TABLE}
            WHERE tenant_id = %s AND series_id = ANY(%s) AND hours IS NOT NULL
              AND period_start > %s - interval '{chunks.CHUNK_SECONDS} seconds' AND period_start < %s
            """,
            [tenant_id, list(series_ids), start, end],
        )
        return cursor.fetchall()


def hours_cut(hours: bytes | None, *, period_us: int, cutoff_us: int) -> bytes | None:
    """A chunk's hours without those starting before the cutoff, as retention deletes rollup rows."""
    if hours is None:
        return None
    decoded = codec.decode_hours(hours)
    keep = period_us + decoded[0] * HOUR_US >= cutoff_us
    return codec.encode_hours(*(part[keep] for part in decoded))
