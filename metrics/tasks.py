"""Celery tasks of metrics: thin wrappers over the maintenance services."""
from celery import shared_task

from metrics.rollups import rollups_refresh
from metrics.maintenance import points_maintain


@shared_task
def points_maintain_task() -> dict:
    """Create the coming weeks' partitions and apply retention."""
    return points_maintain()


@shared_task
def rollups_refresh_task() -> dict:
    """Rebuild the rollup buckets touched by ingest since the last refresh."""
    return rollups_refresh()
