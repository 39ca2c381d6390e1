"""A detection pass over 1M new points (1,000 series) against reading them with psycopg2 (DESIGN §3).

usage: .venv/bin/python bench/detection.py [--series 1000] [--points 1000] [--runs 3]
Creates a throwaway tenant in the project's database, stores the points through the ingest
service, then times (median of --runs): `fetchall` of (series_id, ts, value) over those points
with plain psycopg2, and a full `detection_run` pass over them (each pass recomputes from the
first point, as a fresh pass would).
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
from anomalies.services import detection_run  # noqa: E402
from metrics.ingest import Event  # noqa: E402
from metrics.services import points_ingest  # noqa: E402
from tenants.services import tenant_create  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1000,
                        help="points per series, one every 5 minutes (3.5 days, so detection is past its warm-up)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tenant = tenant_create(slug=f"bench-detect-{uuid.uuid4().hex[:6]}")
    tenant.limits = {"MAX_EVENTS_PER_REQUEST": args.series}
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=5 * args.points + 5)
    rng = np.random.default_rng(1)
    loaded = time.perf_counter()
    for minute in range(args.points):
        ts = (start + timedelta(minutes=5 * minute)).isoformat()
        values = 50 + 5 * np.sin(minute / 90) + rng.normal(0, 1, args.series)
        if minute % 400 == 399:
            values[:: 50] += 40  # a few spikes
        events = [Event(service="bench", resource_id=f"r{s}", metric_name="load", value=float(values[s]), timestamp=ts)
                  for s in range(args.series)]
        points_ingest(tenant=tenant, events=events)
    total = args.series * args.points
    print(f"stored {total:,} points in {time.perf_counter() - loaded:.1f} s (tenant {tenant.slug})")

    params = connection.get_connection_params()
    raw = psycopg2.connect(**params)
    read_times = []
    for _ in range(args.runs):
        with raw.cursor() as cursor:
            began = time.perf_counter()
            cursor.execute("SELECT series_id, ts, value FROM metrics_point WHERE tenant_id = %s", [tenant.id])
            rows = cursor.fetchall()
            read_times.append(time.perf_counter() - began)
    assert len(rows) == total
    raw.close()

    detect_times = []
    for _ in range(args.runs):
        began = time.perf_counter()
        run = detection_run(tenant=tenant, trigger="command", replay_since=start - timedelta(minutes=1), wait_seconds=600)
        detect_times.append(time.perf_counter() - began)
        assert run.points_processed == total, run.points_processed
    read = sorted(read_times)[len(read_times) // 2]
    detect = sorted(detect_times)[len(detect_times) // 2]
    print(f"psycopg2 fetchall of {total:,} points: {read:.2f} s (median of {args.runs})")
    anomalies = Anomaly.objects.for_tenant(tenant).count()
    print(f"detection pass over {total:,} points: {detect:.2f} s = {total / detect:,.0f} points/s "
          f"({anomalies} anomalies; median of {args.runs})")
    print(f"ratio detection / read = {detect / read:.2f}")


if __name__ == "__main__":
    main()
