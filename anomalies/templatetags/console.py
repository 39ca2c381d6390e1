"""Filters and tags of the support console: numbers as people read them (as the reason sentences write
them), and the banner that says a notification channel is failing."""
from django import template

from anomalies import selectors
from anomalies.engine.explain import readable
from tenants.selectors import tenant_list_for_staff

register = template.Library()


@register.filter
def sig(value, digits: int = 4):
    """A number to `digits` significant digits, thousands separated (-0.010700000000000001 -> -0.0107)."""
    if value is None or value == "":
        return "–"
    try:
        return readable(float(value), int(digits))
    except (TypeError, ValueError):
        return value


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
