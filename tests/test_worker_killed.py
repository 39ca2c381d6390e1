"""A Celery worker killed (SIGKILL) in the middle of a detection run: the next run completes the
work, with exactly the anomalies of an undisturbed run (`evaluating_from` at work), and the killed
run is closed as interrupted. The worker is a real `celery worker` process on the real broker."""
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.conf import settings

from anomalies.models import Anomaly, Baseline, DetectionRun
from anomalies.runs import detection_run, detection_run_enqueue
from metrics.services import points_ingest
from tenants.services import tenant_create
from tests.helpers import app_process_env

ROOT = Path(__file__).resolve().parent.parent
SERIES, POINTS = 80, 2500


def _events(series: int, points: int):
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=1)
    for s in range(series):
        batch = []
        for i in range(points):
            value = 50.0 + (i % 7) * 0.5 + (s % 5) + (400.0 if i in (1500 + s, 2200) else 0.0)
            batch.append({"service": "svc", "resource_id": f"r{s}", "metric_name": "m", "value": value,
                          "timestamp": (end - timedelta(minutes=points - 1 - i)).isoformat()})
        yield batch


def _worker_env() -> dict:
    return app_process_env(CELERY_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE, CELERY_QUEUE_PREFIX=settings.CELERY_QUEUE_PREFIX,
                           DETECTION_PARALLEL_MIN_POINTS="100000000")


@pytest.fixture
def worker(transactional_db, tmp_path):
    log = open(tmp_path / "worker.log", "w")
    process = subprocess.Popen([str(ROOT / ".venv/bin/celery"), "-A", "cloudwatchdog", "worker", "--pool", "solo",
                                "--loglevel", "INFO", "--without-mingle", "--without-gossip", "--queues",
                                ",".join([settings.CELERY_TASK_DEFAULT_QUEUE, *settings.TASK_QUEUES.values()])],
                               cwd=ROOT, env=_worker_env(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "ready." not in (tmp_path / "worker.log").read_text():
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
        time.sleep(0.1)
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def _anomalies(tenant):
    return sorted(
        (a.series.resource_id, a.ts, a.value, a.expected, a.lower, a.upper, a.score, a.severity, a.detector, a.reason)
        for a in Anomaly.objects.for_tenant(tenant).select_related("series"))


def test_a_worker_killed_mid_run_leaves_work_the_next_run_completes_exactly(worker):
    killed, undisturbed = tenant_create(slug="killed"), tenant_create(slug="undisturbed")
    for batch in _events(SERIES, POINTS):
        points_ingest(tenant=killed, events=batch)
        points_ingest(tenant=undisturbed, events=batch)
    detection_run(tenant=undisturbed, trigger="command")

    run = detection_run_enqueue(tenant=killed)
    deadline = time.monotonic() + 60
    while not Baseline.objects.for_tenant(killed).filter(evaluating_from__isnull=False).exists():
        assert time.monotonic() < deadline and worker.poll() is None
        time.sleep(0.005)
    worker.send_signal(signal.SIGKILL)  # watermarks moved, anomalies and baselines not yet written
    worker.wait()
    run.refresh_from_db()
    assert run.status == "running"
    assert not Anomaly.objects.for_tenant(killed).exists(), "the run finished before the kill; make it longer"

    # The killed worker's database session ends (and frees the run lock) once PostgreSQL notices.
    redo = detection_run(tenant=killed, trigger="command", wait_seconds=30)
    assert redo.points_processed == SERIES * POINTS
    expected = _anomalies(undisturbed)
    assert len(expected) >= SERIES
    assert _anomalies(killed) == expected
    run.refresh_from_db()
    assert run.status == "failed" and run.error.startswith("interrupted")
    assert not DetectionRun.objects.for_tenant(killed).filter(status="running").exists()
    assert detection_run(tenant=killed, trigger="command").anomalies_created == 0  # nothing twice
