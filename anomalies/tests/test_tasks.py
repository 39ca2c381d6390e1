"""The Celery tasks on a real worker, through the real Redis broker."""
from datetime import datetime, timedelta, timezone

from anomalies.models import DetectionRun
from anomalies.tasks import detection_run_all_task
from conftest import steady_then_spike, wait_for as _wait_for


def test_an_async_run_goes_through_the_worker(make_tenant, celery_worker):
    owner = make_tenant("async-owner")
    outsider = make_tenant("async-outsider")
    events = steady_then_spike(count=2000)
    for start in range(0, 2000, 1000):
        owner.ingest(events[start:start + 1000])
    response = owner.post("/api/v1/process/run?async=true")
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    assert _wait_for(lambda: owner.get(f"/api/v1/process/runs/{run_id}").json()["status"] == "succeeded")
    summary = owner.get(f"/api/v1/process/runs/{run_id}").json()
    assert summary["points_processed"] == 2000 and summary["anomalies_created"] >= 1
    assert summary["trigger"] == "api_async"
    assert outsider.get(f"/api/v1/process/runs/{run_id}").status_code == 404


def test_the_beat_task_runs_every_tenant_on_the_worker(make_tenant, celery_worker):
    first, _second = make_tenant("beat-a"), make_tenant("beat-b")
    now = datetime.now(timezone.utc)
    first.ingest(steady_then_spike(count=100, end=now - timedelta(minutes=1)))
    first.ingest(steady_then_spike(count=1, end=now))  # newer than the settle delay: left for the next run
    detection_run_all_task.delay()
    assert _wait_for(lambda: DetectionRun.objects.unscoped().filter(trigger="beat", status="succeeded").count() == 2)
    run = DetectionRun.objects.for_tenant(first.tenant).get(trigger="beat")
    assert run.points_processed == 100
