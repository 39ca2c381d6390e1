"""Reads for tenants and API keys: the few audited lookups everything else goes through."""
from __future__ import annotations

import hmac

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from tenants.models import ApiKey, Tenant
from tenants.services import key_hash, key_prefix


def api_key_get_by_plaintext(*, plaintext: str) -> ApiKey | None:
    """The active key (with its active tenant) matching this plaintext, or None."""
    prefix = key_prefix(plaintext)
    if prefix is None:
        return None
    api_key = (
        ApiKey.objects.unscoped()
        .select_related("tenant")
        .filter(prefix=prefix, revoked_at__isnull=True, tenant__is_active=True)
        .first()
    )
    if api_key is None or not hmac.compare_digest(api_key.key_hash, key_hash(plaintext)):
        return None
    return api_key


def tenant_get(*, slug: str) -> Tenant | None:
    return Tenant.objects.filter(slug=slug).first()


def tenant_list(*, slug: str | None = None) -> QuerySet[Tenant]:
    tenants = Tenant.objects.filter(is_active=True)
    return tenants.filter(slug=slug) if slug else tenants


def tenant_list_for_staff(*, user: AbstractBaseUser) -> QuerySet[Tenant]:
    """Tenants a user may see in the admin: all for superusers, the assigned ones for support staff."""
    if user.is_superuser:
        return Tenant.objects.all()
    return Tenant.objects.filter(tenantstaff__user=user)
