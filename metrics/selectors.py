"""Reads for metrics: the series catalogue (discovery, identity, kind and unit, what other apps know
of a series) and the ingest rejections; the points themselves are read through metrics.storage."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import connection
from django.db.models import Count, QuerySet

from metrics.models import SERIES_TABLE, IngestRejection, Series
from tenants.models import Tenant


def series_list(
    *,
    tenant: Tenant,
    service: str | None = None,
    metric_name: str | None = None,
    resource_id: str | None = None,
    series_id: int | None = None,
) -> QuerySet[Series]:
    """The tenant's series matching every given filter, oldest first."""
    series = Series.objects.for_tenant(tenant)
    if service:
        series = series.filter(service=service)
    if metric_name:
        series = series.filter(metric_name=metric_name)
    if resource_id:
        series = series.filter(resource_id=resource_id)
    if series_id is not None:
        series = series.filter(id=series_id)
    return series.order_by("id")


def series_field_values(*, tenants: QuerySet[Tenant], field: str, limit: int = 200) -> list[str]:
    """The distinct values of a series field (service or metric_name) among these tenants' series,
    sorted, at most `limit` (the admin's filters list them)."""
    if field not in ("service", "metric_name"):
        raise ValueError(f"not a filterable series field: {field}")
    return list(Series.objects.for_tenants(tenants).order_by(field).values_list(field, flat=True)
                .distinct()[:limit])


def series_counts(*, tenants) -> dict[int, int]:
    """How many series each of these tenants has, by tenant id."""
    return dict(Series.objects.for_tenants(tenants).values("tenant_id").annotate(n=Count("id"))
                .values_list("tenant_id", "n"))


def series_get(*, tenant: Tenant, series_id: int) -> Series | None:
    return Series.objects.for_tenant(tenant).filter(id=series_id).first()


def series_count(*, tenant: Tenant) -> int:
    """How many series the tenant has."""
    return series_list(tenant=tenant).count()


def series_oldest(*, tenant: Tenant, limit: int) -> list[Series]:
    """The tenant's first `limit` series, oldest first (the console's choices)."""
    return list(series_list(tenant=tenant).order_by("id")[:limit])


# What other apps know of a series, for the series endpoints: functions (tenant, series ids) ->
# {series id: {field: value}}, registered at start-up (anomalies adds each series' alarm state).
series_facts: list[Callable[[Tenant, list[int]], dict[int, dict]]] = []


def series_facts_of(*, tenant: Tenant, series_ids: list[int]) -> dict[int, dict]:
    facts: dict[int, dict] = {series_id: {} for series_id in series_ids}
    for source in series_facts:
        for series_id, fields in source(tenant, series_ids).items():
            facts[series_id].update(fields)
    return facts


def percentage_series_ids(*, tenant: Tenant, series_ids) -> set[int]:
    """Which of these series are percentages (unit % or percent, any case)."""
    return set(Series.objects.for_tenant(tenant).filter(id__in=list(series_ids), unit__iregex=r"^(%|percent)$")
               .values_list("id", flat=True))


def counter_series_ids(*, tenant: Tenant, series_ids) -> set[int]:
    """Which of these series are counters."""
    return set(Series.objects.for_tenant(tenant).filter(id__in=list(series_ids), kind="counter")
               .values_list("id", flat=True))


def rejections_since(*, tenant: Tenant, since: datetime) -> list[tuple[str, str, int]]:
    """(protocol, reason, points refused) since the UTC day of `since`, most first."""
    rows: dict[tuple[str, str], int] = {}
    for protocol, reason, count in IngestRejection.objects.for_tenant(tenant).filter(day__gte=since.date()).values_list(
            "protocol", "reason", "count"):
        rows[(protocol, reason)] = rows.get((protocol, reason), 0) + count
    return sorted(((p, r, n) for (p, r), n in rows.items()), key=lambda row: -row[2])


def series_identities(
    *,
    tenant: Tenant,
    metric_names: list[str] | None = None,
    service: str | None = None,
    resource_id: str | None = None,
) -> list[tuple[int, str, str, str, dict]]:
    """(id, metric_name, service, resource_id, tags) of the tenant's series, narrowed by any filter given
    (metric_names: any of them), in id order: the rows PromQL's label matching starts from."""
    series = Series.objects.for_tenant(tenant)
    if metric_names is not None:
        series = series.filter(metric_name__in=metric_names)
    if service is not None:
        series = series.filter(service=service)
    if resource_id is not None:
        series = series.filter(resource_id=resource_id)
    return list(series.order_by("id").values_list("id", "metric_name", "service", "resource_id", "tags"))


def series_kinds(*, tenant: Tenant, metric_names: list[str] | None = None) -> list[tuple[str, str, str]]:
    """The distinct (metric_name, kind, unit) of the tenant's series (of these names when given), sorted."""
    series = Series.objects.for_tenant(tenant)
    if metric_names is not None:
        series = series.filter(metric_name__in=metric_names)
    return list(series.order_by("metric_name", "kind", "unit").values_list("metric_name", "kind", "unit").distinct())


def series_distinct(*, tenant: Tenant, field: str) -> list[str]:
    """The distinct values of one identity field (metric_name, service or resource_id) among the tenant's series."""
    if field not in ("metric_name", "service", "resource_id"):
        raise ValueError(f"not a series identity field: {field}")
    return list(Series.objects.for_tenant(tenant).order_by(field).values_list(field, flat=True).distinct())


def series_tag_names(*, tenant: Tenant) -> list[str]:
    """The distinct tag names among the tenant's series, counting only tags with a non-empty value."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT t.key FROM {SERIES_TABLE} s CROSS JOIN LATERAL jsonb_each_text(s.tags) t "
            "WHERE s.tenant_id = %s AND t.value <> ''", [tenant.id])
        return [name for (name,) in cursor.fetchall()]


def series_field_other_than(*, tenant: Tenant, field: str, value: str | None) -> bool:
    """Whether any of the tenant's series has this identity field other than `value` (None: any series)."""
    series = Series.objects.for_tenant(tenant)
    return (series.exclude(**{field: value}) if value is not None else series).exists()
