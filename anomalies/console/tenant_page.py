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
from anomalies.engine import DIRECTIONS, DetectionConfig, setting_limits
from anomalies.models import Anomaly
from anomalies.runs import QueueUnavailable, detection_run_enqueue
from anomalies.services import detection_rules_for_metrics_set, tenant_detection_config_set
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


class DetectionSettingsForm(forms.Form):
    """The engine's settings (DetectionConfig's fields) as inputs bounded as the engine bounds them,
    showing the tenant's values; each value is checked by DetectionConfig.from_overrides, whose
    message names the setting. A blank input means the default."""

    def __init__(self, data=None, *, current: dict | None):
        try:
            self.current = DetectionConfig.from_overrides(current).as_dict()
        except ValueError:
            self.current = DetectionConfig().as_dict()  # stored overrides the engine no longer accepts
        super().__init__(data, initial=self.current)
        self.defaults = DetectionConfig().as_dict()
        limits = setting_limits()
        for name, default in self.defaults.items():
            if isinstance(default, str):
                self.fields[name] = forms.ChoiceField(choices=[(d, d) for d in DIRECTIONS], required=False)
            elif isinstance(default, int):
                self.fields[name] = forms.IntegerField(min_value=limits[name][0], max_value=limits[name][1],
                                                       required=False, widget=forms.NumberInput(attrs={"step": 1}))
            else:
                self.fields[name] = forms.FloatField(min_value=limits[name][0], max_value=limits[name][1],
                                                     required=False, widget=forms.NumberInput(attrs={"step": "any"}))

    def clean(self):
        cleaned = super().clean()
        for name in self.fields:
            if cleaned.get(name) in (None, ""):
                cleaned[name] = self.defaults[name]
            elif name not in self.errors:
                try:
                    DetectionConfig.from_overrides({name: cleaned[name]})
                except ValueError as error:
                    self.add_error(name, str(error))
        return cleaned

    def overrides(self) -> dict:
        """The valid form's settings that differ from the defaults: what is stored."""
        return {name: self.cleaned_data[name] for name, default in self.defaults.items()
                if self.cleaned_data[name] != default}

    def rows(self):
        """(the input, the default, the tenant's value, whether the proposed value differs from it)."""
        proposed = self.cleaned_data if self.is_bound and self.is_valid() else {}
        for name in self.fields:
            yield (self[name], self.defaults[name], self.current[name],
                   name in proposed and proposed[name] != self.current[name])


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
        context.update({
            "overview": overview, "statuses": [s for s, _ in Anomaly.STATUSES],
            # Each count links to those anomalies: the list filtered by severity, status and since when.
            "anomaly_tables": [("24 h", overview.anomalies_24h, f"{now - timedelta(days=1):%Y-%m-%d %H:%M:%S+00:00}"),
                               ("7 days", overview.anomalies_7d, f"{now - timedelta(days=7):%Y-%m-%d %H:%M:%S+00:00}")],
            **_what_if_context(request, tenant, now, previewing=action == "what_if"),
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
            elif action in ("save_settings", "save_for_metrics"):
                _save_settings(request, tenant, for_metrics=action == "save_for_metrics")
        except QueueUnavailable:
            messages.error(request, "The task queue is unavailable; try again in a moment.")
        return HttpResponseRedirect(request.path)


def _what_if_context(request, tenant: Tenant, now: datetime, previewing: bool) -> dict:
    """The what-if section: the settings form (the tenant's values, or those proposed), and once
    previewed, each chosen series under both and what each way of saving would reach."""
    series_choices = metrics_selectors.series_oldest(tenant=tenant, limit=200)
    chosen = [n for n in (whole_number(v) for v in request.GET.getlist("series")) if n is not None][:3]
    days = min(max(whole_number(request.GET.get("days", "3")) or 3, 1), 30)
    form = DetectionSettingsForm(request.GET if previewing else None, current=tenant.detection_config)
    context = {"series_choices": series_choices, "chosen_ids": chosen, "days": days, "settings_form": form,
               "what_if": []}
    if not previewing or not form.is_valid():
        return context
    chosen_series = [s for s in series_choices if s.id in chosen] or series_choices[:1]
    proposed = form.overrides()
    changed = reads.settings_changed(current_overrides=tenant.detection_config, proposed_overrides=proposed)
    context.update({
        "what_if": reads.what_if(
            tenant=tenant, series_list=chosen_series, days=days, proposed_overrides=proposed, now=now,
            anomaly_href=lambda anomaly: reverse("admin:anomalies_anomaly_change", args=[anomaly.id]),
            series_href=lambda series, ts: _series_page_around(series, ts, now)),
        "proposed_json": json.dumps(proposed), "changed": changed, "previewed_ids": [s.id for s in chosen_series],
        "scope": reads.save_scope(tenant=tenant, series_list=chosen_series, changed=changed),
    })
    return context


def _series_page_around(series, ts: datetime, now: datetime) -> str:
    """The series page over the shortest of its ranges that shows `ts` (its ranges end now)."""
    range_key = next((key for key, span in reads.RANGES.items() if now - span < ts), "30d")
    return f"{reverse('admin:metrics_series_change', args=[series.id])}?range={range_key}"


def _save_settings(request, tenant: Tenant, for_metrics: bool) -> None:
    """Save previewed overrides for the whole tenant, or as rules for the previewed series' metrics
    (the settings they change from the tenant's current ones, the tenant's own left as they are)."""
    try:
        overrides = json.loads(request.POST.get("overrides", "{}"), cls=BoundedJSONDecoder)
        if not for_metrics:
            tenant_detection_config_set(tenant=tenant, overrides=overrides)
            messages.success(request, "Detection settings saved for the whole tenant; they apply from the next run "
                                      "(replay to apply them to history).")
            return
        if not isinstance(overrides, dict):
            raise ValueError("give an object of setting: value pairs")
        changed = reads.settings_changed(current_overrides=tenant.detection_config, proposed_overrides=overrides)
        ids = [n for n in (whole_number(v) for v in request.POST.getlist("series")) if n is not None][:3]
        metric_names = sorted({s.metric_name for s in metrics_selectors.series_list(tenant=tenant).filter(id__in=ids)})
        if not changed or not metric_names:
            messages.error(request, "Not saved: no setting changes, or no previewed series.")
            return
        rules = detection_rules_for_metrics_set(tenant=tenant, metric_names=metric_names, overrides=changed)
    except (ValueError, TypeError) as error:
        messages.error(request, f"Not saved: {error}")
        return
    messages.success(request, f"Saved as detection rules {', '.join(repr(r.name) for r in rules)} "
                              f"({', '.join(sorted(changed))}); the tenant's settings are unchanged. They apply from "
                              "the next run (replay to apply them to history).")


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
