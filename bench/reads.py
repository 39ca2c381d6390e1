"""Reads with 10M points stored: a 60-minute series read and a 30-day read with step=1h (p50/p95),
over HTTP against a running server; and bytes per stored point, indexes included (DESIGN §3).

usage: .venv/bin/python bench/reads.py --url http://127.0.0.1:8000 [--series 232] [--days 30] [--requests 200]
                                      [--tenant SLUG]
Loads --series one-minute series over --days (232 × 30 days ≈ 10M points) into a throwaway tenant
through the ingest service, waits until the rollups are refreshed (the benchmark's own refresh, or
beat's if it got there first), then times the reads. --tenant reuses the data of an earlier run.
"""
import argparse
import http.client
import os
import sys
import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.db import connection  # noqa: E402

from metrics.ingest import Event  # noqa: E402
from metrics.services import points_ingest  # noqa: E402
from metrics.storage import rollups_refresh  # noqa: E402
from tenants.models import Tenant  # noqa: E402
from tenants.services import api_key_issue, tenant_create  # noqa: E402


def load(tenant, series: int, days: int, end: datetime) -> int:
    minutes = days * 24 * 60
    start = end - timedelta(minutes=minutes - 1)
    rng = np.random.default_rng(3)
    stored = 0
    chunk = max(1, 20_000 // series)  # minutes per call
    for first in range(0, minutes, chunk):
        events = []
        for minute in range(first, min(first + chunk, minutes)):
            ts = (start + timedelta(minutes=minute)).isoformat()
            values = 50 + 10 * np.sin(minute / 240) + rng.normal(0, 2, series)
            events += [Event(service="reads", resource_id=f"r{s}", metric_name="load", value=float(values[s]),
                             timestamp=ts) for s in range(series)]
        stored += points_ingest(tenant=tenant, events=events, now=end).accepted
    return stored


def refresh_rollups(tenant) -> None:
    """Refresh until nothing of the tenant's is waiting: a refresh beat started first holds the log."""
    while True:
        rollups_refresh()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM metrics_ingest_log WHERE tenant_id = %s", [tenant.id])
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(1)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_reads(url: str, key: str, path_for, requests: int) -> tuple[float, float]:
    parsed = urllib.parse.urlparse(url)
    connection_ = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=60)
    headers = {"Authorization": f"Bearer {key}"}
    timings = []
    for i in range(requests + 5):
        began = time.perf_counter()
        connection_.request("GET", path_for(i), headers=headers)
        response = connection_.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - began
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {body[:200]}")
        if i >= 5:  # the first few warm the server's connections and caches
            timings.append(elapsed * 1000)
    return percentile(timings, 0.5), percentile(timings, 0.95)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--series", type=int, default=232)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--tenant", help="the slug of an earlier run's tenant: read its data instead of loading")
    args = parser.parse_args()
    if args.tenant:
        tenant = Tenant.objects.get(slug=args.tenant)
    else:
        tenant = tenant_create(slug=f"bench-reads-{uuid.uuid4().hex[:6]}")
        end = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        began = time.perf_counter()
        stored = load(tenant, args.series, args.days, end)
        loaded = time.perf_counter() - began
        print(f"stored {stored:,} points in {loaded:.0f} s (tenant {tenant.slug})")
    began = time.perf_counter()
    refresh_rollups(tenant)
    print(f"rollups refreshed in {time.perf_counter() - began:.0f} s")
    key = api_key_issue(tenant=tenant, scope="read").plaintext
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE metrics_point")
        cursor.execute("SELECT count(*) FROM metrics_point")
        total_points = cursor.fetchone()[0]
        cursor.execute("""SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i
                          JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'metrics_point'""")
        point_bytes = cursor.fetchone()[0]
        cursor.execute("SELECT pg_total_relation_size('metrics_rollup_1h')")
        rollup_bytes = cursor.fetchone()[0]
    print(f"points table: {point_bytes / total_points:.1f} bytes per point with its indexes "
          f"({total_points:,} points, {point_bytes / 2**20:,.0f} MiB); with rollups "
          f"{(point_bytes + rollup_bytes) / total_points:.1f} bytes per point")
    rng = np.random.default_rng(5)
    picks = [f"r{s}" for s in rng.integers(0, args.series, args.requests + 5)]
    sixty = time_reads(args.url, key, lambda i: f"/api/v1/metrics/timeseries?service=reads&metric_name=load"
                       f"&resource_id={picks[i]}&minutes=60", args.requests)
    thirty = time_reads(args.url, key, lambda i: f"/api/v1/metrics/timeseries?service=reads&metric_name=load"
                        f"&resource_id={picks[i]}&minutes={30 * 24 * 60}&step=1h&agg=avg", args.requests)
    print(f"60-minute read:          p50 {sixty[0]:.1f} ms, p95 {sixty[1]:.1f} ms ({args.requests} requests)")
    print(f"30-day read, step=1h:    p50 {thirty[0]:.1f} ms, p95 {thirty[1]:.1f} ms ({args.requests} requests)")


if __name__ == "__main__":
    main()
