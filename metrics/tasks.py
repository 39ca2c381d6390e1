"""Celery tasks of metrics: thin wrappers over the maintenance services."""
from celery import shared_task

from metrics.services import points_maintain


@shared_task
def points_maintain_task() -> dict:
    """Create the coming weeks' partitions and apply retention."""
    return points_maintain()
