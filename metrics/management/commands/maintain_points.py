"""manage.py maintain_points: partitions ahead and retention, as the hourly beat task does."""
from django.core.management.base import BaseCommand

from metrics.storage import points_maintain


class Command(BaseCommand):
    help = (
        "Create the point partitions for this week and the next two, drop partitions past the global "
        "RETENTION_DAYS and delete points past each tenant's own retention. Celery beat runs this hourly."
    )

    def handle(self, *args, **options):
        report = points_maintain()
        self.stdout.write(
            f"partitions created: {report['partitions_created']}, dropped: {len(report['dropped_partitions'])}, "
            f"points deleted by tenant retention: {report['deleted_points']}"
        )
