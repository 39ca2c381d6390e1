"""The incident list and the console's incident page: its state and how long it has lasted, the series
now against its band, the chart over the alarm, the timeline (anomalies, escalations, each message and
delivery attempt, each change of status) and the buttons on-call needs (acknowledge, resolve, silence)."""
from datetime import timedelta

from django.contrib import admin, messages
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from anomalies import alerting, selectors
from anomalies.console import display, reads, silencing
from anomalies.models import Incident
from cloudwatchdog import units
from cloudwatchdog.timeutil import format_utc, from_us, to_us
from metrics import storage as metrics_storage
from tenants.admin import TenantFilter, TenantScopedAdmin, may_act


class IncidentAdmin(TenantScopedAdmin):
    ordering = ["-started_at", "-id"]  # newest first by when it began: a replay adds old incidents with new ids
    # What triage reads first leads, so it is on screen at 1,400 px; rows stay one line (changelist.css).
    list_display = ["started", "severity_badge", "status", "state", "series_short", "count", "tenant"]
    list_filter = [TenantFilter, "status", "kind", "peak_severity"]
    list_select_related = ["series", "tenant"]
    actions = ["acknowledge", "resolve"]
    show_full_result_count = False

    class Media:
        css = {"all": ["anomalies/changelist.css"]}

    @admin.display(description="series", ordering="series")
    def series_short(self, obj):
        return display.cut(str(obj.series), 28)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # Triage (acknowledge, resolve, reopen) is for every staff user of the tenant, as an anomaly's is.
        return request.user.is_active and request.user.is_staff

    @admin.display(description="severity", ordering="peak_severity")
    def severity_badge(self, obj):
        return display.severity_badge(obj.peak_severity)

    @admin.display(description="started", ordering="started_at")
    def started(self, obj):
        return format_utc(obj.started_at)  # to the minute: the list keeps its columns on screen

    @admin.display(description="anomalies", ordering="anomaly_count")
    def count(self, obj):
        return obj.anomaly_count

    @admin.display(description="alarm", ordering="resolved_at")
    def state(self, obj):
        # One short column for what the alarm is doing: over (and how long it lasted), silent, or going on.
        if obj.resolved_at:
            return f"ended after {display.duration(obj.resolved_at - obj.started_at)}"
        if obj.kind == Incident.KIND_NO_DATA:
            return "NO DATA"
        return display.band_word(obj.out_of_band)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        incident = self.get_object(request, object_id)
        if incident is None:
            raise Http404("No such incident.")
        if request.method == "POST":
            self._act(request, incident)
            return HttpResponseRedirect(request.path)
        now = timezone.now()
        tenant, series = incident.tenant, incident.series
        anomalies = selectors.incident_anomalies(tenant=tenant, incident=incident)
        lasted = (incident.resolved_at or now) - incident.started_at
        margin = max(timedelta(hours=1), lasted / 4)
        chart = reads.series_chart(
            tenant=tenant, series=series, start=incident.started_at - margin,
            end=min(now, (incident.resolved_at or now) + margin),
            focus_ids=frozenset(a.id for a in anomalies if a.escalation or a.ts == incident.started_at),
            anomaly_href=lambda a: reverse("admin:anomalies_anomaly_change", args=[a.id]))
        newest = metrics_storage.points_before(tenant=tenant, before_us={series.id: to_us(now) + 1}, count=1)
        baseline = selectors.baseline_get(tenant=tenant, series_id=series.id)
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": str(incident), "incident": incident,
            "series": series, "unit": units.value_label(kind=series.kind, ucum=series.unit),
            "lasted": display.duration(lasted), "chart": chart,
            "newest": (from_us(newest[0][1]), newest[0][2]) if newest else None,
            "baseline": baseline, "band_now": _band_now(chart, newest, baseline),
            "timeline": reads.incident_timeline(
                tenant=tenant, incident=incident, anomalies=anomalies,
                anomaly_href=lambda a: reverse("admin:anomalies_anomaly_change", args=[a.id]),
                notification_href=lambda n: reverse("admin:anomalies_notification_change", args=[n.id])),
            "statuses": Incident.STATUSES, "can_change": self.has_change_permission(request, incident),
            "can_silence": may_act(request.user), "silence_scopes": silencing.silence_scopes(series),
            "silence_durations": silencing.silence_durations(incident),
            "silences_now": selectors.silences_matching(tenant=tenant, series=series, now=now),
        }
        return TemplateResponse(request, "admin/console/incident.html", context)

    def _act(self, request, incident: Incident) -> None:
        action = request.POST.get("action")
        if action == "silence" and may_act(request.user):
            silencing.silence_from_form(request, series=incident.series, incident=incident, now=timezone.now())
        elif action == "status" and self.has_change_permission(request, incident):
            status = request.POST.get("status")
            if status not in dict(Incident.STATUSES):
                messages.error(request, "Choose open, acknowledged or resolved.")
                return
            if incident.resolved_at is not None and status != Incident.STATUS_RESOLVED:
                # Its alarm is over: reopened by hand it would remind people of nothing going on.
                messages.error(request, "This alarm ended; a new anomaly opens a new incident. Add a note instead.")
                return
            alerting.incident_status_set(tenant=incident.tenant, incident=incident, status=status,
                                         actor=display.admin_actor(request),
                                         note=request.POST.get("note", "").strip()[:4000])
            messages.success(request, f"Incident {incident.id}: {status}.")
        else:
            raise Http404("No such incident.")

    def _set_status(self, request, queryset, status):
        incidents = list(queryset.select_related("tenant"))
        for incident in incidents:
            alerting.incident_status_set(tenant=incident.tenant, incident=incident, status=status,
                                         actor=display.admin_actor(request))
        self.message_user(request, f"{len(incidents)} incident(s) set to {status}.")

    @admin.action(description="Acknowledge selected incidents (stops their reminders)")
    def acknowledge(self, request, queryset):
        self._set_status(request, queryset, Incident.STATUS_ACKNOWLEDGED)

    @admin.action(description="Resolve selected incidents")
    def resolve(self, request, queryset):
        self._set_status(request, queryset, Incident.STATUS_RESOLVED)


def _band_now(chart, newest: list, baseline) -> dict | None:
    """Expected value and band at the series' newest point: the chart's (the engine's, as drawn) when it
    drew that point with its band, else the baseline's current band (a long incident's chart is bucketed)."""
    if chart.newest is not None and newest and chart.newest[0] == newest[0][1]:
        _, _, expected, lower, upper = chart.newest
        return {"expected": expected, "lower": lower, "upper": upper}
    if baseline is not None and baseline.median is not None:
        return {"expected": baseline.median, "lower": baseline.lower, "upper": baseline.upper}
    return None
