"""manage.py run_detection: one detection pass, all tenants or one."""
from django.core.management.base import BaseCommand, CommandError

from anomalies.runs import detection_run_all
from cloudwatchdog.timeutil import from_us, parse_iso
from tenants.selectors import tenant_get, tenant_list


class Command(BaseCommand):
    help = (
        "Run one detection pass over new points (all active tenants by default). Safe to run from cron while "
        "Celery beat runs the same: a tenant whose run is already going is skipped. With --replay --since T, "
        "recompute baselines and anomalies from T on (replacing that range's anomalies), e.g. after changing "
        "a tenant's detection settings or to evaluate points that arrived too late."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help="only this tenant")
        parser.add_argument("--replay", action="store_true", help="recompute from --since instead of only new points")
        parser.add_argument("--since", metavar="T", help="with --replay: ISO 8601 time with offset, e.g. 2026-01-01T00:00:00Z")
        parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                            help="wait this long for a tenant's running pass instead of skipping it (default 0)")

    def handle(self, *args, tenant=None, replay=False, since=None, wait=0.0, **options):
        if replay and not since:
            raise CommandError("--replay needs --since T (ISO 8601 with offset).")
        if since and not replay:
            raise CommandError("--since only makes sense with --replay.")
        replay_since = None
        if since:
            try:
                replay_since = from_us(parse_iso(since))
            except (ValueError, OverflowError) as error:
                raise CommandError(f"--since {since!r}: {error or 'is out of range'}")
        if tenant:
            found = tenant_get(slug=tenant)
            if found is None:
                raise CommandError(f"No tenant with slug {tenant!r}.")
            tenants = [found]
        else:
            tenants = list(tenant_list())
        outcomes = detection_run_all(tenants=tenants, trigger="replay" if replay else "command", wait_seconds=wait,
                                     replay_since=replay_since)
        for outcome in outcomes:
            run = outcome.run
            if outcome.status == "skipped":
                self.stdout.write(f"{outcome.slug}: skipped, another run is going ({run.error if run else ''})")
            elif outcome.status == "failed":
                self.stderr.write(f"{outcome.slug}: failed (see the log and the run in the admin)")
            else:
                self.stdout.write(
                    f"{outcome.slug}: run {run.run_id} {run.status}: {run.series_processed} series, "
                    f"{run.points_processed} points, {run.anomalies_created} anomalies in {run.duration_ms} ms"
                )
        if any(outcome.status == "failed" for outcome in outcomes):
            raise CommandError("Detection failed for at least one tenant.")
