from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import pre_delete


class MetricsConfig(AppConfig):
    name = "metrics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.conf import settings

        from cloudwatchdog import checks  # noqa: F401  (registers the connection budget check)
        from cloudwatchdog.backend_priority import carry_niceness_to_backend
        from cloudwatchdog.telemetry import scrape_collectors
        from metrics.services import ingest_figures
        from metrics.storage import tenant_points_delete
        from tenants.models import Tenant

        # Points are not foreign-keyed to their tenant (a partitioned table), so a tenant's deletion
        # (the admin's, a superuser's) would leave them behind; the tenants app imports no other app.
        pre_delete.connect(tenant_points_delete, sender=Tenant, dispatch_uid="metrics_tenant_points_delete")
        if settings.DATABASE_BACKENDS_SHARE_NICE:
            connection_created.connect(carry_niceness_to_backend, dispatch_uid="carry_niceness_to_backend")
        if ingest_figures not in scrape_collectors:
            scrape_collectors.append(ingest_figures)
