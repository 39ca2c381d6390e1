"""Maintenance of the point store: partitions ahead, retention (global and per tenant, rows and
compacted chunks), and a deleted tenant's points. Beat runs points_maintain hourly; `manage.py maintain_points` runs it now."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from cloudwatchdog.timeutil import from_us, to_us
from metrics.models import CHUNK_TABLE, INGEST_LOG_TABLE, NAN_SAMPLE_TABLE, POINT_TABLE, ROLLUP_1H_TABLE
from metrics.storage import chunks, codec, hours, partitions
from tenants.models import Tenant

logger = logging.getLogger(__name__)


def points_retention_apply(*, now: datetime | None = None) -> dict:
    """Drop partitions past the global retention and delete points past each tenant's own retention.

    Each tenant's deletion is its own transaction: one tenant's failure is logged and counted, the
    others go on.
    """
    now = now or timezone.now()
    report = {"dropped_partitions": [], "dropped_chunks": 0, "deleted_points": 0, "failed_tenants": []}
    global_days = settings.CLOUDWATCHDOG.get("RETENTION_DAYS")
    if global_days:
        cutoff = now - timedelta(days=global_days)
        report["dropped_partitions"] = partitions.partitions_drop_before(cutoff=cutoff)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {ROLLUP_1H_TABLE} WHERE bucket < %s", [cutoff])
            # NaN samples go with the points around them: those older than every partition still kept.
            oldest_us = partitions.oldest_start_us(cursor)
            cursor.execute(f"DELETE FROM {NAN_SAMPLE_TABLE} WHERE ts < %s",
                           [cutoff if oldest_us is None else min(cutoff, from_us(oldest_us))])
            # Like partitions, whole chunks: those whose day ended before the cutoff.
            cursor.execute(f"DELETE FROM {CHUNK_TABLE} WHERE period_start <= %s",
                           [now - timedelta(days=global_days, seconds=chunks.CHUNK_SECONDS)])
            report["dropped_chunks"] = cursor.rowcount
    for tenant in Tenant.objects.filter(retention_days__gte=1):
        cutoff = now - timedelta(days=tenant.retention_days)
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {POINT_TABLE} WHERE tenant_id = %s AND ts < %s", [tenant.id, cutoff])
                report["deleted_points"] += cursor.rowcount
                cursor.execute(f"DELETE FROM {NAN_SAMPLE_TABLE} WHERE tenant_id = %s AND ts < %s", [tenant.id, cutoff])
                cursor.execute(f"DELETE FROM {ROLLUP_1H_TABLE} WHERE tenant_id = %s AND bucket < %s", [tenant.id, cutoff])
                report["deleted_points"] += _chunks_cut(cursor, tenant_id=tenant.id, cutoff=cutoff)
        except DatabaseError:
            logger.exception("retention failed for tenant %s; the others go on", tenant.slug)
            report["failed_tenants"].append(tenant.slug)
    return report


def _chunks_cut(cursor, *, tenant_id: int, cutoff: datetime) -> int:
    """Delete a tenant's compacted points before the cutoff: whole chunks (their hours with them), and
    the chunk holding the cutoff re-encoded without its older points and hours; returns how many points went."""
    cursor.execute(f"DELETE FROM {CHUNK_TABLE} WHERE tenant_id = %s AND last_ts < %s RETURNING count",
                   [tenant_id, cutoff])
    deleted = sum(count for (count,) in cursor.fetchall())
    cursor.execute(f"SELECT series_id, period_start, data, hours FROM {CHUNK_TABLE} WHERE tenant_id = %s AND first_ts < %s",
                   [tenant_id, cutoff])
    cutoff_us = to_us(cutoff)
    for series_id, period_start, data, hour_stats in cursor.fetchall():
        ts_us, values = codec.decode(data)
        keep = ts_us >= cutoff_us
        deleted += int((~keep).sum())
        ts_us, values = ts_us[keep], values[keep]
        cursor.execute(
            f"UPDATE {CHUNK_TABLE} SET first_ts = %s, count = %s, sum = %s, min = %s, max = %s, data = %s, hours = %s "
            "WHERE tenant_id = %s AND series_id = %s AND period_start = %s",
            [from_us(int(ts_us[0])), len(ts_us), float(np.sum(values)), float(values.min()), float(values.max()),
             codec.encode(ts_us, values), hours.hours_cut(hour_stats, period_us=to_us(period_start), cutoff_us=cutoff_us),
             tenant_id, series_id, period_start],
        )
    return deleted


def tenant_points_delete(sender, instance: Tenant, **kwargs) -> None:
    """Delete a tenant's points (NaN samples too), rollups and ingest log with the tenant (a pre_delete receiver).

    A request that authenticated just before (keys are cached for a few seconds) may still write;
    the rollup refresh deletes such points when it meets their log row.
    """
    with connection.cursor() as cursor:
        for table in (POINT_TABLE, CHUNK_TABLE, NAN_SAMPLE_TABLE, ROLLUP_1H_TABLE, INGEST_LOG_TABLE):
            cursor.execute(f"DELETE FROM {table} WHERE tenant_id = %s", [instance.id])


def points_maintain(*, now: datetime | None = None) -> dict:
    """Partitions for this week and the next two, then retention (global and per tenant)."""
    now = now or timezone.now()
    created = partitions.partitions_ensure_ahead(now=now, weeks_ahead=2)
    report = points_retention_apply(now=now)
    return {"partitions_created": created, **report}
