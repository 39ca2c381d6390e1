"""Admin for series, with a read-only, keyset-paginated view of raw points (no full counts); defined
here, registered by the anomalies app with its console page (see SeriesAdmin)."""
from datetime import datetime, timezone

from django.contrib import admin
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from cloudwatchdog import units
from cloudwatchdog.timeutil import format_utc
from metrics import selectors, storage
from tenants.admin import ScopedValuesFilter, TenantFilter, TenantScopedAdmin

POINTS_PAGE = 200
_LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)
_EARLIEST = datetime(1, 1, 2, tzinfo=timezone.utc)


def _before(text: str | None) -> datetime:
    """The page's `before` bound; anything that is not an ISO time with an offset starts from the newest."""
    try:
        moment = datetime.fromisoformat(text) if text else _LATEST
        moment = moment.astimezone(timezone.utc) if moment.tzinfo is not None else _LATEST
    except (ValueError, OverflowError):  # not a time, or an offset that takes it out of years 1-9999
        return _LATEST
    return min(max(moment, _EARLIEST), _LATEST)


class ServiceFilter(ScopedValuesFilter):
    title = "service"
    parameter_name = "series__service"
    values_of = staticmethod(lambda **kw: selectors.series_field_values(field="service", **kw))


class MetricNameFilter(ScopedValuesFilter):
    title = "metric name"
    parameter_name = "series__metric_name"
    values_of = staticmethod(lambda **kw: selectors.series_field_values(field="metric_name", **kw))


# Registered by the anomalies app, as this admin with its change page drawn as the console's series page
# (anomalies/admin.py): one registration, so no app unregisters another's admin.
class SeriesAdmin(TenantScopedAdmin):
    list_display = ["id", "tenant", "service", "resource_id", "metric_name", "kind", "unit_shown", "tags", "created_at",
                    "points_link"]
    list_filter = [TenantFilter, "kind", "service", "metric_name"]
    search_fields = ["resource_id", "metric_name", "service"]
    ordering = ["-id"]
    readonly_fields = ["tenant", "service", "resource_id", "metric_name", "kind", "unit", "tags", "key_hash", "source",
                       "created_at", "points_link"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # A series goes with its tenant: web processes cache series ids, and points are not
        # foreign-keyed to their series, so a deleted series would collect orphan points.
        return False

    @admin.display(description="unit", ordering="unit")
    def unit_shown(self, obj):
        return units.unit_label(obj.unit) or "–"

    @admin.display(description="points")
    def points_link(self, obj):
        return format_html('<a href="{}">raw points</a>', reverse("admin:metrics_series_points", args=[obj.pk]))

    def get_urls(self):
        return [
            path("<int:series_id>/points/", self.admin_site.admin_view(self.points_view), name="metrics_series_points"),
        ] + super().get_urls()

    def points_view(self, request, series_id: int):
        series = self.get_object(request, str(series_id))
        if series is None or not self.has_view_permission(request, series):
            raise Http404("No such series.")
        end = _before(request.GET.get("before"))
        rows = storage.points_page(tenant=series.tenant, series_id=series.id, before=end, limit=POINTS_PAGE + 1)
        more = len(rows) > POINTS_PAGE
        unit = units.unit_label(series.unit)
        rows = rows[:POINTS_PAGE]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Raw points of {series}",
            "series": series,
            # To 4 significant digits with the unit, as everywhere; the stored value whole in the tooltip.
            "points": [(format_utc(ts, seconds=True), units.quantity(value, unit), repr(value)) for ts, value in rows],
            "older": rows[-1][0].isoformat() if more else None,
        }
        return TemplateResponse(request, "admin/metrics/series_points.html", context)
