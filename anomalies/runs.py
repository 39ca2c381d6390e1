"""A detection run's life: `detection_run` (the one pass every trigger calls: the API, the command,
beat's tasks), `detection_run_all` (each tenant in turn) and `detection_run_enqueue` (a run for a
worker); the locks that serialize a tenant's runs; runs whose process died; old runs pruned.

Runs of one tenant are serialized by a session advisory lock, since cron and beat may overlap; the
pass itself, and how it stays correct while ingest goes on, is in `anomalies/evaluation.py`. The
Celery tasks call this module, so it sends them by name and does not import them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from anomalies import evaluation
from anomalies.models import DetectionRun
from cloudwatchdog import locks, slots, telemetry
from cloudwatchdog.locks import Lock
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# The task detection_run_enqueue sends (anomalies.tasks.detection_run_task).
DETECTION_RUN_TASK = "anomalies.tasks.detection_run_task"

# A shard's run holds the tenant's run lock shared (whole-tenant runs hold it exclusively) and its
# shard's lock (tenant id × 256 + shard) exclusively: shards of one tenant run side by side.
MAX_SHARDS = 256

# Beat's pass count, which rotates the order its tenants are queued in.
BEAT_PASS_KEY = "detection:beat-pass"
# A shard's hold on its tenant's worker slot ends by itself after this long (its worker may have
# died); a pass running longer lets one more shard of the tenant start.
SLOT_HOLD_SECONDS = 900


class RunInProgress(Exception):
    """Another run of this tenant holds the run lock."""

    def __init__(self, running_run_id: UUID | None, run: DetectionRun):
        super().__init__("a detection run of this tenant is already going")
        self.running_run_id = running_run_id
        self.run = run


class QueueUnavailable(Exception):
    """The task queue (Redis) did not take a task."""


def detection_run_enqueue(*, tenant: Tenant, trigger: str = "api_async", replay_since: datetime | None = None,
                          ) -> DetectionRun:
    """Record a queued run (a replay from `replay_since` when given) and send its Celery task once
    committed; the task picks it up by run id.

    Raises QueueUnavailable when the broker does not take the task; the run is then closed as
    failed, so no run stays queued forever.
    """
    run = DetectionRun.objects.create(tenant=tenant, trigger=trigger, status=DetectionRun.STATUS_QUEUED,
                                      replay_since=replay_since)

    def send():
        try:
            current_app.send_task(DETECTION_RUN_TASK, kwargs={
                "tenant_id": tenant.id, "run_id": str(run.run_id), "trigger": trigger,
                "replay_since": replay_since.isoformat() if replay_since else None})
        except Exception as error:  # kombu's OperationalError, redis-py's errors: the broker is down
            DetectionRun.objects.for_tenant(tenant).filter(id=run.id, status=DetectionRun.STATUS_QUEUED).update(
                status=DetectionRun.STATUS_FAILED, error="the task queue was unavailable", finished_at=timezone.now())
            run.status = DetectionRun.STATUS_FAILED
            raise QueueUnavailable(str(error)) from error

    transaction.on_commit(send)
    return run


def detection_run(
    *,
    tenant: Tenant,
    trigger: str,
    run_id: UUID | None = None,
    wait_seconds: float = 0.0,
    replay_since: datetime | None = None,
    settle_seconds: float = 0.0,
    shard: int | None = None,
    keep_queued_when_busy: bool = False,
) -> DetectionRun:
    """One detection pass over the tenant's new (and late, or replayed) points; safe to overlap.

    With `settle_seconds`, points newer than that are left for the next pass, so batches still
    in flight from agents are not turned into late points (scheduled runs use it). With `shard`,
    only the series whose id modulo DETECTION_SHARDS is `shard` (beat splits a large tenant so).
    Raises RunInProgress when another run of the tenant holds the lock past `wait_seconds`; the run
    is recorded skipped, or left queued with `keep_queued_when_busy` (its caller tries again later).
    """
    if run_id is not None:
        run = DetectionRun.objects.for_tenant(tenant).get(run_id=run_id)
    else:
        run = DetectionRun.objects.create(tenant=tenant, trigger=trigger, status=DetectionRun.STATUS_QUEUED, shard=shard)
    if replay_since is not None:
        run.replay_since = replay_since
    locked = _shard_lock_acquire(tenant.id, shard) if shard is not None else _run_lock_acquire(tenant.id, wait_seconds)
    if not locked and keep_queued_when_busy:
        raise RunInProgress(None, run)
    if not locked:
        raise _run_record_skipped(tenant=tenant, run=run)
    started = time.monotonic()
    try:
        _interrupted_runs_close(tenant=tenant, current=run)
        run.status = DetectionRun.STATUS_RUNNING
        run.started_at = timezone.now()
        run.save()
        evaluation.run_evaluate(tenant=tenant, run=run, replay_since=replay_since, settle_seconds=settle_seconds,
                                shard=shard)
        run.status = DetectionRun.STATUS_SUCCEEDED
    except Exception as error:
        run.status = DetectionRun.STATUS_FAILED
        run.error = f"{type(error).__name__}: {error}"  # for support staff in the admin; the API says less
        logger.exception("detection run %s of tenant %s failed", run.run_id, tenant.slug)
        raise
    finally:
        try:
            run.finished_at = timezone.now()
            run.duration_ms = int((time.monotonic() - started) * 1000)
            if not connection.needs_rollback:  # inside a broken outer transaction nothing more can be written
                run.save()
        finally:
            # Even if the summary could not be saved: a lock left on a pooled connection would
            # skip the tenant's runs until that connection is recycled.
            _shard_lock_release(tenant.id, shard) if shard is not None else _run_lock_release(tenant.id)
            telemetry.detection_run_counted(tenant_slug=tenant.slug, trigger=trigger, status=run.status,
                                            seconds=time.monotonic() - started)
    return run


def _run_record_skipped(*, tenant: Tenant, run: DetectionRun) -> RunInProgress:
    """Record the run as skipped, naming the run that holds the lock, and say so to the caller."""
    running = (
        DetectionRun.objects.for_tenant(tenant).filter(status=DetectionRun.STATUS_RUNNING)
        .order_by("-started_at").first()
    )
    run.status = DetectionRun.STATUS_SKIPPED
    run.error = f"another run of this tenant was going ({running.run_id if running else 'unknown'})"
    run.finished_at = timezone.now()
    run.save()
    return RunInProgress(running.run_id if running else None, run)


@dataclass(frozen=True)
class TenantRunOutcome:
    slug: str
    status: str  # the run's status, or "skipped" (a run was going) or "failed"
    run: DetectionRun | None


def detection_run_all(*, tenants, trigger: str, wait_seconds: float = 0.0, replay_since: datetime | None = None,
                      settle_seconds: float = 0.0) -> list[TenantRunOutcome]:
    """One pass for each of the tenants, in turn: a tenant whose run is going is skipped, and one
    whose run fails is logged and counted while the others go on."""
    outcomes = []
    for tenant in tenants:
        try:
            run = detection_run(tenant=tenant, trigger=trigger, wait_seconds=wait_seconds, replay_since=replay_since,
                                settle_seconds=settle_seconds)
            outcomes.append(TenantRunOutcome(tenant.slug, run.status, run))
        except RunInProgress as busy:
            outcomes.append(TenantRunOutcome(tenant.slug, "skipped", busy.run))
        except Exception:  # one tenant's failure must not stop the others; detection_run logged it
            outcomes.append(TenantRunOutcome(tenant.slug, "failed", None))
    return outcomes


def beat_order(tenants: list[Tenant]) -> list[Tenant]:
    """The tenants in id order, rotated by one more place each time beat's pass asks: queued first
    is run first, so no tenant always waits behind all the others."""
    ordered = sorted(tenants, key=lambda tenant: tenant.id)
    if not ordered:
        return ordered
    try:
        cache.add(BEAT_PASS_KEY, 0, timeout=None)
        offset = cache.incr(BEAT_PASS_KEY) % len(ordered)
    except (ValueError, RedisError):  # evicted between add and incr, or Redis down: this pass keeps id order
        offset = 0
    return ordered[offset:] + ordered[:offset]


def tenant_slot_take(*, tenant_id: int, holder: str) -> bool:
    """Whether `holder` (a shard's task) got one of its tenant's DETECTION_SLOTS_PER_TENANT worker
    slots: a tenant split into many shards takes at most that many worker processes at once, and
    the others stay free for the other tenants' passes."""
    return slots.slot_take(f"detection:{tenant_id}", holder=holder, hold_seconds=SLOT_HOLD_SECONDS,
                           cap=settings.CLOUDWATCHDOG["DETECTION_SLOTS_PER_TENANT"])


def tenant_slot_release(*, tenant_id: int, holder: str) -> None:
    slots.slot_release(f"detection:{tenant_id}", holder=holder)


def _interrupted_runs_close(*, tenant: Tenant, current: DetectionRun) -> None:
    """Mark as failed the tenant's runs still "running" whose process died (this one holds the lock,
    so no other can be going: of its shard, or any for a whole-tenant run); `evaluating_from`
    makes this run redo their work."""
    running = DetectionRun.objects.for_tenant(tenant).filter(status=DetectionRun.STATUS_RUNNING)
    if current.shard is not None:
        running = running.filter(shard=current.shard)
    running.exclude(id=current.id).update(
        status=DetectionRun.STATUS_FAILED, finished_at=timezone.now(),
        error=f"interrupted: its process ended before it finished; run {current.run_id} redid its work")


def _run_lock_acquire(tenant_id: int, wait_seconds: float) -> bool:
    """Take the tenant's run lock, waiting up to `wait_seconds` if this is the only caller waiting.

    A second caller that would wait gives up at once: each waiter holds a web thread (or a worker)
    for the whole wait, and a tenant sending many synchronous runs must not hold them all.
    """
    with connection.cursor() as cursor:
        if locks.try_lock(cursor, Lock.RUN, tenant_id):
            return True
        if wait_seconds <= 0:
            return False
        with locks.held_if_free(cursor, Lock.RUN_WAITER, tenant_id) as the_one_waiter:
            if not the_one_waiter:
                return False
            try:
                with transaction.atomic():
                    cursor.execute("SET LOCAL lock_timeout = %s", [f"{int(wait_seconds * 1000)}ms"])
                    locks.lock(cursor, Lock.RUN, tenant_id)
                return True
            except OperationalError:
                return False


def _shard_lock_acquire(tenant_id: int, shard: int) -> bool:
    """The tenant's run lock shared, then its shard's lock; never waits (beat's next pass comes)."""
    if not 0 <= shard < MAX_SHARDS:
        raise ValueError(f"shard must be from 0 to {MAX_SHARDS - 1}")
    with connection.cursor() as cursor:
        if not locks.try_lock(cursor, Lock.RUN, tenant_id, shared=True):
            return False
        if locks.try_lock(cursor, Lock.RUN_SHARD, tenant_id * MAX_SHARDS + shard):
            return True
        locks.unlock(cursor, Lock.RUN, tenant_id, shared=True)
        return False


def _shard_lock_release(tenant_id: int, shard: int) -> None:
    with connection.cursor() as cursor:
        locks.unlock(cursor, Lock.RUN_SHARD, tenant_id * MAX_SHARDS + shard)
        locks.unlock(cursor, Lock.RUN, tenant_id, shared=True)


def _run_lock_release(tenant_id: int) -> None:
    with connection.cursor() as cursor:
        locks.unlock(cursor, Lock.RUN, tenant_id)


def detection_runs_prune(*, older_than: timedelta = timedelta(days=7), now: datetime | None = None) -> int:
    """Delete finished runs older than `older_than` (beat makes one per tenant a minute); returns how many."""
    cutoff = (now or timezone.now()) - older_than
    deleted, _ = (
        DetectionRun.objects.unscoped()
        .filter(requested_at__lt=cutoff, status__in=[DetectionRun.STATUS_SUCCEEDED, DetectionRun.STATUS_SKIPPED,
                                                      DetectionRun.STATUS_FAILED])
        .delete()
    )
    return deleted
