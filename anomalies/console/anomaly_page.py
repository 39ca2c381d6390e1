"""The anomaly list and the console's anomaly page: its chart, reason, evidence, links, history and
actions."""
from datetime import timedelta

from django.contrib import admin, messages
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from anomalies import alerting, selectors
from anomalies.console import display, reads, silencing
from anomalies.models import Anomaly, Incident
from anomalies.services import anomaly_status_set
from cloudwatchdog import units
from cloudwatchdog.timeutil import format_utc, from_us
from metrics.admin import MetricNameFilter, ServiceFilter
from tenants.admin import TenantFilter, TenantScopedAdmin, may_act

ANOMALY_ZOOMS = {"14h": ("12 h before, 2 h after", timedelta(hours=12), timedelta(hours=2)),
                 "1d": ("1 day", timedelta(hours=12), timedelta(hours=12)),
                 "7d": ("7 days", timedelta(days=6), timedelta(days=1))}


class AnomalyAdmin(TenantScopedAdmin):
    ordering = ["-ts", "-id"]  # newest first by when it happened: a replay adds old anomalies with new ids
    # What triage reads first leads, so it is on screen at 1,400 px; the reason, cut, follows.
    list_display = ["when", "severity_badge", "status", "series_short", "value_short", "expected_short",
                    "reason_short", "detector", "tenant"]
    list_filter = [TenantFilter, "severity", "status", "muted", ServiceFilter, MetricNameFilter,
                   ("ts", admin.DateFieldListFilter)]
    search_fields = ["series__resource_id"]
    date_hierarchy = "ts"
    list_select_related = ["series", "tenant"]
    readonly_fields = [f.name for f in Anomaly._meta.fields if f.name != "status"]
    actions = ["acknowledge", "resolve", "reopen"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def save_model(self, request, obj, form, change):
        anomaly_status_set(tenant=obj.tenant, anomaly_ids=[obj.id], status=obj.status,
                           actor=display.admin_actor(request))

    class Media:
        css = {"all": ["anomalies/changelist.css"]}

    # The list stays one line a row: long names and sentences are cut, the whole text in the tooltip.
    @admin.display(description="time", ordering="ts")
    def when(self, obj):
        return format_utc(obj.ts, seconds=True)

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj):
        return display.severity_badge(obj.severity)

    @admin.display(description="series")
    def series_short(self, obj):
        return display.cut(str(obj.series), 32)

    @admin.display(description="value", ordering="value")
    def value_short(self, obj):
        return display.series_quantity(obj.series, obj.value)

    @admin.display(description="expected")
    def expected_short(self, obj):
        return display.series_quantity(obj.series, obj.expected)

    @admin.display(description="reason")
    def reason_short(self, obj):
        return display.cut(obj.reason, 60)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The console page of one anomaly: its chart, reason, evidence, links, history and actions."""
        anomaly = self.get_object(request, object_id)
        if anomaly is None:
            raise Http404("No such anomaly.")
        tenant = anomaly.tenant
        can_change = self.has_change_permission(request, anomaly)
        incident = selectors.incident_of_anomaly(tenant=tenant, anomaly=anomaly)
        if request.method == "POST":
            if request.POST.get("action") == "silence":
                if not may_act(request.user):
                    raise Http404("No such anomaly.")
                silencing.silence_from_form(request, series=anomaly.series, incident=incident, now=timezone.now())
            elif can_change:
                self._status_from_form(request, anomaly, incident)
            else:
                raise Http404("No such anomaly.")
            return HttpResponseRedirect(request.path)
        zoom = request.GET.get("zoom") if request.GET.get("zoom") in ANOMALY_ZOOMS else "14h"
        _, before, after = ANOMALY_ZOOMS[zoom]
        series = anomaly.series
        chart = reads.series_chart(
            tenant=tenant, series=series, start=anomaly.ts - before, end=anomaly.ts + after,
            focus_ids=frozenset([anomaly.id]), anomaly_href=lambda a: reverse("admin:anomalies_anomaly_change", args=[a.id]))
        previous, following = selectors.anomaly_neighbours(tenant=tenant, anomaly=anomaly)
        previous_us = anomaly.suppression.get("previous_alert_us")
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": str(anomaly), "anomaly": anomaly,
            "series": series, "unit": units.value_label(kind=series.kind, ucum=series.unit), "chart": chart,
            "zoom": zoom,
            "zooms": [(key, label) for key, (label, _, _) in ANOMALY_ZOOMS.items()],
            "evidence": evidence_rows(anomaly),
            "cooldown_hours": anomaly.suppression.get("cooldown_seconds", 0) / 3600,
            "previous_alert": format_utc(from_us(previous_us)) if previous_us else None,
            "baseline": selectors.baseline_get(tenant=tenant, series_id=series.id),
            "previous": previous, "following": following,
            "events": selectors.anomaly_events(tenant=tenant, anomaly_id=anomaly.id),
            "statuses": Anomaly.STATUSES, "can_change": can_change,
            "points_before": (anomaly.ts + timedelta(minutes=5)).isoformat(),
            "incident": incident, "can_silence": may_act(request.user),
            "silence_scopes": silencing.silence_scopes(series), "silence_durations": silencing.silence_durations(incident),
            "silences_now": selectors.silences_matching(tenant=tenant, series=series, now=timezone.now()),
        }
        return TemplateResponse(request, "admin/console/anomaly.html", context)

    def _status_from_form(self, request, anomaly: Anomaly, incident: Incident | None) -> None:
        """The anomaly's new status; acknowledged with "its incident too", the incident as well (an
        acknowledged anomaly alone leaves its incident open, and its reminders firing)."""
        status, actor = request.POST.get("status", anomaly.status), display.admin_actor(request)
        note = request.POST.get("note", "").strip()[:4000]
        if status not in dict(Anomaly.STATUSES):
            messages.error(request, "Choose open, acknowledged or resolved.")
            return
        anomaly_status_set(tenant=anomaly.tenant, anomaly_ids=[anomaly.id], status=status, actor=actor, note=note)
        messages.success(request, f"Anomaly {anomaly.id}: {status}.")
        if (request.POST.get("incident_too") and incident is not None and status == Anomaly.STATUS_ACKNOWLEDGED
                and incident.status == Incident.STATUS_OPEN):
            alerting.incident_status_set(tenant=anomaly.tenant, incident=incident, status=Incident.STATUS_ACKNOWLEDGED,
                                         actor=actor, note=note)
            messages.success(request, f"Its incident {incident.id}: acknowledged (no more reminders).")

    def _set_status(self, request, queryset, status):
        changed = 0
        for tenant, anomaly_ids in selectors.anomaly_ids_by_tenant(anomalies=queryset):
            changed += anomaly_status_set(tenant=tenant, anomaly_ids=anomaly_ids, status=status,
                                          actor=display.admin_actor(request))
        self.message_user(request, f"{changed} anomal{'y' if changed == 1 else 'ies'} set to {status}.")

    @admin.action(description="Acknowledge selected anomalies")
    def acknowledge(self, request, queryset):
        self._set_status(request, queryset, Anomaly.STATUS_ACKNOWLEDGED)

    @admin.action(description="Resolve selected anomalies")
    def resolve(self, request, queryset):
        self._set_status(request, queryset, Anomaly.STATUS_RESOLVED)

    @admin.action(description="Reopen selected anomalies")
    def reopen(self, request, queryset):
        self._set_status(request, queryset, Anomaly.STATUS_OPEN)


def evidence_rows(anomaly: Anomaly) -> list[dict]:
    """Each detector's evidence next to its threshold, as a table reads it."""
    evidence = anomaly.baseline_stats.get("evidence", {})
    parameters = anomaly.parameters
    thresholds = {"range": f"{parameters.get('range_tolerance', 0):.0%} of the range",
                  "residual": f"{parameters.get('residual_threshold', '')} σ",
                  "cusum": f"{parameters.get('cusum_threshold', '')} σ",
                  "variance": f"{parameters.get('variance_threshold', '')} σ over {parameters.get('variance_points', '')} points",
                  "flatline": f"{parameters.get('flatline_factor', '')} × the longest recent run"}
    return [{"detector": name, "evidence": value, "threshold": thresholds.get(name, ""),
             "fired": name == anomaly.detector} for name, value in evidence.items()]
