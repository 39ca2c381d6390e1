"""Detection settings now have ranges the engine can run with (a window of a billion points used to be
accepted, then stopped every run of the tenant): drop any stored override outside them, from the
tenants' settings and the detection rules, so their defaults apply and detection goes on."""
from django.db import migrations

from anomalies.engine.config import DetectionConfig


def _valid(name, value) -> bool:
    try:
        DetectionConfig.from_overrides({name: value})
    except ValueError:
        return False
    return True


def _kept(overrides):
    if not isinstance(overrides, dict):
        return overrides
    return {name: value for name, value in overrides.items() if _valid(name, value)}


def drop_out_of_range(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    for tenant in Tenant.objects.exclude(detection_config={}).only("id", "detection_config"):
        kept = _kept(tenant.detection_config)
        if kept != tenant.detection_config:
            Tenant.objects.filter(id=tenant.id).update(detection_config=kept)
    DetectionRule = apps.get_model("anomalies", "DetectionRule")
    for rule in DetectionRule.objects.only("id", "overrides"):
        kept = _kept(rule.overrides)
        if kept != rule.overrides:
            DetectionRule.objects.filter(id=rule.id).update(overrides=kept)


class Migration(migrations.Migration):

    dependencies = [
        ("anomalies", "0011_detection_rules"),
    ]

    operations = [migrations.RunPython(drop_out_of_range, migrations.RunPython.noop)]
