"""Writes for metrics: series resolution and the points ingest hot path, retention."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from django.conf import settings
import numpy as np
import psycopg2.errors
from django.db import connection, transaction
from django.utils import timezone

from cloudwatchdog import pgcopy
from metrics import partitions, rollups
from metrics.ingest import EPOCH, Event, EventChecker, Limits, series_key_hash, typed_events
from metrics.models import POINT_TABLE
from tenants.models import Tenant
from tenants.ratelimit import bucket_take



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

INGEST_ADVISORY_NAMESPACE = 7_301  # shared by ingest, exclusive for detection's read of new points


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)


class _SeriesCache:
    """Per-process map of series identities as sent -> series id; the database upsert is the truth.

    An identity is (tenant_id, service, resource_id, metric_name, tags JSON bytes as sent), so a
    known series costs one dict lookup; only an unknown one is validated, hashed and upserted.
    When full it starts over (cheaper on the hot path than LRU bookkeeping on every hit).
    """

    def __init__(self, capacity: int = 1_000_000):
        self.capacity = capacity
        self._ids: dict[tuple, int] = {}
        self.get = self._ids.get

    def put(self, key, series_id: int) -> None:
        if len(self._ids) >= self.capacity:
            self._ids.clear()
        self._ids[key] = series_id

    def clear(self) -> None:
        self._ids.clear()


series_cache = _SeriesCache()


def ingest_limits(*, tenant: Tenant) -> Limits:
    return Limits(
        max_events=tenant.limit("MAX_EVENTS_PER_REQUEST"),
        max_body_bytes=tenant.limit("MAX_BODY_BYTES"),
        max_future_seconds=tenant.limit("MAX_FUTURE_SECONDS"),
        max_tags=tenant.limit("MAX_TAGS"),
        max_tag_key_length=tenant.limit("MAX_TAG_KEY_LENGTH"),
        max_string_length=tenant.limit("MAX_STRING_LENGTH"),
    )


def _oldest_allowed(tenant: Tenant, now: datetime) -> tuple[int | None, str]:
    limits = []
    if tenant.retention_days:
        limits.append((tenant.retention_days, f"is older than this tenant's retention of {tenant.retention_days} days"))
    global_retention = settings.CLOUDWATCHDOG.get("RETENTION_DAYS")
    if global_retention:
        limits.append((global_retention, f"is older than the retention of {global_retention} days"))
    if tenant.max_point_age_days:
        limits.append((tenant.max_point_age_days, f"is older than this tenant's maximum age of {tenant.max_point_age_days} days"))
    if not limits:
        return None, ""
    days, reason = min(limits)
    return int(((now - timedelta(days=days)) - EPOCH) // timedelta(microseconds=1)), reason


def points_rate_check(*, tenant: Tenant, points: int) -> float | None:
    """Take `points` from the tenant's points bucket; returns seconds to wait when it is short."""
    return bucket_take(name="points", tenant_id=tenant.id, rate=tenant.limit("POINTS_PER_SECOND"),
                       burst=tenant.limit("POINTS_BURST"), cost=points)


def points_ingest(*, tenant: Tenant, events: list, now: datetime | None = None) -> IngestResult:
    """Store the valid events of a batch; each (series, ts) is stored once and the first write wins."""
    now = now or timezone.now()
    oldest_us, oldest_reason = _oldest_allowed(tenant, now)
    checker = EventChecker(
        now_us=(now - EPOCH) // timedelta(microseconds=1), oldest_us=oldest_us, oldest_reason=oldest_reason,
        limits=ingest_limits(tenant=tenant),
    )
    typed, errors_by_index = typed_events(events)
    # The hot loop is list comprehensions over the batch: a known series costs one dict lookup,
    # a timestamp text is parsed once however many events share it.
    indices = [i for i, event in enumerate(typed) if event is not None] if errors_by_index else range(len(typed))
    batch = [typed[i] for i in indices] if errors_by_index else typed
    tenant_id = tenant.id
    identities = [(tenant_id, e.service, e.resource_id, e.metric_name, bytes(e.tags)) for e in batch]
    cached = series_cache.get
    series_ids = [cached(identity) for identity in identities]
    identity_errors: dict[tuple, dict] = {}
    if None in series_ids:
        new = {identity: batch[k] for k, identity in enumerate(identities) if series_ids[k] is None}
        resolved: dict[tuple, int] = {}
        identity_errors = _series_resolve(tenant=tenant, new=new, checker=checker, resolved=resolved)
        series_ids = [sid if sid is not None else resolved.get(identities[k]) for k, sid in enumerate(series_ids)]
    texts = [e.timestamp for e in batch]
    parsed = {text: checker.timestamp(text) for text in set(texts)}
    timestamps = [parsed[text] for text in texts]

    refused_timestamp = any(parsed_ts.__class__ is str for parsed_ts in parsed.values())
    if batch and None not in series_ids and not refused_timestamp:
        good = None  # the common case: every event is good
    else:
        good = [k for k in range(len(batch)) if series_ids[k] is not None and timestamps[k].__class__ is int]
    if good is not None and len(good) < len(batch):
        for k in range(len(batch)):
            errors = {}
            if timestamps[k].__class__ is str:
                errors["timestamp"] = [timestamps[k]]
            if series_ids[k] is None:
                errors.update(identity_errors[identities[k]])
            if errors:
                errors_by_index[indices[k]] = errors
    result = IngestResult()
    if good is None:
        sid = np.array(series_ids, np.int64)
        ts = np.array(timestamps, np.int64)
        values = np.array([e.value for e in batch], np.float64)
    elif good:
        sid = np.fromiter((series_ids[k] for k in good), np.int64, len(good))
        ts = np.fromiter((timestamps[k] for k in good), np.int64, len(good))
        values = np.fromiter((batch[k].value for k in good), np.float64, len(good))
    if good is None or good:
        # A repeat of (series, ts) inside the batch is a duplicate; the earliest event wins.
        order = np.lexsort((np.arange(len(sid)), ts, sid))
        repeat = np.zeros(len(sid), bool)
        repeat[order[1:]] = (sid[order[1:]] == sid[order[:-1]]) & (ts[order[1:]] == ts[order[:-1]])
        keep = ~repeat
        rows = PointRows(sid[keep], ts[keep], values[keep])
        result.duplicates = int(repeat.sum())
        partitions.partitions_ensure(ts_us_values=rows.week_starts())
        result.accepted = _points_write(tenant_id=tenant_id, rows=rows)
        result.duplicates += len(rows.series_ids) - result.accepted
    result.rejected = [{"index": index, "errors": errors_by_index[index]} for index in sorted(errors_by_index)]
    return result


def _series_resolve(*, tenant: Tenant, new: dict[tuple, Event], checker: EventChecker, resolved: dict) -> dict:
    """Resolve identities missing from the cache (creating series, committed on their own); returns errors."""
    errors: dict[tuple, dict] = {}
    by_hash: dict[str, list[tuple]] = {}
    canonical_event: dict[str, tuple[Event, str]] = {}
    for identity, event in new.items():
        identity_errors, canonical_tags = checker.identity(event)
        if identity_errors:
            errors[identity] = identity_errors
            continue
        key_hash = series_key_hash((event.service, event.resource_id, event.metric_name, canonical_tags))
        by_hash.setdefault(key_hash, []).append(identity)
        canonical_event.setdefault(key_hash, (event, canonical_tags))
    if not by_hash:
        return errors
    hashes = list(by_hash)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key_hash, id FROM metrics_series WHERE tenant_id = %s AND key_hash = ANY(%s)", [tenant.id, hashes]
        )
        found = dict(cursor.fetchall())
        to_create = [h for h in hashes if h not in found]
        if to_create:
            cursor.execute("SELECT count(*) FROM metrics_series WHERE tenant_id = %s", [tenant.id])
            limit = tenant.limit("MAX_SERIES_PER_TENANT")
            room = max(limit - cursor.fetchone()[0], 0)
            allowed, refused = to_create[:room], to_create[room:]
            if allowed:
                _series_insert(cursor, tenant_id=tenant.id, created={h: canonical_event[h] for h in allowed})
                cursor.execute(
                    "SELECT key_hash, id FROM metrics_series WHERE tenant_id = %s AND key_hash = ANY(%s)",
                    [tenant.id, allowed],
                )
                found.update(cursor.fetchall())
            for key_hash in refused:
                for identity in by_hash[key_hash]:
                    errors[identity] = {"metric_name": [f"would create a new series over this tenant's limit of {limit} series"]}
    for key_hash, series_id in found.items():
        for identity in by_hash[key_hash]:
            series_cache.put(identity, series_id)
            resolved[identity] = series_id
    return errors


def _series_insert(cursor, *, tenant_id: int, created: dict[str, tuple[Event, str]]) -> None:
    values = []
    params: list = []
    for key_hash, (event, canonical_tags) in created.items():
        values.append("(%s, %s, %s, %s, %s::jsonb, %s, %s, now())")
        params += [tenant_id, event.service, event.resource_id, event.metric_name, canonical_tags or "{}",
                   key_hash, event.source]
    # Autocommit outside the points transaction: a series row without points is harmless,
    # and a cached id must never point at a rolled-back row.
    cursor.execute(
        "INSERT INTO metrics_series (tenant_id, service, resource_id, metric_name, tags, key_hash, source, created_at) "
        f"VALUES {', '.join(values)} ON CONFLICT (tenant_id, key_hash) DO NOTHING",
        params,
    )


@dataclass(frozen=True)
class PointRows:
    """Accepted points of one request as arrays (series id, µs since the epoch, value)."""

    series_ids: np.ndarray
    ts_us: np.ndarray
    values: np.ndarray

    def week_starts(self) -> set[int]:
        return {int(w) for w in np.unique(partitions.week_start_us(self.ts_us))}

    def copy_binary(self, *, tenant_id: int | None) -> bytes:
        """The rows in PostgreSQL's binary COPY format, with or without the leading tenant_id column."""
        fields = [("n", ">i2")]
        if tenant_id is not None:
            fields += [("l0", ">i4"), ("tenant", ">i8")]
        fields += [("l1", ">i4"), ("series", ">i8"), ("l2", ">i4"), ("ts", ">i8"), ("l3", ">i4"), ("value", ">f8")]
        table = np.empty(len(self.series_ids), dtype=np.dtype(fields))
        table["n"] = 4 if tenant_id is not None else 3
        for length in [name for name, _ in fields if name.startswith("l")]:
            table[length] = 8
        if tenant_id is not None:
            table["tenant"] = tenant_id
        table["series"] = self.series_ids
        table["ts"] = self.ts_us - pgcopy.PG_EPOCH_US
        table["value"] = self.values
        return pgcopy.HEADER + table.tobytes() + pgcopy.TRAILER


def _points_write(*, tenant_id: int, rows: PointRows) -> int:
    """Write the rows in one transaction; returns how many were new.

    Fast path: one binary COPY straight into metrics_point. If any row is already stored the
    COPY fails as a whole; the transaction is then redone through a temp table and
    INSERT ... ON CONFLICT DO NOTHING, so a retried batch stores nothing twice.
    """
    # Inside a caller's transaction a failed COPY must only roll back to a savepoint.
    nested = connection.in_atomic_block
    try:
        with transaction.atomic(savepoint=nested), connection.cursor() as cursor:
            hook_rows = _write_begin(cursor, tenant_id, rows)
            cursor.cursor.copy_expert(
                f"COPY {POINT_TABLE} (tenant_id, series_id, ts, value) FROM STDIN WITH (FORMAT binary)"
                + _row_by_row(),
                io.BytesIO(rows.copy_binary(tenant_id=tenant_id)),
            )
            _after_write(cursor, tenant_id, rows, hook_rows)
        return len(rows.series_ids)
    except psycopg2.errors.UniqueViolation:  # copy_expert is psycopg2's own call, not wrapped by Django
        pass
    with transaction.atomic(savepoint=nested), connection.cursor() as cursor:
        hook_rows = _write_begin(cursor, tenant_id, rows)
        accepted = _points_write_deduplicated(cursor, tenant_id=tenant_id, rows=rows)
        _after_write(cursor, tenant_id, rows, hook_rows)
    return accepted


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
    # committed before a watermark moves or compared with the moved one (see anomalies.services).
    statements = ["SELECT pg_advisory_xact_lock_shared(%s, %s)"]
    params = [INGEST_ADVISORY_NAMESPACE, tenant_id]
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
    cursor.cursor.copy_expert(
        "COPY ingest_points (series_id, ts, value) FROM STDIN WITH (FORMAT binary)" + _row_by_row(),
        io.BytesIO(rows.copy_binary(tenant_id=None)),
    )
    cursor.execute(
        f"INSERT INTO {POINT_TABLE} (tenant_id, series_id, ts, value) "
        "SELECT %s, series_id, ts, value FROM ingest_points ON CONFLICT DO NOTHING",
        [tenant_id],
    )
    return cursor.rowcount


def points_retention_apply(*, now: datetime | None = None) -> dict:
    """Drop partitions past the global retention and delete points past each tenant's own retention."""
    now = now or timezone.now()
    report = {"dropped_partitions": [], "deleted_points": 0}
    global_days = settings.CLOUDWATCHDOG.get("RETENTION_DAYS")
    if global_days:
        report["dropped_partitions"] = partitions.partitions_drop_before(cutoff=now - timedelta(days=global_days))
        with connection.cursor() as cursor:
            for table in ("metrics_rollup_1m", "metrics_rollup_1h"):
                cursor.execute(f"DELETE FROM {table} WHERE bucket < %s", [now - timedelta(days=global_days)])
    for tenant in Tenant.objects.filter(retention_days__isnull=False):
        cutoff = now - timedelta(days=tenant.retention_days)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {POINT_TABLE} WHERE tenant_id = %s AND ts < %s", [tenant.id, cutoff])
            report["deleted_points"] += cursor.rowcount
            for table in ("metrics_rollup_1m", "metrics_rollup_1h"):
                cursor.execute(f"DELETE FROM {table} WHERE tenant_id = %s AND bucket < %s", [tenant.id, cutoff])
    return report


def points_maintain(*, now: datetime | None = None) -> dict:
    """Partitions for this week and the next two, then retention (global and per tenant)."""
    now = now or timezone.now()
    created = partitions.partitions_ensure_ahead(now=now, weeks_ahead=2)
    report = points_retention_apply(now=now)
    return {"partitions_created": created, **report}
