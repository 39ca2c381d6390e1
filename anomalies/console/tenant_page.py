"""The console's tenant page: the tenants app's tenant admin with its detection settings checked
against the engine's, and the overview (data, refusals, anomalies, runs; run now, replay, what-if)."""
import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django import forms
from django.contrib import admin, messages
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from anomalies.console import reads
from anomalies.engine import DetectionConfig
from anomalies.models import Anomaly
from anomalies.runs import QueueUnavailable, detection_run_enqueue
from anomalies.services import tenant_detection_config_set
from cloudwatchdog.forms import BoundedJSONDecoder, whole_number
from metrics import selectors as metrics_selectors
from metrics import storage as metrics_storage
from tenants.admin import TenantAdmin
from tenants.models import Tenant


class TenantDetectionForm(forms.ModelForm):
    """The tenant form, with its detection overrides checked against the engine's settings."""

    class Meta:
        model = Tenant
        fields = "__all__"

    def clean_detection_config(self):
        overrides = self.cleaned_data.get("detection_config") or {}
        if not isinstance(overrides, dict):
            raise forms.ValidationError("Give an object of setting: value pairs, e.g. {\"sensitivity\": 0.5}.")
        try:
            DetectionConfig.from_overrides(overrides)
        except ValueError as error:
            # The error names the setting as typed: a lone surrogate in it could not be shown on the page.
            shown = str(error).encode("utf-8", "backslashreplace").decode("utf-8")
            raise forms.ValidationError(f"{shown}; the settings are: {', '.join(DetectionConfig().as_dict())}.")
        return overrides


class TenantConsoleAdmin(TenantAdmin):
    """The tenant admin with the detection-aware form (the tenants app knows nothing of detection) and
    the link to, and the page of, the tenant's overview."""

    form = TenantDetectionForm
    list_display = TenantAdmin.list_display + ["overview_link"]
    readonly_fields = ["overview_link"]

    @admin.display(description="support console")
    def overview_link(self, obj):
        if obj is None or obj.pk is None:
            return "–"
        return format_html('<a href="{}">overview, actions, what-if</a>',
                           reverse("admin:tenants_tenant_overview", args=[obj.pk]))

    def get_urls(self):
        return [path("<int:tenant_id>/overview/", self.admin_site.admin_view(self.overview_view),
                     name="tenants_tenant_overview")] + super().get_urls()

    def overview_view(self, request, tenant_id: int):
        """A tenant's overview: data, refusals, anomalies, runs; run now, replay, what-if settings."""
        tenant = self.get_object(request, str(tenant_id))
        if tenant is None or not self.has_view_permission(request, tenant):
            raise Http404("No such tenant.")
        can_act = self.has_change_permission(request, tenant)
        action = request.POST.get("action") or request.GET.get("action")
        if request.method == "POST":
            if not can_act:
                raise Http404("No such tenant.")
            return self._overview_act(request, tenant, action)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": f"{tenant.slug}: overview",
                   "tenant": tenant, "can_act": can_act}
        if action == "replay":
            since = _parse_time(request.GET.get("since", ""))
            if since is None:
                messages.error(request, "Give the time to replay from.")
                return HttpResponseRedirect(request.path)
            series_count, points = metrics_storage.points_count_since(tenant=tenant, since=since)
            return TemplateResponse(request, "admin/console/replay_confirm.html",
                                    {**context, "since": since, "series_count": series_count, "points": points})
        now = timezone.now()
        overview = reads.tenant_overview(tenant=tenant, now=now)
        series_choices = metrics_selectors.series_oldest(tenant=tenant, limit=200)
        chosen = [n for n in (whole_number(v) for v in request.GET.getlist("series")) if n is not None][:3]
        days = min(max(whole_number(request.GET.get("days", "3")) or 3, 1), 30)
        proposed_text = request.GET.get("overrides", json.dumps(tenant.detection_config or {}))
        what_if, what_if_error = [], None
        if action == "what_if":
            try:
                overrides = json.loads(proposed_text or "{}", cls=BoundedJSONDecoder)
                if not isinstance(overrides, dict):
                    raise ValueError("give an object of setting: value pairs")
                DetectionConfig.from_overrides(overrides)
            except (ValueError, TypeError, AttributeError) as error:
                what_if_error = f"Those settings are not valid: {error}"
            else:
                chosen_series = [s for s in series_choices if s.id in chosen] or series_choices[:1]
                what_if = reads.what_if(tenant=tenant, series_list=chosen_series, days=days,
                                        proposed_overrides=overrides, now=now)
        context.update({
            "overview": overview, "statuses": [s for s, _ in Anomaly.STATUSES],
            "anomaly_tables": [("24 h", overview.anomalies_24h), ("7 days", overview.anomalies_7d)],
            "series_choices": series_choices, "chosen_ids": chosen, "days": days, "proposed_text": proposed_text,
            "what_if": what_if, "what_if_error": what_if_error,
        })
        return TemplateResponse(request, "admin/console/tenant.html", context)

    def _overview_act(self, request, tenant, action):
        try:
            if action == "run":
                run = detection_run_enqueue(tenant=tenant, trigger="api_async")
                messages.success(request, f"Detection run {run.run_id} queued.")
            elif action == "replay":
                since = _parse_time(request.POST.get("since", ""))
                if since is None:
                    messages.error(request, "Give the time to replay from.")
                else:
                    run = detection_run_enqueue(tenant=tenant, trigger="replay", replay_since=since)
                    messages.success(request, f"Replay from {since:%Y-%m-%d %H:%M} UTC queued as run {run.run_id}.")
            elif action == "save_settings":
                try:
                    tenant_detection_config_set(tenant=tenant, overrides=json.loads(request.POST.get("overrides", "{}"),
                                                                                    cls=BoundedJSONDecoder))
                except (ValueError, TypeError) as error:
                    messages.error(request, f"Not saved: {error}")
                else:
                    messages.success(request, "Detection settings saved; they apply from the next run (replay to "
                                              "apply them to history).")
        except QueueUnavailable:
            messages.error(request, "The task queue is unavailable; try again in a moment.")
        return HttpResponseRedirect(request.path)


def _parse_time(text: str) -> datetime | None:
    """A time from a form (datetime-local is naive: UTC here), or None."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt_timezone.utc)
    if not (datetime(2000, 1, 1, tzinfo=dt_timezone.utc) <= moment <= timezone.now() + timedelta(days=1)):
        return None
    return moment
