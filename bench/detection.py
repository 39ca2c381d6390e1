"""A detection pass over 1M new points (1,000 series) against reading them with psycopg2 (DESIGN §3).

usage: .venv/bin/python bench/detection.py [--series 1000] [--points 1000] [--runs 3]
Creates --runs throwaway tenants in the project's database and stores the same points in each
through the ingest service, then times (median of --runs): `fetchall` of (series_id, ts, value)
over a tenant's points with plain psycopg2, and the first `detection_run` of each tenant (a pass
over points none of which was evaluated before), after a VACUUM ANALYZE of the points. A replay of the last tenant's whole range is
timed once as well (re-evaluation also deletes and rewrites the anomalies it replaces).
"""
import argparse
import os
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import psycopg2  # noqa: E402
from django.db import connection  # noqa: E402

from anomalies.models import Anomaly  # noqa: E402
from anomalies.runs import detection_run  # noqa: E402
from metrics.ingest import Event  # noqa: E402
from metrics.services import points_ingest  # noqa: E402
from tenants.services import tenant_create  # noqa: E402


def _store(tenant, series: int, points: int, start: datetime) -> None:
    rng = np.random.default_rng(1)
    for minute in range(points):
        ts = (start + timedelta(minutes=5 * minute)).isoformat()
        values = 50 + 5 * np.sin(minute / 90) + rng.normal(0, 1, series)
        if minute % 400 == 399:
            values[:: 50] += 40  # a few spikes
        events = [Event(service="bench", resource_id=f"r{s}", metric_name="load", value=float(values[s]), timestamp=ts)
                  for s in range(series)]
        points_ingest(tenant=tenant, events=events)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1000,
                        help="points per series, one every 5 minutes (3.5 days, so detection is past its warm-up)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    total = args.series * args.points
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=5 * args.points + 5)
    tenants = []
    for _ in range(args.runs):
        tenant = tenant_create(slug=f"bench-detect-{uuid.uuid4().hex[:6]}")
        tenant.limits = {"MAX_EVENTS_PER_REQUEST": args.series}
        loaded = time.perf_counter()
        _store(tenant, args.series, args.points, start)
        print(f"stored {total:,} points in {time.perf_counter() - loaded:.1f} s (tenant {tenant.slug})")
        tenants.append(tenant)

    # Settle what loading left behind, so autovacuum does not compete with the timed passes.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE metrics_point")
    params = connection.get_connection_params()
    raw = psycopg2.connect(**params)
    read_times = []
    for tenant in tenants:
        with raw.cursor() as cursor:
            # Untimed first read: fresh rows get their hint bits set on first read, a cost neither
            # timed reader should pay.
            cursor.execute("SELECT count(*) FROM metrics_point WHERE tenant_id = %s", [tenant.id])
            began = time.perf_counter()
            cursor.execute("SELECT series_id, ts, value FROM metrics_point WHERE tenant_id = %s", [tenant.id])
            rows = cursor.fetchall()
            read_times.append(time.perf_counter() - began)
        assert len(rows) == total
    raw.close()

    detect_times = []
    for tenant in tenants:
        began = time.perf_counter()
        run = detection_run(tenant=tenant, trigger="command", wait_seconds=600)
        detect_times.append(time.perf_counter() - began)
        assert run.points_processed == total, run.points_processed
    began = time.perf_counter()
    run = detection_run(tenant=tenants[-1], trigger="command", replay_since=start - timedelta(minutes=1), wait_seconds=600)
    replay = time.perf_counter() - began
    assert run.points_processed == total, run.points_processed
    read = sorted(read_times)[len(read_times) // 2]
    detect = sorted(detect_times)[len(detect_times) // 2]
    print(f"psycopg2 fetchall of {total:,} points: {read:.2f} s (median of {args.runs})")
    anomalies = Anomaly.objects.for_tenant(tenants[-1]).count()
    print(f"detection pass over {total:,} new points: {detect:.2f} s = {total / detect:,.0f} points/s "
          f"({anomalies} anomalies; median of {args.runs})")
    print(f"replay of the same {total:,} points: {replay:.2f} s")
    print(f"ratio detection / read = {detect / read:.2f}")


if __name__ == "__main__":
    main()
