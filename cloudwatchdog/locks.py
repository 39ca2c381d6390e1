"""PostgreSQL advisory locks: every one CloudWatchDog takes, numbered in one place, and the calls that
take them.

A lock is (namespace, key): the namespace names what it guards, the key is a tenant id (or a
tenant's shard, or 0 for a lock of the whole database). Session locks (`held_if_free` for a block,
`try_lock`, `lock`, `unlock` where one function takes and another releases) last until released, whatever
transactions come and go; transaction locks (`xact_lock`) until the transaction ends.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum


class Lock(IntEnum):
    INGEST = 7_301  # shared by ingest, exclusive for detection's read of new points
    RUN = 7_302  # a tenant's detection run: exclusive for a whole-tenant run, shared by its shard runs
    SERIES = 7_303  # one tenant's series creation at a time, so the series limit holds
    RUN_WAITER = 7_304  # held by the one caller allowed to wait for a tenant's run
    COMPACTION = 7_305  # exclusive per batch of compaction, shared by ingest of late points
    RUN_SHARD = 7_306  # one shard of a tenant's run (key: tenant id * MAX_SHARDS + shard)
    RULES = 7_308  # a tenant's detection rule creations, one at a time, so its rule limit holds
    PARTITIONS = 7_309  # DDL on the points table's partitions, one process at a time (key 0)
    ROLLUPS_REFRESH = 7_310  # one rollup refresh at a time (key 0)
    ROLLUP_REINDEX = 7_311  # one rebuild of the rollup index at a time, after a compaction (key 0)


def xact_lock_sql(lock: Lock, key: int, *, shared: bool = False) -> tuple[str, list]:
    """The statement taking `lock` until the transaction ends, for a caller batching statements."""
    return f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}(%s, %s)", [int(lock), key]


def xact_lock(cursor, lock: Lock, key: int, *, shared: bool = False) -> None:
    """Wait for the lock and hold it until the transaction ends."""
    cursor.execute(*xact_lock_sql(lock, key, shared=shared))


def try_lock(cursor, lock: Lock, key: int, *, shared: bool = False) -> bool:
    """Take the session lock if it is free; never waits."""
    cursor.execute(f"SELECT pg_try_advisory_lock{'_shared' if shared else ''}(%s, %s)", [int(lock), key])
    return cursor.fetchone()[0]


def lock(cursor, lock: Lock, key: int) -> None:
    """Wait for the session lock (bounded by the transaction's lock_timeout, if any)."""
    cursor.execute("SELECT pg_advisory_lock(%s, %s)", [int(lock), key])


def unlock(cursor, lock: Lock, key: int, *, shared: bool = False) -> None:
    """Release a session lock this connection holds."""
    cursor.execute(f"SELECT pg_advisory_unlock{'_shared' if shared else ''}(%s, %s)", [int(lock), key])


@contextmanager
def held_if_free(cursor, lock: Lock, key: int, *, shared: bool = False) -> Iterator[bool]:
    """The session lock for the block if it is free (True), else nothing held (False); never waits.
    Released on leaving the block, however it is left."""
    taken = try_lock(cursor, lock, key, shared=shared)
    try:
        yield taken
    finally:
        if taken:
            unlock(cursor, lock, key, shared=shared)
