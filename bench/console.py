"""Page times of the support console with 1M points stored (issue 12's target: the 30-day series page
under 300 ms).

Stores 24 series × 43,200 one-minute points (30 days, 1.04M points) for a tenant of its own,
refreshes the rollups and runs detection (as beat would have; a webhook channel gets a message for
each incident), then times the series page at each range, an anomaly's page, the incident with the
most anomalies, the incident list, the admin index, the tenant overview and its what-if preview (3
series, 3 days), through Django's full request stack in this process (middleware, admin, templates),
as a logged-in superuser.

usage: .venv/bin/python bench/console.py [--rounds 15]
"""
import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.test import Client  # noqa: E402

from anomalies.alerting import channel_create  # noqa: E402
from anomalies.models import Anomaly, Incident  # noqa: E402
from anomalies.runs import detection_run  # noqa: E402
from metrics.models import Series  # noqa: E402
from metrics.services import points_ingest  # noqa: E402
from metrics.storage import rollups_refresh  # noqa: E402
from tenants.services import tenant_create  # noqa: E402

SERIES, DAYS = 24, 30


def load(tenant, end: datetime) -> int:
    minutes = DAYS * 24 * 60
    rng = np.random.default_rng(12)
    stored = 0
    for s in range(SERIES):
        daily = 40 + 15 * np.sin(np.arange(minutes) * 2 * np.pi / 1440) + rng.normal(0, 2, minutes)
        daily[rng.integers(0, minutes, 5)] += 80  # a few spikes to find
        times = [(end - timedelta(minutes=minutes - 1 - i)).isoformat() for i in range(minutes)]
        for start in range(0, minutes, 10_000):
            events = [{"service": "web", "resource_id": f"host-{s:02d}", "metric_name": "cpu", "value": float(v),
                       "timestamp": t} for v, t in zip(daily[start:start + 10_000], times[start:start + 10_000])]
            stored += points_ingest(tenant=tenant, events=events).accepted
    return stored


def timed(client: Client, url: str, rounds: int) -> tuple[float, float]:
    client.get(url, HTTP_HOST="127.0.0.1")  # warm
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        response = client.get(url, HTTP_HOST="127.0.0.1")
        samples.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    tenant = tenant_create(slug=f"bench-console-{int(time.time())}")
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=5)
    began = time.perf_counter()
    stored = load(tenant, end)
    print(f"stored {stored:,} points in {time.perf_counter() - began:.1f} s")
    rollups_refresh()
    channel_create(tenant=tenant, data={"name": "bench hook", "kind": "webhook", "url": "https://hooks.example.com/x"})
    detection_run(tenant=tenant, trigger="command")
    user = User.objects.filter(username="bench-console").first() or User.objects.create_superuser("bench-console",
                                                                                                  password=None)
    client = Client()
    client.force_login(user)
    series = Series.objects.for_tenant(tenant).order_by("id").first()
    anomaly = Anomaly.objects.for_tenant(tenant).order_by("-ts").first()
    pages = [(f"series page, {r}", f"/admin/metrics/series/{series.id}/change/?range={r}")
             for r in ("1h", "24h", "7d", "30d")]
    if anomaly:
        pages.append(("anomaly page", f"/admin/anomalies/anomaly/{anomaly.id}/change/"))
    incident = Incident.objects.for_tenant(tenant).order_by("-anomaly_count", "-started_at").first()
    if incident:
        pages.append((f"incident page ({incident.anomaly_count} anomalies)",
                      f"/admin/anomalies/incident/{incident.id}/change/"))
    pages += [("incident list", f"/admin/anomalies/incident/?tenant={tenant.id}"), ("admin index", "/admin/"),
              ("tenant overview", f"/admin/tenants/tenant/{tenant.id}/overview/")]
    # The what-if preview at its largest default: 3 series replayed over 3 days under two settings.
    chosen = "".join(f"&series={s.id}" for s in Series.objects.for_tenant(tenant).order_by("id")[:3])
    pages.append(("what-if, 3 series × 3 days",
                  f"/admin/tenants/tenant/{tenant.id}/overview/?action=what_if&days=3&residual_threshold=4{chosen}"))
    for label, url in pages:
        median, p95 = timed(client, url, args.rounds)
        print(f"{label:32s} p50 {median:6.1f} ms   p95 {p95:6.1f} ms")


if __name__ == "__main__":
    main()
