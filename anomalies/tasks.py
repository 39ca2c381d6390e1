"""Celery tasks: thin wrappers over the detection service."""
import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from anomalies.services import RunInProgress, detection_run, detection_runs_prune
from tenants.models import Tenant
from tenants.selectors import tenant_list

logger = logging.getLogger(__name__)


@shared_task
def detection_run_task(*, tenant_id: int, run_id: str | None = None, trigger: str = "api_async") -> str:
    """Run (or finish a queued) detection pass for one tenant; returns the run's status."""
    tenant = Tenant.objects.get(id=tenant_id)
    try:
        return detection_run(tenant=tenant, trigger=trigger, run_id=run_id, wait_seconds=60).status
    except RunInProgress as busy:
        return busy.run.status


@shared_task
def detection_run_all_task() -> dict:
    """Beat's pass over every active tenant; a tenant whose run is already going is skipped."""
    statuses = {}
    for tenant in tenant_list():
        try:
            statuses[tenant.slug] = detection_run(
                tenant=tenant, trigger="beat", settle_seconds=settings.CLOUDWATCHDOG["DETECTION_SETTLE_SECONDS"]
            ).status
        except RunInProgress:
            statuses[tenant.slug] = "skipped"
        except Exception:  # one tenant's failure must not stop the others
            logger.exception("detection failed for tenant %s", tenant.slug)
            statuses[tenant.slug] = "failed"
    return statuses


@shared_task
def detection_runs_prune_task() -> int:
    """Hourly: forget finished detection runs older than DETECTION_RUNS_KEEP_DAYS."""
    return detection_runs_prune(older_than=timedelta(days=settings.CLOUDWATCHDOG["DETECTION_RUNS_KEEP_DAYS"]))
