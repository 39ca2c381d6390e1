"""The Celery tasks on a real worker, through the real Redis broker."""
import subprocess
import time
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from django.db import connection

from anomalies import tasks
from anomalies.models import DetectionRun
from anomalies.runs import MAX_SHARDS, RunInProgress, detection_run, tenant_slot_release, tenant_slot_take
from anomalies.tasks import ASYNC_RETRY_SECONDS, SLOT_RETRY_SECONDS, detection_run_all_task
from cloudwatchdog import slots
from cloudwatchdog.celery import app
from cloudwatchdog.locks import Lock
from tests.helpers import steady_then_spike
from tests.helpers import wait_for as _wait_for


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


def test_the_tasks_sent_by_name_are_the_ones_the_tasks_module_defines():
    # runs and evaluation send these by name (the tasks import runs): a renamed task would be lost.
    from anomalies import evaluation, runs, tasks

    assert runs.DETECTION_RUN_TASK == tasks.detection_run_task.name
    assert evaluation.NOTIFICATIONS_DELIVER_TASK == tasks.notifications_deliver_task.name


def test_the_beat_task_runs_every_tenant_on_the_worker(make_tenant, celery_worker):
    first, _second = make_tenant("beat-a"), make_tenant("beat-b")
    now = datetime.now(timezone.utc)
    first.ingest(steady_then_spike(count=100, end=now - timedelta(minutes=1)))
    first.ingest(steady_then_spike(count=1, end=now))  # newer than the settle delay: left for the next run
    detection_run_all_task.delay()
    assert _wait_for(lambda: DetectionRun.objects.unscoped().filter(trigger="beat", status="succeeded").count() == 2)
    run = DetectionRun.objects.for_tenant(first.tenant).get(trigger="beat")
    assert run.points_processed == 100


def test_beat_splits_a_large_tenant_into_shards_that_the_worker_runs(make_tenant, celery_worker, settings):
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "DETECTION_SHARD_MIN_SERIES": 3, "DETECTION_SHARDS": 2}
    large, small = make_tenant("sharded"), make_tenant("whole")
    end = datetime.now(timezone.utc) - timedelta(minutes=1)
    for resource in range(6):
        large.ingest(steady_then_spike(count=100, end=end, resource_id=f"r{resource}"))
    small.ingest(steady_then_spike(count=100, end=end))
    assert detection_run_all_task() == {"sharded": 2, "whole": 1}
    assert _wait_for(lambda: DetectionRun.objects.unscoped().filter(trigger="beat", status="succeeded").count() == 3)
    runs = DetectionRun.objects.for_tenant(large.tenant).filter(trigger="beat")
    assert sorted(run.shard for run in runs) == [0, 1]
    assert sum(run.points_processed for run in runs) == 600 and all(run.series_processed == 3 for run in runs)
    assert DetectionRun.objects.for_tenant(small.tenant).get(trigger="beat").shard is None
    baselines = large.get("/api/v1/baselines").json()["results"]
    assert sorted(b["resource_id"] for b in baselines) == [f"r{k}" for k in range(6)]  # every series, once


def test_a_shard_run_and_a_whole_tenant_run_exclude_each_other(owner):
    owner.ingest(steady_then_spike(count=50))
    other = psycopg2.connect(**{k: v for k, v in connection.get_connection_params().items()
                                if k not in ("cursor_factory", "context")})
    other.autocommit = True
    tenant_id = owner.tenant.id
    try:
        with other.cursor() as cursor:  # shard 0 of this tenant is running elsewhere
            cursor.execute("SELECT pg_advisory_lock_shared(%s, %s), pg_advisory_lock(%s, %s)",
                           [Lock.RUN, tenant_id, Lock.RUN_SHARD, tenant_id * MAX_SHARDS])
        with pytest.raises(RunInProgress):
            detection_run(tenant=owner.tenant, trigger="command")
        with pytest.raises(RunInProgress):
            detection_run(tenant=owner.tenant, trigger="beat", shard=0)
        assert detection_run(tenant=owner.tenant, trigger="beat", shard=1).status == "succeeded"
        with other.cursor() as cursor:  # now a whole-tenant run elsewhere
            cursor.execute("SELECT pg_advisory_unlock_all()")
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [Lock.RUN, tenant_id])
        with pytest.raises(RunInProgress):
            detection_run(tenant=owner.tenant, trigger="beat", shard=1)
    finally:
        # Released by a statement, which returns once they are: closing the connection alone lets its
        # backend release them a moment later, and the run below could still find them held.
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_all()")
        other.close()
    assert detection_run(tenant=owner.tenant, trigger="beat", shard=0).status == "succeeded"


def test_beat_passes_and_notifications_run_on_a_worker_that_bulk_work_never_reaches(make_tenant, transactional_db,
                                                                                     settings):
    # The Procfile's `worker` takes only notify and detection: an async run queued before beat's
    # pass waits for `worker_bulk`, and the pass does not wait behind it.
    from celery.contrib.testing.worker import start_worker

    tenant = make_tenant("routed")
    tenant.ingest(steady_then_spike(count=100, end=datetime.now(timezone.utc) - timedelta(minutes=1)))
    queued = tenant.post("/api/v1/process/run?async=true").json()["run_id"]
    queues = [settings.TASK_QUEUES["notify"], settings.TASK_QUEUES["detection"]]
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30, queues=queues):
        detection_run_all_task.delay()
        assert _wait_for(lambda: DetectionRun.objects.for_tenant(tenant.tenant).filter(
            trigger="beat", status="succeeded").exists())
    assert DetectionRun.objects.for_tenant(tenant.tenant).get(run_id=queued).status == "queued"
    with app.connection_for_write() as conn:  # still waiting in its queue, for worker_bulk
        assert conn.default_channel.client.llen(settings.TASK_QUEUES["detection_bulk"]) == 1
        conn.default_channel.client.delete(settings.TASK_QUEUES["detection_bulk"])
    routes = {name: app.amqp.router.route({}, name)["queue"].name for name in (
        "anomalies.tasks.detection_run_task", "anomalies.tasks.detection_tenant_pass_task",
        "anomalies.tasks.notifications_deliver_task", "metrics.tasks.points_compact_task",
        "metrics.tasks.rollups_refresh_task", "anomalies.tasks.detection_runs_prune_task")}
    assert routes == {
        "anomalies.tasks.detection_run_task": settings.TASK_QUEUES["detection_bulk"],
        "anomalies.tasks.detection_tenant_pass_task": settings.TASK_QUEUES["detection"],
        "anomalies.tasks.notifications_deliver_task": settings.TASK_QUEUES["notify"],
        "metrics.tasks.points_compact_task": settings.TASK_QUEUES["maintenance"],
        "metrics.tasks.rollups_refresh_task": settings.TASK_QUEUES["maintenance"],
        "anomalies.tasks.detection_runs_prune_task": settings.TASK_QUEUES["maintenance"],
    }


def _hold_run_lock(tenant_id: int):
    """Another session holding the tenant's run lock, as a long run elsewhere does."""
    other = psycopg2.connect(**{k: v for k, v in connection.get_connection_params().items()
                                if k not in ("cursor_factory", "context")})
    other.autocommit = True
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [Lock.RUN, tenant_id])
    return other


def _release(other) -> None:
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock_all()")
    other.close()


def test_an_async_run_whose_tenant_is_busy_frees_the_worker_and_runs_once_the_lock_is_free(make_tenant, celery_worker):
    # The fixture's worker has one process (solo): a task waiting for the lock inside it would hold
    # back the other tenant's run for the whole wait.
    busy, other = make_tenant("busy-tenant"), make_tenant("other-tenant")
    busy.ingest(steady_then_spike(count=100))
    other.ingest(steady_then_spike(count=100))
    holder = _hold_run_lock(busy.tenant.id)
    try:
        waiting = busy.post("/api/v1/process/run?async=true").json()["run_id"]
        time.sleep(0.5)  # the worker has tried it once by now
        started = time.monotonic()
        quick = other.post("/api/v1/process/run?async=true").json()["run_id"]
        assert _wait_for(lambda: other.get(f"/api/v1/process/runs/{quick}").json()["status"] == "succeeded")
        assert time.monotonic() - started < ASYNC_RETRY_SECONDS  # not behind the busy tenant's wait
        assert busy.get(f"/api/v1/process/runs/{waiting}").json()["status"] == "queued"
    finally:
        _release(holder)
    assert _wait_for(lambda: busy.get(f"/api/v1/process/runs/{waiting}").json()["status"] == "succeeded")
    assert busy.get(f"/api/v1/process/runs/{waiting}").json()["points_processed"] == 100
    assert DetectionRun.objects.for_tenant(busy.tenant).count() == 1  # the retries made no runs of their own


def test_an_async_run_still_busy_after_the_wait_is_recorded_skipped(make_tenant, celery_worker, monkeypatch):
    monkeypatch.setattr(tasks, "ASYNC_WAIT_SECONDS", 4)  # more tries than Celery's default max_retries (3)
    monkeypatch.setattr(tasks, "ASYNC_RETRY_SECONDS", 1)
    busy = make_tenant("always-busy")
    holder = _hold_run_lock(busy.tenant.id)
    try:
        run_id = busy.post("/api/v1/process/run?async=true").json()["run_id"]
        assert _wait_for(lambda: busy.get(f"/api/v1/process/runs/{run_id}").json()["status"] == "skipped")
        waited = DetectionRun.objects.for_tenant(busy.tenant).get(run_id=run_id)
        assert (waited.finished_at - waited.requested_at).total_seconds() >= 4  # four retries, a second apart
    finally:
        _release(holder)


def test_beat_queues_its_tenants_in_an_order_rotated_each_pass(make_tenant, transactional_db, settings):
    slugs = [make_tenant(f"rotated-{k}").tenant.slug for k in range(3)]  # created, so in id order
    try:
        orders = [list(detection_run_all_task()) for _ in range(3)]
    finally:
        with app.connection_for_write() as conn:  # the passes' tasks: no worker here to take them
            conn.default_channel.client.delete(settings.TASK_QUEUES["detection"])
    assert sorted(order[0] for order in orders) == sorted(slugs)  # each tenant first once in three passes
    for order in orders:
        start = slugs.index(order[0])
        assert order == slugs[start:] + slugs[:start]  # a rotation of id order


def test_a_small_tenants_pass_runs_while_a_big_tenant_holds_its_share_and_the_big_ones_shards_run_later(
        make_tenant, celery_worker, settings):
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "DETECTION_SHARD_MIN_SERIES": 3, "DETECTION_SHARDS": 2,
                              "DETECTION_SLOTS_PER_TENANT": 1}
    big, small = make_tenant("big-sharded"), make_tenant("small-whole")
    end = datetime.now(timezone.utc) - timedelta(minutes=1)
    for resource in range(6):
        big.ingest(steady_then_spike(count=100, end=end, resource_id=f"r{resource}"))
    small.ingest(steady_then_spike(count=100, end=end))
    assert tenant_slot_take(tenant_id=big.tenant.id, holder="a long shard elsewhere")  # its whole share
    try:
        detection_run_all_task()
        assert _wait_for(lambda: DetectionRun.objects.for_tenant(small.tenant).filter(status="succeeded").exists())
        time.sleep(2 * SLOT_RETRY_SECONDS[1])  # the big tenant's shards were tried, and deferred, meanwhile
        assert not DetectionRun.objects.for_tenant(big.tenant).exists()
        assert slots.slot_holders(f"detection:{big.tenant.id}") == 1
    finally:
        tenant_slot_release(tenant_id=big.tenant.id, holder="a long shard elsewhere")
    # Deferred, not lost: once the share is free the same tasks run, one shard at a time.
    assert _wait_for(lambda: DetectionRun.objects.for_tenant(big.tenant).filter(status="succeeded").count() == 2)
    runs = DetectionRun.objects.for_tenant(big.tenant).order_by("started_at")
    assert sorted(run.shard for run in runs) == [0, 1] and sum(run.points_processed for run in runs) == 600
    assert slots.slot_holders(f"detection:{big.tenant.id}") == 0  # each shard gave its slot back


def test_slots_cap_their_holders_and_a_dead_holders_slot_expires(db):
    name = "test-slots"
    assert slots.slot_take(name, holder="a", cap=2, hold_seconds=60)
    assert slots.slot_take(name, holder="b", cap=2, hold_seconds=0.5)
    assert not slots.slot_take(name, holder="c", cap=2, hold_seconds=60)
    assert slots.slot_take(name, holder="a", cap=2, hold_seconds=60)  # a holder renews its own
    time.sleep(0.6)  # b died without releasing
    assert slots.slot_take(name, holder="c", cap=2, hold_seconds=60)
    slots.slot_release(name, holder="a")
    assert slots.slot_holders(name) == 1
    slots.slot_release(name, holder="c")


def test_the_procfiles_workers_take_every_routed_queue_and_bulk_work_stays_off_the_beat_worker(settings, monkeypatch):
    from scripts.serve import procfile_roles

    monkeypatch.setenv("CELERY_QUEUE_PREFIX", settings.CELERY_QUEUE_PREFIX)  # for the shell below
    monkeypatch.setenv("CELERY_QUEUE", settings.CELERY_TASK_DEFAULT_QUEUE)
    roles = procfile_roles()

    def queues(role: str) -> set[str]:  # as the shell that starts the role expands them
        option = next(part for part in roles[role].split() if part.startswith("--queues="))
        expanded = subprocess.run(["/bin/sh", "-c", f"echo {option}"], capture_output=True, text=True, check=True)
        return set(expanded.stdout.strip().removeprefix("--queues=").split(","))

    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed | {settings.CELERY_TASK_DEFAULT_QUEUE} == queues("worker") | queues("worker_bulk")
    assert queues("worker") == {settings.TASK_QUEUES["notify"], settings.TASK_QUEUES["detection"]}
