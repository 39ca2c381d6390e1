"""The write path of the point store: a request's accepted points into metrics_point, in one
transaction, and the work other apps hook onto it.

The rows come validated and deduplicated within the batch (metrics.services.points_ingest does that,
with the series they belong to); here they are stored once, first write wins, beside the rollup log
row and whatever the registered hooks do under the tenant's ingest lock.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import psycopg2.errors
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from cloudwatchdog import locks, pgcopy
from cloudwatchdog.locks import Lock
from metrics.models import POINT_TABLE
from metrics.storage import chunks, rollups


@dataclass(frozen=True)
class IngestHook:
    """Work another app does inside every ingest transaction, under the tenant's shared ingest lock.

    `query(tenant_id)` gives a statement (SQL, parameters) that runs right after the lock, in the
    transaction's opening round trip; `apply(cursor, tenant_id, rows, row)` runs after the points
    are written, with that statement's first row (or None). The anomalies app registers its
    late-point marker here, so metrics never imports anomalies.
    """

    query: Callable[[int], tuple[str, list]]
    apply: Callable


post_ingest_hooks: list[IngestHook] = []


@dataclass(frozen=True)
class PointRows:
    """Accepted points of one request as arrays (series id, µs since the epoch, value)."""

    series_ids: np.ndarray
    ts_us: np.ndarray
    values: np.ndarray

    def copy_binary(self, *, tenant_id: int | None) -> bytes:
        """The rows in PostgreSQL's binary COPY format, with or without the leading tenant_id column."""
        return pgcopy.encode_points(self.series_ids, self.ts_us, self.values, tenant_id=tenant_id)


def points_write(*, tenant_id: int, rows: PointRows, late_before_us: int | None = None) -> int:
    """Write the rows in one transaction; returns how many were new.

    Fast path: one binary COPY straight into metrics_point. If any row is already stored the
    COPY fails as a whole; the transaction is then redone through a temp table and
    INSERT ... ON CONFLICT DO NOTHING, so a retried batch stores nothing twice. Points older than
    `late_before_us` may fall in a compacted day: under the compaction lock (shared), those a
    chunk already holds are dropped as duplicates first.
    """
    late = late_before_us is not None and int(rows.ts_us.min()) < late_before_us
    # Inside a caller's transaction a failed COPY must only roll back to a savepoint.
    nested = connection.in_atomic_block
    try:
        with transaction.atomic(savepoint=nested), connection.cursor() as cursor:
            hook_rows = _write_begin(cursor, tenant_id, rows)
            new_rows = _not_compacted(cursor, tenant_id, rows, late_before_us) if late else rows
            if len(new_rows.series_ids):
                _copy_new_points(cursor, tenant_id, new_rows)
                _after_write(cursor, tenant_id, new_rows, hook_rows)
        return len(new_rows.series_ids)
    except _AlreadyStored:
        pass
    with transaction.atomic(savepoint=nested), connection.cursor() as cursor:
        hook_rows = _write_begin(cursor, tenant_id, rows)
        new_rows = _not_compacted(cursor, tenant_id, rows, late_before_us) if late else rows
        accepted = _points_write_deduplicated(cursor, tenant_id=tenant_id, rows=new_rows) if len(new_rows.series_ids) else 0
        if accepted:
            _after_write(cursor, tenant_id, new_rows, hook_rows)
    return accepted


class _AlreadyStored(Exception):
    """A point of the batch is stored already, so its COPY failed as a whole (and rolled back)."""


def _copy_new_points(cursor, tenant_id: int, rows: PointRows) -> None:
    try:
        pgcopy.copy(cursor, f"COPY {POINT_TABLE} (tenant_id, series_id, ts, value) FROM STDIN WITH (FORMAT binary)"
                    + _row_by_row(), io.BytesIO(rows.copy_binary(tenant_id=tenant_id)))
    except IntegrityError as error:
        if isinstance(error.__cause__, psycopg2.errors.UniqueViolation):
            raise _AlreadyStored from error
        raise


def _not_compacted(cursor, tenant_id: int, rows: PointRows, late_before_us: int) -> PointRows:
    """The rows no chunk holds yet, checked under the compaction lock (held to the end of the transaction)."""
    locks.xact_lock(cursor, Lock.COMPACTION, tenant_id, shared=True)
    late = rows.ts_us < late_before_us
    held = np.zeros(len(rows.ts_us), bool)
    held[late] = chunks.compacted_duplicates(cursor, tenant_id=tenant_id, series_ids=rows.series_ids[late],
                                             ts_us=rows.ts_us[late])
    if not held.any():
        return rows
    keep = ~held
    return PointRows(rows.series_ids[keep], rows.ts_us[keep], rows.values[keep])


def _row_by_row() -> str:
    """A COPY clause that makes PostgreSQL before 17 insert a request's rows one by one.

    By default COPY buffers up to 1,000 rows per partition in slots that each pin the table's
    tuple descriptor in the resource owner, whose bookkeeping for many pins of one descriptor is
    quadratic (rewritten in PostgreSQL 17); for request-sized batches that costs more than the
    inserts. A volatile WHERE turns the buffering off: 1.5x the rows per second for batches of
    1,000 (`bench/copy_modes.py`). The condition itself is always true.
    """
    return " WHERE random() >= 0" if connection.pg_version < 170000 else ""


def _write_begin(cursor, tenant_id: int, rows: PointRows) -> list:
    """The statements an ingest transaction starts with, in one round trip; returns the hooks' rows.

    Each statement of a multi-statement query gets its own snapshot, so whatever follows the lock
    sees what committed before it. Only the last statement's result comes back: the last hook's
    query rides along, any other runs on its own.
    """
    # Detection takes this lock exclusively while it fixes watermarks, so a point is either
    # committed before a watermark moves or compared with the moved one (see anomalies.evaluation).
    lock_sql, params = locks.xact_lock_sql(Lock.INGEST, tenant_id, shared=True)
    statements = [lock_sql]
    if not settings.CLOUDWATCHDOG["INGEST_SYNCHRONOUS_COMMIT"]:
        statements.append("SET LOCAL synchronous_commit = off")
    log_sql, log_params = rollups.ingest_log_statement(
        tenant_id=tenant_id, min_us=int(rows.ts_us.min()), max_us=int(rows.ts_us.max()))
    statements.append(log_sql)
    params += log_params
    hook_rows = []
    for hook in post_ingest_hooks[:-1]:
        cursor.execute(*hook.query(tenant_id))
        hook_rows.append(cursor.fetchone())
    if post_ingest_hooks:
        last_sql, last_params = post_ingest_hooks[-1].query(tenant_id)
        statements.append(last_sql)
        params += last_params
    cursor.execute("; ".join(statements), params)
    if post_ingest_hooks:
        hook_rows.append(cursor.fetchone())
    return hook_rows


def _after_write(cursor, tenant_id: int, rows: PointRows, hook_rows: list) -> None:
    for hook, row in zip(post_ingest_hooks, hook_rows):
        hook.apply(cursor, tenant_id, rows, row)


def _points_write_deduplicated(cursor, *, tenant_id: int, rows: PointRows) -> int:
    cursor.execute(
        "CREATE TEMP TABLE IF NOT EXISTS ingest_points (series_id bigint, ts timestamptz, value float8) "
        "ON COMMIT DELETE ROWS"
    )
    # Empty unless this runs inside a caller's longer transaction (ON COMMIT has not fired yet).
    cursor.execute("DELETE FROM ingest_points")
    pgcopy.copy(cursor,
        "COPY ingest_points (series_id, ts, value) FROM STDIN WITH (FORMAT binary)" + _row_by_row(),
        io.BytesIO(rows.copy_binary(tenant_id=None)),
    )
    cursor.execute(
        f"INSERT INTO {POINT_TABLE} (tenant_id, series_id, ts, value) "
        "SELECT %s, series_id, ts, value FROM ingest_points ON CONFLICT DO NOTHING",
        [tenant_id],
    )
    return cursor.rowcount
