"""Filters and tags of the support console: numbers, units and times as people read them (as the reason
sentences write them), and the banner that says a notification channel is failing."""
from django import template

from anomalies import selectors
from cloudwatchdog import units
from cloudwatchdog.timeutil import format_utc
from tenants.selectors import tenant_list_for_staff

register = template.Library()


@register.filter
def sig(value, digits: int = 4):
    """A number to `digits` significant digits, thousands separated (-0.010700000000000001 -> -0.0107)."""
    if value is None or value == "":
        return "–"
    try:
        return units.number(float(value), int(digits))
    except (TypeError, ValueError):
        return value


@register.filter
def qty(value, unit: str = ""):
    """A value to 4 significant digits with its unit as people write it (`unit` from units.value_label):
    94.59 °C, 42%, 1,200 B/s."""
    if value is None or value == "":
        return "–"
    try:
        return units.quantity(float(value), unit)
    except (TypeError, ValueError):
        return value


@register.filter
def utc(moment, precision: str = ""):
    """The console's one time format: 2026-12-03 09:04 UTC, or with seconds (`|utc:"seconds"`)."""
    if not moment:
        return "–"
    return format_utc(moment, seconds=precision == "seconds")


@register.inclusion_tag("admin/console/failing_channels.html", takes_context=True)
def failing_channels_banner(context, tenant=None):
    """The enabled channels whose newest delivery failed, of one tenant or of every tenant the user sees:
    on-call learns that alerts are not arriving here, not from the silence."""
    tenants = tenant_list_for_staff(user=context["request"].user)
    if tenant is not None:
        tenants = tenants.filter(id=tenant.id)
    return {"channels": selectors.channels_failing(tenants=tenants)}


@register.inclusion_tag("admin/console/overview_links.html", takes_context=True)
def tenant_overview_links(context):
    """The admin index's way into the console: each tenant the user sees, with what is open on it now."""
    tenants = list(tenant_list_for_staff(user=context["request"].user).order_by("slug")[:OVERVIEW_LINKS_AT_MOST])
    open_now = selectors.incidents_open_by_tenant(tenants=tenants)
    return {"tenants": [(tenant, open_now.get(tenant.id, 0)) for tenant in tenants],
            "more": len(tenants) == OVERVIEW_LINKS_AT_MOST}


OVERVIEW_LINKS_AT_MOST = 30
