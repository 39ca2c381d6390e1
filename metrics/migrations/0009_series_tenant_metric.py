from django.db import migrations, models


class Migration(migrations.Migration):
    """PromQL's selectors name a metric without its service: an index on (tenant, metric_name)."""

    dependencies = [("metrics", "0008_drop_minute_rollups")]

    operations = [
        migrations.AddIndex(
            model_name="series",
            index=models.Index(fields=["tenant", "metric_name"], name="series_tenant_metric"),
        ),
    ]
