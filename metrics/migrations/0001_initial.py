import django.db.models.deletion
from django.db import migrations, models

POINT_TABLE_SQL = """
CREATE TABLE metrics_point (
    tenant_id bigint NOT NULL,
    series_id bigint NOT NULL,
    ts timestamptz NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (tenant_id, series_id, ts)
) PARTITION BY RANGE (ts);
COMMENT ON TABLE metrics_point IS 'Raw points, one per (tenant, series, ts); weekly range partitions by ts.';
"""


class Migration(migrations.Migration):
    initial = True
    dependencies = [("tenants", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Series",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("service", models.CharField(help_text="Service that emits the metric, e.g. ec2.", max_length=512)),
                ("resource_id", models.CharField(help_text="The resource measured, e.g. an instance id.", max_length=512)),
                ("metric_name", models.CharField(help_text="Metric name, e.g. cpu_utilization.", max_length=512)),
                ("tags", models.JSONField(blank=True, default=dict, help_text="String-to-string tags that are part of the identity.")),
                ("key_hash", models.CharField(help_text="SHA-1 of the canonical (service, resource_id, metric_name, tags); unique per tenant.", max_length=40)),
                ("source", models.CharField(blank=True, help_text="The source named by the first event of the series.", max_length=512)),
                ("created_at", models.DateTimeField(auto_now_add=True, help_text="When the first point of the series arrived.")),
                ("tenant", models.ForeignKey(help_text="The tenant that owns this row.", on_delete=django.db.models.deletion.CASCADE, to="tenants.tenant")),
            ],
            options={
                "verbose_name_plural": "series",
                "indexes": [models.Index(fields=["tenant", "service", "metric_name", "resource_id"], name="series_tenant_lookup")],
                "constraints": [models.UniqueConstraint(fields=("tenant", "key_hash"), name="series_tenant_key_uniq")],
            },
        ),
        migrations.RunSQL(POINT_TABLE_SQL, "DROP TABLE metrics_point CASCADE;"),
    ]
