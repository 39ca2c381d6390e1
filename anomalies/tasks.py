"""Celery tasks: thin wrappers over the detection services (runs, alerting)."""
import random
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings

from anomalies.alerting import notifications_deliver_due, reminders_queue
from anomalies.runs import (
    RunInProgress,
    beat_order,
    detection_run,
    detection_runs_prune,
    tenant_slot_release,
    tenant_slot_take,
)
from metrics.selectors import series_counts
from tenants.selectors import tenant_get, tenant_list

# An async run whose tenant has a run going tries again every ASYNC_RETRY_SECONDS, up to
# ASYNC_WAIT_SECONDS in all, before it is recorded skipped: between tries it holds no worker process.
ASYNC_WAIT_SECONDS = 60
ASYNC_RETRY_SECONDS = 5
# A shard without a worker slot of its tenant is tried again after a pause drawn from this range
# (drawn, so a big tenant's deferred shards do not all come back at once).
SLOT_RETRY_SECONDS = (0.5, 1.5)


@shared_task(bind=True, max_retries=None)  # bounded below by ASYNC_WAIT_SECONDS
def detection_run_task(self, *, tenant_id: int, run_id: str | None = None, trigger: str = "api_async",
                       replay_since: str | None = None) -> str:
    """Run (or finish a queued) detection pass for one tenant, a replay from `replay_since` (ISO) when
    given; returns the run's status ("queued" while it waits for a retry)."""
    tenant = tenant_get(tenant_id=tenant_id)
    if tenant is None:
        return "gone"  # deleted since the run was queued; its runs went with it
    tries_left = self.request.retries < ASYNC_WAIT_SECONDS // ASYNC_RETRY_SECONDS
    try:
        return detection_run(tenant=tenant, trigger=trigger, run_id=run_id, keep_queued_when_busy=tries_left,
                             replay_since=datetime.fromisoformat(replay_since) if replay_since else None).status
    except RunInProgress as busy:
        if busy.run.status != busy.run.STATUS_QUEUED:
            return busy.run.status
        # Not waiting for the lock here: the tenant's other run may take minutes, and every waiting
        # task would hold a worker process other tenants' runs need.
        raise self.retry(countdown=ASYNC_RETRY_SECONDS, kwargs={
            "tenant_id": tenant_id, "run_id": str(busy.run.run_id), "trigger": trigger, "replay_since": replay_since})


@shared_task
def detection_run_all_task() -> dict:
    """Beat's pass: one task per active tenant on the queue — DETECTION_SHARDS tasks for a tenant with
    more than DETECTION_SHARD_MIN_SERIES series — so every worker process (on every machine) takes
    a share; returns {slug: tasks queued}, in the order queued (rotated each pass). A task left
    waiting past the next pass expires: that pass queued a newer one."""
    limits = settings.CLOUDWATCHDOG
    tenants = beat_order(list(tenant_list()))
    counts = series_counts(tenants=tenants)
    queued = {}
    for tenant in tenants:
        sharded = counts.get(tenant.id, 0) > limits["DETECTION_SHARD_MIN_SERIES"]
        shards = range(limits["DETECTION_SHARDS"]) if sharded else [None]
        for shard in shards:
            detection_tenant_pass_task.apply_async(kwargs={"tenant_id": tenant.id, "shard": shard},
                                                   expires=limits["DETECTION_INTERVAL_SECONDS"])
        queued[tenant.slug] = len(shards)
    return queued


@shared_task(bind=True, max_retries=None)  # bounded by the expiry beat gives it
def detection_tenant_pass_task(self, *, tenant_id: int, shard: int | None = None) -> str:
    """Beat's pass for one tenant (or one shard of its series): the run's status, "skipped" (a run
    holding its lock is going) or "failed". A shard waits for one of its tenant's worker slots
    (DETECTION_SLOTS_PER_TENANT): without one it is queued again a moment later, holding no worker,
    until it gets one or beat's next pass replaces it."""
    tenant = tenant_get(tenant_id=tenant_id)
    if tenant is None or not tenant.is_active:
        return "gone"
    holder = self.request.id or f"{tenant_id}:{shard}"
    if shard is not None and not tenant_slot_take(tenant_id=tenant_id, holder=holder):
        raise self.retry(countdown=random.uniform(*SLOT_RETRY_SECONDS))
    try:
        return detection_run(tenant=tenant, trigger="beat", shard=shard,
                             settle_seconds=settings.CLOUDWATCHDOG["DETECTION_SETTLE_SECONDS"]).status
    except RunInProgress:
        return "skipped"
    except Exception:  # detection_run logged it and marked the run failed; beat's next pass tries again
        return "failed"
    finally:
        if shard is not None:
            tenant_slot_release(tenant_id=tenant_id, holder=holder)


@shared_task
def detection_runs_prune_task() -> int:
    """Hourly: forget finished detection runs older than DETECTION_RUNS_KEEP_DAYS."""
    return detection_runs_prune(older_than=timedelta(days=settings.CLOUDWATCHDOG["DETECTION_RUNS_KEEP_DAYS"]))


@shared_task
def notifications_deliver_task() -> int:
    """Deliver the notifications that are due (and queue reminders); returns the attempts made."""
    reminders_queue()
    return notifications_deliver_due()
