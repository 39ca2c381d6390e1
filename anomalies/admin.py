"""Admin for baselines, anomalies and detection runs, scoped to the staff user's tenants."""
from django import forms
from django.contrib import admin

from anomalies.models import Anomaly, Baseline, DetectionRun
from anomalies.services import anomaly_status_set
from anomalies.engine import DetectionConfig
from metrics.admin import MetricNameFilter, ServiceFilter
from tenants.admin import TenantAdmin, TenantFilter, TenantScopedAdmin
from tenants.models import Tenant


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
    list_display = ["series", "tenant", "status", "sample_count", "median", "scale", "lower", "upper", "watermark",
                    "late_points"]
    list_filter = ["status", TenantFilter]
    search_fields = ["series__resource_id", "series__metric_name"]
    list_select_related = ["series", "tenant"]
    exclude = ["checkpoint"]
    show_full_result_count = False


@admin.register(Anomaly)
class AnomalyAdmin(TenantScopedAdmin):
    list_display = ["ts", "tenant", "series", "value", "expected", "severity", "status", "detector", "reason"]
    list_filter = [TenantFilter, "severity", "status", ServiceFilter, MetricNameFilter, ("ts", admin.DateFieldListFilter)]
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
            raise forms.ValidationError(f"{error}; the settings are: {', '.join(DetectionConfig().as_dict())}.")
        return overrides


# The tenants app knows nothing of detection, so the detection-aware tenant form is added here.
admin.site.unregister(Tenant)


@admin.register(Tenant)
class TenantWithDetectionAdmin(TenantAdmin):
    form = TenantDetectionForm
