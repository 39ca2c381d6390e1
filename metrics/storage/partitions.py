"""Range partitions of metrics_point: weekly for recent time, monthly for old backfill, bounds read
from the catalog.

Live data goes into one partition per ISO week [Monday 00:00 UTC, next Monday), which the hourly
maintenance creates ahead so live ingest never waits on DDL. A backfilled point whose time has no
partition gets one on demand: its week when that is recent (within RECENT_WEEKS of now), else its
calendar month; either is clipped to its neighbours, so partitions never overlap and old history
costs at most one partition a month (with the earliest accepted timestamp, a bounded number).
Bounds always come from `pg_class.relpartbound`; names are only labels and are never parsed.

Creating one is `CREATE TABLE` then `ATTACH PARTITION`, which takes SHARE UPDATE EXCLUSIVE on
metrics_point: it does not conflict with other tenants' inserts and reads, as `CREATE TABLE ...
PARTITION OF` (ACCESS EXCLUSIVE) did. Every DDL runs under a short `lock_timeout`: when it cannot
get its locks in time it gives up with PartitionsBusy instead of queueing everyone behind it.
"""
from __future__ import annotations

import bisect
import logging
from datetime import datetime

import numpy as np
from django.db import OperationalError, connection, transaction

from cloudwatchdog import locks
from cloudwatchdog.locks import Lock
from cloudwatchdog.timeutil import from_us, to_us
from metrics.models import POINT_TABLE

logger = logging.getLogger(__name__)

WEEK_US = 7 * 24 * 3600 * 1_000_000
# 1970-01-05 was a Monday: week starts are this plus whole weeks.
_MONDAY_US = 4 * 24 * 3600 * 1_000_000
RECENT_WEEKS = 4
DDL_LOCK_TIMEOUT = "2s"


class PartitionsBusy(Exception):
    """Partition DDL could not get its locks within DDL_LOCK_TIMEOUT; the caller may retry soon."""


class _KnownRanges:
    """This process's copy of the partitions' [start, end) bounds in µs, sorted; the catalog is the truth."""

    def __init__(self):
        self.starts: list[int] = []
        self.ends: list[int] = []

    def load(self) -> None:
        with connection.cursor() as cursor:
            bounds = _partition_bounds(cursor)
        self.starts = [start for _, start, _ in bounds]
        self.ends = [end for _, _, end in bounds]

    def covered(self, ts_us: np.ndarray) -> np.ndarray:
        """Whether each time falls in a known partition."""
        if not self.starts:
            return np.zeros(len(ts_us), bool)
        index = np.searchsorted(np.asarray(self.starts), ts_us, side="right") - 1
        inside = index >= 0
        inside[inside] = ts_us[inside] < np.asarray(self.ends)[index[inside]]
        return inside

    def neighbours(self, ts_us: int) -> tuple[int | None, int | None]:
        """The end of the partition before an uncovered time and the start of the one after it."""
        position = bisect.bisect_right(self.starts, ts_us)
        before = self.ends[position - 1] if position > 0 else None
        after = self.starts[position] if position < len(self.starts) else None
        return before, after

    def add(self, start: int, end: int) -> None:
        position = bisect.bisect_left(self.starts, start)
        self.starts.insert(position, start)
        self.ends.insert(position, end)

    def clear(self) -> None:
        self.starts, self.ends = [], []


_known = _KnownRanges()


def _partition_bounds(cursor) -> list[tuple[str, int, int]]:
    """(name, start µs, end µs) of every partition of metrics_point, by start, from the catalog."""
    cursor.execute(
        r"""
        SELECT c.relname, (extract(epoch FROM b[1]::timestamptz) * 1000000)::bigint,
               (extract(epoch FROM b[2]::timestamptz) * 1000000)::bigint
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                        'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS b
        WHERE i.inhparent = %s::regclass
        ORDER BY 2
        """,
        [POINT_TABLE],
    )
    return cursor.fetchall()


def oldest_start_us(cursor) -> int | None:
    """Where the oldest partition starts (µs): no row of metrics_point is older. None without partitions."""
    bounds = _partition_bounds(cursor)
    return bounds[0][1] if bounds else None


def week_start_us(ts_us):
    """The start of the week of a time (µs), or of each time in an array."""
    return _MONDAY_US + (ts_us - _MONDAY_US) // WEEK_US * WEEK_US


def partition_name(start_us: int) -> str:
    """A label for the partition starting at `start_us` (unique: partitions never share a start)."""
    start = from_us(start_us)
    return f"{POINT_TABLE}_p{start.year:04d}{start.month:02d}{start.day:02d}"


def _desired_range(ts_us: int, now_us: int) -> tuple[int, int]:
    """The partition a time should get: its week if recent, else its calendar month."""
    week = int(week_start_us(ts_us))
    if week >= int(week_start_us(now_us)) - RECENT_WEEKS * WEEK_US:
        return week, week + WEEK_US
    moment = from_us(ts_us)
    month = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = month.replace(year=month.year + 1, month=1) if month.month == 12 else month.replace(month=month.month + 1)
    return to_us(month), to_us(following)


def partitions_ensure(*, ts_us, now_us: int, max_new: int | None = None) -> tuple[np.ndarray, int]:
    """Create the partitions that the given times (µs) need, at most `max_new` of them.

    Returns (whether each time has a partition now, how many were created). Raises PartitionsBusy
    when the DDL could not get its locks in time.
    """
    ts_us = np.asarray(ts_us, dtype=np.int64)
    covered = _known.covered(ts_us)
    if covered.all():
        return covered, 0
    _known.load()
    covered = _known.covered(ts_us)
    if covered.all():
        return covered, 0
    created = 0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
            # Concurrent requests may want the same range; one creates it, the others see it.
            locks.xact_lock(cursor, Lock.PARTITIONS, 0)
            _known.load()
            for ts in np.unique(ts_us[~_known.covered(ts_us)]).tolist():
                if _known.covered(np.array([ts]))[0]:
                    continue  # the range created for an earlier time covers it
                if max_new is not None and created >= max_new:
                    break
                _create(cursor, ts, now_us)
                created += 1
    except OperationalError as error:
        _known.clear()  # what was created before the rollback is gone again
        if _lock_not_available(error):
            raise PartitionsBusy(str(error)) from error
        raise
    return _known.covered(ts_us), created


def _create(cursor, ts_us: int, now_us: int) -> None:
    start, end = _desired_range(ts_us, now_us)
    before, after = _known.neighbours(ts_us)
    start = max(start, before) if before is not None else start
    end = min(end, after) if after is not None else end
    name = partition_name(start)
    cursor.execute(f"CREATE TABLE {name} (LIKE {POINT_TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    cursor.execute(
        f"ALTER TABLE {POINT_TABLE} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
        [from_us(start), from_us(end)],
    )
    _known.add(start, end)


def partitions_ensure_ahead(*, now: datetime, weeks_ahead: int = 2) -> int:
    """Create this week's partition and the next `weeks_ahead` ones; returns how many were created."""
    now_us = to_us(now)
    _, created = partitions_ensure(ts_us=[now_us + k * WEEK_US for k in range(weeks_ahead + 1)], now_us=now_us)
    return created


def partitions_drop_before(*, cutoff: datetime) -> list[str]:
    """Drop whole partitions that end at or before `cutoff` (global retention); returns their names.

    DROP takes ACCESS EXCLUSIVE on metrics_point; under the lock timeout, ingest and reads wait at
    most that long, and a drop that cannot get the lock is left for the next hourly pass.
    """
    cutoff_us = to_us(cutoff)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
            locks.xact_lock(cursor, Lock.PARTITIONS, 0)
            names = [name for name, _, end in _partition_bounds(cursor) if end <= cutoff_us]
            for name in names:
                cursor.execute(f'DROP TABLE IF EXISTS "{name}"')
    except OperationalError as error:
        if not _lock_not_available(error):
            raise
        logger.warning("retention: partitions not dropped this pass, metrics_point is busy: %s", error)
        names = []
    _known.clear()
    return names


def partitions_truncate_emptied(*, before: datetime, min_bytes: int = 1 << 20) -> list[str]:
    """TRUNCATE partitions ending before `before` that compaction emptied, so their files (heap and
    primary key, which DELETE and VACUUM leave at full size) shrink to nothing; returns their names.

    Each is locked (ACCESS EXCLUSIVE, under the lock timeout) and checked empty under the lock, so a
    late point written meanwhile is never truncated away: its insert waits, or it makes the check
    fail. The partition stays attached for late points to come.
    """
    truncated = []
    with connection.cursor() as cursor:
        names = [name for name, _, end in _partition_bounds(cursor) if end <= to_us(before)]
        cursor.execute("SELECT relname FROM pg_class WHERE relname = ANY(%s) AND pg_total_relation_size(oid) >= %s",
                       [names, min_bytes])
        large = [name for (name,) in cursor.fetchall()]
        # Only those that look empty get the exclusive lock: it would queue readers behind it.
        emptied = []
        for name in large:
            cursor.execute(f'SELECT NOT EXISTS (SELECT 1 FROM "{name}")')
            if cursor.fetchone()[0]:
                emptied.append(name)
    for name in emptied:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
                cursor.execute(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE')
                cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{name}")')
                if not cursor.fetchone()[0]:
                    cursor.execute(f'TRUNCATE "{name}"')
                    truncated.append(name)
        except OperationalError as error:
            if not _lock_not_available(error):
                raise
            logger.info("partition %s is busy; its space is reclaimed on a later pass", name)
    return truncated


def _lock_not_available(error: OperationalError) -> bool:
    return getattr(error.__cause__, "pgcode", None) == "55P03"


def forget_known_partitions() -> None:
    """Clear the per-process copy of the bounds (tests that drop partitions use it)."""
    _known.clear()
