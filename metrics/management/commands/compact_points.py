"""manage.py compact_points: move closed days' points into compressed chunks now, as beat does hourly."""
import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from metrics.storage import points_compact
from tenants.selectors import tenant_get

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """'0s', '90m', '36h', '2d', '1w' (a whole number and a unit)."""
    match = re.fullmatch(r"(\d{1,7})([smhdw])", text.strip())
    if not match:
        raise ValueError(f"'{text}' is not a duration: write a whole number and s, m, h, d or w (e.g. 0s, 36h, 2d)")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


class Command(BaseCommand):
    help = (
        "Move the points of closed UTC days into compressed chunks (one per series and day) and print what "
        "moved. A day is compacted once it is older than --older-than and wholly behind the tenant's late "
        "window (plus ten minutes) and detection's watermark of the series; late points into it stay rows until "
        "the next compaction merges them in. Safe to run while ingest, detection and reads go on, and again: "
        "it moves nothing twice. Celery beat runs it hourly with COMPACTION_OLDER_THAN_SECONDS."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help="Only this tenant (default: every tenant).")
        parser.add_argument(
            "--older-than", metavar="DURATION", default="0s",
            help="Only points older than this, e.g. 0s (default: everything behind the late window), 36h, 7d.")

    def handle(self, *args, **options):
        try:
            older_than = parse_duration(options["older_than"])
        except ValueError as error:
            raise CommandError(f"--older-than: {error}") from None
        tenant = None
        if options["tenant"]:
            tenant = tenant_get(slug=options["tenant"])
            if tenant is None:
                raise CommandError(f"--tenant: no tenant with slug '{options['tenant']}'")
        report = points_compact(tenant=tenant, older_than=older_than)
        per_point = report["chunk_bytes"] / report["points"] if report["points"] else 0
        self.stdout.write(
            f"compacted {report['points']} points of {report['series']} series into {report['chunks']} chunks "
            f"({report['merged_chunks']} merged into existing ones), {report['chunk_bytes']} bytes "
            f"({per_point:.2f} per point), {report['tenants']} tenants in {report['seconds']} s; "
            f"{report['hours_folded']} hourly rollups folded into their chunks ({report['rollups_kept']} kept: "
            "late points not merged yet)"
        )
        if report["failed_tenants"]:
            raise CommandError(f"compaction failed for tenants: {', '.join(report['failed_tenants'])} (see the log)")
