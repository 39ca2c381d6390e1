"""One tenant's hostile data changes nothing for another: a point dated in year 1, values of 1e308
(refused now; planted as rows stored before values were bounded), an attempt at retention_days=0,
a flood of partitions. The other tenant's ingest, reads, rollups, maintenance and detection go on."""
from datetime import datetime, timedelta, timezone

import pytest
from django.db import IntegrityError, connection, transaction

from anomalies.models import Anomaly, DetectionRun
from anomalies.tasks import detection_tenant_pass_task
from metrics.storage import points_maintain, rollups_refresh
from tests.helpers import event, iso, steady_then_spike


def test_a_hostile_tenant_changes_nothing_for_another(make_tenant):
    hostile, victim = make_tenant("hostile"), make_tenant("victim")
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=2)
    events = steady_then_spike(count=2000, end=end)
    for start in range(0, 2000, 1000):
        assert victim.ingest(events[start:start + 1000]).json()["accepted"] == 1000

    answers = [
        hostile.ingest([event(1.0, "0001-01-01T00:00:00Z"), event(1.0, "0001-01-01T00:00:00+01:00")]),
        hostile.ingest([event(1e308, end), event(1e308, end + timedelta(seconds=1))]),
        hostile.ingest([event(1.0, iso(datetime(2000, 1, 3, tzinfo=timezone.utc) + timedelta(weeks=k)))
                        for k in range(1300)]),
    ]
    assert all(answer.status_code in (202, 400) for answer in answers)
    hostile.tenant.retention_days = 0
    with pytest.raises(IntegrityError), transaction.atomic():
        hostile.tenant.save()
    hostile.tenant.refresh_from_db()
    series_id = hostile.ingest([event(1.0, end)]) and hostile.get("/api/v1/series").json()["results"][0]["series_id"]
    with connection.cursor() as cursor:  # rows stored before values were bounded: their sum overflows
        cursor.execute("INSERT INTO metrics_point VALUES (%s, %s, %s, 1e308), (%s, %s, %s, 1e308)",
                       [hostile.tenant.id, series_id, end + timedelta(seconds=2),
                        hostile.tenant.id, series_id, end + timedelta(seconds=3)])
        cursor.execute("INSERT INTO metrics_ingest_log VALUES (%s, %s, %s)", [hostile.tenant.id, end, end])

    assert points_maintain()["failed_tenants"] == []
    refreshed = rollups_refresh()
    assert refreshed["failed_tenants"] == [hostile.tenant.id]
    # beat queues one task per tenant; each runs on its own (here in turn, the hostile one first)
    statuses = {client.tenant.slug: detection_tenant_pass_task(tenant_id=client.tenant.id) for client in (hostile, victim)}

    assert statuses["victim"] == "succeeded"
    assert Anomaly.objects.for_tenant(victim.tenant).filter(value=500.0).exists()
    assert DetectionRun.objects.for_tenant(victim.tenant).filter(status="succeeded").exists()
    assert victim.ingest([event(1.0, end + timedelta(minutes=1))]).json()["accepted"] == 1
    hourly = victim.get("/api/v1/metrics/timeseries", {"service": "ec2", "metric_name": "cpu_utilization",
                                                        "minutes": 48 * 60, "step": "1h", "agg": "count"}).json()
    assert sum(p["value"] for p in hourly["series"][0]["points"]) == 2001
    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(count) FROM metrics_rollup_1h WHERE tenant_id = %s", [victim.tenant.id])
        assert cursor.fetchone()[0] == 2000  # refreshed before the last point arrived
    assert victim.get("/api/v1/anomalies").json()["results"]
