"""The console's series page: the metrics app's series admin with its change page drawn as the chart
over a chosen range, the baseline, anomalies and mutes."""
from datetime import timedelta

from django.contrib import messages
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from anomalies import selectors
from anomalies.console import display, reads, silencing
from anomalies.services import series_mute
from cloudwatchdog import units
from cloudwatchdog.forms import whole_number
from cloudwatchdog.timeutil import from_us
from metrics import storage as metrics_storage
from metrics.admin import SeriesAdmin
from tenants.admin import may_act


class SeriesConsoleAdmin(SeriesAdmin):
    """The series admin with its console page: the chart over a chosen range, the baseline, anomalies, mutes."""

    def change_view(self, request, object_id, form_url="", extra_context=None):
        series = self.get_object(request, object_id)
        if series is None:
            raise Http404("No such series.")
        tenant = series.tenant
        can_mute = request.user.is_active and request.user.is_staff
        if request.method == "POST" and request.POST.get("action") == "silence":
            if not may_act(request.user):
                raise Http404("No such series.")
            silencing.silence_from_form(request, series=series, incident=None, now=timezone.now())
            return HttpResponseRedirect(request.path)
        if request.method == "POST":
            hours = whole_number(request.POST.get("hours", ""), at_most=24 * 31)
            if not hours:
                messages.error(request, "Choose how long to mute.")
            else:
                start = timezone.now()
                series_mute(tenant=tenant, series_id=series.id, start=start, end=start + timedelta(hours=hours),
                            actor=display.admin_actor(request), note=request.POST.get("note", "").strip()[:4000])
                messages.success(request, f"Muted for {hours} h.")
            return HttpResponseRedirect(request.path)
        range_key = request.GET.get("range") if request.GET.get("range") in reads.RANGES else "24h"
        end = timezone.now()
        chart = reads.series_chart(tenant=tenant, series=series, start=end - reads.RANGES[range_key], end=end,
                                   anomaly_href=lambda a: reverse("admin:anomalies_anomaly_change", args=[a.id]),
                                   now=end)
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": str(series), "series": series,
            "chart": chart, "range": range_key, "ranges": list(reads.RANGES),
            "unit": units.value_label(kind=series.kind, ucum=series.unit), "first_point": _first_point(tenant, series),
            "baseline": selectors.baseline_get(tenant=tenant, series_id=series.id),
            "warm_points": selectors.detection_configs_for(tenant=tenant, series=[series])[series.id].min_points,
            "mutes": selectors.series_mutes(tenant=tenant, series_id=series.id), "can_mute": can_mute,
            "can_silence": may_act(request.user), "silence_scopes": silencing.silence_scopes(series),
            "silence_durations": silencing.silence_durations(None),
            "silences_now": selectors.silences_matching(tenant=tenant, series=series, now=end),
        }
        return TemplateResponse(request, "admin/console/series.html", context)


def _first_point(tenant, series):
    """The time of the series' oldest stored point (not when the series was created: retention and
    late or backfilled points move it), or None while it has none."""
    first_us = metrics_storage.series_first_ts(tenant=tenant, series_ids=[series.id]).get(series.id)
    return from_us(first_us) if first_us is not None else None
