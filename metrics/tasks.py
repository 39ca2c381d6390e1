"""Celery tasks of metrics: thin wrappers over the point store's lifecycle (metrics.storage)."""
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from metrics.storage import points_compact, points_maintain, rollups_refresh


@shared_task
def points_maintain_task() -> dict:
    """Create the coming weeks' partitions and apply retention."""
    return points_maintain()


@shared_task
def rollups_refresh_task() -> dict:
    """Rebuild the rollup buckets touched by ingest since the last refresh."""
    return rollups_refresh()


@shared_task
def points_compact_task() -> dict:
    """Move closed days' points into compressed chunks."""
    return points_compact(older_than=timedelta(seconds=settings.CLOUDWATCHDOG["COMPACTION_OLDER_THAN_SECONDS"]))
