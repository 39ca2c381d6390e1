"""Series columns as wide as the ingest limits (MAX_NAME_BYTES, MAX_VALUE_BYTES), and a lookup index
whose entries always fit a btree page (resource_id, up to 2,048 bytes, left out of it)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('metrics', '0003_drop_point_ts_brin'),
        ('tenants', '0002_limits_validated'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='series',
            name='series_tenant_lookup',
        ),
        migrations.AlterField(
            model_name='series',
            name='metric_name',
            field=models.CharField(help_text='Metric name, e.g. cpu_utilization.', max_length=1024),
        ),
        migrations.AlterField(
            model_name='series',
            name='resource_id',
            field=models.CharField(help_text='The resource measured, e.g. an instance id.', max_length=2048),
        ),
        migrations.AlterField(
            model_name='series',
            name='service',
            field=models.CharField(help_text='Service that emits the metric, e.g. ec2.', max_length=1024),
        ),
        migrations.AlterField(
            model_name='series',
            name='source',
            field=models.CharField(blank=True, help_text='The source named by the first event of the series.', max_length=2048),
        ),
        migrations.AddIndex(
            model_name='series',
            index=models.Index(fields=['tenant', 'service', 'metric_name'], name='series_tenant_service_metric'),
        ),
    ]
