"""Admin for series, with a read-only, keyset-paginated view of raw points (no full counts)."""
from datetime import datetime

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from metrics import selectors
from metrics.ingest import format_timestamp
from metrics.models import Series
from tenants.admin import TenantScopedAdmin

POINTS_PAGE = 200


@admin.register(Series)
class SeriesAdmin(TenantScopedAdmin):
    list_display = ["id", "tenant", "service", "resource_id", "metric_name", "tags", "created_at", "points_link"]
    list_filter = ["tenant", "service", "metric_name"]
    search_fields = ["resource_id", "metric_name", "service"]
    readonly_fields = ["tenant", "service", "resource_id", "metric_name", "tags", "key_hash", "source", "created_at",
                       "points_link"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

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
            return self._get_obj_does_not_exist_redirect(request, self.opts, str(series_id))
        before = request.GET.get("before")
        end = datetime.fromisoformat(before) if before else datetime.max.replace(year=9000).astimezone()
        rows = selectors.points_page(tenant=series.tenant, series_id=series.id, before=end, limit=POINTS_PAGE + 1)
        more = len(rows) > POINTS_PAGE
        rows = rows[:POINTS_PAGE]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Raw points of {series}",
            "series": series,
            "points": [(format_timestamp(ts), value) for ts, value in rows],
            "older": rows[-1][0].isoformat() if more else None,
        }
        return TemplateResponse(request, "admin/metrics/series_points.html", context)
