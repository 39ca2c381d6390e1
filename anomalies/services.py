"""Writes of triage and settings: an anomaly's status, a tenant's detection overrides, series mutes
and detection rules (with the checks their tags and overrides pass before they are stored).

A detection run's life and locks are in `anomalies/runs.py`, one evaluation pass in
`anomalies/evaluation.py`.
"""
from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from anomalies.engine import DetectionConfig
from anomalies.models import Anomaly, AnomalyEvent, DetectionRule, SeriesMute
from cloudwatchdog import locks
from cloudwatchdog.locks import Lock
from metrics import selectors as metrics_selectors
from tenants.models import Tenant


def anomaly_status_set(*, tenant: Tenant, anomaly_ids: list[int], status: str, actor: str, note: str = "") -> int:
    """Set the triage status of the tenant's anomalies, recording an event (who, from, to, note) for each
    one changed; returns how many changed. A note on an anomaly already in that status is recorded too."""
    if status not in dict(Anomaly.STATUSES):
        raise ValueError(f"unknown status {status!r}")
    with transaction.atomic():
        anomalies = list(Anomaly.objects.for_tenant(tenant).filter(id__in=anomaly_ids).select_for_update()
                         .only("id", "status"))
        changed = [a for a in anomalies if a.status != status]
        noted = changed if not note else anomalies
        AnomalyEvent.objects.bulk_create([
            AnomalyEvent(tenant=tenant, anomaly_id=a.id, actor=actor[:200], from_status=a.status, to_status=status,
                         note=note)
            for a in noted
        ])
        Anomaly.objects.for_tenant(tenant).filter(id__in=[a.id for a in changed]).update(status=status)
    return len(changed)


def tenant_detection_config_set(*, tenant: Tenant, overrides: dict) -> None:
    """Save a tenant's detection overrides after the engine accepted them (ValueError says why not)."""
    if not isinstance(overrides, dict):
        raise ValueError("give an object of setting: value pairs")
    DetectionConfig.from_overrides(overrides)
    tenant.detection_config = overrides
    tenant.save(update_fields=["detection_config"])


def series_mute(*, tenant: Tenant, series_id: int, start: datetime, end: datetime, actor: str, note: str = "") -> SeriesMute:
    """Mute one of the tenant's series over [start, end): its anomalies there are stored, marked muted
    (those already stored in the period too)."""
    if end <= start:
        raise ValueError("the end of a mute must be after its start")
    series = metrics_selectors.series_get(tenant=tenant, series_id=series_id)
    if series is None:
        raise ValueError("no such series")
    with transaction.atomic():
        mute = SeriesMute.objects.create(tenant=tenant, series=series, start=start, end=end, actor=actor[:200],
                                         note=note)
        Anomaly.objects.for_tenant(tenant).filter(series=series, ts__gte=start, ts__lt=end).update(muted=True)
    return mute


RULE_FIELDS = ("name", "service", "metric_name", "resource_id", "tags", "overrides")
# No series has more tags, or longer tag names or values, than a tenant's limits may ever allow, so a
# rule beyond these could match nothing.
RULE_MAX_TAGS = settings.TENANT_LIMIT_CEILINGS["MAX_TAGS"]
RULE_MAX_TAG_NAME = settings.TENANT_LIMIT_CEILINGS["MAX_NAME_BYTES"]
RULE_MAX_TAG_VALUE = settings.TENANT_LIMIT_CEILINGS["MAX_VALUE_BYTES"]


class DetectionRuleInvalid(ValueError):
    """A rule refused: `errors` names each field at fault and why."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{field}: {', '.join(reasons)}" for field, reasons in errors.items()))
        self.errors = errors


def _text_problem(text: str) -> str | None:
    # PostgreSQL stores neither NUL (in jsonb or text) nor a lone surrogate (not UTF-8).
    if "\x00" in text:
        return "must not contain NUL characters"
    if any("\ud800" <= c <= "\udfff" for c in text):
        return "must not contain lone surrogates (not UTF-8)"
    return None


def _printable(text: str) -> str:
    """`text` safe to answer with: a lone surrogate of the input would break the JSON answer's UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def tags_problem(tags) -> str | None:
    """Why tags to match series by (a rule's, a silence's) cannot be stored, or None: a flat object of at
    most MAX_TAGS bounded strings, none holding what PostgreSQL refuses."""
    if not isinstance(tags, dict):
        return "must be an object of tag name: value strings"
    if len(tags) > RULE_MAX_TAGS:
        return f"has {len(tags)} tags; the most is {RULE_MAX_TAGS}"
    for key, value in tags.items():
        if not isinstance(key, str) or not key:
            return "tag names must be non-empty strings"
        if not isinstance(value, str):
            return "tag values must be strings"
        if len(key) > RULE_MAX_TAG_NAME or len(value) > RULE_MAX_TAG_VALUE:
            return f"tag names may have at most {RULE_MAX_TAG_NAME} characters, values {RULE_MAX_TAG_VALUE}"
        problem = _text_problem(key) or _text_problem(value)
        if problem:
            return problem
    return None


def detection_rule_errors(*, tags, overrides) -> dict[str, list[str]]:
    """Why a rule's tags or overrides cannot be stored, by field (empty: they can): tags a flat object
    of bounded strings, overrides settings the engine accepts."""
    errors = {}
    problem = tags_problem(tags)
    if problem:
        errors["tags"] = [problem]
    if not isinstance(overrides, dict) or not overrides:
        errors["overrides"] = ["must be an object of at least one setting: value pair, e.g. {\"direction\": \"above\"}"]
    elif not all(isinstance(name, str) for name in overrides):
        errors["overrides"] = ["setting names must be strings"]
    else:
        try:
            DetectionConfig.from_overrides(overrides)
        except ValueError as error:
            errors["overrides"] = [_printable(str(error))]
    return errors


def detection_rule_create(*, tenant: Tenant, data: dict) -> DetectionRule:
    """A tenant's new rule, if its tags and overrides are valid and the tenant is under
    DETECTION_RULES_PER_TENANT (DetectionRuleInvalid says why not); it applies from the next run."""
    values = {name: data[name] for name in RULE_FIELDS if name in data}
    errors = detection_rule_errors(tags=values.get("tags", {}), overrides=values.get("overrides", {}))
    if errors:
        raise DetectionRuleInvalid(errors)
    most_rules = settings.CLOUDWATCHDOG["DETECTION_RULES_PER_TENANT"]
    with transaction.atomic():
        with connection.cursor() as cursor:
            locks.xact_lock(cursor, Lock.RULES, tenant.id)
        if DetectionRule.objects.for_tenant(tenant).count() >= most_rules:
            raise DetectionRuleInvalid({"detection_rules": [
                f"this tenant has {most_rules} rules, the most it may have (DETECTION_RULES_PER_TENANT); "
                "delete or widen one first"]})
        return DetectionRule.objects.create(tenant=tenant, **values)


def detection_rule_update(*, rule: DetectionRule, data: dict) -> DetectionRule:
    """Change the fields given (overrides and tags are replaced whole, not merged); DetectionRuleInvalid
    says why not. It applies from the next run."""
    changes = {name: data[name] for name in RULE_FIELDS if name in data}
    errors = detection_rule_errors(tags=changes.get("tags", rule.tags), overrides=changes.get("overrides", rule.overrides))
    if errors:
        raise DetectionRuleInvalid(errors)
    for name, value in changes.items():
        setattr(rule, name, value)
    rule.save()
    return rule


def detection_rules_for_metrics_set(*, tenant: Tenant, metric_names: list[str], overrides: dict) -> list[DetectionRule]:
    """Apply settings to every series of these metrics, not the whole tenant: per metric, the rule
    matching exactly that metric name (nothing else) gets them merged into its overrides, or a new
    one "what-if: <metric>" is made with them. All or none (DetectionRuleInvalid says why, e.g. the
    tenant's DETECTION_RULES_PER_TENANT reached); they apply from the next run."""
    rules = []
    with transaction.atomic():
        for metric_name in sorted(set(metric_names)):
            rule = (DetectionRule.objects.for_tenant(tenant)
                    .filter(service="", metric_name=metric_name, resource_id="", tags={}).order_by("id").first())
            if rule is None:
                rules.append(detection_rule_create(tenant=tenant, data={
                    "name": f"what-if: {metric_name}"[:200], "metric_name": metric_name, "overrides": overrides}))
            else:
                rules.append(detection_rule_update(rule=rule, data={"overrides": {**rule.overrides, **overrides}}))
    return rules


def detection_rule_delete(*, rule: DetectionRule) -> None:
    rule.delete()
