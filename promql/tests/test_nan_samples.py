"""NaN samples and staleness markers, remote-written: PromQL reads them as Prometheus does (a series ends at
its marker; an empty summary's quantile is "NaN"), and nothing else sees them (the point table, rollups,
the timeseries API, detection's reads); a resent batch stores nothing twice; retention and a tenant's
deletion remove them."""
import math
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from django.db import connection

from cloudwatchdog.timeutil import to_us
from metrics import storage
from metrics.ingest import Event
from metrics.services import points_ingest, series_cache
from promql.tests.test_api import remote_write
from tenants.models import Tenant

API = "/prometheus/api/v1"
STALE = float(np.array([storage.STALE_NAN_BITS], np.uint64).view(np.float64)[0])
T0_MS = (int(time.time()) - 1200) // 60 * 60 * 1000  # a whole minute, 20 minutes ago
GONE = {"__name__": "node_up", "job": "node", "instance": "host-1:9100"}
QUANTILE = {"__name__": "rpc_duration_seconds", "job": "node", "instance": "host-1:9100", "quantile": "0.9"}
# node_up: k every 15 s for k = 0..20, then the target goes away: a staleness marker at 315 s.
UP_SAMPLES = [(T0_MS + k * 15_000, float(k)) for k in range(21)] + [(T0_MS + 21 * 15_000, STALE)]
NAN_SAMPLES = [(T0_MS + k * 15_000, math.nan) for k in range(41)]


def _count(table: str, tenant: Tenant) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE tenant_id = %s", [tenant.id])
        return cursor.fetchone()[0]


def _range(client, query: str, *, minutes: int = 10) -> list:
    response = client.get(f"{API}/query_range", {"query": query, "start": str(T0_MS / 1000),
                                                 "end": str(T0_MS / 1000 + 60 * minutes), "step": "60"})
    assert response.status_code == 200, response.content
    return response.json()["data"]["result"]


def _written(client):
    remote_write(client, [GONE], samples=UP_SAMPLES)
    remote_write(client, [QUANTILE], samples=NAN_SAMPLES)


@pytest.mark.django_db
def test_a_series_ends_at_its_staleness_marker_and_an_empty_summarys_quantile_reads_nan(make_tenant):
    client = make_tenant("nan-read")
    _written(client)
    [gone] = _range(client, "node_up")
    # Steps 0..300 s see samples 0, 4, ..., 20; from 360 s the marker (315 s) ends the series, where
    # without it the last sample would read on for 5 minutes.
    assert gone["values"] == [[T0_MS / 1000 + 60 * i, str(4 * i)] for i in range(6)]
    [quantile] = _range(client, 'rpc_duration_seconds{quantile="0.9"}')
    assert quantile["metric"]["quantile"] == "0.9"
    assert quantile["values"] == [[T0_MS / 1000 + 60 * i, "NaN"] for i in range(11)]
    # NaN propagates; a range window drops the marker (count_over_time counts the 5 samples before it).
    assert [v for _, v in _range(client, 'rpc_duration_seconds{quantile="0.9"} * 2')[0]["values"]] == ["NaN"] * 11
    counted = _range(client, "count_over_time(node_up[1m])")[0]["values"]
    assert counted[-1] == [T0_MS / 1000 + 360, "1"] and len(counted) == 7
    # /series lists the NaN-only series over a window, as Prometheus does.
    answer = client.get(f"{API}/series", {"match[]": "rpc_duration_seconds", "start": str(T0_MS / 1000),
                                          "end": str(T0_MS / 1000 + 60)}).json()
    assert answer["data"] == [{**QUANTILE}]


@pytest.mark.django_db
def test_a_real_point_at_the_same_time_wins_and_a_resent_batch_stores_nothing_twice(make_tenant):
    client = make_tenant("nan-twice")
    _written(client)
    series_cache.clear()  # the marker's series is found in the database (as by another process), not created
    remote_write(client, [GONE], samples=[(T0_MS + 60_000, STALE)])
    remote_write(client, [GONE], samples=[(T0_MS, math.nan)])  # both over real points
    _written(client)
    assert _count("metrics_nan_sample", client.tenant) == 41 + 1 + 2
    assert _count("metrics_point", client.tenant) == 21
    [gone] = _range(client, "node_up")
    assert gone["values"] == [[T0_MS / 1000 + 60 * i, str(4 * i)] for i in range(6)]


@pytest.mark.django_db
def test_nothing_but_promql_sees_them(make_tenant):
    client = make_tenant("nan-apart")
    _written(client)
    storage.rollups_refresh()
    series = {s["metric_name"]: s for s in client.get("/api/v1/series", {"service": "node"}).json()["results"]}
    assert series["node_up"]["point_count"] == 21 and series["rpc_duration_seconds"]["point_count"] == 0
    window = {"minutes": 30}
    read = client.get("/api/v1/metrics/timeseries", {"series_id": series["node_up"]["series_id"], **window}).json()
    assert [p["value"] for p in read["series"][0]["points"]] == [float(k) for k in range(21)]
    read = client.get("/api/v1/metrics/timeseries", {"series_id": series["rpc_duration_seconds"]["series_id"],
                                                     **window}).json()
    assert read["series"] in ([], [{**read["series"][0], "points": []}])
    ids = [series["node_up"]["series_id"], series["rpc_duration_seconds"]["series_id"]]
    start, end = datetime.fromtimestamp(T0_MS / 1000 - 3600, timezone.utc), datetime.now(timezone.utc)
    # The hourly rollups (a step of an hour reads them) and detection's reads: finite values only.
    hourly = storage.timeseries_read(tenant=client.tenant, series_ids=ids, start=start, end=end, step_seconds=3600,
                                     agg="count")
    assert sum(value for _, value in hourly.get(ids[0], [])) == 21 and not hourly.get(ids[1])
    _, _, values = storage.points_after(tenant=client.tenant, after_us={ids[0]: None, ids[1]: None})
    assert len(values) == 21 and np.isfinite(values).all()
    extremes = storage.series_extremes_before(tenant=client.tenant, before_us={i: int(time.time() * 1e6) for i in ids})
    assert extremes[ids[0]] == (0.0, 20.0) and ids[1] not in extremes


@pytest.mark.django_db
def test_retention_and_a_tenants_deletion_remove_them(make_tenant, settings):
    client, other = make_tenant("nan-kept"), make_tenant("nan-other")
    now = datetime.now(timezone.utc)
    for owner in (client, other):
        # As the agent protocols build them: times in µs.
        result = points_ingest(tenant=owner.tenant, keep_nan=True, events=[
            Event(service="node", resource_id="host", metric_name="q", value=value, timestamp=to_us(at))
            for value, at in ((1.0, now - timedelta(days=10)), (math.nan, now - timedelta(days=10, seconds=-15)),
                              (2.0, now), (STALE, now + timedelta(seconds=1)))])
        assert (result.accepted, result.nans_kept, result.stale_kept, result.rejected) == (2, 1, 1, [])
    client.tenant.retention_days = 5
    client.tenant.save()
    storage.points_maintain(now=now)
    assert _count("metrics_nan_sample", client.tenant) == 1 and _count("metrics_nan_sample", other.tenant) == 2
    # Global retention: with the points the dropped partitions held.
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "RETENTION_DAYS": 30}
    storage.points_maintain(now=now + timedelta(days=60))
    assert _count("metrics_nan_sample", other.tenant) == 0 and _count("metrics_point", other.tenant) == 0
    client.tenant.delete()
    assert _count("metrics_nan_sample", client.tenant) == 0
