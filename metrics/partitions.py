"""Weekly range partitions of metrics_point: names, bounds, creation ahead and on demand, retention.

A partition covers one ISO week [Monday 00:00 UTC, next Monday). Ingest creates a missing
partition for a backfilled week on demand; the scheduled task creates the coming weeks ahead
so live ingest never waits on DDL.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from django.db import connection, transaction

from metrics.models import POINT_TABLE

WEEK_US = 7 * 24 * 3600 * 1_000_000
# 1970-01-05 was a Monday: week starts are this plus whole weeks.
_MONDAY_US = 4 * 24 * 3600 * 1_000_000
_known_weeks: set[int] = set()


def week_start_us(ts_us):
    """The start of the partition week of a time (µs), or of each time in an array."""
    return _MONDAY_US + (ts_us - _MONDAY_US) // WEEK_US * WEEK_US


def partition_name(week_us: int) -> str:
    start = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=week_us)
    return f"{POINT_TABLE}_p{start:%Y%m%d}"


def _load_known_weeks() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = %s
            """,
            [POINT_TABLE],
        )
        for (name,) in cursor.fetchall():
            stamp = name.rsplit("_p", 1)[-1]
            start = datetime.strptime(stamp, "%Y%m%d").replace(tzinfo=timezone.utc)
            _known_weeks.add(int((start - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds()) * 1_000_000)


def partitions_ensure(*, ts_us_values) -> int:
    """Create the weekly partitions that the given timestamps fall in; returns how many were created."""
    weeks = {week_start_us(ts) for ts in ts_us_values}
    missing = weeks - _known_weeks
    if missing:
        _load_known_weeks()
        missing = weeks - _known_weeks
    if not missing:
        return 0
    created = 0
    with transaction.atomic(), connection.cursor() as cursor:
        # Concurrent ingest requests may want the same new week; one creates it.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [POINT_TABLE + "_partitions"])
        for week in sorted(missing):
            name = partition_name(week)
            start = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=week)
            end = start + timedelta(days=7)
            cursor.execute("SELECT to_regclass(%s)", [name])
            if cursor.fetchone()[0] is None:
                cursor.execute(
                    f"CREATE TABLE {name} PARTITION OF {POINT_TABLE} FOR VALUES FROM (%s) TO (%s)",
                    [start, end],
                )
                created += 1
    _known_weeks.update(missing)
    return created


def partitions_ensure_ahead(*, now: datetime, weeks_ahead: int = 2) -> int:
    """Create this week's partition and the next `weeks_ahead` ones."""
    now_us = int((now - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds() * 1_000_000)
    return partitions_ensure(ts_us_values=[now_us + k * WEEK_US for k in range(weeks_ahead + 1)])


def partitions_drop_before(*, cutoff: datetime) -> list[str]:
    """Drop whole partitions that end at or before `cutoff` (global retention); returns their names."""
    _load_known_weeks()
    dropped = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [POINT_TABLE + "_partitions"])
        for week in sorted(_known_weeks):
            end = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=week + WEEK_US)
            if end <= cutoff:
                name = partition_name(week)
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
                dropped.append(name)
                _known_weeks.discard(week)
    return dropped


def forget_known_partitions() -> None:
    """Clear the per-process cache (tests that drop partitions use it)."""
    _known_weeks.clear()
