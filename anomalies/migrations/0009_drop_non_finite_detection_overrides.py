"""Detection overrides must now be finite numbers. A string such as "nan" or "inf" used to be accepted
from the admin (jsonb itself cannot hold a NaN number): drop any such stored value, so the tenant's
configuration stays readable and its default applies."""
import math

from django.db import migrations


def _finite_or_not_a_number(value) -> bool:
    """False only for a value that reads as NaN, ±infinity or beyond a float (anything else is left
    to validation)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False
    except (TypeError, ValueError):
        return True


def drop_non_finite(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    for tenant in Tenant.objects.exclude(detection_config={}).only("id", "detection_config"):
        overrides = tenant.detection_config
        if not isinstance(overrides, dict):
            continue
        kept = {name: value for name, value in overrides.items() if _finite_or_not_a_number(value)}
        if kept != overrides:
            Tenant.objects.filter(id=tenant.id).update(detection_config=kept)


class Migration(migrations.Migration):

    dependencies = [
        ("anomalies", "0008_recurring_patterns_rarity_score"),
        ("tenants", "0003_help_texts"),
    ]

    operations = [migrations.RunPython(drop_non_finite, migrations.RunPython.noop)]
