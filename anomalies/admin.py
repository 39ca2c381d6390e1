"""Admin for baselines, detection runs and rules, mutes, incidents and alerting, scoped to the staff
user's tenants, and the registration of the support console's pages (anomalies/console/): the
anomaly, series and tenant pages.

Tenant and Series are registered here, once, with their console pages: the tenants and metrics apps
define their admins (TenantAdmin, SeriesAdmin) without registering them, and the console extends
them (anomalies/console/__init__.py says why)."""
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from anomalies import alerting, selectors
from anomalies.console import display
from anomalies.console.anomaly_page import AnomalyAdmin
from anomalies.console.incident_page import IncidentAdmin
from anomalies.console.series_page import SeriesConsoleAdmin
from anomalies.console.tenant_page import TenantConsoleAdmin
from anomalies.delivery import UnsafeDestination, destination_check
from anomalies.models import (
    Anomaly,
    Baseline,
    Channel,
    DeliveryAttempt,
    DetectionRule,
    DetectionRun,
    Incident,
    Notification,
    SeriesMute,
    Silence,
)
from anomalies.services import (
    detection_rule_create,
    detection_rule_delete,
    detection_rule_errors,
    detection_rule_update,
)
from cloudwatchdog.timeutil import format_utc
from metrics.models import Series
from tenants.admin import TenantFilter, TenantScopedAdmin, may_act, scoped_to_staff
from tenants.models import Tenant
from tenants.selectors import tenant_list_for_staff

admin.site.register(Anomaly, AnomalyAdmin)
admin.site.register(Incident, IncidentAdmin)
admin.site.register(Series, SeriesConsoleAdmin)
admin.site.register(Tenant, TenantConsoleAdmin)


class ReadOnlyMixin:
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Baseline)
class BaselineAdmin(ReadOnlyMixin, TenantScopedAdmin):
    list_display = ["series", "tenant", "state", "state_since", "now", "status", "sample_count", "median_shown",
                    "scale_shown", "lower_shown", "upper_shown", "watermark", "late_points", "recurring_expected"]
    list_filter = ["state", "status", TenantFilter]
    search_fields = ["series__resource_id", "series__metric_name"]
    list_select_related = ["series", "tenant"]
    exclude = ["checkpoint"]
    show_full_result_count = False

    @admin.display(description="newest point")
    def now(self, obj):
        return display.band_word(obj.out_of_band)

    # Values to 4 significant digits with the series' unit, as the console writes them.
    @admin.display(description="median", ordering="median")
    def median_shown(self, obj):
        return display.series_quantity(obj.series, obj.median)

    @admin.display(description="robust σ", ordering="scale")
    def scale_shown(self, obj):
        return display.series_quantity(obj.series, obj.scale)

    @admin.display(description="lower", ordering="lower")
    def lower_shown(self, obj):
        return display.series_quantity(obj.series, obj.lower)

    @admin.display(description="upper", ordering="upper")
    def upper_shown(self, obj):
        return display.series_quantity(obj.series, obj.upper)

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


@admin.register(DetectionRun)
class DetectionRunAdmin(ReadOnlyMixin, TenantScopedAdmin):
    ordering = ["-requested_at", "-id"]
    list_display = ["run_id", "tenant", "trigger", "status", "requested_at", "duration_ms", "series_processed",
                    "points_processed", "anomalies_created"]
    list_filter = [TenantFilter, "status", "trigger"]
    show_full_result_count = False


# Two ideas that look alike, told apart on both lists.
MUTE_OR_SILENCE = ("A mute marks one series' anomalies in a time range as muted (still stored and shown, marked); "
                   "it stops no notification. A silence matches series by service, metric, resource or tags: "
                   "their incidents still open, but notify nobody while it is active. To stop alerts, silence.")


@admin.register(SeriesMute)
class SeriesMuteAdmin(ReadOnlyMixin, TenantScopedAdmin):
    ordering = ["-end", "-id"]
    list_display = ["series", "tenant", "start", "end", "actor", "note"]
    list_filter = [TenantFilter]
    list_select_related = ["series", "tenant"]

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "subtitle": MUTE_OR_SILENCE})


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ["at", "status_code", "latency_ms", "response_excerpt", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # The tenant's support staff read what came back (they hold no model permission of Django's own).
        return request.user.is_active and request.user.is_staff

    def get_queryset(self, request):
        # Attempts are tenant-owned rows: unscoped, the query fails closed (every notification page was a 500).
        return scoped_to_staff(super().get_queryset(request), request.user)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyMixin, TenantScopedAdmin):
    ordering = ["-created_at", "-id"]
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


# The admin index leads with a banner when a notification channel is failing.
admin.site.index_template = "admin/console/index.html"


@admin.register(Channel)
class ChannelAdmin(TenantScopedAdmin):
    form = ChannelForm
    list_display = ["name", "kind", "tenant", "health", "last_success_at", "last_error_shown", "min_severity",
                    "service", "metric_name", "enabled"]
    list_filter = [TenantFilter, "kind", "enabled"]
    actions = ["send_test"]

    def get_queryset(self, request):
        return selectors.channels_with_health(super().get_queryset(request))

    @admin.display(description="delivery", ordering="failing_since")
    def health(self, channel):
        if channel.failing_since is not None:
            return format_html('<span class="cwd-failing">failing since {}</span>', format_utc(channel.failing_since))
        return "ok" if channel.last_success_at else "no deliveries yet"

    @admin.display(description="last success", ordering="last_success_at")
    def last_success_at(self, channel):
        return format_utc(channel.last_success_at)

    @admin.display(description="last error")
    def last_error_shown(self, channel):
        if not channel.last_error:
            return "–"
        return f"{format_utc(channel.last_error_at)}: {display.cut(channel.last_error, 80)}"

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


class ActingStaffMixin:
    """Superusers and support staff who may act (create_support_user --can-act) write here; the other
    staff of the tenant read."""

    def _may_act(self, request) -> bool:
        return may_act(request.user)

    def has_add_permission(self, request):
        return self._may_act(request)

    def has_change_permission(self, request, obj=None):
        return self._may_act(request)

    def has_delete_permission(self, request, obj=None):
        return self._may_act(request)


class SilenceForm(forms.ModelForm):
    """A silence's form, held to the tenant's SILENCES_PER_TENANT as the API's silences are."""

    class Meta:
        model = Silence
        fields = ["tenant", "service", "metric_name", "resource_id", "tags", "start", "end", "note"]

    def clean(self):
        data = super().clean()
        tenant = data.get("tenant")
        if self.instance.pk is None and tenant is not None:
            most = settings.CLOUDWATCHDOG["SILENCES_PER_TENANT"]
            if selectors.silences_not_over_count(tenant=tenant, now=timezone.now()) >= most:
                self.add_error("tenant", f"{tenant} has {most} silences not yet over, the most a tenant may have "
                                         "(SILENCES_PER_TENANT); end one first.")
        if data.get("tags") is None and "tags" in data:
            data["tags"] = {}
        return data


@admin.register(Silence)
class SilenceAdmin(ActingStaffMixin, TenantScopedAdmin):
    form = SilenceForm
    ordering = ["-end", "-id"]
    list_display = ["state", "tenant", "service", "metric_name", "resource_id", "tags", "start", "end_shown", "actor",
                    "note"]
    list_filter = [TenantFilter]
    fields = SilenceForm.Meta.fields

    @admin.display(description="end", ordering="end")
    def end_shown(self, silence):
        if silence.ends_with_incident_id:
            return format_html('{} or when <a href="{}">its incident</a> resolves', format_utc(silence.end),
                               reverse("admin:anomalies_incident_change", args=[silence.ends_with_incident_id]))
        return format_utc(silence.end)
    actions = ["end_now"]

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "subtitle": MUTE_OR_SILENCE})

    @admin.display(description="state")
    def state(self, silence):
        return silence.state_at(timezone.now())

    @admin.action(description="End the selected silences now (scheduled ones are dropped)")
    def end_now(self, request, queryset):
        now = timezone.now()
        for silence in queryset:
            alerting.silence_end(silence=silence, now=now)
        messages.success(request, f"{queryset.count()} silence(s) ended.")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = tenant_list_for_staff(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            obj.actor = display.admin_actor(request)
            super().save_model(request, obj, form, change)
            return
        data = {name: form.cleaned_data[name] for name in SilenceForm.Meta.fields if name != "tenant"}
        try:
            silence = alerting.silence_create(tenant=form.cleaned_data["tenant"], data=data,
                                              actor=display.admin_actor(request))
        except alerting.TooManySilences as error:  # another was added since the form was checked
            messages.error(request, f"Not added: {error}.")
            return
        obj.pk, obj.id = silence.pk, silence.id


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
class DetectionRuleAdmin(ActingStaffMixin, TenantScopedAdmin):
    """Rules are detection settings: changed by superusers and by support staff who may act on their
    tenants (create_support_user --can-act, as for the tenant's own settings)."""

    form = DetectionRuleForm
    list_display = ["name", "tenant", "service_shown", "metric_shown", "resource_shown", "tags_shown",
                    "overrides_shown", "updated_at"]
    list_filter = [TenantFilter]
    list_select_related = ["tenant"]
    search_fields = ["name", "metric_name"]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant"] if obj is not None else []

    @admin.display(description="service", ordering="service")
    def service_shown(self, obj):
        return display.cut(obj.service, 32) if obj.service else "any"

    @admin.display(description="metric", ordering="metric_name")
    def metric_shown(self, obj):
        return display.cut(obj.metric_name, 40) if obj.metric_name else "any"

    @admin.display(description="resource")
    def resource_shown(self, obj):
        return display.cut(obj.resource_id, 32) if obj.resource_id else "any"

    @admin.display(description="tags")
    def tags_shown(self, obj):
        return display.cut(", ".join(f"{k}={v}" for k, v in sorted(obj.tags.items())), 48) if obj.tags else "any"

    @admin.display(description="settings")
    def overrides_shown(self, obj):
        return display.cut(", ".join(f"{k}={v}" for k, v in obj.overrides.items()), 80)

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
