"""Partitions, retention and rollups."""
import random
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection

from metrics.services import points_ingest
from metrics.storage import points_maintain, rollups_refresh, timeseries_read
from tests.helpers import event

BASE = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday


def _partitions():
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'metrics_point' ORDER BY 1")
        return [name for (name,) in cursor.fetchall()]


def _count(table, tenant):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE tenant_id = %s", [tenant.id])
        return cursor.fetchone()[0]


def test_maintenance_creates_partitions_ahead(db):
    now = datetime.now(timezone.utc)
    points_maintain(now=now)
    monday = now - timedelta(days=now.weekday())
    for weeks in (0, 1, 2):
        assert f"metrics_point_p{monday + timedelta(weeks=weeks):%Y%m%d}" in _partitions()


def test_global_retention_drops_whole_partitions_and_refuses_old_points(owner, settings):
    points_ingest(tenant=owner.tenant, events=[event(1.0, BASE - timedelta(days=60)), event(2.0, BASE)])
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "RETENTION_DAYS": 30}
    report = points_maintain(now=BASE + timedelta(days=1))
    # Both points are older than a few weeks: each has its calendar month's partition.
    assert report["dropped_partitions"] == ["metrics_point_p20260101"]
    assert _count("metrics_point", owner.tenant) == 1
    refused = points_ingest(tenant=owner.tenant, events=[event(3.0, datetime.now(timezone.utc) - timedelta(days=31))])
    assert refused.rejected[0]["errors"] == {"timestamp": ["is older than the retention of 30 days"]}


def test_a_tenants_retention_deletes_inside_partitions_and_spares_other_tenants(owner, outsider):
    now = datetime.now(timezone.utc)
    for client in (owner, outsider):
        points_ingest(tenant=client.tenant, events=[event(1.0, now - timedelta(days=10)), event(2.0, now)])
    rollups_refresh()
    owner.tenant.retention_days = 5
    owner.tenant.save()
    report = points_maintain(now=now)
    assert report["deleted_points"] == 1
    assert _count("metrics_point", owner.tenant) == 1 and _count("metrics_point", outsider.tenant) == 2
    assert _count("metrics_rollup_1h", owner.tenant) == 1 and _count("metrics_rollup_1h", outsider.tenant) == 2


def _raw_buckets(points, seconds, start, end):
    buckets = {}
    for ts, value in points:
        if start < ts <= end:
            key = int(ts.timestamp()) // seconds * seconds
            buckets.setdefault(key, []).append(value)
    return buckets


@pytest.mark.parametrize("step", [300, 3600, 7200])
def test_rollup_reads_equal_aggregating_the_raw_points_late_points_included(owner, step):
    rng = random.Random(step)
    points = [(BASE + timedelta(seconds=rng.randrange(0, 5 * 3600)), round(rng.uniform(-50, 50), 3)) for _ in range(1500)]
    points = list({ts: (ts, v) for ts, v in points}.values())
    early, late = points[:1200], points[1200:]
    points_ingest(tenant=owner.tenant, events=[event(v, ts) for ts, v in early])
    rollups_refresh()
    points_ingest(tenant=owner.tenant, events=[event(v, ts) for ts, v in late])  # behind the last refresh
    start, end = BASE + timedelta(minutes=17, seconds=30), BASE + timedelta(hours=4, minutes=41)
    series_id = owner.get("/api/v1/series").json()["results"][0]["series_id"]
    for refreshed in (False, True):  # before the refresh the dirty range is read raw; after, from rollups
        if refreshed:
            rollups_refresh()
        for agg in ("avg", "min", "max", "sum", "count"):
            got = timeseries_read(tenant=owner.tenant, series_ids=[series_id], start=start, end=end,
                                  step_seconds=step, agg=agg)[series_id]
            expected = _raw_buckets(points, step, start, end)
            assert [int(ts.timestamp()) for ts, _ in got] == sorted(expected)
            for ts, value in got:
                values = expected[int(ts.timestamp())]
                want = {"avg": sum(values) / len(values), "min": min(values), "max": max(values),
                        "sum": sum(values), "count": float(len(values))}[agg]
                assert value == pytest.approx(want, rel=1e-12, abs=1e-9), (agg, ts)


def test_rollup_tables_hold_exactly_the_raw_aggregates(owner):
    rng = random.Random(7)
    points_ingest(tenant=owner.tenant, events=[
        event(round(rng.uniform(0, 10), 2), BASE + timedelta(seconds=s)) for s in range(0, 7200, 7)])
    rollups_refresh()
    rollups_refresh()  # a second refresh changes nothing
    with connection.cursor() as cursor:
        for table, seconds in (("metrics_rollup_1h", 3600),):
            cursor.execute(
                f"""
                SELECT count(*) FROM (
                    SELECT series_id, date_bin(make_interval(secs => {seconds}), ts, 'epoch') b,
                           count(*) c, min(value) mn, max(value) mx, round(sum(value)::numeric, 6) s
                    FROM metrics_point WHERE tenant_id = %s GROUP BY 1, 2
                    EXCEPT
                    SELECT series_id, bucket, count, min, max, round(sum::numeric, 6) FROM {table} WHERE tenant_id = %s
                ) missing
                """,
                [owner.tenant.id, owner.tenant.id],
            )
            assert cursor.fetchone()[0] == 0, table
            assert _count(table, owner.tenant) == 7200 // seconds


def test_an_hours_rollup_sum_adds_in_time_order_whatever_the_plan(owner):
    """1e16 + 1 rounds back to 1e16: in time order the hour sums to 1.0, in the reverse order it was
    written (a sequential scan's order) to 0.0. The rollup must give the raw read's bits."""
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    values = [1e16, 1.0, -1e16, 1.0]
    for minute in reversed(range(4)):  # the heap holds them newest first
        points_ingest(tenant=owner.tenant, events=[event(values[minute], hour + timedelta(minutes=minute + 1))])
    with connection.cursor() as cursor:
        cursor.execute("SET enable_indexscan = off")
        cursor.execute("SET enable_bitmapscan = off")
    try:
        rollups_refresh()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET enable_indexscan")
            cursor.execute("RESET enable_bitmapscan")
    with connection.cursor() as cursor:
        cursor.execute("SELECT sum FROM metrics_rollup_1h WHERE tenant_id = %s", [owner.tenant.id])
        assert cursor.fetchall() == [(1.0,)]
