"""Writes for metrics: series resolution and the points ingest hot path, retention."""
from __future__ import annotations

import io
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from metrics import partitions
from metrics.ingest import EPOCH, Limits, ValidPoint, series_key_hash, validate_events
from metrics.models import POINT_TABLE, Series
from tenants.models import Tenant

# Hooks run inside the ingest transaction after the points are written, with the cursor and
# the tenant id; the staged points are in the temp table `ingest_points`. The anomalies app
# registers its late-point marker here, so metrics never imports anomalies.
post_ingest_hooks: list[Callable] = []

INGEST_ADVISORY_NAMESPACE = 7_301  # shared by ingest, exclusive for detection's read of new points


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)


class _SeriesCache:
    """Per-process LRU of (tenant_id, key_hash) -> series id; the database upsert is the truth."""

    def __init__(self, capacity: int = 500_000):
        self.capacity = capacity
        self._ids: OrderedDict[tuple[int, str], int] = OrderedDict()

    def get(self, key):
        series_id = self._ids.get(key)
        if series_id is not None:
            self._ids.move_to_end(key)
        return series_id

    def put(self, key, series_id: int) -> None:
        self._ids[key] = series_id
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

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


# Token bucket per tenant in Redis: refills at `rate` points/s up to `burst`; atomic in Lua.
_TOKEN_BUCKET = """
local rate, burst, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or burst)
local last = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost
elseif rate > 0 then wait = (cost - tokens) / rate
else wait = 60 end
redis.call('HSET', KEYS[1], 't', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
"""


def points_rate_check(*, tenant: Tenant, points: int) -> float | None:
    """Take `points` from the tenant's token bucket; returns seconds to wait when it is short."""
    client = cache._cache.get_client(write=True)
    wait = float(client.eval(
        _TOKEN_BUCKET, 1, f"{cache.key_prefix}:bucket:points:{tenant.id}",
        tenant.limit("POINTS_PER_SECOND"), tenant.limit("POINTS_BURST"), time.time(), points,
    ))
    return wait if wait > 0 else None


def points_ingest(*, tenant: Tenant, events: list, now: datetime | None = None) -> IngestResult:
    """Store the valid events of a batch; each (series, ts) is stored once and the first write wins."""
    now = now or timezone.now()
    now_us = (now - EPOCH) // timedelta(microseconds=1)
    oldest_us, oldest_reason = _oldest_allowed(tenant, now)
    valid, rejected = validate_events(
        events, now_us=now_us, oldest_us=oldest_us, oldest_reason=oldest_reason, limits=ingest_limits(tenant=tenant)
    )
    result = IngestResult(rejected=rejected)
    if not valid:
        return result
    series_ids = _series_resolve(tenant=tenant, points=valid, rejected=rejected)
    seen: set[tuple[int, int]] = set()
    rows: list[tuple[int, int, float]] = []
    for point in valid:
        series_id = series_ids.get(point.series_key)
        if series_id is None:
            continue  # rejected by the series limit
        key = (series_id, point.ts_us)
        if key in seen:
            result.duplicates += 1  # an earlier event of this batch wins
            continue
        seen.add(key)
        rows.append((series_id, point.ts_us, point.value))
    if rows:
        partitions.partitions_ensure(ts_us_values={ts for _, ts, _ in rows})
        result.accepted = _points_write(tenant_id=tenant.id, rows=rows)
        result.duplicates += len(rows) - result.accepted
    rejected.sort(key=lambda item: item["index"])
    return result


def _series_resolve(*, tenant: Tenant, points: list[ValidPoint], rejected: list[dict]) -> dict[tuple, int]:
    """Series ids for the batch's series keys, creating new series (committed on their own)."""
    resolved: dict[tuple, int] = {}
    missing: dict[str, ValidPoint] = {}
    for point in points:
        if point.series_key in resolved:
            continue
        key_hash = series_key_hash(point.series_key)
        series_id = series_cache.get((tenant.id, key_hash))
        if series_id is not None:
            resolved[point.series_key] = series_id
        elif key_hash not in missing:
            missing[key_hash] = point
    if not missing:
        return resolved
    hashes = list(missing)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key_hash, id FROM metrics_series WHERE tenant_id = %s AND key_hash = ANY(%s)", [tenant.id, hashes]
        )
        found = dict(cursor.fetchall())
        to_create = [h for h in hashes if h not in found]
        if to_create:
            cursor.execute("SELECT count(*) FROM metrics_series WHERE tenant_id = %s", [tenant.id])
            room = tenant.limit("MAX_SERIES_PER_TENANT") - cursor.fetchone()[0]
            allowed, refused = to_create[: max(room, 0)], set(to_create[max(room, 0):])
            if allowed:
                _series_insert(cursor, tenant_id=tenant.id, points=[missing[h] for h in allowed], hashes=allowed)
                cursor.execute(
                    "SELECT key_hash, id FROM metrics_series WHERE tenant_id = %s AND key_hash = ANY(%s)",
                    [tenant.id, allowed],
                )
                found.update(cursor.fetchall())
            if refused:
                refused_keys = {missing[h].series_key for h in refused}
                limit = tenant.limit("MAX_SERIES_PER_TENANT")
                for point in points:
                    if point.series_key in refused_keys:
                        rejected.append({"index": point.index, "errors": {
                            "metric_name": [f"would create a new series over this tenant's limit of {limit} series"]}})
    for key_hash, series_id in found.items():
        series_cache.put((tenant.id, key_hash), series_id)
        resolved[missing[key_hash].series_key] = series_id
    return resolved


def _series_insert(cursor, *, tenant_id: int, points: list[ValidPoint], hashes: list[str]) -> None:
    import orjson

    values = []
    params: list = []
    for key_hash, point in zip(hashes, points):
        service, resource_id, metric_name, _ = point.series_key
        values.append("(%s, %s, %s, %s, %s::jsonb, %s, %s, now())")
        params += [tenant_id, service, resource_id, metric_name, orjson.dumps(point.tags).decode(), key_hash, point.source]
    # Autocommit outside the points transaction: a series row without points is harmless,
    # and a cached id must never point at a rolled-back row.
    cursor.execute(
        "INSERT INTO metrics_series (tenant_id, service, resource_id, metric_name, tags, key_hash, source, created_at) "
        f"VALUES {', '.join(values)} ON CONFLICT (tenant_id, key_hash) DO NOTHING",
        params,
    )


def _points_write(*, tenant_id: int, rows: list[tuple[int, int, float]]) -> int:
    """COPY the rows into a temp table, then insert what is new; returns the number stored."""
    buffer = io.StringIO()
    buffer.write("".join(f"{series_id}\t{ts_us}\t{value!r}\n" for series_id, ts_us, value in rows))
    buffer.seek(0)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS ingest_points "
            "(series_id bigint, ts_us bigint, value float8) ON COMMIT DELETE ROWS"
        )
        # Empty unless this runs inside a caller's longer transaction (ON COMMIT has not fired yet).
        cursor.execute("DELETE FROM ingest_points")
        # Detection takes this lock exclusively while it reads new points, so a point is either
        # seen by that read or committed before the watermark moves (see anomalies.services).
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", [INGEST_ADVISORY_NAMESPACE, tenant_id])
        cursor.cursor.copy_expert("COPY ingest_points (series_id, ts_us, value) FROM STDIN", buffer)
        cursor.execute(
            f"INSERT INTO {POINT_TABLE} (tenant_id, series_id, ts, value) "
            "SELECT %s, series_id, timestamptz 'epoch' + ts_us * interval '1 microsecond', value FROM ingest_points "
            "ON CONFLICT DO NOTHING",
            [tenant_id],
        )
        accepted = cursor.rowcount
        for hook in post_ingest_hooks:
            hook(cursor, tenant_id)
    return accepted


def points_retention_apply(*, now: datetime | None = None) -> dict:
    """Drop partitions past the global retention and delete points past each tenant's own retention."""
    now = now or timezone.now()
    report = {"dropped_partitions": [], "deleted_points": 0}
    global_days = settings.CLOUDWATCHDOG.get("RETENTION_DAYS")
    if global_days:
        report["dropped_partitions"] = partitions.partitions_drop_before(cutoff=now - timedelta(days=global_days))
    for tenant in Tenant.objects.filter(retention_days__isnull=False):
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {POINT_TABLE} WHERE tenant_id = %s AND ts < %s",
                [tenant.id, now - timedelta(days=tenant.retention_days)],
            )
            report["deleted_points"] += cursor.rowcount
    return report


def points_maintain(*, now: datetime | None = None) -> dict:
    """Partitions for this week and the next two, then retention (global and per tenant)."""
    now = now or timezone.now()
    created = partitions.partitions_ensure_ahead(now=now, weeks_ahead=2)
    report = points_retention_apply(now=now)
    return {"partitions_created": created, **report}
