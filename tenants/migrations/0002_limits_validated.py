"""Retention and maximum age of at least one day: 0 used to mean "off" at ingest and "delete
everything" in the hourly maintenance. An existing 0 becomes empty (off), which deletes nothing."""

import django.core.validators
from django.conf import settings
from django.db import migrations, models


def zero_days_to_off(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    Tenant.objects.filter(retention_days=0).update(retention_days=None)
    Tenant.objects.filter(max_point_age_days=0).update(max_point_age_days=None)


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(zero_days_to_off, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='tenant',
            name='limits',
            field=models.JSONField(blank=True, default=dict, help_text='Overrides of the per-tenant limits (README, Settings), e.g. {"MAX_EVENTS_PER_REQUEST": 5000, "POINTS_PER_SECOND": 50000}. Empty: the defaults.'),
        ),
        migrations.AlterField(
            model_name='tenant',
            name='max_point_age_days',
            field=models.PositiveIntegerField(blank=True, help_text='Points older than this many days are refused at ingest. Empty: back to EARLIEST_TIMESTAMP.', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AlterField(
            model_name='tenant',
            name='retention_days',
            field=models.PositiveIntegerField(blank=True, help_text='Points older than this many days (at least 1) are deleted and refused. Empty: kept forever.', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AddConstraint(
            model_name='tenant',
            constraint=models.CheckConstraint(condition=models.Q(('retention_days__isnull', True), ('retention_days__gte', 1), _connector='OR'), name='tenant_retention_days_positive'),
        ),
        migrations.AddConstraint(
            model_name='tenant',
            constraint=models.CheckConstraint(condition=models.Q(('max_point_age_days__isnull', True), ('max_point_age_days__gte', 1), _connector='OR'), name='tenant_max_point_age_days_positive'),
        ),
    ]
