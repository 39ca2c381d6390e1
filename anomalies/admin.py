"""Admin for baselines, anomalies and detection runs, scoped to the staff user's tenants, and the
support console: the anomaly, series and tenant pages with their charts and actions.

Every console page gets its object through the model admin's own queryset (the staff user's
tenants), so another tenant's anomaly, series or tenant is a 404, and a chart only ever reads
the object's own tenant."""
import json
from datetime import datetime, timedelta, timezone as dt_timezone

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from anomalies import alerting, console, selectors
from anomalies.delivery import UnsafeDestination, destination_check
from anomalies.models import (
    Anomaly, Baseline, Channel, DeliveryAttempt, DetectionRule, DetectionRun, Incident, Notification, SeriesMute,
    Silence,
)
from anomalies.runs import QueueUnavailable, detection_run_enqueue
from anomalies.services import (
    anomaly_status_set, detection_rule_create, detection_rule_delete, detection_rule_errors, detection_rule_update,
    series_mute, tenant_detection_config_set,
)
from anomalies.engine import DetectionConfig
from cloudwatchdog.forms import BoundedJSONDecoder, whole_number
from metrics import selectors as metrics_selectors
from metrics.admin import MetricNameFilter, SeriesAdmin, ServiceFilter
from metrics.models import Series
from tenants.admin import TenantAdmin, TenantFilter, TenantScopedAdmin, scoped_to_staff
from tenants.models import Tenant
from tenants.selectors import tenant_list_for_staff

ANOMALY_ZOOMS = {"14h": ("12 h before, 2 h after", timedelta(hours=12), timedelta(hours=2)),
                 "1d": ("1 day", timedelta(hours=12), timedelta(hours=12)),
                 "7d": ("7 days", timedelta(days=6), timedelta(days=1))}


def _cut(text: str, length: int) -> str:
    if len(text) <= length:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[:length - 1])


def _band_word(out_of_band: bool) -> str:
    # Words, not the admin's tick and cross: a green tick for "out of band" would read as fine.
    return "OUT OF BAND" if out_of_band else "in band"


def _severity_badge(severity: str):
    colours = {"low": "#ca8a04", "medium": "#ea580c", "high": "#dc2626"}
    return format_html('<span style="color:#fff;background:{};padding:1px 7px;border-radius:8px">{}</span>',
                       colours.get(severity, "#6b7280"), severity)


def admin_actor(request) -> str:
    return f"user:{request.user.get_username()}"


class ReadOnlyMixin:
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Baseline)
class BaselineAdmin(ReadOnlyMixin, TenantScopedAdmin):
    list_display = ["series", "tenant", "state", "state_since", "now", "status", "sample_count", "median",
                    "scale", "lower", "upper", "watermark", "late_points", "recurring_expected"]
    list_filter = ["state", "status", TenantFilter]
    search_fields = ["series__resource_id", "series__metric_name"]
    list_select_related = ["series", "tenant"]
    exclude = ["checkpoint"]
    show_full_result_count = False

    @admin.display(description="newest point")
    def now(self, obj):
        return _band_word(obj.out_of_band)

    @admin.display(description="recurring, expected (UTC)")
    def recurring_expected(self, obj):
        patterns = [f"{p['period']} {p['start']}–{p['end']} {p['direction']}" for p in obj.recurring]
        return "; ".join(patterns[:3]) + (f" and {len(patterns) - 3} more" if len(patterns) > 3 else "") or "—"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # A baseline is read with its series: the console page draws its band over the points.
        baseline = self.get_object(request, object_id)
        if baseline is None:
            raise Http404("No such baseline.")
        return HttpResponseRedirect(reverse("admin:metrics_series_change", args=[baseline.series_id]) + "#baseline")


@admin.register(Anomaly)
class AnomalyAdmin(TenantScopedAdmin):
    list_display = ["when", "severity_badge", "status", "series_short", "reason_short", "value_short",
                    "expected_short", "detector", "tenant"]
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
        anomaly_status_set(tenant=obj.tenant, anomaly_ids=[obj.id], status=obj.status, actor=admin_actor(request))

    class Media:
        css = {"all": ["anomalies/changelist.css"]}

    # The list stays one line a row: long names and sentences are cut, the whole text in the tooltip.
    @admin.display(description="time (UTC)", ordering="ts")
    def when(self, obj):
        return obj.ts.strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj):
        return _severity_badge(obj.severity)

    @admin.display(description="series")
    def series_short(self, obj):
        return _cut(str(obj.series), 48)

    @admin.display(description="value", ordering="value")
    def value_short(self, obj):
        return f"{obj.value:.4g}"

    @admin.display(description="expected")
    def expected_short(self, obj):
        return f"{obj.expected:.4g}"

    @admin.display(description="reason")
    def reason_short(self, obj):
        return _cut(obj.reason, 90)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The console page of one anomaly: its chart, reason, evidence, links, history and actions."""
        anomaly = self.get_object(request, object_id)
        if anomaly is None:
            raise Http404("No such anomaly.")
        tenant = anomaly.tenant
        can_change = self.has_change_permission(request, anomaly)
        if request.method == "POST":
            if not can_change:
                raise Http404("No such anomaly.")
            status = request.POST.get("status", anomaly.status)
            if status not in dict(Anomaly.STATUSES):
                messages.error(request, "Choose open, acknowledged or resolved.")
            else:
                anomaly_status_set(tenant=tenant, anomaly_ids=[anomaly.id], status=status, actor=admin_actor(request),
                                   note=request.POST.get("note", "").strip()[:4000])
                messages.success(request, f"Anomaly {anomaly.id}: {status}.")
            return HttpResponseRedirect(request.path)
        zoom = request.GET.get("zoom") if request.GET.get("zoom") in ANOMALY_ZOOMS else "14h"
        _, before, after = ANOMALY_ZOOMS[zoom]
        series = anomaly.series
        chart = console.series_chart(
            tenant=tenant, series=series, start=anomaly.ts - before, end=anomaly.ts + after, focus_id=anomaly.id,
            anomaly_href=lambda a: reverse("admin:anomalies_anomaly_change", args=[a.id]))
        previous, following = console.neighbours(tenant=tenant, anomaly=anomaly)
        previous_us = anomaly.suppression.get("previous_alert_us")
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": str(anomaly), "anomaly": anomaly,
            "series": series, "chart": chart, "zoom": zoom,
            "zooms": [(key, label) for key, (label, _, _) in ANOMALY_ZOOMS.items()],
            "evidence": console.evidence_rows(anomaly),
            "cooldown_hours": anomaly.suppression.get("cooldown_seconds", 0) / 3600,
            "previous_alert": (datetime(1970, 1, 1, tzinfo=dt_timezone.utc) + timedelta(microseconds=previous_us))
            .strftime("%Y-%m-%d %H:%M UTC") if previous_us else None,
            "baseline": selectors.baseline_list(tenant=tenant, series_id=series.id).first(),
            "previous": previous, "following": following,
            "events": selectors.anomaly_events(tenant=tenant, anomaly_id=anomaly.id),
            "statuses": Anomaly.STATUSES, "can_change": can_change,
            "points_before": (anomaly.ts + timedelta(minutes=5)).isoformat(),
        }
        return TemplateResponse(request, "admin/console/anomaly.html", context)

    def _set_status(self, request, queryset, status):
        changed = 0
        for tenant_id in queryset.values_list("tenant", flat=True).distinct():
            tenant = queryset.filter(tenant_id=tenant_id).first().tenant
            changed += anomaly_status_set(
                tenant=tenant, anomaly_ids=list(queryset.filter(tenant_id=tenant_id).values_list("id", flat=True)),
                status=status, actor=admin_actor(request),
            )
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


@admin.register(DetectionRun)
class DetectionRunAdmin(ReadOnlyMixin, TenantScopedAdmin):
    list_display = ["run_id", "tenant", "trigger", "status", "requested_at", "duration_ms", "series_processed",
                    "points_processed", "anomalies_created"]
    list_filter = [TenantFilter, "status", "trigger"]
    show_full_result_count = False


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


# The tenants app knows nothing of detection, so the detection-aware tenant form is added here.
admin.site.unregister(Tenant)


@admin.register(Tenant)
class TenantWithDetectionAdmin(TenantAdmin):
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
            series_count, points = metrics_selectors.points_count_since(tenant=tenant, since=since)
            return TemplateResponse(request, "admin/console/replay_confirm.html",
                                    {**context, "since": since, "series_count": series_count, "points": points})
        now = timezone.now()
        overview = console.tenant_overview(tenant=tenant, now=now)
        series_choices = list(metrics_selectors.series_list(tenant=tenant).order_by("id")[:200])
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
                what_if = console.what_if(tenant=tenant, series_list=chosen_series, days=days,
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


admin.site.unregister(Series)


@admin.register(Series)
class SeriesConsoleAdmin(SeriesAdmin):
    """The series admin with its console page: the chart over a chosen range, the baseline, anomalies, mutes."""

    def change_view(self, request, object_id, form_url="", extra_context=None):
        series = self.get_object(request, object_id)
        if series is None:
            raise Http404("No such series.")
        tenant = series.tenant
        can_mute = request.user.is_active and request.user.is_staff
        if request.method == "POST":
            hours = whole_number(request.POST.get("hours", ""), at_most=24 * 31)
            if not hours:
                messages.error(request, "Choose how long to mute.")
            else:
                start = timezone.now()
                series_mute(tenant=tenant, series_id=series.id, start=start, end=start + timedelta(hours=hours),
                            actor=admin_actor(request), note=request.POST.get("note", "").strip()[:4000])
                messages.success(request, f"Muted for {hours} h.")
            return HttpResponseRedirect(request.path)
        range_key = request.GET.get("range") if request.GET.get("range") in console.RANGES else "24h"
        end = timezone.now()
        chart = console.series_chart(tenant=tenant, series=series, start=end - console.RANGES[range_key], end=end,
                                     anomaly_href=lambda a: reverse("admin:anomalies_anomaly_change", args=[a.id]))
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": str(series), "series": series,
            "chart": chart, "range": range_key, "ranges": list(console.RANGES),
            "baseline": selectors.baseline_list(tenant=tenant, series_id=series.id).first(),
            "warm_points": selectors.detection_configs_for(tenant=tenant, series=[series])[series.id].min_points,
            "mutes": selectors.series_mutes(tenant=tenant, series_id=series.id), "can_mute": can_mute,
        }
        return TemplateResponse(request, "admin/console/series.html", context)


@admin.register(SeriesMute)
class SeriesMuteAdmin(ReadOnlyMixin, TenantScopedAdmin):
    list_display = ["series", "tenant", "start", "end", "actor", "note"]
    list_filter = [TenantFilter]
    list_select_related = ["series", "tenant"]


@admin.register(Incident)
class IncidentAdmin(ReadOnlyMixin, TenantScopedAdmin):
    list_display = ["started_at", "severity_badge", "status", "kind", "now", "series", "anomaly_count",
                    "last_anomaly_at", "resolved_at", "tenant"]
    list_filter = [TenantFilter, "status", "kind", "peak_severity"]
    list_select_related = ["series", "tenant"]
    show_full_result_count = False

    @admin.display(description="severity", ordering="peak_severity")
    def severity_badge(self, obj):
        return _severity_badge(obj.peak_severity)

    @admin.display(description="its series now")
    def now(self, obj):
        return "—" if obj.resolved_at else _band_word(obj.out_of_band)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # An incident is read on its series' console page, with its anomalies on the chart.
        incident = self.get_object(request, object_id)
        if incident is None:
            raise Http404("No such incident.")
        return HttpResponseRedirect(reverse("admin:metrics_series_change", args=[incident.series_id]) + "?range=7d")


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ["at", "status_code", "latency_ms", "response_excerpt", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        # Attempts are tenant-owned rows: unscoped, the query fails closed (every notification page was a 500).
        return scoped_to_staff(super().get_queryset(request), request.user)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyMixin, TenantScopedAdmin):
    list_display = ["created_at", "channel", "event", "status", "attempts", "next_attempt_at", "delivered_at", "tenant"]
    list_filter = [TenantFilter, "status", "event"]
    list_select_related = ["channel", "tenant"]
    inlines = [DeliveryAttemptInline]
    exclude = ["payload"]
    show_full_result_count = False


class ChannelForm(forms.ModelForm):
    class Meta:
        model = Channel
        fields = ["tenant", "name", "kind", "url", "email", "min_severity", "service", "metric_name",
                  "renotify_hours", "enabled"]

    def clean(self):
        data = super().clean()
        if data.get("url"):
            try:
                destination_check(data["url"])
            except UnsafeDestination as error:
                self.add_error("url", str(error))
        return data


@admin.register(Channel)
class ChannelAdmin(TenantScopedAdmin):
    form = ChannelForm
    list_display = ["name", "kind", "tenant", "min_severity", "service", "metric_name", "enabled"]
    list_filter = [TenantFilter, "kind", "enabled"]
    actions = ["send_test"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = tenant_list_for_staff(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            alerting.channel_update(channel=obj, data=form.cleaned_data)
            return
        channel = alerting.channel_create(tenant=form.cleaned_data["tenant"], data=form.cleaned_data)
        obj.pk, obj.id = channel.pk, channel.id
        if channel.secret:
            messages.warning(request, f"The webhook's signing secret, shown this once: {channel.secret}")

    @admin.action(description="Send a test notification")
    def send_test(self, request, queryset):
        for channel in queryset:
            alerting.notification_test_queue(channel=channel)
        messages.success(request, f"{queryset.count()} test notification(s) queued; see Notifications for the outcome.")


@admin.register(Silence)
class SilenceAdmin(TenantScopedAdmin):
    list_display = ["tenant", "service", "metric_name", "resource_id", "start", "end", "actor", "note"]
    list_filter = [TenantFilter]
    fields = ["tenant", "service", "metric_name", "resource_id", "tags", "start", "end", "note"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = tenant_list_for_staff(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        obj.actor = admin_actor(request)
        super().save_model(request, obj, form, change)


class DetectionRuleForm(forms.ModelForm):
    """A rule's form, its tags and overrides judged as the API judges them (errors under their field)."""

    class Meta:
        model = DetectionRule
        fields = ["tenant", "name", "service", "metric_name", "resource_id", "tags", "overrides"]

    def clean(self):
        data = super().clean()
        if "tags" in data and data["tags"] is None:  # the tags box left empty: any tags
            data["tags"] = {}
        if "tags" in data and "overrides" in data:  # both parsed as JSON; otherwise their own error shows
            for field, reasons in detection_rule_errors(tags=data["tags"], overrides=data["overrides"]).items():
                self.add_error(field, reasons)
        tenant = data.get("tenant")
        if self.instance.pk is None and tenant is not None:
            most_rules = settings.CLOUDWATCHDOG["DETECTION_RULES_PER_TENANT"]
            if len(selectors.detection_rule_list(tenant=tenant)) >= most_rules:
                self.add_error("tenant", f"{tenant} has {most_rules} rules, the most a tenant may have "
                                         "(DETECTION_RULES_PER_TENANT); delete or widen one first.")
        return data


@admin.register(DetectionRule)
class DetectionRuleAdmin(TenantScopedAdmin):
    """Rules are detection settings: changed by superusers and by support staff who may act on their
    tenants (create_support_user --can-act, as for the tenant's own settings)."""

    form = DetectionRuleForm
    list_display = ["name", "tenant", "service_shown", "metric_shown", "resource_shown", "tags_shown",
                    "overrides_shown", "updated_at"]
    list_filter = [TenantFilter]
    list_select_related = ["tenant"]
    search_fields = ["name", "metric_name"]

    def _may_act(self, request) -> bool:
        user = request.user
        return user.is_active and user.is_staff and user.has_perm("tenants.change_tenant")

    def has_add_permission(self, request):
        return self._may_act(request)

    def has_change_permission(self, request, obj=None):
        return self._may_act(request)

    def has_delete_permission(self, request, obj=None):
        return self._may_act(request)

    def get_readonly_fields(self, request, obj=None):
        return ["tenant"] if obj is not None else []

    @admin.display(description="service", ordering="service")
    def service_shown(self, obj):
        return _cut(obj.service, 32) if obj.service else "any"

    @admin.display(description="metric", ordering="metric_name")
    def metric_shown(self, obj):
        return _cut(obj.metric_name, 40) if obj.metric_name else "any"

    @admin.display(description="resource")
    def resource_shown(self, obj):
        return _cut(obj.resource_id, 32) if obj.resource_id else "any"

    @admin.display(description="tags")
    def tags_shown(self, obj):
        return _cut(", ".join(f"{k}={v}" for k, v in sorted(obj.tags.items())), 48) if obj.tags else "any"

    @admin.display(description="settings")
    def overrides_shown(self, obj):
        return _cut(", ".join(f"{k}={v}" for k, v in obj.overrides.items()), 80)

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in form.Meta.fields if name in form.cleaned_data}
        if change:
            detection_rule_update(rule=obj, data=data)
            return
        rule = detection_rule_create(tenant=form.cleaned_data["tenant"], data=data)
        obj.pk, obj.id = rule.pk, rule.id

    def delete_model(self, request, obj):
        detection_rule_delete(rule=obj)

    def delete_queryset(self, request, queryset):
        for rule in queryset:
            detection_rule_delete(rule=rule)
