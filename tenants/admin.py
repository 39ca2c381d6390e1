"""Admin for tenants and keys, and the tenant-scoped admin base every app's admin uses.

Support staff see only the tenants they are assigned to; superusers see all. The tenant admin is
defined here and registered by the anomalies app with its console page (see TenantAdmin).
"""
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db import models
from django.utils.dateparse import parse_datetime

from cloudwatchdog.forms import EscapingJSONField, whole_number
from tenants.models import ApiKey, TenantStaff
from tenants.selectors import tenant_list_for_staff
from tenants.services import api_key_issue, api_key_revoke


class TenantFilter(admin.SimpleListFilter):
    """The "tenant" filter, listing only the tenants the user may see.

    Django's RelatedFieldListFilter would list every tenant's slug to every staff user.
    """

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request, model_admin):
        return [(str(tenant.id), tenant.slug) for tenant in tenant_list_for_staff(user=request.user)]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        tenant_id = whole_number(value, at_most=2**63 - 1)
        return queryset.none() if tenant_id is None else queryset.filter(tenant_id=tenant_id)


class ScopedValuesFilter(admin.SimpleListFilter):
    """A filter on the distinct values of a field, listing only values from the tenants the user may see.

    Django's AllValuesFieldListFilter reads a related model's every row (all tenants' service and
    metric names); subclasses name a selector that is given the user's tenants instead.
    """

    values_of = None  # (tenants queryset) -> list of values; a staticmethod in subclasses
    MAX_CHOICES = 200

    def lookups(self, request, model_admin):
        values = self.values_of(tenants=tenant_list_for_staff(user=request.user), limit=self.MAX_CHOICES)
        return [(value, value) for value in values]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(**{self.parameter_name: value})


def may_act(user) -> bool:
    """Superusers, and support staff who may act on their tenants (create_support_user --can-act): they
    change detection settings, add and end silences; the other staff of a tenant read and triage."""
    return user.is_active and user.is_staff and user.has_perm("tenants.change_tenant")


def scoped_to_staff(queryset, user):
    """Tenant-owned rows of the tenants the user may see (every tenant's for a superuser)."""
    return queryset.unscoped() if user.is_superuser else queryset.for_tenants(tenant_list_for_staff(user=user))


class DeclaredFiltersChangeList(ChangeList):
    """A list filtered by its declared filters only, with the admin's answer to a bad filter (a redirect
    to ?e=1) otherwise. Django lets the query string filter a list by any lookup on the model's own
    fields, and PostgreSQL then meets it: ?name__regex=( (not a pattern), ?checkpoint=x (text against
    bytea), ?ts__year__gt=99999999999 (out of range) were 500s. And its date hierarchy computes the end of
    year 9999 (?ts__year=9999, with or without month and day) outside its try: OverflowError, ValueError."""

    def get_filters(self, request):
        try:
            filters = super().get_filters(request)
        except (OverflowError, ValueError) as error:
            raise IncorrectLookupParameters(error) from error
        remaining = filters[2]  # the lookups no declared filter took
        if remaining:
            raise IncorrectLookupParameters(f"no filter on {', '.join(remaining)}")
        return filters


class DeclaredFiltersOnly:
    """A model admin whose list takes its declared filters only (DeclaredFiltersChangeList)."""

    def get_changelist(self, request, **kwargs):
        return DeclaredFiltersChangeList


# Tenant limits and detection settings, rule and silence tags: Django's own JSON form field lets a
# 5,000-digit number or deep nesting through to a 500.
JSON_FIELDS = {models.JSONField: {"form_class": EscapingJSONField}}


class TenantScopedAdmin(DeclaredFiltersOnly, admin.ModelAdmin):
    """Rows of the tenants the user may see; tenant choices and filters limited the same way."""

    formfield_overrides = JSON_FIELDS

    def get_queryset(self, request):
        return scoped_to_staff(super().get_queryset(request), request.user)

    def get_changeform_initial_data(self, request):
        # An add page takes initial values from the query string (?start=...), but Django's split date
        # and time widget fails on any text (a 500): a date and time is parsed, anything else left out.
        initial = super().get_changeform_initial_data(request)
        for field in self.opts.fields:
            if isinstance(field, models.DateTimeField) and field.name in initial:
                initial[field.name] = _moment(initial[field.name])
        return initial

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = tenant_list_for_staff(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff


def _moment(text: str):
    try:
        return parse_datetime(text)
    except ValueError:  # the form of a date and time, but not one (month 13)
        return None


class TenantStaffInline(admin.TabularInline):
    model = TenantStaff
    extra = 1
    autocomplete_fields = ["user"]


# Registered by the anomalies app, as this admin with its console page and detection settings added
# (anomalies/admin.py): one registration, so no app unregisters another's admin.
class TenantAdmin(DeclaredFiltersOnly, admin.ModelAdmin):
    list_display = ["slug", "name", "is_active", "created_at", "retention_days", "max_point_age_days"]
    search_fields = ["slug", "name"]
    list_filter = ["is_active"]
    inlines = [TenantStaffInline]
    formfield_overrides = JSON_FIELDS
    # What a tenant is and may use: its slug (every agent sends it), whether it may sign in, its limits
    # and retention. Only superusers change these; support staff who may act change its detection.
    superuser_only_fields = ["slug", "name", "is_active", "limits", "max_point_age_days", "retention_days"]

    def get_queryset(self, request):
        return tenant_list_for_staff(user=request.user)

    def get_readonly_fields(self, request, obj=None):
        shown = list(super().get_readonly_fields(request, obj))
        if request.user.is_superuser:
            return shown
        return shown + [name for name in self.superuser_only_fields if name not in shown]

    def get_inline_instances(self, request, obj=None):
        # Assigning staff (and seeing every user to choose from) is for superusers.
        return super().get_inline_instances(request, obj) if request.user.is_superuser else []

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    list_display = ["prefix", "tenant", "scope", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["scope", TenantFilter]
    search_fields = ["prefix", "name"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tenant", "scope", "name"]
        return ["tenant", "scope", "name", "prefix", "key_hash", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (["tenant", "scope"] if obj else [])

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        issued = api_key_issue(tenant=obj.tenant, scope=obj.scope, name=obj.name)
        obj.pk = issued.api_key.pk
        obj.prefix = issued.api_key.prefix
        messages.warning(request, f"New API key (shown once, copy it now): {issued.plaintext}")

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True).select_related("tenant"))
        for api_key in keys:
            api_key_revoke(tenant=api_key.tenant, api_key_id=api_key.id)
        self.message_user(request, f"Revoked {len(keys)} key(s).")


# Django's user and group lists, the same way.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class StaffUserAdmin(DeclaredFiltersOnly, UserAdmin):
    """Django's user admin, its list filtered by its declared filters only."""


@admin.register(Group)
class StaffGroupAdmin(DeclaredFiltersOnly, GroupAdmin):
    """Django's group admin, its list filtered by its declared filters only."""
